"""confluent-kafka (librdkafka) against the in-process broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from replica_wire import WireClient, batch, create_topic, produce_one
from wait_helpers import parked_fetches, wait_until

from kbroker.testing import BrokerThread


def _producer(bootstrap: str, **conf: Any) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **conf})


def _consumer(bootstrap: str, **conf: Any) -> Consumer:
    # group.id is mandatory in the Python client; with assign() no group is joined.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "replica-tests", "enable.auto.commit": False,
                     "enable.partition.eof": False, **conf})


def _produce(p: Producer, topic: str, messages: list[dict[str, Any]]) -> list[Any]:
    """Produce and flush; returns the delivery reports (error or message) in order."""
    reports: list[Any] = []
    for m in messages:
        p.produce(topic, on_delivery=lambda err, msg: reports.append(err or msg), **m)
    assert p.flush(10) == 0
    return reports


def _drain(c: Consumer, n: int, timeout: float = 6.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    return out


@pytest.fixture
def consumer(kafka_bootstrap: str) -> Iterator[Consumer]:
    c = _consumer(kafka_bootstrap)
    yield c
    c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_acks(kafka_broker: BrokerThread, consumer: Consumer, acks: str) -> None:
    create_topic(kafka_broker, "acks")
    reports = _produce(_producer(kafka_broker.bootstrap, acks=acks), "acks",
                       [{"value": b"m%d" % i, "partition": 0} for i in range(10)])
    assert all(not isinstance(r, KafkaError) for r in reports)
    if acks != "0":
        assert [r.offset() for r in reports] == list(range(10))
    consumer.assign([TopicPartition("acks", 0, OFFSET_BEGINNING)])
    assert [m.value() for m in _drain(consumer, 10)] == [b"m%d" % i for i in range(10)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(kafka_broker: BrokerThread, consumer: Consumer, codec: str) -> None:
    create_topic(kafka_broker, "comp")
    msgs = [{"key": b"k%d" % i, "value": (b"v%d-" % i) * 40, "headers": [("h", b"%d" % i), ("n", None)],
             "partition": 0} for i in range(50)]
    msgs.append({"key": b"tomb", "value": None, "partition": 0})
    reports = _produce(_producer(kafka_broker.bootstrap, **{"compression.type": codec}), "comp", msgs)
    assert all(not isinstance(r, KafkaError) for r in reports)
    consumer.assign([TopicPartition("comp", 0, OFFSET_BEGINNING)])
    got = _drain(consumer, 51)
    assert [(m.key(), m.value(), m.headers()) for m in got[:50]] == [
        (m["key"], m["value"], m["headers"]) for m in msgs[:50]]
    assert (got[50].key(), got[50].value()) == (b"tomb", None)


def test_watermarks_offsets_for_times_and_latest(kafka_broker: BrokerThread, consumer: Consumer) -> None:
    create_topic(kafka_broker, "pos")
    base = int(time.time() * 1000) - 100_000
    _produce(_producer(kafka_broker.bootstrap), "pos",
             [{"value": b"%d" % i, "partition": 0, "timestamp": base + i * 1000} for i in range(10)])
    tp = TopicPartition("pos", 0)
    assert consumer.get_watermark_offsets(tp, timeout=5) == (0, 10)
    [found] = consumer.offsets_for_times([TopicPartition("pos", 0, base + 4500)], timeout=5)
    assert found.offset == 5
    consumer.assign([found])
    assert [m.value() for m in _drain(consumer, 5)] == [b"5", b"6", b"7", b"8", b"9"]
    assert _drain(consumer, 1, timeout=0.3) == []

    # The first consumer's fetch at the end of the log must not be taken for the next one's.
    consumer.unassign()
    wait_until(lambda: parked_fetches(kafka_broker) == 0, what="the first consumer's fetch ended")
    latest = _consumer(kafka_broker.bootstrap)
    try:
        latest.assign([TopicPartition("pos", 0, OFFSET_END)])
        # The consumer must have resolved "latest" (to 10) before the next record exists, or
        # under load it resolves after the produce and rightly skips the record: wait until its
        # fetch at the end of the log is parked on the broker.
        wait_until(lambda: latest.poll(0.01) is None and parked_fetches(kafka_broker) > 0,
                   what="the latest consumer's fetch parked on the broker")
        _produce(_producer(kafka_broker.bootstrap), "pos", [{"value": b"new", "partition": 0}])
        got = _drain(latest, 1)
        assert [(m.offset(), m.value()) for m in got] == [(10, b"new")]
    finally:
        latest.close()


def test_long_poll_wakes_on_append(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "lp")
    # The fetch may wait 30 s: the record arriving within 10 s means the append woke it.
    c = _consumer(kafka_broker.bootstrap, **{"fetch.wait.max.ms": 30_000})
    try:
        c.assign([TopicPartition("lp", 0, OFFSET_END)])
        wait_until(lambda: c.poll(0.01) is None and parked_fetches(kafka_broker) > 0,
                   what="the consumer's fetch parked on the broker")
        w = WireClient(kafka_broker.bootstrap)
        produce_one(w, "lp", 0, batch([b"now"]))
        w.close()
        got = _drain(c, 1, timeout=10)
    finally:
        c.close()
    assert [m.value() for m in got] == [b"now"]


def test_many_partitions(kafka_broker: BrokerThread, consumer: Consumer) -> None:
    n = 24
    create_topic(kafka_broker, "many", partitions=n)
    _produce(_producer(kafka_broker.bootstrap), "many",
             [{"value": b"%d" % i, "partition": i % n} for i in range(n * 4)])
    consumer.assign([TopicPartition("many", i, OFFSET_BEGINNING) for i in range(n)])
    got = _drain(consumer, n * 4)
    assert sorted(int(m.value()) for m in got) == list(range(n * 4))
    assert consumer.get_watermark_offsets(TopicPartition("many", 7), timeout=5) == (0, 4)


def test_message_size_limit(kafka_broker: BrokerThread) -> None:
    limit = 100_000
    create_topic(kafka_broker, "big", configs={"max.message.bytes": str(limit)})
    p = _producer(kafka_broker.bootstrap, **{"message.max.bytes": 4 * limit, "retries": 0})
    reports = _produce(p, "big", [{"value": b"a" * (limit - 200), "partition": 0}])
    assert not isinstance(reports[0], KafkaError) and reports[0].offset() == 0
    reports = _produce(p, "big", [{"value": b"b" * (limit + 10), "partition": 0}])
    assert isinstance(reports[0], KafkaError)
    assert reports[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_log_append_time(kafka_broker: BrokerThread, consumer: Consumer) -> None:
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    create_topic(kafka_broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    [report] = _produce(_producer(kafka_broker.bootstrap), "lat", [{"value": b"x", "partition": 0, "timestamp": 1}])
    after = int(time.time() * 1000)
    ts_type, ts = report.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after
    consumer.assign([TopicPartition("lat", 0, OFFSET_BEGINNING)])
    [m] = _drain(consumer, 1)
    assert m.timestamp() == (TIMESTAMP_LOG_APPEND_TIME, ts)


def test_unknown_topic_without_auto_create(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", {"auto.create.topics.enable": "false"}) as b:
        p = _producer(b.bootstrap, **{"topic.metadata.propagation.max.ms": 300, "message.timeout.ms": 3000})
        reports: list[Any] = []
        p.produce("absent", value=b"x", on_delivery=lambda err, msg: reports.append(err))
        p.flush(5)
        assert reports and isinstance(reports[0], KafkaError)
        assert reports[0].code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART)
