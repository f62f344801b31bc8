"""The fetch session cache on its own (no broker): epochs, eviction and what responses list."""

from __future__ import annotations

from kbroker.clock import ManualClock
from kbroker.replica.fetch_session import FetchSessionCache, next_epoch
from kbroker.replica.types import FetchResult, PartitionFetch

P0, P1 = ("t", 0), ("t", 1)


def _result(hw: int, records: bytes = b"", error: int = 0) -> FetchResult:
    return FetchResult(error_code=error, high_watermark=hw, last_stable_offset=hw, log_start_offset=0,
                       records=records)


def _session(cache: FetchSessionCache) -> int:
    ctx = cache.new_context(0, 0, [(P0, PartitionFetch(0, 100)), (P1, PartitionFetch(0, 100))], [], False)
    sid, sent = ctx.respond([(P0, _result(5)), (P1, _result(5))])
    assert len(sent) == 2
    return sid


def test_next_epoch_wraps_to_one() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(0x7FFFFFFF) == 1


def test_incremental_lists_only_changes_and_rotates_partitions_with_data() -> None:
    cache = FetchSessionCache(ManualClock())
    sid = _session(cache)
    ctx = cache.new_context(sid, 1, [], [], False)
    assert [k for k, _ in ctx.partitions] == [P0, P1]
    _, sent = ctx.respond([(P0, _result(5)), (P1, _result(6))])
    assert [k for k, _ in sent] == [P1]  # only the moved watermark
    ctx = cache.new_context(sid, 2, [], [], False)
    _, sent = ctx.respond([(P0, _result(5, b"data")), (P1, _result(6))])
    assert [k for k, _ in sent] == [P0]
    # P0 returned data, so it now reads last (fairness across partitions).
    assert [k for k, _ in cache.new_context(sid, 3, [], [], False).partitions] == [P1, P0]


def test_errors_are_always_sent_and_reset_the_watermark() -> None:
    cache = FetchSessionCache(ManualClock())
    sid = _session(cache)
    _, sent = cache.new_context(sid, 1, [], [], False).respond([(P0, _result(-1, error=6)), (P1, _result(5))])
    assert [k for k, _ in sent] == [P0]
    # Once the error clears the partition is sent again even with the old watermark.
    _, sent = cache.new_context(sid, 2, [], [], False).respond([(P0, _result(5)), (P1, _result(5))])
    assert [k for k, _ in sent] == [P0]


def test_updated_fetch_offsets_are_kept() -> None:
    cache = FetchSessionCache(ManualClock())
    sid = _session(cache)
    ctx = cache.new_context(sid, 1, [(P1, PartitionFetch(42, 100))], [], False)
    assert dict(ctx.partitions)[P1].fetch_offset == 42
    assert dict(cache.new_context(sid, 2, [], [], False).partitions)[P1].fetch_offset == 42


def test_full_cache_evicts_only_stale_sessions() -> None:
    clock = ManualClock()
    cache = FetchSessionCache(clock, max_sessions=2, eviction_after_s=10)
    first = _session(cache)
    _session(cache)
    assert _session(cache) == 0  # full and nothing stale: no session
    clock.advance(11_000)
    third = _session(cache)
    assert third != 0 and cache.get(first) is None and len(cache) == 2


def test_partitions_held_by_sessions_are_bounded() -> None:
    cache = FetchSessionCache(ManualClock(), max_partitions=3)
    sid = _session(cache)
    assert cache.partition_count == 2
    # A full fetch that would exceed the budget is answered without a session.
    ctx = cache.new_context(0, 0, [(P0, PartitionFetch(0, 100)), (P1, PartitionFetch(0, 100))], [], False)
    assert ctx.respond([(P0, _result(5)), (P1, _result(5))])[0] == 0
    # Growing a session past the budget drops it; the client starts over with a full fetch.
    ctx = cache.new_context(sid, 1, [(("t", 2), PartitionFetch(0, 100)), (("t", 3), PartitionFetch(0, 100))], [], False)
    assert ctx.error_code == 70  # FETCH_SESSION_ID_NOT_FOUND
    assert cache.get(sid) is None and cache.partition_count == 0
    # Forgetting partitions returns them to the budget.
    sid = _session(cache)
    cache.new_context(sid, 1, [], [P1], False)
    assert cache.partition_count == 1
    cache.new_context(sid, 2, [], [P0], False)  # emptied: closed
    assert cache.partition_count == 0 and len(cache) == 0
