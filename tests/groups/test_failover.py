"""Group coordinator fail-over in a cluster: load on election, unload on resignation,
NOT_COORDINATOR for groups whose ``__consumer_offsets`` partition is led elsewhere."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.broker import Broker
from kbroker.clock import ManualClock
from kbroker.common import TopicPartition
from kbroker.groups import Errors, GroupCoordinator, GroupState, JoinRequest, OffsetAndMetadata
from kbroker.groups.errors import GroupError
from kbroker.groups.storage import CONSUMER_OFFSETS, MemoryOffsetsLog, Stored
from kbroker.metadata.model import PartitionInfo
from kbroker.testing import make_config

from .helpers import CONFIG, Harness, subscription

pytestmark = pytest.mark.anyio

ME, OTHER = 1, 2
TP = TopicPartition("t", 0)


def led(partition: int, leader: int = ME, epoch: int = 1, topic: str = CONSUMER_OFFSETS) -> PartitionInfo:
    return PartitionInfo(topic, partition, leader, epoch, [ME, OTHER], [ME, OTHER])


@asynccontextmanager
async def clustered(log: MemoryOffsetsLog, node_id: int = ME, clock: ManualClock | None = None,
                    ) -> AsyncIterator[Harness]:
    clock = clock or ManualClock()
    coord = GroupCoordinator(CONFIG, clock, log, node_id=node_id, clustered=True)
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        yield Harness(coord, clock, log, tg)
        await coord.shutdown()
        tg.cancel_scope.cancel()


async def wait_loaded(h: Harness, group: str) -> None:
    with anyio.fail_after(5):
        while not h.coord.owns(group):
            await anyio.sleep(0.005)


async def elect(h: Harness, group: str, epoch: int = 1) -> int:
    p = h.coord.partition_for(group)
    h.coord.on_partitions_changed([(None, led(p, h.coord.node_id, epoch))])
    await wait_loaded(h, group)
    return p


def other_group(h: Harness, group: str) -> str:
    """A group id on another partition than ``group``'s."""
    p = h.coord.partition_for(group)
    return next(g for g in (f"x{i}" for i in range(100)) if h.coord.partition_for(g) != p)


async def stable_group(h: Harness, group: str) -> tuple[str, str]:
    """Two members, Stable at generation 1, with committed offsets; their member ids."""
    a = (await h.join(group, version=3, session_ms=10_000)).member_id
    box_b = h.start_join(group, version=3)
    await h.advance(0)
    # b's join started a rebalance that a must rejoin.
    box_a = h.start_join(group, a, version=3)
    await h.settle()
    assert box_a["result"].error == Errors.NONE and box_b["result"].error == Errors.NONE
    b = box_b["result"].member_id
    gen = box_a["result"].generation_id
    leader = box_a["result"].leader_id
    sync_a = h.start_sync(group, gen, a, {a: b"A", b: b"B"} if leader == a else None)
    sync_b = h.start_sync(group, gen, b, {a: b"A", b: b"B"} if leader == b else None)
    await h.settle()
    assert sync_a["result"].assignment == b"A" and sync_b["result"].assignment == b"B"
    assert await h.coord.commit_offsets(group, gen, a, None, {TP: OffsetAndMetadata(42, metadata="m")}) == {
        TP: Errors.NONE}
    return a, b


async def test_nothing_is_served_before_election() -> None:
    log = MemoryOffsetsLog(5)
    log.ensure()
    async with clustered(log) as h:
        assert (await h.join("g", version=3)).error == Errors.NOT_COORDINATOR
        assert h.coord.heartbeat("g", "m", None, 0) == Errors.NOT_COORDINATOR
        assert (await h.coord.sync_group("g", 0, "m", None, None, None, {})).error == Errors.NOT_COORDINATOR
        assert h.coord.leave_group("g", [("m", None)])[0] == Errors.NOT_COORDINATOR
        assert await h.coord.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(1)}) == {
            TP: Errors.NOT_COORDINATOR}
        with pytest.raises(GroupError) as e:
            h.coord.fetch_offsets("g", [TP])
        assert e.value.code == Errors.NOT_COORDINATOR
        with pytest.raises(GroupError):
            h.coord.describe_group("g")
        assert await h.coord.delete_groups(["g"]) == {"g": Errors.NOT_COORDINATOR}
        assert h.coord.list_groups() == []
        assert log.partitions == {p: [] for p in range(5)}  # nothing written


