"""Produce over the raw wire: offsets, errors per partition, acks, versions, validation."""

from __future__ import annotations

import time

import pytest
from replica_wire import (
    FETCH,
    PRODUCE,
    WireClient,
    batch,
    create_topic,
    fetch,
    partitions_of,
    produce,
    produce_one,
    records_of,
)

from kbroker.records.batch import COMPRESSION_GZIP
from kbroker.testing import BrokerThread


@pytest.mark.parametrize("version", [3, 5, 8, 9, 12])
def test_offsets_are_assigned_in_order(kafka_broker: BrokerThread, wire: WireClient, version: int) -> None:
    create_topic(kafka_broker, "t")
    first = produce_one(wire, "t", 0, batch([b"a", b"b", b"c"]), version=version)
    second = produce_one(wire, "t", 0, batch([b"d"]), version=version)
    assert (first.error_code, first.base_offset) == (0, 0)
    assert (second.error_code, second.base_offset) == (0, 3)
    assert first.log_append_time_ms == -1
    if version >= 5:
        assert second.log_start_offset == 0
    got = records_of(partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)].records)
    assert [(r.offset, r.value) for r in got] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]


def test_v13_addresses_topics_by_id(kafka_broker: BrokerThread, wire: WireClient) -> None:
    topic_id = create_topic(kafka_broker, "by-id")
    resp = produce(wire, topic_id, {0: batch([b"x"])}, version=13)
    assert resp.responses[0].topic_id == topic_id
    assert resp.responses[0].partition_responses[0].error_code == 0
    import uuid

    unknown = produce(wire, uuid.uuid4(), {0: batch([b"x"])}, version=13)
    assert unknown.responses[0].partition_responses[0].error_code == 100  # UNKNOWN_TOPIC_ID


def test_errors_are_per_partition(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "two", partitions=2)
    good = batch([b"ok"])
    bad = bytearray(batch([b"bad"]))
    bad[-1] ^= 0xFF  # breaks the CRC
    resp = produce(wire, "two", {0: good, 1: bytes(bad), 7: good})
    codes = {p.index: p.error_code for p in resp.responses[0].partition_responses}
    assert codes == {0: 0, 1: 2, 7: 3}  # CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION
    msgs = {p.index: p.error_message for p in resp.responses[0].partition_responses}
    assert msgs[0] is None and msgs[1]
    # Nothing of the failed partition was written; the good one was.
    parts = partitions_of(fetch(wire, {"two": {0: 0, 1: 0}}))
    assert parts[("two", 0)].high_watermark == 1
    assert parts[("two", 1)].high_watermark == 0


def test_unknown_topic(wire: WireClient) -> None:
    r = produce_one(wire, "nope", 0, batch([b"x"]))
    assert (r.error_code, r.base_offset) == (3, -1)


