"""Transactional offset commits (TxnOffsetCommit) in the coordinator, over an in-memory log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from kbroker.common import TopicPartition
from kbroker.groups import Errors, GroupConfig, GroupState, OffsetAndMetadata
from kbroker.groups.records import GroupKey, OffsetKey, decode_key
from kbroker.groups.storage import Appended, MemoryOffsetsLog, StoredMarker, StoredRecord
from kbroker.handlers.txn_offset_commit import verification_error

from .helpers import Harness, coordinator, subscription

TP = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)
PID = 1000
EPOCH = 3


async def txn_commit(h: Harness, offsets: Mapping[TopicPartition, int], *, group: str = "g", pid: int = PID,
                     epoch: int = EPOCH, generation: int = -1, member: str = "", instance: str | None = None,
                     metadata: str = "") -> dict[TopicPartition, Errors]:
    return await h.coord.txn_commit_offsets(
        "txn", group, pid, epoch, generation, member, instance,
        {tp: OffsetAndMetadata(o, metadata=metadata, commit_timestamp=h.clock.time_ms()) for tp, o in offsets.items()})


async def plain_commit(h: Harness, offsets: Mapping[TopicPartition, int], group: str = "g") -> None:
    out = await h.coord.commit_offsets(group, -1, "", None, {tp: OffsetAndMetadata(o) for tp, o in offsets.items()})
    assert set(out.values()) == {Errors.NONE}


def end_txn(h: Harness, commit: bool, *, group: str = "g", pid: int = PID, epoch: int = EPOCH) -> None:
    """What WriteTxnMarkers does: append the marker, then tell the coordinator."""
    partition = h.coord.partition_for(group)
    assert h.log.append_marker(partition, pid, epoch, commit) == Errors.NONE
    h.coord.on_transaction_completed(pid, [partition], commit)


def committed(h: Harness, *tps: TopicPartition, group: str = "g", stable: bool = False) -> list[object]:
    got = h.coord.fetch_offsets(group, list(tps), require_stable=stable)
    return [o.offset if isinstance(o, OffsetAndMetadata) else o for o in got.values()]


@pytest.mark.anyio
async def test_offsets_count_only_after_the_commit_marker() -> None:
    async with coordinator() as h:
        assert await txn_commit(h, {TP: 5, TP1: 7}) == {TP: Errors.NONE, TP1: Errors.NONE}
        # Written in the producer's transaction: a transactional batch with its id and epoch.
        partition = h.coord.partition_for("g")
        assert h.log.partitions is not None
        records = [r for r in h.log.partitions[partition] if isinstance(r, StoredRecord)]
        assert [(r.producer_id, r.transactional) for r in records] == [(PID, True), (PID, True)]
        assert committed(h, TP, TP1) == [None, None]
        assert committed(h, TP, TP1, stable=True) == [Errors.UNSTABLE_OFFSET_COMMIT] * 2
        # The group exists (Empty, created by the commit) and lists no committed offsets yet.
        assert h.group().state is GroupState.EMPTY
        assert h.coord.fetch_offsets("g", None) == {}
        end_txn(h, commit=True)
        assert committed(h, TP, TP1) == [5, 7]
        assert committed(h, TP, TP1, stable=True) == [5, 7]
        assert not h.coord.manager.has_open_transactions("g")


@pytest.mark.anyio
async def test_abort_drops_pending_offsets_and_keeps_the_previous_commit() -> None:
    async with coordinator() as h:
        await plain_commit(h, {TP: 2})
        await txn_commit(h, {TP: 5})
        assert committed(h, TP) == [2]  # without require_stable: the last committed value
        assert committed(h, TP, stable=True) == [Errors.UNSTABLE_OFFSET_COMMIT]
        end_txn(h, commit=False)
        assert committed(h, TP, stable=True) == [2]
        assert h.coord.manager.pending == {}


@pytest.mark.anyio
async def test_plain_commit_written_after_the_transactional_one_wins() -> None:
    async with coordinator() as h:
        await txn_commit(h, {TP: 5, TP1: 6})
        await plain_commit(h, {TP: 9})
        end_txn(h, commit=True)
        # TP's plain record is later in the log than the transactional one; TP1 had none.
        assert committed(h, TP, TP1) == [9, 6]


@pytest.mark.anyio
async def test_transactional_commit_written_after_a_plain_one_wins() -> None:
    async with coordinator() as h:
        await plain_commit(h, {TP: 9})
        await txn_commit(h, {TP: 5})
        end_txn(h, commit=True)
        assert committed(h, TP) == [5]


@pytest.mark.anyio
async def test_markers_only_resolve_their_producer_and_partition() -> None:
    async with coordinator(log=MemoryOffsetsLog(5)) as h:
        other = next(g for g in (f"g{i}" for i in range(100)) if h.coord.partition_for(g) != h.coord.partition_for("g"))
        await txn_commit(h, {TP: 5})
        await txn_commit(h, {TP1: 6}, pid=2000)
        await txn_commit(h, {TP: 8}, group=other)
        end_txn(h, commit=True)  # PID's marker in g's partition only
        assert committed(h, TP, TP1, stable=True) == [5, Errors.UNSTABLE_OFFSET_COMMIT]
        assert committed(h, TP, group=other, stable=True) == [Errors.UNSTABLE_OFFSET_COMMIT]
        end_txn(h, commit=True, group=other)
        assert committed(h, TP, group=other) == [8]
        end_txn(h, commit=False, pid=2000)
        assert committed(h, TP, TP1, stable=True) == [5, None]
        # A marker for a producer without pending offsets changes nothing.
        h.coord.on_transaction_completed(4242, [h.coord.partition_for("g")], True)
        assert committed(h, TP, TP1) == [5, None]


@pytest.mark.anyio
async def test_later_txn_commit_of_the_same_producer_replaces_the_pending_one() -> None:
    async with coordinator() as h:
        await txn_commit(h, {TP: 5})
        await txn_commit(h, {TP: 6})
        end_txn(h, commit=True)
        assert committed(h, TP) == [6]


@pytest.mark.anyio
async def test_require_stable_lists_all_offsets_with_pending_ones_unstable() -> None:
    async with coordinator() as h:
        await plain_commit(h, {TP: 1, TP1: 2})
        await txn_commit(h, {TP1: 3, TopicPartition("u", 0): 4})
        got = h.coord.fetch_offsets("g", None, require_stable=True)
        # Only committed partitions are listed; the pending one of them is unstable.
        assert got == {TP: OffsetAndMetadata(1), TP1: Errors.UNSTABLE_OFFSET_COMMIT}
        assert h.coord.fetch_offsets("g", None) == {TP: OffsetAndMetadata(1), TP1: OffsetAndMetadata(2)}


@pytest.mark.anyio
async def test_reload_applies_committed_drops_aborted_and_keeps_pending() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        await plain_commit(h, {TP: 1})
        await txn_commit(h, {TP: 5}, pid=1)
        end_txn(h, commit=True, pid=1)
        await txn_commit(h, {TP1: 6}, pid=2)
        end_txn(h, commit=False, pid=2)
        await txn_commit(h, {TP1: 7}, pid=3)  # still open at the restart
        await txn_commit(h, {TopicPartition("u", 0): 8}, group="only-pending", pid=4)
    async with coordinator(log=log) as h:
        assert committed(h, TP, TP1) == [5, None]
        assert committed(h, TP, TP1, stable=True) == [5, Errors.UNSTABLE_OFFSET_COMMIT]
        # A group whose only offsets are pending is loaded too (Empty, as Kafka's replay creates it).
        assert h.group("only-pending").state is GroupState.EMPTY
        end_txn(h, commit=True, pid=3)
        assert committed(h, TP1, stable=True) == [7]
    async with coordinator(log=log) as h:
        # The marker written after the first restart resolves the transaction on the next load.
        assert committed(h, TP, TP1, stable=True) == [5, 7]
        assert committed(h, TopicPartition("u", 0), group="only-pending", stable=True) == [
            Errors.UNSTABLE_OFFSET_COMMIT]


@pytest.mark.anyio
async def test_reload_keeps_a_plain_commit_written_after_the_transactional_one() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        await txn_commit(h, {TP: 5})
        await plain_commit(h, {TP: 9})
        await plain_commit(h, {TP1: 1})
        await txn_commit(h, {TP1: 2})
        end_txn(h, commit=True)
        assert committed(h, TP, TP1) == [9, 2]
    async with coordinator(log=log) as h:
        assert committed(h, TP, TP1) == [9, 2]


@pytest.mark.anyio
async def test_offset_metadata_too_large_is_per_partition() -> None:
    config = GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=0, offset_metadata_max_bytes=4)
    async with coordinator(config) as h:
        out = await h.coord.txn_commit_offsets("txn", "g", PID, EPOCH, -1, "", None, {
            TP: OffsetAndMetadata(1, metadata="12345"), TP1: OffsetAndMetadata(2, metadata="1234")})
        assert out == {TP: Errors.OFFSET_METADATA_TOO_LARGE, TP1: Errors.NONE}
        assert committed(h, TP, TP1, stable=True) == [None, Errors.UNSTABLE_OFFSET_COMMIT]


@pytest.mark.anyio
async def test_write_failures_leave_nothing_pending() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        log.fail_with = Errors.NOT_LEADER_OR_FOLLOWER
        assert await txn_commit(h, {TP: 5}) == {TP: Errors.NOT_LEADER_OR_FOLLOWER}
        assert committed(h, TP, stable=True) == [None]
        assert not h.coord.manager.has_open_transactions("g")


@pytest.mark.anyio
async def test_producer_fenced_by_the_log_gets_invalid_producer_epoch() -> None:
    async with coordinator() as h:
        assert await txn_commit(h, {TP: 5}, epoch=4) == {TP: Errors.NONE}
        # An older epoch of the same producer id is refused by the log.
        assert await txn_commit(h, {TP: 6}, epoch=3) == {TP: Errors.INVALID_PRODUCER_EPOCH}
        end_txn(h, commit=True, epoch=4)
        assert committed(h, TP) == [5]


@pytest.mark.anyio
async def test_tombstones_from_the_topic_are_replayed_into_pending_offsets() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        await txn_commit(h, {TP: 5, TP1: 6})
        err, out = await h.coord.delete_offsets("g", [TP])
        assert err == Errors.NONE and out == {TP: Errors.NONE}
        assert committed(h, TP, TP1, stable=True) == [None, Errors.UNSTABLE_OFFSET_COMMIT]
    async with coordinator(log=log) as h:
        assert committed(h, TP, TP1, stable=True) == [None, Errors.UNSTABLE_OFFSET_COMMIT]
        end_txn(h, commit=True)
        # The tombstone came after TP's transactional record: only TP1 materialises.
        assert committed(h, TP, TP1) == [None, 6]
    async with coordinator(log=log) as h:
        assert committed(h, TP, TP1) == [None, 6]


def test_memory_log_keeps_producer_and_markers_for_replay() -> None:
    log = MemoryOffsetsLog(2)

    async def run() -> None:
        assert (await log.append(1, [(b"k", b"v")])).base_offset == 0
        appended = await log.append(1, [(b"a", b"1"), (b"b", None)], producer_id=7, producer_epoch=0,
                                    transactional=True)
        assert appended == (Errors.NONE, 1)
        assert (await log.append(1, [(b"c", b"2")], producer_id=7, producer_epoch=-1,
                                 transactional=True)).error == Errors.INVALID_PRODUCER_EPOCH

    anyio.run(run)
    assert log.append_marker(1, 7, 0, commit=False) == Errors.NONE
    assert log.append_marker(1, 7, -1, commit=True) == Errors.INVALID_PRODUCER_EPOCH
    assert list(log.replay(1)) == [
        StoredRecord(0, b"k", b"v"), StoredRecord(1, b"a", b"1", 7, True), StoredRecord(2, b"b", None, 7, True),
        StoredMarker(3, 7, False)]
    assert list(log.replay(0)) == []


async def _stable_member(h: Harness) -> str:
    first = await h.join("g", protocols=[("range", subscription("t"))])
    r = await h.join("g", first.member_id, protocols=[("range", subscription("t"))], instance_id=None)
    s = h.start_sync("g", 1, r.member_id, {r.member_id: b"x"})
    await h.settle()
    assert s["result"].error == Errors.NONE
    return r.member_id


@pytest.mark.anyio
async def test_member_and_generation_checks_as_kip_447() -> None:
    async with coordinator() as h:
        # An unknown group with a generation: ILLEGAL_GENERATION, and no group is created.
        assert await txn_commit(h, {TP: 1}, group="nobody", generation=2, member="m") == {
            TP: Errors.ILLEGAL_GENERATION}
        assert h.coord.manager.get("nobody") is None
        member = await _stable_member(h)
        assert await txn_commit(h, {TP: 1}, generation=1, member=member) == {TP: Errors.NONE}
        assert await txn_commit(h, {TP: 1}, generation=2, member=member) == {TP: Errors.ILLEGAL_GENERATION}
        assert await txn_commit(h, {TP: 1}, generation=1, member="stranger") == {TP: Errors.UNKNOWN_MEMBER_ID}
        # v0-2 carry no member or generation: accepted even though the group has members.
        assert await txn_commit(h, {TP: 2}) == {TP: Errors.NONE}
        end_txn(h, commit=True)
        assert committed(h, TP) == [2]


@pytest.mark.anyio
async def test_static_member_fencing_and_rebalance() -> None:
    async with coordinator() as h:
        first = await h.join("g", instance_id="i1")
        assert first.error == Errors.NONE  # static members get their id at once
        s = h.start_sync("g", 1, first.member_id, {first.member_id: b"x"})
        await h.settle()
        assert s["result"].error == Errors.NONE
        assert await txn_commit(h, {TP: 1}, generation=1, member="old-id", instance="i1") == {
            TP: Errors.FENCED_INSTANCE_ID}
        # A second member joins: the group rebalances and then waits for SyncGroup.
        second = h.start_join("g")
        rejoin = h.start_join("g", first.member_id, instance_id="i1")
        await h.settle()
        assert second["result"].error == Errors.MEMBER_ID_REQUIRED
        h.start_join("g", second["result"].member_id)
        await h.settle()
        assert rejoin["result"].error == Errors.NONE
        assert h.group().state is GroupState.COMPLETING_REBALANCE
        gen = h.group().generation_id
        # A plain commit gets REBALANCE_IN_PROGRESS here; a transactional one is accepted.
        plain = await h.coord.commit_offsets("g", gen, first.member_id, "i1", {TP: OffsetAndMetadata(3)})
        assert plain == {TP: Errors.REBALANCE_IN_PROGRESS}
        assert await txn_commit(h, {TP: 3}, generation=gen, member=first.member_id, instance="i1") == {
            TP: Errors.NONE}


@pytest.mark.anyio
async def test_dead_group_and_inactive_coordinator() -> None:
    async with coordinator() as h:
        await plain_commit(h, {TP: 1})
        group = h.group()
        assert await h.coord.delete_groups(["g"]) == {"g": Errors.NONE}
        # A request that found the group before it died: COORDINATOR_NOT_AVAILABLE.
        h.coord.manager.groups["g"] = group
        assert await txn_commit(h, {TP: 1}) == {TP: Errors.COORDINATOR_NOT_AVAILABLE}
        h.coord.manager.discard(group)
        assert await txn_commit(h, {TP: 1}, group="") == {TP: Errors.INVALID_GROUP_ID}
        await h.coord.shutdown()
        assert await txn_commit(h, {TP: 1}) == {TP: Errors.NOT_COORDINATOR}


@pytest.mark.anyio
async def test_delete_group_tombstones_pending_offsets() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        await plain_commit(h, {TP: 1})
        await txn_commit(h, {TP: 5, TP1: 6})
        assert await h.coord.delete_groups(["g"]) == {"g": Errors.NONE}
        partition = h.coord.partition_for("g")
        assert log.partitions is not None
        tombstones = [decode_key(r.key) for r in log.partitions[partition]
                      if isinstance(r, StoredRecord) and r.value is None]
        # One tombstone per partition (committed or only pending), then the group's.
        assert tombstones == [OffsetKey("g", "t", 0), OffsetKey("g", "t", 1), GroupKey("g")]
        assert committed(h, TP, TP1, stable=True) == [None, None]
        end_txn(h, commit=True)  # nothing left to materialise
        assert committed(h, TP, TP1) == [None, None]
    async with coordinator(log=log) as h:
        assert h.coord.manager.get("g") is None
        assert committed(h, TP, TP1, stable=True) == [None, None]


@pytest.mark.anyio
async def test_offset_delete_of_a_pending_only_partition_writes_a_tombstone() -> None:
    log = MemoryOffsetsLog(5)
    async with coordinator(log=log) as h:
        await txn_commit(h, {TP1: 6})
        err, out = await h.coord.delete_offsets("g", [TP1, TopicPartition("t", 9)])
        assert err == Errors.NONE and out == {TP1: Errors.NONE, TopicPartition("t", 9): Errors.NONE}
        assert log.partitions is not None
        tombstones = [decode_key(r.key) for r in log.partitions[h.coord.partition_for("g")]
                      if isinstance(r, StoredRecord) and r.value is None]
        assert tombstones == [OffsetKey("g", "t", 1)]
        assert committed(h, TP1, stable=True) == [None]


@pytest.mark.anyio
async def test_retention_keeps_offsets_and_groups_with_pending_transactions() -> None:
    day = 24 * 60 * 60 * 1000
    config = GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=0, offsets_retention_ms=day,
                         retention_check_interval_ms=10 * day)
    async with coordinator(config) as h:
        c = h.coord
        await plain_commit(h, {TP: 1, TP1: 2})
        await txn_commit(h, {TP1: 3})
        await txn_commit(h, {TP: 4}, group="only-pending", pid=7)
        h.clock.advance(2 * day)
        # TP expires; TP1 has a transactional commit pending and stays, and so does the group.
        assert await c.expire_offsets() == 1
        assert committed(h, TP, TP1) == [None, 2]
        assert h.coord.manager.get("only-pending") is not None
        end_txn(h, commit=True)
        end_txn(h, commit=False, group="only-pending", pid=7)
        assert committed(h, TP1) == [3]
        h.clock.advance(2 * day)
        assert await c.expire_offsets() == 1
        # Without open transactions the Empty groups without offsets are removed.
        assert c.manager.get("g") is None and c.manager.get("only-pending") is None


class _PausingLog(MemoryOffsetsLog):
    """Appends land in the log at once; the call then waits for ``release`` (as a write waiting for acks)."""

    def __init__(self) -> None:
        super().__init__(5)
        self.written = anyio.Event()
        self.release = anyio.Event()

    async def append(self, partition: int, records: Any, **kw: Any) -> Appended:
        appended = await super().append(partition, records, **kw)
        if kw.get("transactional"):
            self.written.set()
            await self.release.wait()
        return appended


@pytest.mark.anyio
@pytest.mark.parametrize("commit", [True, False])
async def test_marker_written_while_the_offsets_write_completes(commit: bool) -> None:
    log = _PausingLog()
    async with coordinator(log=log) as h:
        box: dict[str, Any] = {}

        async def run() -> None:
            box["result"] = await txn_commit(h, {TP: 5})

        h.tg.start_soon(run)
        await log.written.wait()
        end_txn(h, commit=commit)  # the marker follows the records in the log
        log.release.set()
        await h.settle()
        assert box["result"] == {TP: Errors.NONE}
        assert committed(h, TP, stable=True) == [5 if commit else None]
        assert not h.coord.manager.has_open_transactions("g") and h.coord.manager.pending == {}


@pytest.mark.anyio
async def test_unknown_group_instance_id_is_an_unknown_member() -> None:
    async with coordinator() as h:
        member = await _stable_member(h)
        # As Kafka's ClassicGroup.validateMember, for plain and transactional commits alike.
        assert await h.coord.commit_offsets("g", 1, member, "nobody", {TP: OffsetAndMetadata(1)}) == {
            TP: Errors.UNKNOWN_MEMBER_ID}
        assert await txn_commit(h, {TP: 1}, generation=1, member=member, instance="nobody") == {
            TP: Errors.UNKNOWN_MEMBER_ID}


@pytest.mark.parametrize(("error", "version", "expected"), [
    (Errors.PRODUCER_FENCED, 3, Errors.INVALID_PRODUCER_EPOCH),
    (Errors.TRANSACTION_ABORTABLE, 3, Errors.INVALID_TXN_STATE),
    (Errors.TRANSACTION_ABORTABLE, 4, Errors.TRANSACTION_ABORTABLE),
    (Errors.NETWORK_EXCEPTION, 3, Errors.COORDINATOR_LOAD_IN_PROGRESS),
    (Errors.NOT_LEADER_OR_FOLLOWER, 3, Errors.NOT_COORDINATOR),
    (Errors.UNKNOWN_TOPIC_OR_PARTITION, 3, Errors.COORDINATOR_NOT_AVAILABLE),
    (Errors.CONCURRENT_TRANSACTIONS, 3, Errors.CONCURRENT_TRANSACTIONS),
    (Errors.INVALID_PRODUCER_ID_MAPPING, 0, Errors.INVALID_PRODUCER_ID_MAPPING),
])
def test_verification_errors_as_kafka_maps_them(error: Errors, version: int, expected: Errors) -> None:
    assert verification_error(error, version) == expected
