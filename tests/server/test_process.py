"""The broker as a process: start-up line, clean SIGTERM, and SIGKILL under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from broker_process import BrokerProcess
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.slow


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        fut.result(15)


def _read_all(bootstrap: str, topic: str, partitions: int) -> dict[tuple[int, int], bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    ends = {}
    for p in range(partitions):
        ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    got: dict[tuple[int, int], bytes] = {}
    deadline = time.monotonic() + 60
    while sum(1 for _ in got) < sum(ends.values()) and time.monotonic() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error() is None:
                got[(m.partition(), m.offset())] = m.value()
    c.close()
    return got


def test_startup_line_and_clean_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerProcess(data) as b:
        assert str(data) in b.first_line and b.bootstrap in b.first_line
        _create_topic(b.bootstrap, "t", 2)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        for i in range(100):
            p.produce("t", value=b"v%d" % i, partition=i % 2)
        assert p.flush(15) == 0
        assert b.terminate() == 0
    assert (data / ".kafka_cleanshutdown").exists()
    assert (data / "recovery-point-offset-checkpoint").exists()
    with BrokerProcess(data) as b2:
        got = _read_all(b2.bootstrap, "t", 2)
        assert sorted(got.values()) == sorted(b"v%d" % i for i in range(100))


def test_sigkill_during_acks_all_flood_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked: dict[tuple[int, int], bytes] = {}
    lock = threading.Lock()

    def on_delivery(err, msg) -> None:  # type: ignore[no-untyped-def]
        if err is None:
            with lock:
                acked[(msg.partition(), msg.offset())] = msg.value()

    b = BrokerProcess(data).start()
    try:
        _create_topic(b.bootstrap, "flood", 3)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 5000, "enable.idempotence": False,
                      "reconnect.backoff.max.ms": 100})
        stop_at = time.monotonic() + 1.5
        i = 0
        killed = False
        while time.monotonic() < stop_at + 1.0:
            if not killed and time.monotonic() > stop_at:
                b.kill()  # mid-flood: batches are in flight
                killed = True
            try:
                p.produce("flood", value=b"m%08d" % i, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0)
        p.flush(8)
    finally:
        b.kill()
    assert len(acked) > 100, "the flood should have been acknowledged in part before the kill"
    assert not (data / ".kafka_cleanshutdown").exists()
    with BrokerProcess(data) as b2:
        got = _read_all(b2.bootstrap, "flood", 3)
    missing = {k: v for k, v in acked.items() if got.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged messages lost or moved, e.g. {list(missing.items())[:3]}"
