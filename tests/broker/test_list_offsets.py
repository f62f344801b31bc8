"""ListOffsets over the raw wire: special timestamps, time lookups, versions and errors."""

from __future__ import annotations

import pytest
from replica_wire import LIST_OFFSETS, WireClient, batch, create_topic, list_offsets, produce_one

from kbroker.testing import BrokerThread

T0 = 1_700_000_000_000



@pytest.fixture
def filled(kafka_broker: BrokerThread, wire: WireClient) -> str:
    """Offsets 0-5 with timestamps T0+0, +10, +20 (batch of 3: 0,1,2), +30, +50, +40."""
    create_topic(kafka_broker, "t")
    from kbroker.records.builder import build_batch

    three = build_batch([(None, b"a", (), T0), (None, b"b", (), T0 + 10), (None, b"c", (), T0 + 20)])
    assert produce_one(wire, "t", 0, three).error_code == 0
    for ts in (T0 + 30, T0 + 50, T0 + 40):
        assert produce_one(wire, "t", 0, batch([b"x"], timestamp=ts)).error_code == 0
    return "t"


def test_special_timestamps(wire: WireClient, filled: str) -> None:
    def one(ts: int) -> tuple[int, int, int]:
        p = list_offsets(wire, filled, {0: ts}, version=9)[0]
        return p.error_code, p.offset, p.timestamp

    assert one(-1) == (0, 6, -1)
    assert one(-2) == (0, 0, -1)
    assert one(-3) == (0, 4, T0 + 50)  # the record with the largest timestamp
    assert one(-4) == (0, 0, -1)
    assert one(-5) == (0, -1, -1)  # nothing tiered, as Kafka without remote storage


@pytest.mark.parametrize(("ts", "expected"), [
    (T0 - 5, (0, T0)),
    (T0 + 10, (1, T0 + 10)),       # inside the first batch: the exact record
    (T0 + 15, (2, T0 + 20)),
    (T0 + 31, (4, T0 + 50)),       # the first record at or after, not the closest
    (T0 + 45, (4, T0 + 50)),
    (T0 + 51, (-1, -1)),           # after every record
])
def test_by_timestamp(wire: WireClient, filled: str, ts: int, expected: tuple[int, int]) -> None:
    p = list_offsets(wire, filled, {0: ts})[0]
    assert p.error_code == 0
    assert (p.offset, p.timestamp) == expected


@pytest.mark.parametrize("version", range(0, 12))
def test_every_version(wire: WireClient, filled: str, version: int) -> None:
    parts = list_offsets(wire, filled, {0: -1}, version=version)
    p = parts[0]
    assert p.error_code == 0
    if version == 0:
        assert list(p.old_style_offsets) == [6]
    else:
        assert p.offset == 6
    if version >= 4:
        assert p.leader_epoch >= 0


def test_v0_earliest_and_not_found(wire: WireClient, filled: str) -> None:
    assert list(list_offsets(wire, filled, {0: -2}, version=0)[0].old_style_offsets) == [0]
    assert list(list_offsets(wire, filled, {0: T0 + 999}, version=0)[0].old_style_offsets) == []


def test_unknown_partition_and_topic(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    assert list_offsets(wire, "t", {3: -1})[3].error_code == 3
    assert list_offsets(wire, "nope", {0: -1})[0].error_code == 3


def test_empty_partition(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    parts = list_offsets(wire, "t", {0: -1})
    assert (parts[0].offset, parts[0].timestamp) == (0, -1)
    assert list_offsets(wire, "t", {0: -3})[0].offset == -1
    assert list_offsets(wire, "t", {0: 0})[0].offset == -1


def test_duplicate_partitions_are_invalid(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    body = {"replica_id": -1, "isolation_level": 0,
            "topics": [{"name": "t", "partitions": [{"partition_index": 0, "timestamp": -1},
                                                    {"partition_index": 0, "timestamp": -2}]}]}
    resp = wire.call(LIST_OFFSETS, 5, body)
    # Kafka 4.1.1 answers the repeated partition once (compat/wirediff found it).
    assert [(p.partition_index, p.error_code) for p in resp.topics[0].partitions] == [(0, 42)]


def test_read_committed_latest_is_last_stable_offset(wire: WireClient, filled: str) -> None:
    assert list_offsets(wire, filled, {0: -1}, isolation_level=1)[0].offset == 6


def test_log_start_moves_with_delete_records(kafka_broker: BrokerThread, wire: WireClient, filled: str) -> None:
    plog = kafka_broker.broker.log_manager.get_log(filled, 0)
    kafka_broker.call(plog.delete_records_before, 4)
    assert list_offsets(wire, filled, {0: -2})[0].offset == 4
    # A timestamp whose record was deleted resolves to the first remaining one after it.
    assert list_offsets(wire, filled, {0: T0})[0].offset == 4