def test_invalid_acks(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    assert produce_one(wire, "t", 0, batch([b"x"]), acks=2).error_code == 21  # INVALID_REQUIRED_ACKS


def test_acks_zero_sends_no_response(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    assert produce(wire, "t", {0: batch([b"fire"])}, acks=0) is None
    # The next response on the connection belongs to the next request.
    parts = partitions_of(fetch(wire, {"t": {0: 0}}))
    assert [r.value for r in records_of(parts[("t", 0)].records)] == [b"fire"]


def test_acks_zero_error_closes_connection(wire: WireClient) -> None:
    produce(wire, "missing", {0: batch([b"x"])}, acks=0)
    wire.sock.settimeout(5)
    assert wire.sock.recv(1) == b""  # as Kafka: the only way to tell an acks=0 producer


@pytest.mark.parametrize("acks", [1, -1])
def test_acks_one_and_all(kafka_broker: BrokerThread, wire: WireClient, acks: int) -> None:
    create_topic(kafka_broker, "t")
    assert produce_one(wire, "t", 0, batch([b"x"]), acks=acks).error_code == 0


def test_corrupt_batch_then_broker_keeps_serving(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    good = batch([b"v"] * 3, compression=COMPRESSION_GZIP)
    bad = bytearray(good)
    bad[70] ^= 0x55  # inside the compressed records: CRC mismatch
    assert produce_one(wire, "t", 0, bytes(bad)).error_code == 2
    truncated = good[:40]
    assert produce_one(wire, "t", 0, truncated).error_code == 2
    assert produce_one(wire, "t", 0, good).error_code == 0
    other = WireClient(kafka_broker.bootstrap)
    try:
        assert produce_one(other, "t", 0, good).base_offset == 3
    finally:
        other.close()


def test_old_magic_and_multiple_batches_are_invalid(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    v1 = bytearray(batch([b"x"]))
    v1[16] = 1
    assert produce_one(wire, "t", 0, bytes(v1)).error_code == 87  # INVALID_RECORD
    two = batch([b"a"]) + batch([b"b"])
    assert produce_one(wire, "t", 0, two).error_code == 87
    assert produce_one(wire, "t", 0, b"").error_code == 87


def test_max_message_bytes_per_batch(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "small", configs={"max.message.bytes": "2000"})
    fits = batch([b"x" * 1800])
    too_big = batch([b"x" * 2100])
    assert len(fits) <= 2000 < len(too_big)
    assert produce_one(wire, "small", 0, fits).error_code == 0
    assert produce_one(wire, "small", 0, too_big).error_code == 10  # MESSAGE_TOO_LARGE


def test_log_append_time_topic(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    r = produce_one(wire, "lat", 0, batch([b"a", b"b"], timestamp=1000))
    after = int(time.time() * 1000)
    assert before <= r.log_append_time_ms <= after
    got = records_of(partitions_of(fetch(wire, {"lat": {0: 0}}))[("lat", 0)].records)
    assert [r2.timestamp for r2 in got] == [r.log_append_time_ms] * 2


def test_internal_topic_refuses_client_writes(kafka_broker: BrokerThread, wire: WireClient) -> None:
    md = kafka_broker.broker.metadata
    kafka_broker.call(md.ensure_internal_topic, "__consumer_offsets", 1)
    assert produce_one(wire, "__consumer_offsets", 0, batch([b"x"])).error_code == 17


def test_pipelined_requests_answer_in_order(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    from replica_wire import fetch_body

    body = {"transactional_id": None, "acks": 1, "timeout_ms": 5000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": batch([b"p"])}]}]}
    cids = [wire.send(PRODUCE, 9, body) for _ in range(20)]
    offsets = [wire.receive(PRODUCE, 9, c).responses[0].partition_responses[0].base_offset for c in cids]
    assert offsets == list(range(20))
    cid = wire.send(FETCH, 11, fetch_body({"t": {0: 0}}))
    assert len(records_of(partitions_of(wire.receive(FETCH, 11, cid))[("t", 0)].records)) == 20


def test_min_insync_replicas_is_capped_by_the_replication_factor(kafka_broker: BrokerThread, wire: WireClient) -> None:
    # As Kafka 4.1 (Partition.effectiveMinIsr): min.insync.replicas=2 on one replica asks for that one.
    create_topic(kafka_broker, "strict", configs={"min.insync.replicas": "2"})
    assert produce_one(wire, "strict", 0, batch([b"x"]), acks=-1).error_code == 0
    assert produce_one(wire, "strict", 0, batch([b"x"]), acks=1).error_code == 0


def test_api_versions_advertises_produce_from_v0(wire: WireClient) -> None:
    resp = wire.call(18, 3, {"client_software_name": "t", "client_software_version": "1"})
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys[0] == (0, 13)
    assert keys[1] == (4, 18)
    assert keys[2] == (0, 11)


def test_timestamp_bounds_refuse_create_times_out_of_range(kafka_broker: BrokerThread) -> None:
    from confluent_kafka import KafkaError, Producer

    create_topic(kafka_broker, "bounded", configs={"message.timestamp.before.max.ms": "60000",
                                                   "message.timestamp.after.max.ms": "60000"})
    create_topic(kafka_broker, "lat", configs={"message.timestamp.type": "LogAppendTime",
                                               "message.timestamp.before.max.ms": "0"})
    now = int(time.time() * 1000)
    outcomes: dict[str, int] = {}

    def report(name: str) -> object:
        return lambda err, _msg: outcomes.__setitem__(name, err.code() if err else 0)

    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "retries": 0, "linger.ms": 0})
    for name, topic, ts in [("past", "bounded", now - 3_600_000), ("future", "bounded", now + 3_600_000),
                            ("now", "bounded", now), ("epoch", "bounded", 1), ("broker-time", "lat", 1)]:
        p.produce(topic, b"v", timestamp=ts, on_delivery=report(name))
        p.flush(10)
    assert outcomes == {"past": KafkaError.INVALID_TIMESTAMP, "future": KafkaError.INVALID_TIMESTAMP, "now": 0,
                        "epoch": KafkaError.INVALID_TIMESTAMP, "broker-time": 0}


def test_timestamps_default_to_an_hour_ahead_and_the_removed_difference_key_is_unknown(
        kafka_broker: BrokerThread, wire: WireClient) -> None:
    # Kafka 4: message.timestamp.after.max.ms defaults to one hour, and
    # message.timestamp.difference.max.ms no longer exists.
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    fut = admin.create_topics([NewTopic("diff", 1, 1, config={"message.timestamp.difference.max.ms": "60000"})],
                              validate_only=True)["diff"]
    with pytest.raises(Exception, match="Unknown topic config name: message.timestamp.difference.max.ms"):
        fut.result(10)
    create_topic(kafka_broker, "plain")
    now = int(time.time() * 1000)
    assert produce_one(wire, "plain", 0, batch([b"soon"], timestamp=now + 1_800_000)).error_code == 0
    assert produce_one(wire, "plain", 0, batch([b"later"], timestamp=now + 7_200_000)).error_code == 32
    assert produce_one(wire, "plain", 0, batch([b"old"], timestamp=1)).error_code == 0