async def test_election_loads_and_other_partitions_stay_elsewhere() -> None:
    log = MemoryOffsetsLog(5)
    async with clustered(log) as h:
        p = await elect(h, "g")
        assert await h.coord.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(7)}) == {TP: Errors.NONE}
        assert h.coord.fetch_offsets("g", [TP])[TP] is not None
        # Another topic's partition change, or another leader's partition, changes nothing.
        other = other_group(h, "g")
        h.coord.on_partitions_changed([(None, led(h.coord.partition_for(other), OTHER)),
                                       (None, led(p, ME, topic="__transaction_state"))])
        assert (await h.join(other, version=3)).error == Errors.NOT_COORDINATOR
        assert h.coord.owns("g")
        # An ISR-only change of a led partition keeps the groups as they are (no reload).
        group = h.group("g")
        h.coord.on_partitions_changed([(led(p), led(p, epoch=1))])
        assert h.coord.manager.get("g") is group and h.coord.owns("g")


class BlockingLog(MemoryOffsetsLog):
    """Replay waits for ``release`` (runs in the loading worker thread); or fails with ``fail``."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.release = threading.Event()
        self.fail: Exception | None = None
        self.reading = threading.Event()

    def replay(self, partition: int) -> Iterator[Stored]:
        self.reading.set()
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        yield from super().replay(partition)


async def test_load_in_progress_until_the_partition_is_read() -> None:
    log = BlockingLog(5)
    async with clustered(log) as writer:
        log.release.set()
        await elect(writer, "g")
        await stable_group(writer, "g")
    log.release.clear()
    async with clustered(log) as h:
        p = h.coord.partition_for("g")
        h.coord.on_partitions_changed([(None, led(p, epoch=2))])
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(log.reading.wait)
        assert (await h.join("g", version=3)).error == Errors.COORDINATOR_LOAD_IN_PROGRESS
        assert h.coord.heartbeat("g", "m", None, 1) == Errors.NONE  # as Kafka: answered blindly while loading
        assert await h.coord.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(1)}) == {
            TP: Errors.COORDINATOR_LOAD_IN_PROGRESS}
        with pytest.raises(GroupError) as e:
            h.coord.list_groups()
        assert e.value.code == Errors.COORDINATOR_LOAD_IN_PROGRESS
        log.release.set()
        await wait_loaded(h, "g")
        assert h.group("g").is_in(GroupState.STABLE)
        assert h.coord.fetch_offsets("g", [TP])[TP].offset == 42  # type: ignore[union-attr]
        assert [g.group_id for g in h.coord.list_groups()] == ["g"]


async def test_failed_load_answers_not_coordinator() -> None:
    log = BlockingLog(5)
    log.ensure()
    log.fail = OSError("disk gone")
    log.release.set()
    async with clustered(log) as h:
        p = h.coord.partition_for("g")
        h.coord.on_partitions_changed([(None, led(p))])
        with anyio.fail_after(5):
            while p in h.coord._owned:
                await anyio.sleep(0.005)
        assert (await h.join("g", version=3)).error == Errors.NOT_COORDINATOR
        # A later election tries again.
        log.fail = None
        await elect(h, "g", epoch=2)


async def test_resignation_while_loading_discards_what_was_read() -> None:
    log = BlockingLog(5)
    async with clustered(log) as writer:
        log.release.set()
        await elect(writer, "g")
        await stable_group(writer, "g")
    log.release.clear()
    log.reading.clear()
    async with clustered(log) as h:
        p = h.coord.partition_for("g")
        h.coord.on_partitions_changed([(None, led(p))])
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(log.reading.wait)
        h.coord.on_partitions_changed([(led(p), led(p, OTHER, epoch=2))])
        log.release.set()
        for _ in range(50):
            await anyio.sleep(0.005)
        assert h.coord.manager.get("g") is None
        assert (await h.join("g", version=3)).error == Errors.NOT_COORDINATOR


async def test_resignation_answers_blocked_members_and_cancels_timers() -> None:
    log = MemoryOffsetsLog(5)
    async with clustered(log) as h:
        p = await elect(h, "g")
        other = other_group(h, "g")
        await elect(h, other)
        idle_timers = h.coord.timers.pending()
        a, b = await stable_group(h, "g")
        # A third member starts a rebalance: a's rejoin blocks at the join barrier, waiting for b.
        box_c = h.start_join("g", version=3)
        await h.settle()
        box_a = h.start_join("g", a, version=3)
        await h.settle()
        assert "result" not in box_a and "result" not in box_c
        other_member = (await h.join(other, version=3)).member_id
        group = h.group("g")
        assert h.coord.timers.pending() > idle_timers
        h.coord.on_partitions_changed([(led(p), led(p, OTHER, epoch=2))])
        await h.settle()
        assert box_a["result"].error == Errors.NOT_COORDINATOR
        assert box_c["result"].error == Errors.NOT_COORDINATOR
        assert group.is_in(GroupState.DEAD) and h.coord.manager.get("g") is None
        assert all(m.session_timer is None for m in group.members.values())
        assert group.join_timer is None and group.sync_timer is None
        assert h.coord.heartbeat("g", b, None, 1) == Errors.NOT_COORDINATOR
        with pytest.raises(GroupError):
            h.coord.fetch_offsets("g", [TP])
        # The other partition's group is untouched: its member's session and pending-sync timers are all that remain.
        assert h.coord.heartbeat(other, other_member, None, 1) == Errors.NONE
        assert h.coord.timers.pending() == idle_timers + 2
        # Nothing of the unloaded group is written after the resignation.
        written = len(log.partitions[p])  # type: ignore[index]
        await h.advance(60_000)
        assert len(log.partitions[p]) == written  # type: ignore[index]


async def test_resignation_answers_a_blocked_sync() -> None:
    log = MemoryOffsetsLog(5)
    async with clustered(log) as h:
        p = await elect(h, "g")
        a = (await h.join("g", version=3)).member_id
        box_b = h.start_join("g", version=3)
        await h.advance(0)
        box_a = h.start_join("g", a, version=3)
        await h.settle()
        b, gen = box_b["result"].member_id, box_b["result"].generation_id
        follower = b if box_a["result"].leader_id == a else a
        sync = h.start_sync("g", gen, follower)  # waits for the leader's assignment
        await h.settle()
        assert "result" not in sync
        h.coord.on_partitions_changed([(led(p), None)])  # no longer a replica at all
        await h.settle()
        assert sync["result"].error == Errors.NOT_COORDINATOR


async def test_new_leader_loads_what_the_old_one_wrote() -> None:
    log = MemoryOffsetsLog(5)  # the partition's replicated log, as both brokers see it
    clock = ManualClock()
    async with clustered(log, ME, clock) as old:
        p = await elect(old, "g")
        a, b = await stable_group(old, "g")
        # A transactional commit still open when leadership moves.
        assert await old.coord.txn_commit_offsets("tx", "g", 9, 0, -1, "", None,
                                                  {TopicPartition("t", 1): OffsetAndMetadata(5)}) == {
            TopicPartition("t", 1): Errors.NONE}
        old.coord.on_partitions_changed([(led(p), led(p, OTHER, epoch=2))])
        assert old.coord.manager.pending == {}
        async with clustered(log, OTHER, clock) as new:
            new.coord.on_partitions_changed([(None, led(p, OTHER, epoch=2))])
            await wait_loaded(new, "g")
            group = new.group("g")
            assert group.is_in(GroupState.STABLE) and set(group.members) == {a, b}
            assert group.generation_id == 2  # a joined alone (1), then with b (2)
            assert {m.member_id: m.assignment for m in group.members.values()} == {a: b"A", b: b"B"}
            assert new.coord.fetch_offsets("g", [TP])[TP].offset == 42  # type: ignore[union-attr]
            assert new.coord.fetch_offsets("g", [TopicPartition("t", 1)], require_stable=True) == {
                TopicPartition("t", 1): Errors.UNSTABLE_OFFSET_COMMIT}
            # Members carry on with the new coordinator; one that stays silent expires there.
            assert new.coord.heartbeat("g", a, None, 2) == Errors.NONE
            await new.advance(8_000)
            assert new.coord.heartbeat("g", a, None, 2) == Errors.NONE
            await new.advance(3_000)  # b's 10 s session ran out on the new coordinator
            assert b not in new.group("g").members
            assert old.coord.heartbeat("g", a, None, 2) == Errors.NOT_COORDINATOR


async def test_single_broker_ignores_partition_changes() -> None:
    from .helpers import coordinator

    async with coordinator() as h:
        h.coord.on_partitions_changed([(led(h.coord.partition_for("g")), None)])
        assert (await h.join("g", version=3)).error == Errors.NONE


async def test_reelection_on_a_real_log_loads_the_old_leaders_state(tmp_path: Path) -> None:
    """The old leader is a single broker writing ``__consumer_offsets`` on disk; a cluster-mode
    coordinator elected for the group's partition reads it back from that log."""
    async with Broker(make_config(tmp_path, {"offsets.topic.num.partitions": "3"})).running() as b:
        assert b.groups.ensure_offsets_topic()
        assert await b.groups.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(11, metadata="x")}) == {
            TP: Errors.NONE}
        join = await b.groups.join_group(JoinRequest(
            "g2", "", 10_000, 30_000, "consumer", [("range", subscription("t"))], None, "c", "/h",
            require_known_member_id=False))
        assert join.error == Errors.NONE
        sync = await b.groups.sync_group("g2", join.generation_id, join.member_id, None, None, None,
                                         {join.member_id: b"asg"})
        assert sync.error == Errors.NONE
        new = GroupCoordinator(CONFIG, b.clock, b.groups.manager.log, node_id=OTHER, clustered=True)
        async with anyio.create_task_group() as tg:
            await new.start(tg)
            h = Harness(new, ManualClock(), MemoryOffsetsLog(), tg)  # type: ignore[arg-type]
            for g in ("g", "g2"):
                new.on_partitions_changed([(None, led(new.partition_for(g), OTHER, 3))])
            await wait_loaded(h, "g")
            await wait_loaded(h, "g2")
            got = new.fetch_offsets("g", [TP])[TP]
            assert got is not None and (got.offset, got.metadata) == (11, "x")  # type: ignore[union-attr]
            g2 = new.manager.get("g2")
            assert g2 is not None and g2.is_in(GroupState.STABLE)
            assert g2.members[join.member_id].assignment == b"asg"
            await new.shutdown()
            tg.cancel_scope.cancel()


