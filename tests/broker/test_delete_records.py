"""DeleteRecords over the raw wire: moving the log start offset, and Kafka's per-partition errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from replica_wire import WireClient, batch, create_topic, fetch, list_offsets, partitions_of, produce_one

from kbroker.codec.error_codes import ErrorCode
from kbroker.testing import BrokerThread

DELETE_RECORDS = 21



def delete(wire: WireClient, topic: str, offsets: dict[int, int], version: int = 2) -> dict[int, tuple[int, int]]:
    body = {"timeout_ms": 5000,
            "topics": [{"name": topic, "partitions": [{"partition_index": p, "offset": o} for p, o in offsets.items()]}]}
    resp = wire.call(DELETE_RECORDS, version, body)
    assert [t.name for t in resp.topics] == [topic]
    return {p.partition_index: (p.error_code, p.low_watermark) for p in resp.topics[0].partitions}


@pytest.fixture
def six(kafka_broker: BrokerThread, wire: WireClient) -> str:
    """Topic "t", partition 0: offsets 0-5."""
    create_topic(kafka_broker, "t", 2)
    for i in range(6):
        assert produce_one(wire, "t", 0, batch([b"v%d" % i])).error_code == 0
    return "t"


@pytest.mark.parametrize("version", [0, 1, 2])
def test_log_start_moves_forward_only(wire: WireClient, six: str, version: int) -> None:
    assert delete(wire, six, {0: 4}, version) == {0: (ErrorCode.NONE, 4)}
    assert list_offsets(wire, six, {0: -2})[0].offset == 4
    resp = fetch(wire, {six: {0: 2}})
    assert partitions_of(resp)[(six, 0)].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert delete(wire, six, {0: 2}, version) == {0: (ErrorCode.NONE, 4)}  # never backwards
    assert delete(wire, six, {0: -1, 1: -1}, version) == {0: (ErrorCode.NONE, 6), 1: (ErrorCode.NONE, 0)}
    assert list_offsets(wire, six, {0: -2})[0].offset == 6


def test_offsets_outside_the_log_are_out_of_range(wire: WireClient, six: str) -> None:
    assert delete(wire, six, {0: 7}) == {0: (ErrorCode.OFFSET_OUT_OF_RANGE, -1)}
    assert delete(wire, six, {0: -2}) == {0: (ErrorCode.OFFSET_OUT_OF_RANGE, -1)}
    assert list_offsets(wire, six, {0: -2})[0].offset == 0


def test_unknown_partitions_compacted_and_internal_topics(kafka_broker: BrokerThread, wire: WireClient,
                                                          six: str) -> None:
    assert delete(wire, six, {5: 0}) == {5: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}
    assert delete(wire, "nope", {0: 0}) == {0: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}
    create_topic(kafka_broker, "compacted", 1, {"cleanup.policy": "compact"})
    assert delete(wire, "compacted", {0: 0}) == {0: (ErrorCode.POLICY_VIOLATION, -1)}
    create_topic(kafka_broker, "both", 1, {"cleanup.policy": "compact,delete"})
    assert delete(wire, "both", {0: 0}) == {0: (ErrorCode.NONE, 0)}
    assert delete(wire, "__consumer_offsets", {0: 0}) == {0: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}
    wire.call(10, 4, {"key_type": 0, "coordinator_keys": ["g"]})  # creates __consumer_offsets
    assert kafka_broker.broker.metadata.topic("__consumer_offsets") is not None
    assert delete(wire, "__consumer_offsets", {0: 0}) == {0: (ErrorCode.INVALID_TOPIC_EXCEPTION, -1)}
    # As Kafka 4.1.1: the existence check comes first, so a partition an internal topic lacks, or
    # an internal topic not created yet, is unknown rather than an invalid topic.
    assert delete(wire, "__consumer_offsets", {999: 0}) == {999: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}
    assert delete(wire, "__transaction_state", {0: 0}) == {0: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}


def test_freed_segments_are_gone_when_answered_and_the_start_survives_a_restart(tmp_path: Path) -> None:
    # The segment files go in a worker thread, but before the answer; after a clean restart the
    # log start offset holds (Kafka checkpoints it on a clean shutdown), below it is out of range.
    with BrokerThread(tmp_path) as broker:
        client = WireClient(broker.bootstrap)
        create_topic(broker, "rolls", 1, {"segment.ms": "1"})
        for i in range(12):
            assert produce_one(client, "rolls", 0, batch([b"a%d" % i, b"b%d" % i])).error_code == 0
            time.sleep(0.003)  # past segment.ms: every batch gets a segment of its own
        part_dir = next(tmp_path.rglob("rolls-0"))
        assert len(list(part_dir.glob("*.log"))) >= 6
        assert delete(client, "rolls", {0: 21}) == {0: (ErrorCode.NONE, 21)}
        assert sorted(p.name for p in part_dir.glob("*.log")) == [f"{20:020d}.log", f"{22:020d}.log"]
        client.close()
    with BrokerThread(tmp_path) as broker:
        client = WireClient(broker.bootstrap)
        assert list_offsets(client, "rolls", {0: -2})[0].offset == 21
        assert partitions_of(fetch(client, {"rolls": {0: 20}}))[("rolls", 0)].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        records = partitions_of(fetch(client, {"rolls": {0: 21}}))[("rolls", 0)]
        assert records.error_code == ErrorCode.NONE and records.log_start_offset == 21
        client.close()
