"""A topic's compression.type and timestamp rules through kafka-python and confluent-kafka.

What is stored is read back from the partition's segment file in the broker's data dir.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.errors import InvalidTimestampError
from replica_wire import WireClient, batch, create_topic, produce_one

from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    BatchHeader,
    iter_headers,
)
from kbroker.records.record import iter_records
from kbroker.testing import BrokerThread

HOUR = 3_600_000


def _stored(broker: BrokerThread, topic: str) -> list[tuple[BatchHeader, bytes]]:
    """Every batch of partition 0 as its segment files hold it."""
    part = Path(broker.config.get("log.dirs")[0]) / f"{topic}-0"
    out = []
    for seg in sorted(part.glob("*.log")):
        data = seg.read_bytes()
        out.extend((h, data[pos : pos + h.size]) for pos, h in iter_headers(data))
    return out


def _kp_producer(broker: BrokerThread, **kw: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, **kw)


def _kp_read(broker: BrokerThread, topic: str, n: int) -> list[Any]:
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out: list[Any] = []
        deadline = time.monotonic() + 10
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def _ck_read(broker: BrokerThread, topic: str, n: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
    try:
        c.assign([CTopicPartition(topic, 0, 0)])
        out: list[Any] = []
        deadline = time.monotonic() + 10
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m)
        return out
    finally:
        c.close()


@pytest.mark.parametrize(("topic_codec", "codec"), [("zstd", COMPRESSION_ZSTD), ("gzip", COMPRESSION_GZIP)])
def test_kafka_python_uncompressed_batches_are_stored_in_the_topic_codec(kafka_broker: BrokerThread,
                                                                          topic_codec: str, codec: int) -> None:
    create_topic(kafka_broker, "t", configs={"compression.type": topic_codec})
    p = _kp_producer(kafka_broker, compression_type=None)
    sent = [(f"k{i}".encode(), f"value {i} ".encode() * 20) for i in range(30)]
    for k, v in sent:
        p.send("t", key=k, value=v, partition=0, headers=[("h", k)])
    p.flush(10)
    p.close()
    got = _kp_read(kafka_broker, "t", len(sent))
    assert [(r.key, r.value, r.offset) for r in got] == [(k, v, i) for i, (k, v) in enumerate(sent)]
    assert [r.headers for r in got] == [[("h", k)] for k, _ in sent]
    stored = _stored(kafka_broker, "t")
    assert stored and {h.compression for h, _ in stored} == {codec}
    assert [(r.key, r.value) for _, b in stored for r in iter_records(b)] == sent


@pytest.mark.parametrize(("topic_codec", "codec"), [("zstd", COMPRESSION_ZSTD), ("gzip", COMPRESSION_GZIP)])
def test_confluent_idempotent_batches_are_stored_in_the_topic_codec(kafka_broker: BrokerThread,
                                                                     topic_codec: str, codec: int) -> None:
    create_topic(kafka_broker, "t", configs={"compression.type": topic_codec})
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "compression.type": "none",
                  "enable.idempotence": True, "linger.ms": 5})
    sent = [(f"k{i}".encode(), f"v{i}".encode() * 30) for i in range(50)]
    for k, v in sent:
        p.produce("t", key=k, value=v, partition=0)
    assert p.flush(10) == 0
    got = _ck_read(kafka_broker, "t", len(sent))
    assert [(m.key(), m.value(), m.offset()) for m in got] == [(k, v, i) for i, (k, v) in enumerate(sent)]
    stored = _stored(kafka_broker, "t")
    assert {h.compression for h, _ in stored} == {codec}
    # The producer's id, epoch and sequences survive the rewrite: sequences run on without gaps.
    assert {h.producer_id for h, _ in stored} != {-1}
    seqs = [(h.base_sequence, h.record_count) for h, _ in stored]
    assert seqs[0][0] == 0 and all(s + n == s2 for (s, n), (s2, _) in zip(seqs, seqs[1:], strict=False))


def test_compression_type_changed_by_an_admin_client_applies_without_restart(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "compression.type": "none", "linger.ms": 0})
    p.produce("t", b"before", partition=0)
    assert p.flush(10) == 0
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, "t", incremental_configs=[
        ConfigEntry("compression.type", "lz4", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("compression.lz4.level", "12", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    p.produce("t", b"after", partition=0)
    assert p.flush(10) == 0
    assert [h.compression for h, _ in _stored(kafka_broker, "t")] == [COMPRESSION_NONE, COMPRESSION_LZ4]
    assert [m.value() for m in _ck_read(kafka_broker, "t", 2)] == [b"before", b"after"]
    # And back to the producer's codec: batches are stored as sent again.
    res = ConfigResource(ResourceType.TOPIC, "t", incremental_configs=[
        ConfigEntry("compression.type", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res])[res].result(10)
    p.produce("t", b"again", partition=0)
    assert p.flush(10) == 0
    assert _stored(kafka_broker, "t")[-1][0].compression == COMPRESSION_NONE


def test_a_compressed_batch_too_large_once_rewritten(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", configs={"compression.type": "uncompressed", "max.message.bytes": "10000"})
    r = produce_one(wire, "t", 0, batch([bytes(50_000)], compression=COMPRESSION_GZIP))
    assert (r.error_code, r.error_message, r.log_start_offset) == (10, None, -1)  # MESSAGE_TOO_LARGE, as Kafka
    assert produce_one(wire, "t", 0, batch([bytes(5_000)], compression=COMPRESSION_GZIP)).error_code == 0
    assert [h.compression for h, _ in _stored(kafka_broker, "t")] == [COMPRESSION_NONE]


def test_timestamp_beyond_after_max_ms_refused_on_both_clients(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")  # message.timestamp.after.max.ms: Kafka 4's default, one hour
    now = int(time.time() * 1000)
    kp = _kp_producer(kafka_broker, retries=0)
    with pytest.raises(InvalidTimestampError):
        kp.send("t", b"late", partition=0, timestamp_ms=now + 2 * HOUR).get(10)
    kp.send("t", b"fine", partition=0, timestamp_ms=now + HOUR // 2).get(10)
    kp.close()
    outcome: list[Any] = []
    cp = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 0, "retries": 0})
    cp.produce("t", b"late", partition=0, timestamp=now + 2 * HOUR, on_delivery=lambda err, _m: outcome.append(err))
    cp.flush(10)
    assert outcome[0] is not None and outcome[0].code() == KafkaError.INVALID_TIMESTAMP
    assert [r.value for r in _kp_read(kafka_broker, "t", 1)] == [b"fine"]


@pytest.mark.parametrize("topic_codec", ["producer", "zstd"])
def test_log_append_time_is_what_consumers_see(kafka_broker: BrokerThread, topic_codec: str) -> None:
    create_topic(kafka_broker, "t", configs={"message.timestamp.type": "LogAppendTime",
                                             "compression.type": topic_codec})
    before = int(time.time() * 1000)
    kp = _kp_producer(kafka_broker)
    meta = kp.send("t", b"a", partition=0, timestamp_ms=1).get(10)
    kp.close()
    cp = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 0, "compression.type": "gzip"})
    cp.produce("t", b"b", partition=0, timestamp=2)
    assert cp.flush(10) == 0
    after = int(time.time() * 1000)
    assert before <= meta.timestamp <= after  # the produce answer carries the append time
    kp_got = _kp_read(kafka_broker, "t", 2)
    assert [r.timestamp_type for r in kp_got] == [1, 1]  # LogAppendTime
    assert all(before <= r.timestamp <= after for r in kp_got)
    ck_got = _ck_read(kafka_broker, "t", 2)
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    assert [m.timestamp()[0] for m in ck_got] == [TIMESTAMP_LOG_APPEND_TIME] * 2
    assert [m.timestamp()[1] for m in ck_got] == [r.timestamp for r in kp_got]
    stored = _stored(kafka_broker, "t")
    assert all(h.log_append_time for h, _ in stored)
    if topic_codec == "zstd":
        assert {h.compression for h, _ in stored} == {COMPRESSION_ZSTD}
