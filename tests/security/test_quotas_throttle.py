"""Bandwidth quotas with real clients over real sockets: a producer and a consumer held
to their byte rates, with throttle_time_ms reported, while another client is not slowed."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.testing import BrokerThread

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.integration

QUOTA = 256 * 1024  # bytes per second
VALUE = b"x" * 8000
#: A shorter quota window than Kafka's default (11 samples of 1 s): Kafka's sampled rate lets a client
#: burst by a window's worth whenever the oldest sample expires, which 2 samples keep small.
WINDOWS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}


class Flood:
    """A confluent-kafka producer (acks=1) pushing as fast as it can from a thread,
    counting the value bytes acknowledged over time and the throttle it is told of."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, value: bytes = VALUE, pace: float = 0,
                 **conf: Any) -> None:
        self.topic = topic
        self.value = value
        #: Bytes per second to produce at most (0: as fast as it can).
        self.pace = pace
        self.acked: list[tuple[float, int]] = []
        self.throttle_ms: list[int] = []
        self._stop = threading.Event()
        self.producer = confluent_kafka.Producer({
            "bootstrap.servers": bootstrap, "client.id": client_id, "acks": 1,
            "linger.ms": 5, "queue.buffering.max.kbytes": 2048, "statistics.interval.ms": 500,
            "stats_cb": self._stats, "enable.idempotence": False, **conf})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _stats(self, raw: str) -> None:
        stats = json.loads(raw)
        for b in stats.get("brokers", {}).values():
            t = b.get("throttle", {})
            if t.get("max", 0) > 0:
                self.throttle_ms.append(int(t["max"]))

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked.append((time.monotonic(), len(msg.value())))

    def _run(self) -> None:
        p = self.producer
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            if self.pace and sent > self.pace * (time.monotonic() - started):
                p.poll(0.01)
                continue
            sent += len(self.value)
            try:
                p.produce(self.topic, self.value, on_delivery=self._delivered)
            except BufferError:
                p.poll(0.05)
            else:
                p.poll(0)
        p.flush(15)

    def start(self) -> Flood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def rate(self, start: float, end: float) -> float:
        """Value bytes acknowledged per second between two monotonic times."""
        return sum(n for t, n in list(self.acked) if start <= t < end) / (end - start)


def test_producer_held_to_producer_byte_rate_and_others_not_slowed(tmp_path: Any) -> None:
    with BrokerThread(tmp_path / "data", WINDOWS) as broker:
        with KafkaClient(broker.bootstrap) as client:
            admin.create_topic(client, "limited", 1)
            admin.create_topic(client, "free", 1)
            admin.alter_client_quotas(client, {"client-id": "limited-app"}, {"producer_byte_rate": QUOTA})
        # At a steady 32 times the quota: a pace a loaded machine keeps, so that a drop
        # would be the broker's doing.
        free = Flood(broker.bootstrap, "free", "free-app", b"f" * 64 * 1024, pace=32 * QUOTA).start()
        time.sleep(3)
        t0 = time.monotonic()
        time.sleep(3)
        free_before = free.rate(t0, time.monotonic())

        # Small produce requests, so that 10 s hold many of them.
        limited = Flood(broker.bootstrap, "limited", "limited-app", **{"batch.size": 16384}).start()
        try:
            time.sleep(3)  # past the first burst the window allows
            t1 = time.monotonic()
            time.sleep(10)
            t2 = time.monotonic()
            limited_rate = limited.rate(t1, t2)
            free_during = free.rate(t1, t2)
        finally:
            limited.stop()
            free.stop()
        print(f"limited {limited_rate:.0f} B/s (quota {QUOTA}), free {free_before:.0f} -> {free_during:.0f} B/s, "
              f"throttles {limited.throttle_ms[:5]}",
              [round(limited.rate(t1 + i, t1 + i + 1)) for i in range(10)])
    assert limited_rate == pytest.approx(QUOTA, rel=0.10), (limited_rate, QUOTA)
    assert limited.throttle_ms, "the throttled producer was told its throttle time"
    assert not free.throttle_ms
    # The producer without a quota keeps its pace.
    assert free_before >= 0.9 * 32 * QUOTA, free_before
    assert free_during >= 0.9 * free_before, (free_during, free_before)
