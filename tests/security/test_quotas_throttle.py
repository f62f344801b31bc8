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


class Drain:
    """A confluent-kafka consumer reading a topic from the start in a thread, counting the
    value bytes it receives over time and the throttle it is told of."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, **conf: Any) -> None:
        self.received: list[tuple[float, int]] = []
        self.throttle_ms: list[int] = []
        self._stop = threading.Event()
        self.consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap, "client.id": client_id, "group.id": f"g-{uuid.uuid4()}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "statistics.interval.ms": 500,
            "stats_cb": self._stats, "fetch.wait.max.ms": 100, **conf})
        self.consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _stats(self, raw: str) -> None:
        for b in json.loads(raw).get("brokers", {}).values():
            if b.get("throttle", {}).get("max", 0) > 0:
                self.throttle_ms.append(int(b["throttle"]["max"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                self.received.append((time.monotonic(), len(msg.value())))
        self.consumer.close()

    def start(self) -> Drain:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def total(self) -> int:
        return sum(n for _, n in list(self.received))

    def rate(self, start: float, end: float) -> float:
        return sum(n for t, n in list(self.received) if start <= t < end) / (end - start)

    def paced_rate(self, start: float, end: float, gap: float = 0.5) -> float:
        """The rate from the start of one burst to the start of the last burst in ``[start, end)``
        (a burst: what arrives after ``gap`` seconds without anything). A throttled consumer
        reads in bursts a quota window apart; a span cut mid-period counts a burst more or less,
        ±20 % over 10 s, whereas burst to burst measures whole periods. The plain rate when
        the pace has fewer than two bursts there."""
        times = [(t, n) for t, n in list(self.received) if start <= t < end]
        starts = [t for i, (t, _) in enumerate(times) if i > 0 and t - times[i - 1][0] >= gap]
        if len(starts) < 2:
            return self.rate(start, end)
        first, last = starts[0], starts[-1]
        return sum(n for t, n in times if first <= t < last) / (last - first)


#: For the consumer, 5 samples: a throttled fetch is answered empty and its bytes are not
#: counted, which with 2 samples makes the pace lumpy (the first burst is then 4 s of quota).
CONSUMER_WINDOWS = {"quota.window.num": "5", "quota.window.size.seconds": "1"}


def test_consumer_held_to_consumer_byte_rate_and_others_not_slowed(tmp_path: Any) -> None:
    with BrokerThread(tmp_path / "data", CONSUMER_WINDOWS) as broker:
        with KafkaClient(broker.bootstrap) as client:
            admin.create_topic(client, "data", 1)
            admin.alter_client_quotas(client, {"client-id": "slow-reader"}, {"consumer_byte_rate": QUOTA})
        # Small batches: a fetch returns at least one whole batch.
        p = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 16384})
        for _ in range(8 * 1024 * 1024 // len(VALUE)):
            p.produce("data", VALUE)
            p.poll(0)
        assert p.flush(30) == 0
        total = (8 * 1024 * 1024 // len(VALUE)) * len(VALUE)

        # Small fetches, so that 5 s hold many: a fetch that would put the client over its
        # quota is answered empty (and waits), so large ones make the pace lumpy.
        slow = Drain(broker.bootstrap, "data", "slow-reader", **{
            "fetch.max.bytes": 32768, "max.partition.fetch.bytes": 32768, "message.max.bytes": 32768}).start()
        try:
            deadline = time.monotonic() + 20
            while not slow.received and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(5)  # past the first burst
            # Over 10 s, as the producer, burst to burst: the fetches answered empty while
            # throttled make the pace lumpy (a burst every few seconds).
            t1 = time.monotonic()
            time.sleep(10)
            slow_rate = slow.paced_rate(t1, time.monotonic())
            # A consumer without a quota reads everything meanwhile, at its own pace.
            started = time.monotonic()
            fast = Drain(broker.bootstrap, "data", "fast-reader").start()
            while fast.total() < total and time.monotonic() < started + 20:
                time.sleep(0.05)
            fast_seconds = time.monotonic() - started
            fast.stop()
        finally:
            slow.stop()
    print(f"slow {slow_rate:.0f} B/s (quota {QUOTA}), fast read {total} B in {fast_seconds:.1f} s, "
          f"throttles {slow.throttle_ms[:5]}")
    # Held to the quota: bursty by design (a throttled fetch is answered empty), so a 10 s
    # window is within 20% above it. Below it only a gross over-throttle is the broker's: on a
    # loaded machine every delay between a throttle's end and the next fetch slows the reader
    # (68% of the quota once under CI load), so the floor is half the quota.
    assert 0.5 * QUOTA <= slow_rate <= 1.2 * QUOTA, (slow_rate, QUOTA)
    assert slow.throttle_ms, "the throttled consumer was told its throttle time"
    assert fast.total() == total and not fast.throttle_ms
    assert fast_seconds < 0.5 * total / QUOTA  # far faster than the quota would allow
