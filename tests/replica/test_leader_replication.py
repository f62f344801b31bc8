"""The leader side of replication: follower tracking, ISR changes, the high watermark, acks=all,
follower fetches and KIP-392 (kbroker.replica.manager with a replication seam, partition_state)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.metadata.model import PartitionInfo
from kbroker.replica import manager as manager_module
from kbroker.replica.types import AppendResult
from kbroker.txn.markers import MarkerResults, TxnMarker

from .replication_helpers import LAG_MS, ME, TOPIC, TP, Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, ManualClock())
    async with anyio.create_task_group() as tg:
        await harness.rm.start(tg)
        yield harness
        await harness.rm.stop()
        tg.cancel_scope.cancel()
    harness.close()


async def _settle() -> None:
    """Let tasks started by the replica manager (ISR changes) run to their next wait."""
    for _ in range(5):
        await anyio.sleep(0)


# -- becoming leader / follower -----------------------------------------------------------------

async def test_becoming_leader_starts_an_epoch_at_the_log_end_and_stops_fetching(h: Harness) -> None:
    plog = h.open_log(records=4)
    plog.update_high_watermark(1)
    h.set_partition(epoch=3)
    state = h.rm.leader_state(TP)
    assert state is not None and state.epoch_start_offset == 4
    assert getattr(plog, "epoch_entries", [(3, 4)])[-1] == (3, 4)
    assert ("remove", TP) in h.seam.fetchers.calls
    # ISR members count as caught up now; the followers' positions are unknown: the HW stays.
    assert plog.high_watermark == 1
    assert not plog.high_watermark_follows_leo


async def test_a_follower_follows_the_leader_and_is_not_restarted_for_an_isr_change(h: Harness) -> None:
    h.open_log()
    h.set_partition(leader=2, epoch=1)
    h.set_partition(leader=2, epoch=1, isr=[2, 1], partition_epoch=1)  # same leader and epoch
    assert [c for c in h.seam.fetchers.calls if c[0] == "add"] == [("add", TP, 2, 1)]
    h.set_partition(leader=-1, epoch=2, isr=[1], partition_epoch=2)
    assert h.seam.fetchers.calls[-1] == ("remove", TP)
    h.set_partition(leader=3, epoch=3, partition_epoch=3)
    assert h.seam.fetchers.calls[-1] == ("add", TP, 3, 3)
    h.remove_partition()
    assert h.seam.fetchers.calls[-1] == ("remove", TP)
    assert h.rm.leader_state(TP) is None


async def test_a_stale_leader_epoch_is_ignored(h: Harness) -> None:
    h.open_log()
    h.set_partition(epoch=5)
    state = h.rm.leader_state(TP)
    h.set_partition(epoch=4, isr=[1])
    assert h.rm.leader_state(TP) is state and state is not None and state.isr == [1, 2, 3]


# -- high watermark -------------------------------------------------------------------------------

async def test_high_watermark_is_the_smallest_log_end_offset_of_the_isr(h: Harness) -> None:
    plog = h.open_log()
    h.set_partition()
    assert (await h.produce(5, acks=1)).base_offset == 0
    assert plog.high_watermark == 0
    await h.follower_fetch(2, 5)
    assert plog.high_watermark == 0  # replica 3 has not fetched
    await h.follower_fetch(3, 2)
    assert plog.high_watermark == 2
    # A consumer reads up to the HW only; a follower up to the log end.
    assert (await h.consumer_fetch(0)).records and (await h.consumer_fetch(2)).records == b""
    follower_read = await h.follower_fetch(3, 2)
    assert follower_read.records and follower_read.high_watermark == 2
    await h.follower_fetch(3, 5)
    assert plog.high_watermark == 5


async def test_the_isr_alone_moves_the_high_watermark_with_each_append(h: Harness) -> None:
    plog = h.open_log()
    h.set_partition(replicas=[1], isr=[1])
    await h.produce(3, acks=1)
    assert plog.high_watermark == 3


async def test_an_invalid_lease_holds_the_high_watermark(h: Harness) -> None:
    plog = h.open_log()
    h.set_partition(isr=[1, 2], replicas=[1, 2])
    await h.produce(2, acks=1)
    h.seam.lease = False
    await h.follower_fetch(2, 2)
    assert plog.high_watermark == 0
    await h.follower_fetch(2, 2)
    assert plog.high_watermark == 0
    h.seam.lease = True
    await h.follower_fetch(2, 2)  # nothing moved, but the HW lagged: it moves now
    assert plog.high_watermark == 2


async def test_without_a_valid_lease_followers_get_no_records_nor_epoch_end_offsets(h: Harness) -> None:
    # A leadership not known to be current (a lapsed lease, or a previous incarnation's) answers
    # followers nothing they could truncate to: NOT_LEADER_OR_FOLLOWER, and they retry.
    plog = h.open_log(records=3)
    h.set_partition(replicas=[1, 2], isr=[1, 2], epoch=2)
    h.seam.lease = False
    fetched = await h.follower_fetch(2, 5, epoch=2, last_fetched_epoch=2)
    assert fetched.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER and fetched.diverging_epoch is None
    assert h.rm.offsets_for_leader_epoch(TP, 2, 2) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1, -1)
    h.seam.lease = True
    assert h.rm.offsets_for_leader_epoch(TP, 2, 2) == (ErrorCode.NONE, 2, 3)
    fetched = await h.follower_fetch(2, 5, epoch=2, last_fetched_epoch=2)
    assert fetched.error_code == ErrorCode.NONE and fetched.diverging_epoch == (2, 3)
    assert plog.log_end_offset == 3


async def test_a_follower_checks_a_clients_leader_epoch_before_its_leadership(h: Harness) -> None:
    # As Kafka's Partition.getLocalLog: a replica held here answers a stale epoch FENCED_LEADER_EPOCH
    # and a newer one UNKNOWN_LEADER_EPOCH; at the current epoch, NOT_LEADER_OR_FOLLOWER.
    h.open_log(records=2)
    h.set_partition(leader=2, epoch=3)
    for epoch, code in ((2, ErrorCode.FENCED_LEADER_EPOCH), (4, ErrorCode.UNKNOWN_LEADER_EPOCH),
                        (3, ErrorCode.NOT_LEADER_OR_FOLLOWER), (-1, ErrorCode.NOT_LEADER_OR_FOLLOWER)):
        assert (await h.consumer_fetch(0, epoch=epoch)).error_code == code
        assert h.rm.fetch_offset_for_timestamp(TP, -1, current_leader_epoch=epoch).error_code == code
    # Not a replica here: NOT_LEADER_OR_FOLLOWER whatever the epoch.
    h.set_partition(leader=2, epoch=3, replicas=[2, 3], partition_epoch=1)
    h.logs.pop(("t", 0)).close()
    assert (await h.consumer_fetch(0, epoch=2)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_delete_records_waits_for_the_followers_log_start(h: Harness) -> None:
    # As Kafka's DelayedDeleteRecords: answered once every replica on a live broker moved its log
    # start (a follower elected later would serve the deleted records again otherwise).
    plog = h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    await h.produce(5, acks=1)
    await h.follower_fetch(2, 5)
    assert plog.high_watermark == 5
    code, low, _ = h.rm.delete_records(TP, 3)
    assert (code, low) == (ErrorCode.NONE, 3)
    assert await h.rm.await_low_watermarks({TP: 3}, 50) == {TP: (ErrorCode.REQUEST_TIMED_OUT, 0)}
    out: list[dict] = []

    async def wait() -> None:
        out.append(await h.rm.await_low_watermarks({TP: 3}, 5_000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await _settle()
        await h.follower_fetch(2, 5, log_start=0)
        await _settle()
        assert out == []
        await h.follower_fetch(2, 5, log_start=3)
    assert out == [{TP: (ErrorCode.NONE, 3)}]
    # The leadership gone: NOT_LEADER_OR_FOLLOWER.
    h.set_partition(leader=2, replicas=[1, 2], isr=[1, 2], epoch=1, partition_epoch=1)
    assert await h.rm.await_low_watermarks({TP: 4}, 5_000) == {TP: (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1)}


async def test_under_min_isr_the_high_watermark_does_not_move(h: Harness) -> None:
    plog = h.open_log(min_isr=2)
    h.set_partition(replicas=[1, 2], isr=[1])
    await h.produce(2, acks=1)  # acks=1 is accepted under min ISR ...
    assert plog.high_watermark == 0  # ... but not exposed (Kafka 3.7+, KIP-966)
    await h.follower_fetch(2, 2)  # caught up: joins the ISR
    await _settle()
    assert h.seam.alters and h.seam.alters[-1][1] == [1, 2]
    assert plog.high_watermark == 2


async def test_a_caught_up_follower_outside_the_isr_holds_the_high_watermark(h: Harness) -> None:
    # Kafka's shouldWaitForReplicaToJoinIsr: else it could never catch the HW up.
    plog = h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1])
    h.seam.gate = anyio.Event()  # keep the expansion in flight
    await h.produce(4, acks=1)
    assert plog.high_watermark == 4
    await h.follower_fetch(2, 4)  # caught up: proposed, in flight
    await h.produce(2, acks=1)
    assert plog.high_watermark == 4  # the member being added counts (maximal ISR)
    await h.follower_fetch(2, 6)
    assert plog.high_watermark == 6
    h.seam.gate.set()


# -- ISR expansion -------------------------------------------------------------------------------

async def test_a_follower_joins_the_isr_at_the_high_watermark_and_the_epoch_start(h: Harness) -> None:
    plog = h.open_log(records=5)
    plog.update_high_watermark(2)
    h.set_partition(replicas=[1, 2, 3], isr=[1, 2], epoch=1)
    await h.follower_fetch(3, 1, epoch=1)
    await h.follower_fetch(3, 3, epoch=1)  # at the HW but behind where epoch 1 starts (5)
    await _settle()
    assert h.seam.alters == []
    await h.follower_fetch(3, 5, epoch=1)
    await _settle()
    assert [isr for _, isr in h.seam.alters] == [[1, 2, 3]]
    state = h.rm.leader_state(TP)
    assert state is not None and state.isr == [1, 2, 3] and state.pending_isr is None


async def test_a_broker_shutting_down_does_not_join_the_isr_nor_hold_the_high_watermark(h: Harness) -> None:
    plog = h.open_log(records=4)
    h.set_partition(replicas=[1, 2], isr=[1])
    h.seam.ineligible.add(2)
    await h.follower_fetch(2, 0)
    await h.follower_fetch(2, 4)  # caught up: it would join, but it is stopping
    await _settle()
    assert h.seam.alters == [] and plog.high_watermark == 4
    h.seam.ineligible.clear()
    await h.follower_fetch(2, 4)
    await _settle()
    assert [isr for _, isr in h.seam.alters] == [[1, 2]]


async def test_one_isr_change_in_flight_at_a_time(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2, 3], isr=[1])
    h.seam.gate = anyio.Event()
    await h.follower_fetch(2, 0)
    await h.follower_fetch(3, 0)
    await _settle()
    assert [isr for _, isr in h.seam.alters] == [[1, 2]]
    h.seam.gate.set()
    await _settle()
    await h.follower_fetch(3, 0)
    await _settle()
    assert [isr for _, isr in h.seam.alters] == [[1, 2], [1, 2, 3]]


@pytest.mark.parametrize("outcome", ["lose", "fail"])
async def test_a_lost_or_failed_isr_change_is_proposed_again_later(h: Harness, outcome: str) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1])
    h.seam.outcome = outcome
    await h.follower_fetch(2, 0)
    await _settle()
    state = h.rm.leader_state(TP)
    assert state is not None and state.isr == [1] and state.pending_isr is None
    h.seam.outcome = "commit"
    await h.follower_fetch(2, 0)
    await _settle()
    assert state.isr == [1, 2] and len(h.seam.alters) == 2


# -- ISR shrink ----------------------------------------------------------------------------------

async def test_a_follower_not_caught_up_for_the_lag_time_leaves_the_isr(h: Harness) -> None:
    plog = h.open_log()
    h.set_partition(replicas=[1, 2, 3], isr=[1, 2, 3])
    await h.produce(3, acks=1)
    await h.follower_fetch(2, 3)
    await h.follower_fetch(3, 1)
    assert plog.high_watermark == 1
    h.clock.advance(LAG_MS)
    await h.follower_fetch(2, 3)
    assert h.rm.maybe_shrink_isr() == 0  # exactly the lag: still in sync
    h.clock.advance(1)
    await h.follower_fetch(2, 3)
    assert h.rm.maybe_shrink_isr() == 1
    await _settle()
    assert [isr for _, isr in h.seam.alters] == [[1, 2]]
    assert plog.high_watermark == 3  # replica 3 no longer holds it back


async def test_a_follower_at_the_log_end_is_in_sync_however_long_ago_it_fetched(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    await h.produce(2, acks=1)
    await h.follower_fetch(2, 2)
    h.clock.advance(10 * LAG_MS)
    assert h.rm.maybe_shrink_isr() == 0


async def test_a_follower_keeping_up_with_a_steady_trickle_stays_in_sync(h: Harness) -> None:
    # Never at the leader's moving end, but always at least where it ended at the previous fetch.
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    offset = 0
    for _ in range(5):
        await h.produce(1, acks=1)
        await h.follower_fetch(2, offset)
        offset += 1
        await h.produce(1, acks=1)
        h.clock.advance(LAG_MS // 2)
        offset += 1
        await h.follower_fetch(2, offset - 1)
    assert h.rm.maybe_shrink_isr() == 0


async def test_the_expiration_task_shrinks_periodically(tmp_path: Path) -> None:
    harness = Harness(tmp_path, ManualClock(), **{"replica.lag.time.max.ms": "40"})
    try:
        async with anyio.create_task_group() as tg:
            await harness.rm.start(tg)
            harness.open_log()
            harness.set_partition(replicas=[1, 2], isr=[1, 2])
            await harness.produce(1, acks=1)
            harness.clock.advance(41)
            with anyio.fail_after(5):
                while not harness.seam.alters:
                    await anyio.sleep(0.01)
            assert harness.seam.alters[0][1] == [1]
            await harness.rm.stop()  # ends the task: the group exits
    finally:
        harness.close()


async def test_no_expiration_task_on_a_single_broker(tmp_path: Path) -> None:
    from kbroker.config import BrokerConfig, ConfigHolder
    from kbroker.replica.manager import ReplicaManager

    rm = ReplicaManager(node_id=ME, config=ConfigHolder(BrokerConfig({})), partitions=Harness(tmp_path, ManualClock()),
                        logs=lambda t, p: None, clock=ManualClock())
    async with anyio.create_task_group() as tg:
        await rm.start(tg)
        assert rm._isr_scope is None
        rm.apply_partitions([(None, None)])  # a no-op
        await rm.stop()


# -- acks=all ------------------------------------------------------------------------------------

async def _produce_in_background(h: Harness, tg: anyio.abc.TaskGroup, out: list[AppendResult],
                                 n: int = 1, timeout_ms: int = 5_000) -> anyio.Event:
    done = anyio.Event()

    async def run() -> None:
        out.append(await h.produce(n, timeout_ms=timeout_ms))
        done.set()

    tg.start_soon(run)
    await _settle()
    return done


async def test_acks_all_waits_for_the_isr(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2, 3], isr=[1, 2, 3])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out, n=2)
        await h.follower_fetch(2, 2)
        await _settle()
        assert not done.is_set()
        await h.follower_fetch(3, 1)
        await _settle()
        assert not done.is_set()  # the HW is 1, the produce needs 2
        await h.follower_fetch(3, 2)
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NONE and out[0].base_offset == 0
    state = h.rm.leader_state(TP)
    assert state is not None and state.waiting == 0


async def test_acks_all_with_the_leader_alone_in_the_isr_answers_at_once(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1])
    with anyio.fail_after(5):
        r = await h.produce(1, timeout_ms=60_000)
    assert r.error_code == ErrorCode.NONE


async def test_acks_all_times_out(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    r = await h.produce(3, timeout_ms=50)
    assert r.error_code == ErrorCode.REQUEST_TIMED_OUT
    assert r.base_offset == 0  # appended all the same, as Kafka reports it
    state = h.rm.leader_state(TP)
    assert state is not None and state.waiting == 0
    assert (await h.produce(1, timeout_ms=0)).error_code == ErrorCode.REQUEST_TIMED_OUT


async def test_acks_all_is_never_acknowledged_without_a_valid_lease(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out, timeout_ms=100)
        h.seam.lease = False  # appended, then the lease lapses (the broker was paused, say)
        await h.follower_fetch(2, 1)  # the ISR has it, but the lease is not known valid
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.REQUEST_TIMED_OUT


@pytest.mark.parametrize("acks", [-1, 1, 0])
async def test_without_a_valid_lease_nothing_is_appended(h: Harness, acks: int) -> None:
    # Another broker may lead the partition by now: this one takes no write at all.
    plog = h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1], partition_epoch=1)
    h.seam.lease = False
    r = await h.produce(1, acks=acks, timeout_ms=50)
    assert r.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert plog.log_end_offset == 0


async def test_acks_all_reached_after_the_isr_fell_under_min_isr(h: Harness) -> None:
    h.open_log(min_isr=2)
    h.set_partition(replicas=[1, 2, 3], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        await h.follower_fetch(2, 1)  # the HW passes the produce ...
        h.set_partition(replicas=[1, 2, 3], isr=[1], partition_epoch=1)  # ... and the ISR shrinks before it answers
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    # Before the append: NOT_ENOUGH_REPLICAS, nothing written.
    r = await h.produce(1)
    assert r.error_code == ErrorCode.NOT_ENOUGH_REPLICAS and h.logs[("t", 0)].log_end_offset == 1


async def test_min_isr_above_the_replication_factor_is_capped_by_it(h: Harness) -> None:
    # As Kafka's Partition.effectiveMinIsr: min.insync.replicas=3 on two replicas asks for both,
    # so acks=all is accepted and completes once the follower has the records.
    plog = h.open_log(min_isr=3)
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        await h.follower_fetch(2, 1)
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NONE and plog.high_watermark == 1
    # With the ISR under the two replicas, acks=all is refused before the append.
    h.set_partition(replicas=[1, 2], isr=[1], partition_epoch=1)
    r = await h.produce(1)
    assert r.error_code == ErrorCode.NOT_ENOUGH_REPLICAS and plog.log_end_offset == 1


async def test_acks_all_answers_not_leader_when_leadership_moves(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        h.set_partition(leader=2, replicas=[1, 2], isr=[2, 1], epoch=1, partition_epoch=1)
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert h.seam.fetchers.calls[-1] == ("add", TP, 2, 1)


async def test_acks_all_answers_not_leader_when_the_replica_is_removed_or_the_broker_stops(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        h.remove_partition()
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    h.set_partition(replicas=[1, 2], isr=[1, 2], partition_epoch=1)
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        await h.rm.stop()
        with anyio.fail_after(5):
            await done.wait()
    assert out[1].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_acks_all_survives_a_reelection_of_the_same_leader(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[AppendResult] = []
    async with anyio.create_task_group() as tg:
        done = await _produce_in_background(h, tg, out)
        h.set_partition(replicas=[1, 2], isr=[1, 2], epoch=1, partition_epoch=1)
        await _settle()
        assert not done.is_set()
        state = h.rm.leader_state(TP)
        assert state is not None and state.waiting == 1 and state.epoch_start_offset == 1
        await h.follower_fetch(2, 1, epoch=1)
        with anyio.fail_after(5):
            await done.wait()
    assert out[0].error_code == ErrorCode.NONE


async def test_acks_1_does_not_wait(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    with anyio.fail_after(5):
        assert (await h.produce(1, acks=1, timeout_ms=60_000)).error_code == ErrorCode.NONE


# -- transaction markers -----------------------------------------------------------------------

def _marker(commit: bool = True) -> TxnMarker:
    return TxnMarker(producer_id=7, producer_epoch=0, coordinator_epoch=0, commit=commit, partitions=(TP,))


async def test_markers_are_answered_once_the_isr_has_them(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    out: list[MarkerResults] = []
    async with anyio.create_task_group() as tg:
        async def write() -> None:
            out.append(await h.rm.write_txn_markers([_marker()]))
        tg.start_soon(write)
        await _settle()
        assert not out
        await h.follower_fetch(2, 1)
        with anyio.fail_after(5):
            while not out:
                await anyio.sleep(0.01)
    assert out[0] == [{TP: ErrorCode.NONE}]


async def test_markers_not_replicated_in_time_are_retried_by_the_coordinator(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "MARKER_TIMEOUT_MS", 50)
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    assert await h.rm.write_txn_markers([_marker()]) == [{TP: ErrorCode.REQUEST_TIMED_OUT}]


# -- follower fetches ----------------------------------------------------------------------------

async def test_follower_fetch_epoch_fencing(h: Harness) -> None:
    plog = h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2], epoch=4)
    await h.produce(1, acks=1)
    assert (await h.follower_fetch(2, 1, epoch=3)).error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert (await h.follower_fetch(2, 1, epoch=5)).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert plog.high_watermark == 0  # fenced fetches record nothing
    assert (await h.follower_fetch(2, 1, epoch=4)).error_code == ErrorCode.NONE
    assert plog.high_watermark == 1


async def test_a_fetch_from_a_broker_that_is_not_a_replica(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    assert (await h.follower_fetch(7, 0, epoch=0)).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert (await h.follower_fetch(7, 0, epoch=-1)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_a_follower_fetch_on_a_follower_is_refused(h: Harness) -> None:
    h.open_log()
    h.set_partition(leader=2, replicas=[1, 2, 3])
    assert (await h.follower_fetch(3, 0)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_a_diverging_follower_is_told_where_to_truncate(h: Harness) -> None:
    plog = h.open_log(records=3)  # epoch 0 holds offsets 0-2 here
    getattr(plog, "assign_leader_epoch")(0)  # noqa: B009 - the log layer's method
    h.set_partition(replicas=[1, 2], isr=[1], epoch=1)
    await h.produce(2, acks=1)  # epoch 1 from offset 3
    # The follower wrote offsets 3-4 in epoch 0 under an old leader: epoch 0 ends at 3 here.
    r = await h.follower_fetch(2, 5, epoch=1, last_fetched_epoch=0, max_wait_ms=10_000)
    assert r.diverging_epoch == (0, 3) and r.records == b""
    state = h.rm.leader_state(TP)
    assert state is not None and state.followers[2].log_end_offset == -1  # nothing recorded
    r = await h.follower_fetch(2, 3, epoch=1, last_fetched_epoch=0)
    assert r.diverging_epoch is None and r.records
    assert state.followers[2].log_end_offset == 3


async def test_a_follower_long_poll_wakes_on_appends(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:
        async def poll() -> None:
            got.append(bytes((await h.follower_fetch(2, 0, max_wait_ms=10_000)).records))
        tg.start_soon(poll)
        await _settle()
        await h.produce(1, acks=1)
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.01)
    assert got[0]


async def test_a_consumer_long_poll_wakes_when_the_high_watermark_moves(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:
        async def poll() -> None:
            got.append(bytes((await h.consumer_fetch(0, max_wait_ms=10_000)).records))
        tg.start_soon(poll)
        await _settle()
        await h.produce(1, acks=1)
        await _settle()
        assert not got  # appended, not committed
        await h.follower_fetch(2, 1)
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.01)
    assert got[0]


# -- KIP-392 -------------------------------------------------------------------------------------

SELECTOR = {"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"}


@pytest.fixture
async def rack_h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, ManualClock(), **SELECTOR)
    harness.seam.racks = {1: "a", 2: "b", 3: "b", 4: "c"}
    async with anyio.create_task_group() as tg:
        await harness.rm.start(tg)
        yield harness
        await harness.rm.stop()
        tg.cancel_scope.cancel()
    harness.close()


async def test_the_leader_sends_a_consumer_to_an_isr_replica_in_its_rack(rack_h: Harness) -> None:
    h = rack_h
    h.open_log()
    h.set_partition(replicas=[1, 2, 3, 4], isr=[1, 2, 3])
    await h.produce(4, acks=1)
    await h.follower_fetch(2, 3)
    await h.follower_fetch(3, 4)
    await h.follower_fetch(4, 4)  # caught up, not (yet) in the ISR
    await _settle()
    # Most caught up in rack b: replica 3. No read, even on a long poll.
    with anyio.fail_after(5):
        r = await h.consumer_fetch(0, rack="b", max_wait_ms=10_000)
    assert r.preferred_read_replica == 3 and r.records == b"" and r.high_watermark == 3
    assert (await h.consumer_fetch(0, rack="a")).preferred_read_replica == -1  # the leader's rack
    assert (await h.consumer_fetch(0, rack="z")).preferred_read_replica == -1  # no replica there
    assert (await h.consumer_fetch(0, rack="")).preferred_read_replica == -1  # no rack
    r = await h.consumer_fetch(0, rack=None)  # Fetch before v11: no client metadata
    assert r.preferred_read_replica == -1 and r.records
    # A replica that does not hold the offset asked for is not chosen.
    assert (await h.consumer_fetch(4, rack="b")).preferred_read_replica == 3
    # Replica 4 is in rack c but not in the ISR ... unless the expansion committed.
    state = h.rm.leader_state(TP)
    assert state is not None
    expected = 4 if 4 in state.isr else -1
    assert (await h.consumer_fetch(0, rack="c")).preferred_read_replica == expected


async def test_without_a_selector_the_leader_serves_every_consumer(h: Harness) -> None:
    h.seam.racks = {1: "a", 2: "b"}
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    await h.produce(1, acks=1)
    await h.follower_fetch(2, 1)
    r = await h.consumer_fetch(0, rack="b")
    assert r.preferred_read_replica == -1 and r.records


async def test_a_follower_serves_consumers_with_client_metadata_up_to_its_high_watermark(h: Harness) -> None:
    plog = h.open_log(records=4)
    plog.update_high_watermark(2)  # as the fetcher leaves it
    h.set_partition(leader=2, replicas=[1, 2], isr=[2, 1], epoch=3)
    r = await h.consumer_fetch(0, rack="")
    assert r.error_code == ErrorCode.NONE and r.high_watermark == 2 and r.records
    assert (await h.consumer_fetch(2, rack="")).records == b""
    assert (await h.consumer_fetch(0, rack=None)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert (await h.consumer_fetch(0, rack="", epoch=2)).error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert (await h.consumer_fetch(0, rack="", epoch=4)).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    # A long poll at the follower's HW wakes when the fetcher moves it.
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:
        async def poll() -> None:
            got.append(bytes((await h.consumer_fetch(2, rack="", max_wait_ms=10_000)).records))
        tg.start_soon(poll)
        await _settle()
        assert not got
        plog.update_high_watermark(4)
        h.rm.notify_partition_changed(TP)
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.01)
    assert got[0]
    # Offsets and produce stay with the leader.
    assert h.rm.fetch_offset_for_timestamp(TP, -1).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert (await h.produce(1, acks=1)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


async def test_a_consumer_on_a_broker_without_the_replica(h: Harness) -> None:
    h.set_partition(leader=2, replicas=[2, 3])
    assert (await h.consumer_fetch(0, rack="")).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


# -- many leaderships at once ------------------------------------------------------------------

async def test_many_new_leaderships_write_their_epochs_off_the_loop_and_take_writes_after(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from kbroker.log.leader_epoch import LEADER_EPOCH_CHECKPOINT_FILE
    from kbroker.replica.manager import BULK_LEADERSHIPS

    n = BULK_LEADERSHIPS + 8
    logs = [h.open_log(index=i) for i in range(n)]
    writers: list[str] = []
    gate = threading.Event()
    real_write = PartitionLog.write_leader_epochs

    def write(self: PartitionLog) -> None:
        gate.wait(10)
        writers.append(threading.current_thread().name)
        real_write(self)

    monkeypatch.setattr(PartitionLog, "write_leader_epochs", write)
    changes = []
    for i in range(n):
        new = PartitionInfo(TOPIC, i, ME, 3, [1, 2], [1], partition_epoch=1)
        h.infos[(TOPIC, i)] = new
        changes.append((None, new))
    h.rm.apply_partitions(changes)
    # Led already (in memory), but nothing of epoch 3 may reach the disk before the epoch does.
    assert all(plog.latest_epoch == 3 for plog in logs)
    assert not (logs[0].dir / LEADER_EPOCH_CHECKPOINT_FILE).exists()
    assert (await h.produce(1)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert logs[0].log_end_offset == 0
    gate.set()
    with anyio.fail_after(10):
        while len(writers) < n:
            await anyio.sleep(0.01)
        await _settle()
    assert threading.main_thread().name not in writers
    assert (logs[0].dir / LEADER_EPOCH_CHECKPOINT_FILE).read_text().split() == ["0", "1", "3", "0"]
    assert (await h.produce(1)).error_code == ErrorCode.NONE


async def test_a_few_new_leaderships_write_their_epochs_at_once(h: Harness) -> None:
    from kbroker.log.leader_epoch import LEADER_EPOCH_CHECKPOINT_FILE

    plog = h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1], epoch=2)
    assert (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).read_text().split() == ["0", "1", "2", "0"]
    assert (await h.produce(1)).error_code == ErrorCode.NONE