async def test_newer_leader_epoch_reloads_what_another_leader_wrote_meanwhile() -> None:
    """Leadership lost and regained within one batch of changes (epoch 1 -> 3): the other
    broker's writes at epoch 2 are read back, not hidden by the stale groups in memory."""
    log = MemoryOffsetsLog(5)
    async with clustered(log, ME) as h, clustered(log, OTHER) as other:
        p = await elect(h, "g", epoch=1)
        assert await h.coord.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(1)}) == {TP: Errors.NONE}
        other.coord.on_partitions_changed([(None, led(p, OTHER, 2))])
        await wait_loaded(other, "g")
        assert await other.coord.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(2)}) == {
            TP: Errors.NONE}
        other.coord.on_partitions_changed([(led(p, OTHER, 2), led(p, ME, 3))])
        h.coord.on_partitions_changed([(led(p, ME, 1), led(p, ME, 3))])
        await wait_loaded(h, "g")
        assert h.coord.fetch_offsets("g", [TP])[TP].offset == 2  # type: ignore[union-attr]


async def test_marker_arriving_while_loading_is_applied() -> None:
    log = BlockingLog(5)
    log.release.set()
    tp1 = TopicPartition("t", 1)
    async with clustered(log) as writer:
        p = await elect(writer, "g")
        assert await writer.coord.txn_commit_offsets("tx", "g", 9, 0, -1, "", None,
                                                     {tp1: OffsetAndMetadata(5)}) == {tp1: Errors.NONE}
    log.release.clear()
    log.reading.clear()
    async with clustered(log) as h:
        h.coord.on_partitions_changed([(None, led(p, epoch=2))])
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(log.reading.wait)
        # The reader reads the partition as it was before the marker (it has passed the end),
        # while WriteTxnMarkers appends the marker and tells the coordinator.
        assert log.partitions is not None
        snapshot = list(log.partitions[p])
        assert log.append_marker(p, 9, 0, commit=True) == Errors.NONE
        h.coord.on_transaction_completed(9, [p], commit=True)
        log.partitions[p], later = snapshot, log.partitions[p]
        log.release.set()
        await wait_loaded(h, "g")
        log.partitions[p] = later
        assert h.coord.fetch_offsets("g", [tp1], require_stable=True)[tp1].offset == 5  # type: ignore[union-attr]


