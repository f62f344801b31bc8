"""A compacted topic rejects records without a key, naming each one (KIP-467 record errors)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from replica_wire import WireClient, batch, create_topic, produce_one

from kbroker.testing import BrokerThread


def test_keyless_records_are_rejected_by_index(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "c", configs={"cleanup.policy": "compact"})
    wire = WireClient(kafka_broker.bootstrap)
    try:
        r = produce_one(wire, "c", 0, batch([b"a", b"b", b"c"], keys=[b"k", None, None]), version=9)
        assert r.error_code == 87  # INVALID_RECORD
        assert [e.batch_index for e in r.record_errors] == [1, 2]
        assert "without key" in r.record_errors[0].batch_index_error_message
        assert r.error_message.startswith("One or more records have been rejected")
        ok = produce_one(wire, "c", 0, batch([b"a"], keys=[b"k"], compression=1), version=9)
        assert (ok.error_code, ok.base_offset) == (0, 0)  # nothing of the rejected batch was written
    finally:
        wire.close()


def test_delete_policy_accepts_keyless_records(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "d")
    wire = WireClient(kafka_broker.bootstrap)
    try:
        assert produce_one(wire, "d", 0, batch([b"a"])).error_code == 0
    finally:
        wire.close()


@pytest.mark.parametrize("batch_size", [1, 1_000_000])
def test_confluent_producer_sees_invalid_record(kafka_broker: BrokerThread, batch_size: int) -> None:
    create_topic(kafka_broker, "c", configs={"cleanup.policy": "compact"})
    results: list[str | None] = []
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "batch.size": batch_size, "linger.ms": 20,
                  "on_delivery": lambda err, msg: results.append(err.name() if err else None)})
    for i in range(10):
        p.produce("c", value=b"v", key=None if i % 5 == 0 else b"k%d" % i, partition=0)
    assert p.flush(10) == 0
    assert results.count("INVALID_RECORD") == 2
    if batch_size == 1:  # one record per batch: the keyed ones are written
        assert results.count(None) == 8
    else:  # one batch: the others fail with it, as librdkafka reports
        assert results.count(None) == 0


def test_keyless_refusal_text_is_kafkas(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "texts", configs={"cleanup.policy": "compact"})
    r = produce_one(wire, "texts", 0, batch([b"v"]))
    reason = "Compacted topic cannot accept message without key in topic partition texts-0"
    assert r.error_code == 87 and r.record_errors[0].batch_index_error_message == reason
    assert r.error_message == ("One or more records have been rejected due to 1 record errors in total, and only "
                               f"showing the first three errors at most: [RecordError(batchIndex=0, message='{reason}')]")


def test_keyless_and_late_records_answer_invalid_timestamp(kafka_broker: BrokerThread, wire: WireClient) -> None:
    import time

    from kbroker.records.builder import NewRecord, build_batch

    create_topic(kafka_broker, "late", configs={"cleanup.policy": "compact"})
    later = int(time.time() * 1000) + 3 * 3_600_000
    r = produce_one(wire, "late", 0, build_batch([NewRecord(None, b"a", (), later), NewRecord(b"k", b"b", (), None),
                                                  NewRecord(b"k", b"c", (), later)]))
    assert (r.error_code, r.error_message) == (32, "One or more records have been rejected due to invalid timestamp")
    assert [e.batch_index for e in r.record_errors] == [0, 2]
