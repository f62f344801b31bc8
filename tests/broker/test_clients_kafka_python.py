"""kafka-python against the in-process broker: produce, consume, offsets and long polls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from replica_wire import WireClient, batch, create_topic, produce_one
from wait_helpers import parked_fetches, wait_until

from kbroker.testing import BrokerThread


def _producer(bootstrap: str, **kw: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, **kw)


def _consumer(bootstrap: str, **kw: Any) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kw)


def _drain(consumer: KafkaConsumer, n: int, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=200).values():
            out.extend(recs)
    return out


@pytest.fixture
def consumer(kafka_bootstrap: str) -> Iterator[KafkaConsumer]:
    c = _consumer(kafka_bootstrap)
    yield c
    c.close()


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_acks(kafka_broker: BrokerThread, consumer: KafkaConsumer, acks: Any) -> None:
    create_topic(kafka_broker, "acks")
    p = _producer(kafka_broker.bootstrap, acks=acks)
    try:
        futures = [p.send("acks", value=b"m%d" % i, partition=0) for i in range(10)]
        p.flush(10)
        metas = [f.get(5) for f in futures]
    finally:
        p.close()
    if acks != 0:
        assert [m.offset for m in metas] == list(range(10))
    tp = TopicPartition("acks", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    assert [r.value for r in _drain(consumer, 10)] == [b"m%d" % i for i in range(10)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(kafka_broker: BrokerThread, consumer: KafkaConsumer, codec: str) -> None:
    create_topic(kafka_broker, "comp")
    p = _producer(kafka_broker.bootstrap, compression_type=codec, acks=1)
    sent = [(b"k%d" % i, (b"value-%d-" % i) * 50, [("h", b"%d" % i), ("empty", b"")]) for i in range(50)]
    try:
        for k, v, h in sent:
            p.send("comp", key=k, value=v, headers=h, partition=0)
        p.send("comp", key=b"tomb", value=None, partition=0)
        p.flush(10)
    finally:
        p.close()
    tp = TopicPartition("comp", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = _drain(consumer, 51)
    assert [(r.key, r.value, list(r.headers)) for r in got[:50]] == [(k, v, h) for k, v, h in sent]
    assert (got[50].key, got[50].value) == (b"tomb", None)


def test_earliest_latest_and_by_timestamp(kafka_broker: BrokerThread, consumer: KafkaConsumer) -> None:
    create_topic(kafka_broker, "pos")
    base = int(time.time() * 1000) - 100_000
    p = _producer(kafka_broker.bootstrap, acks=1)
    try:
        for i in range(10):
            p.send("pos", value=b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
        p.flush(10)
    finally:
        p.close()
    tp = TopicPartition("pos", 0)
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 10}
    found = consumer.offsets_for_times({tp: base + 4500})[tp]
    assert (found.offset, found.timestamp) == (5, base + 5000)
    assert consumer.offsets_for_times({tp: base + 99_000})[tp] is None

    consumer.assign([tp])
    consumer.seek(tp, found.offset)
    assert [r.value for r in _drain(consumer, 5)] == [b"5", b"6", b"7", b"8", b"9"]
    consumer.seek_to_end(tp)
    assert consumer.position(tp) == 10
    assert consumer.poll(timeout_ms=300) == {}


def test_long_poll_wakes_on_append(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "lp")
    tp = TopicPartition("lp", 0)
    # The fetch may wait 25 s (kafka-python wants it below its 30 s request timeout): the
    # record arriving within 10 s means the append woke it.
    c = _consumer(kafka_broker.bootstrap, fetch_max_wait_ms=25_000)
    try:
        c.assign([tp])
        c.seek_to_end(tp)
        # kafka-python sends its fetch from poll(); poll until one is parked on the broker.
        wait_until(lambda: c.poll(timeout_ms=10) == {} and parked_fetches(kafka_broker) > 0,
                   what="the consumer's fetch parked on the broker")
        w = WireClient(kafka_broker.bootstrap)
        produce_one(w, "lp", 0, batch([b"now"]))
        w.close()
        got = _drain(c, 1, timeout=10)
    finally:
        c.close()
    assert [r.value for r in got] == [b"now"]


def test_many_partitions(kafka_broker: BrokerThread, consumer: KafkaConsumer) -> None:
    n = 24
    create_topic(kafka_broker, "many", partitions=n)
    p = _producer(kafka_broker.bootstrap, acks=1)
    try:
        for i in range(n * 4):
            p.send("many", value=b"%d" % i, partition=i % n)
        p.flush(10)
    finally:
        p.close()
    tps = [TopicPartition("many", i) for i in range(n)]
    assert consumer.end_offsets(tps) == dict.fromkeys(tps, 4)
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = _drain(consumer, n * 4)
    assert sorted(int(r.value) for r in got) == list(range(n * 4))


def test_message_size_limit(kafka_broker: BrokerThread, consumer: KafkaConsumer) -> None:
    limit = 100_000
    create_topic(kafka_broker, "big", configs={"max.message.bytes": str(limit)})
    p = _producer(kafka_broker.bootstrap, acks=1, max_request_size=4 * limit, retries=0)
    try:
        ok = p.send("big", value=b"a" * (limit - 200), partition=0).get(5)
        with pytest.raises(MessageSizeTooLargeError):
            p.send("big", value=b"b" * (limit + 10), partition=0).get(5)
    finally:
        p.close()
    tp = TopicPartition("big", 0)
    consumer.assign([tp])
    consumer.seek(tp, ok.offset)
    assert len(_drain(consumer, 1)[0].value) == limit - 200


def test_log_append_time(kafka_broker: BrokerThread, consumer: KafkaConsumer) -> None:
    create_topic(kafka_broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    p = _producer(kafka_broker.bootstrap, acks=1)
    before = int(time.time() * 1000)
    try:
        meta = p.send("lat", value=b"x", partition=0, timestamp_ms=12345).get(5)
    finally:
        p.close()
    after = int(time.time() * 1000)
    assert before <= meta.timestamp <= after
    tp = TopicPartition("lat", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    rec = _drain(consumer, 1)[0]
    assert (rec.timestamp_type, rec.timestamp) == (1, meta.timestamp)


def test_unknown_topic_without_auto_create(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", {"auto.create.topics.enable": "false"}) as b:
        p = _producer(b.bootstrap, acks=1, max_block_ms=1000)
        try:
            with pytest.raises(KafkaTimeoutError):
                p.send("absent", value=b"x").get(5)
        finally:
            p.close(timeout=1)
        w = WireClient(b.bootstrap)
        try:
            assert produce_one(w, "absent", 0, batch([b"x"])).error_code == 3
        finally:
            w.close()