async def test_election_before_start_loads_at_start() -> None:
    log = MemoryOffsetsLog(5)
    async with clustered(log) as writer:
        p = await elect(writer, "g")
        await stable_group(writer, "g")
    coord = GroupCoordinator(CONFIG, ManualClock(), log, node_id=ME, clustered=True)
    coord.on_partitions_changed([(None, led(p, epoch=2))])  # the metadata's first image, before start
    with pytest.raises(GroupError) as e:
        coord.check_active("g")
    assert e.value.code == Errors.COORDINATOR_LOAD_IN_PROGRESS
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        h = Harness(coord, ManualClock(), log, tg)
        await wait_loaded(h, "g")
        assert h.group("g").is_in(GroupState.STABLE)
        await coord.shutdown()
        tg.cancel_scope.cancel()


class SlowLog(MemoryOffsetsLog):
    """Appends wait for ``gate`` (a write acknowledged only after the resignation)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.gate = anyio.Event()

    async def append(self, *args: Any, **kw: Any) -> Any:
        await self.gate.wait()
        return await super().append(*args, **kw)


async def test_transactional_commit_across_resignation_leaves_nothing_pending() -> None:
    log = SlowLog(5)
    log.gate.set()
    tp1 = TopicPartition("t", 1)
    async with clustered(log) as h:
        p = await elect(h, "g")
        log.gate = anyio.Event()
        box: dict[str, Any] = {}

        async def commit() -> None:
            box["r"] = await h.coord.txn_commit_offsets("tx", "g", 9, 0, -1, "", None, {tp1: OffsetAndMetadata(5)})

        h.tg.start_soon(commit)
        await h.settle()
        h.coord.on_partitions_changed([(led(p), led(p, OTHER, 2))])
        log.gate.set()
        await h.settle()
        assert box["r"] == {tp1: Errors.NOT_COORDINATOR}
        assert h.coord.manager.pending == {} and h.coord.manager.open_transactions == {}
