"""SharePartitionManager without a broker: start offsets per share.auto.offset.reset, stored state at start."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import anyio

from kbroker.clock import ManualClock
from kbroker.common import TopicPartition
from kbroker.share.manager import SharePartitionManager, parse_duration_ms
from kbroker.share.partition import PartitionState, StateBatch
from kbroker.share.state_store import MemoryShareStateStore

TID = uuid.UUID(int=5)
CONFIG = {"group.share.record.lock.duration.ms": 30000, "group.share.delivery.count.limit": 5,
          "group.share.partition.max.record.locks": 2000, "group.share.max.share.sessions": 10}


async def no_records(reads: Sequence[Any], params: Any) -> list[Any]:
    from kbroker.replica.types import FetchResult

    return [(tp, FetchResult(high_watermark=100, log_start_offset=10)) for tp, _ in reads]


def make(reset: str | None, store: MemoryShareStateStore | None = None) -> SharePartitionManager:
    clock = ManualClock(start_ms=1_000_000)
    times: list[int] = []

    def offset_for_time(tp: TopicPartition, ts: int) -> int:
        times.append(ts)
        return 42 if ts >= 1_000_000 - 3_600_000 else -1

    m = SharePartitionManager(CONFIG.__getitem__, clock, store or MemoryShareStateStore(), read=no_records,
                              log_offsets=lambda tp: (10, 100), topic_name=lambda t: "t" if t == TID else None,
                              group_setting=lambda g, k: reset if k == "share.auto.offset.reset" else None,
                              offset_for_time=offset_for_time)
    return m


def test_start_offset_per_reset_strategy() -> None:
    assert make(None).partition("g", TID, 0).start_offset == 100  # latest by default
    assert make("earliest").partition("g", TID, 0).start_offset == 10
    assert make("by_duration:PT1H").partition("g", TID, 0).start_offset == 42
    assert make("by_duration:P2D").partition("g", TID, 0).start_offset == 100  # nothing that old: the end
    assert make("latest").partition("g", uuid.uuid4(), 0) is None  # unknown topic
    assert parse_duration_ms("PT1.5S") == 1500 and parse_duration_ms("1h") is None


def test_stored_state_wins_over_the_reset_strategy_and_acknowledgements_are_written() -> None:
    store = MemoryShareStateStore()
    anyio.run(store.write, ("g", TID, 0), PartitionState(50, 3, [StateBatch(50, 51, 0, 2), StateBatch(52, 52, 2, 1)]))
    m = make("earliest", store)
    assert m.load() == 1
    sp = m.partition("g", TID, 0)
    assert (sp.start_offset, sp.end_offset, sp.state_epoch) == (50, 53, 3)
    assert m.start_offset("g", TID, 0) == 50 and m.initialized("g") == {TID: [0]}

    async def scenario() -> Any:
        code, _, _ = await m.fetch("g", "m1", 0, fetch=[(TID, 0)], forget=[], acks={}, max_wait_ms=0,
                                   min_bytes=1, max_bytes=1000, max_records=10)
        assert code == 0
        sp.acquire("m1", [(50, 51, False)], 10)
        return await m.acknowledge("g", "m1", 1, {(TID, 0): [(50, 51, [1])]})

    code, answers = anyio.run(scenario)
    assert code == 0 and answers[(TID, 0)].ack_error_code == 0
    reloaded = make("latest", store)
    reloaded.load()
    assert reloaded.partition("g", TID, 0).start_offset == 53  # the acknowledgement was written
