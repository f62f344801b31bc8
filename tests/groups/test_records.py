"""The __consumer_offsets record formats, the partitioning hash and the state table."""

from __future__ import annotations

import struct

import pytest

from kbroker.groups.consumer_protocol import EMPTY_ASSIGNMENT, subscribed_topics
from kbroker.groups.records import (
    GroupKey,
    GroupRecord,
    MemberRecord,
    OffsetAndMetadata,
    OffsetKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    group_key,
    group_value,
    offset_key,
    offset_value,
)
from kbroker.groups.state import GroupState, IllegalStateTransition, check_transition
from kbroker.groups.storage import java_string_hash, partition_for


def test_offset_key_bytes_match_kafka() -> None:
    assert offset_key("g", "t", 3) == b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x03"
    assert decode_key(offset_key("grp", "topic", 7)) == OffsetKey("grp", "topic", 7)
    assert group_key("g") == b"\x00\x02\x00\x01g"
    assert decode_key(group_key("grp")) == GroupKey("grp")
    assert decode_key(b"\x00\x09") is None


def test_offset_value_v3_and_v1() -> None:
    om = OffsetAndMetadata(42, 5, "meta", 1234)
    data = offset_value(om)
    assert data == struct.pack(">hqih4sq", 3, 42, 5, 4, b"meta", 1234)
    assert decode_offset_value(data) == om
    expiring = OffsetAndMetadata(1, -1, "", 10, 99)
    assert offset_value(expiring)[:2] == b"\x00\x01"
    assert decode_offset_value(offset_value(expiring)) == expiring
    v0 = struct.pack(">hqh1sq", 0, 8, 1, b"m", 77)
    assert decode_offset_value(v0) == OffsetAndMetadata(8, -1, "m", 77)


def test_group_value_round_trip() -> None:
    rec = GroupRecord("consumer", 4, "range", "m-1", 999, (
        MemberRecord("m-1", "inst", "client", "/127.0.0.1", 30000, 10000, b"sub", b"assign"),
        MemberRecord("m-2", None, "client", "/127.0.0.1", 30000, 10000, b"", b""),
    ))
    data = group_value(rec)
    assert data[:2] == b"\x00\x03"
    assert decode_group_value(data) == rec
    empty = GroupRecord("consumer", 5, None, None, 1, ())
    assert decode_group_value(group_value(empty)) == empty


def test_java_hash_and_partition() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(1 << 31)
    assert partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) is 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert java_string_hash("\U0001F600") == 31 * 0xD83D + 0xDE00  # over UTF-16 surrogates, as Java


def test_consumer_protocol_helpers() -> None:
    sub = struct.pack(">hih1sh1si", 1, 2, 1, b"a", 1, b"b", -1) + b"\x00\x00\x00\x00"
    assert subscribed_topics(sub) == {"a", "b"}
    assert subscribed_topics(b"\x00") is None
    assert EMPTY_ASSIGNMENT == b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"


@pytest.mark.parametrize(("src", "dst", "ok"), [
    (GroupState.EMPTY, GroupState.PREPARING_REBALANCE, True),
    (GroupState.PREPARING_REBALANCE, GroupState.COMPLETING_REBALANCE, True),
    (GroupState.COMPLETING_REBALANCE, GroupState.STABLE, True),
    (GroupState.STABLE, GroupState.PREPARING_REBALANCE, True),
    (GroupState.PREPARING_REBALANCE, GroupState.EMPTY, True),
    (GroupState.STABLE, GroupState.DEAD, True),
    (GroupState.EMPTY, GroupState.STABLE, False),
    (GroupState.STABLE, GroupState.COMPLETING_REBALANCE, False),
    (GroupState.DEAD, GroupState.PREPARING_REBALANCE, False),
    (GroupState.EMPTY, GroupState.COMPLETING_REBALANCE, False),
])
def test_transition_table(src: GroupState, dst: GroupState, ok: bool) -> None:
    if ok:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalStateTransition):
            check_transition(src, dst)


def test_offset_records_of_non_ascii_names_and_metadata() -> None:
    # Lengths count UTF-8 bytes, as Kafka's writers do.
    key = offset_key("grüppe", "tópico", 2)
    assert key == b"\x00\x01\x00\x07gr\xc3\xbcppe\x00\x07t\xc3\xb3pico\x00\x00\x00\x02"
    assert decode_key(key) == OffsetKey("grüppe", "tópico", 2)
    om = OffsetAndMetadata(2**63 - 1, 2**31 - 1, "é" * 3, -1)
    data = offset_value(om)
    assert data == struct.pack(">hqih6sq", 3, 2**63 - 1, 2**31 - 1, 6, "ééé".encode(), -1)
    assert decode_offset_value(data) == om
    with pytest.raises(struct.error):
        offset_value(OffsetAndMetadata(2**63, -1, "", 0))  # out of int64, as before


def test_manager_partition_cache_follows_the_partition_count() -> None:
    from kbroker.clock import ManualClock
    from kbroker.groups.manager import GroupMetadataManager
    from kbroker.groups.storage import MemoryOffsetsLog

    log = MemoryOffsetsLog(num_partitions=50)
    manager = GroupMetadataManager(log, ManualClock())
    groups = [f"group-{i}" for i in range(200)] + ["hello", "polygenelubricants"]
    assert [manager.partition_for(g) for g in groups] == [partition_for(g, 50) for g in groups]
    assert [manager.partition_for(g) for g in groups] == [partition_for(g, 50) for g in groups]  # cached
    log.num_partitions = 7  # e.g. the topic exists now with its own count
    assert [manager.partition_for(g) for g in groups] == [partition_for(g, 7) for g in groups]


@pytest.mark.anyio
async def test_other_group_types_records_reach_their_replayer_in_order() -> None:
    """Records with key versions above 2 (KIP-848 and share groups) are not classic groups':
    a partition's load hands them, in log order, to the replayer owning their versions, and
    an unload tells it; classic records beside them load as before."""
    from collections.abc import Sequence

    from kbroker.clock import ManualClock
    from kbroker.groups.errors import Errors
    from kbroker.groups.manager import GroupMetadataManager
    from kbroker.groups.storage import MemoryOffsetsLog, StoredRecord

    class Replayer:
        key_versions = frozenset({3, 5})

        def __init__(self) -> None:
            self.seen: list[tuple[int, list[bytes | None]]] = []
            self.unloaded: list[int] = []

        def install(self, partition: int, records: Sequence[StoredRecord]) -> None:
            self.seen.append((partition, [r.value for r in records]))

        def unload(self, partition: int) -> None:
            self.unloaded.append(partition)

    log = MemoryOffsetsLog(1)
    log.ensure()
    manager = GroupMetadataManager(log, ManualClock())
    replayer = Replayer()
    manager.add_replayer(replayer)
    group = manager.get_or_create("g")
    assert await manager.append("g", [(b"\x00\x03g", b"a"), (b"\x00\x09g", b"not mine"), (b"\x00\x05g", b"b"),
                                      (b"\x00\x03g", None)]) == Errors.NONE
    await manager.store_offsets(group, {("t", 0): OffsetAndMetadata(7)})
    assert manager.load() == 1
    assert replayer.seen == [(0, [b"a", b"b", None])]
    assert manager.get("g") is not None and manager.get("g").offsets[("t", 0)].offset == 7  # type: ignore[union-attr]
    manager.unload_partition(0)
    assert replayer.unloaded == [0]
