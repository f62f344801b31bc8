"""Two brokers' replica managers in one event loop: a leader, and a follower fed by a minimal
stand-in for the follower fetcher (fetch from the leader, append, take its high watermark)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.replica.types import AppendResult, FetchParams, PartitionFetch

from .replication_helpers import TP, Harness

pytestmark = pytest.mark.anyio
SELECTOR = {"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"}


async def _replicate(leader: Harness, follower: Harness, epoch: int) -> None:
    """One fetch of the follower from the leader, as the follower fetcher does it."""
    flog = follower.logs[(TP.topic, TP.partition)]
    req = PartitionFetch(flog.log_end_offset, 1 << 20, current_leader_epoch=epoch,
                         log_start_offset=flog.log_start_offset)
    result = (await leader.rm.fetch([(TP, req)], FetchParams(replica_id=follower.node_id)))[0][1]
    assert result.error_code == ErrorCode.NONE
    if result.records:
        if hasattr(flog, "append_as_follower"):
            flog.append_as_follower(bytes(result.records))
        else:  # in sync from offset 0, one epoch: the offsets come out the same
            flog.append(bytes(result.records), leader_epoch=epoch)
    flog.update_high_watermark(min(result.high_watermark, flog.log_end_offset))
    follower.rm.notify_partition_changed(TP)


async def test_leader_and_follower(tmp_path: Path) -> None:
    clock = ManualClock()
    b1 = Harness(tmp_path / "b1", clock, node_id=1, **SELECTOR)
    b2 = Harness(tmp_path / "b2", clock, node_id=2, **SELECTOR)
    for b in (b1, b2):
        b.seam.racks = {1: "a", 2: "b"}
        b.open_log()
    try:
        async with anyio.create_task_group() as tg:
            await b1.rm.start(tg)
            await b2.rm.start(tg)
            for b in (b1, b2):
                b.set_partition(leader=1, replicas=[1, 2], isr=[1, 2])
            assert b2.seam.fetchers.calls[-1] == ("add", TP, 1, 0)

            # acks=all on the leader completes once the follower has fetched past the records.
            out: list[AppendResult] = []

            async def produce() -> None:
                out.append(await b1.produce(3, timeout_ms=10_000))
            tg.start_soon(produce)
            await anyio.sleep(0)
            await _replicate(b1, b2, 0)  # gets offsets 0-2
            assert not out
            await _replicate(b1, b2, 0)  # fetches at 3: the leader's HW moves
            with anyio.fail_after(5):
                while not out:
                    await anyio.sleep(0.01)
            assert out[0].error_code == ErrorCode.NONE
            assert b2.logs[("t", 0)].high_watermark == 0  # learnt at the next fetch
            await _replicate(b1, b2, 0)
            assert b2.logs[("t", 0)].high_watermark == 3

            # A consumer in rack b is sent to broker 2, which serves it up to its HW.
            assert (await b1.consumer_fetch(0, rack="b")).preferred_read_replica == 2
            served = await b2.consumer_fetch(0, rack="b")
            assert served.error_code == ErrorCode.NONE and served.high_watermark == 3 and served.records

            # Leadership moves to broker 2: broker 1 follows it, broker 2 leads from its log end.
            for b in (b1, b2):
                b.set_partition(leader=2, replicas=[1, 2], isr=[2, 1], epoch=1, partition_epoch=1)
            assert b1.seam.fetchers.calls[-1] == ("add", TP, 2, 1)
            assert b1.rm.leader_state(TP) is None
            state = b2.rm.leader_state(TP)
            assert state is not None and state.epoch_start_offset == 3
            assert (await b1.produce(1)).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            out.clear()
            tg.start_soon(_producer(b2, out))
            await anyio.sleep(0)
            await _replicate(b2, b1, 1)
            await _replicate(b2, b1, 1)
            with anyio.fail_after(5):
                while not out:
                    await anyio.sleep(0.01)
            assert out[0].error_code == ErrorCode.NONE and out[0].base_offset == 3
            await b1.rm.stop()
            await b2.rm.stop()
    finally:
        b1.close()
        b2.close()


def _producer(b: Harness, out: list[AppendResult]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        out.append(await b.produce(1, timeout_ms=10_000))
    return run
