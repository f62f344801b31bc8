"""SharePartition on a manual clock: acquisition, locks, delivery counts, acknowledgements, durability."""

from __future__ import annotations

import uuid

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.groups.timers import Scheduler
from kbroker.share.partition import AcknowledgeError, RecordState, SharePartition, ShareSettings
from kbroker.share.state_store import (
    SNAPSHOT_KEY,
    UPDATE_KEY,
    MemoryShareStateStore,
    decode_key,
    decode_value,
    encode_key,
    encode_update,
    replay,
)

ACCEPT, RELEASE, REJECT, GAP = 1, 2, 3, 0


def make(start: int = 0, **kw: int) -> tuple[SharePartition, ManualClock, Scheduler, list[SharePartition]]:
    clock = ManualClock()
    scheduler = Scheduler(clock)
    changes: list[SharePartition] = []
    settings = ShareSettings(**{"lock_duration_ms": 1000, "delivery_count_limit": 3, "max_record_locks": 100, **kw})
    sp = SharePartition("g", "t", 0, start, scheduler=scheduler, settings=lambda: settings, on_change=changes.append)
    return sp, clock, scheduler, changes


def batches(*ranges: tuple[int, int]) -> list[tuple[int, int, bool]]:
    return [(a, b, False) for a, b in ranges]


def test_acquire_new_records_then_nothing_more_until_released() -> None:
    sp, _, _, _ = make()
    got = sp.acquire("m1", batches((0, 4)), 100)
    assert [(r.first_offset, r.last_offset, r.delivery_count) for r in got] == [(0, 4, 1)]
    assert sp.next_fetch_offset() == 5
    assert sp.acquire("m2", batches((0, 4)), 100) == []  # all acquired by m1
    assert sp.state_of(2) == (RecordState.ACQUIRED, 1)


def test_lock_expiry_makes_records_available_again_with_delivery_count() -> None:
    sp, clock, scheduler, changes = make()
    sp.acquire("m1", batches((0, 2)), 100)
    clock.advance(999)
    scheduler.run_due()
    assert sp.state_of(0) == (RecordState.ACQUIRED, 1)
    clock.advance(1)
    scheduler.run_due()
    assert sp.state_of(0) == (RecordState.AVAILABLE, 1)
    assert changes == [sp]
    assert sp.next_fetch_offset() == 0
    again = sp.acquire("m2", batches((0, 2)), 100)
    assert [(r.first_offset, r.last_offset, r.delivery_count) for r in again] == [(0, 2, 2)]


def test_delivery_limit_archives_on_expiry_and_on_release() -> None:
    sp, clock, scheduler, _ = make()
    for _ in range(3):
        assert sp.acquire("m1", batches((0, 0)), 100)
        clock.advance(1000)
        scheduler.run_due()
    # Third delivery expired: archived, and the start offset moves past it.
    assert sp.state_of(0) is None
    assert sp.start_offset == 1
    assert sp.acquire("m1", batches((0, 0)), 100) == []
    sp2, _, _, _ = make()
    for _ in range(3):
        sp2.acquire("m1", batches((0, 1)), 100)
        sp2.acknowledge("m1", [(0, 1, [RELEASE])])
    assert sp2.start_offset == 2  # both archived after the third release


def test_accept_release_reject_and_start_offset() -> None:
    sp, _, _, _ = make()
    sp.acquire("m1", batches((0, 5)), 100)
    sp.acknowledge("m1", [(0, 2, [ACCEPT, REJECT, RELEASE]), (3, 3, [ACCEPT])])
    assert sp.start_offset == 2  # 0 accepted, 1 rejected, 2 released (available)
    assert sp.state_of(2) == (RecordState.AVAILABLE, 1)
    assert sp.state_of(3) == (RecordState.ACKNOWLEDGED, 1)
    got = sp.acquire("m2", batches((0, 5)), 100)
    assert [(r.first_offset, r.last_offset, r.delivery_count) for r in got] == [(2, 2, 2)]


def test_acknowledgement_errors_change_nothing() -> None:
    sp, _, _, _ = make()
    sp.acquire("m1", batches((0, 9)), 100)
    cases = [
        ([(0, 3, [ACCEPT])], "m2", ErrorCode.INVALID_RECORD_STATE),  # another member's records
        ([(8, 12, [ACCEPT])], "m1", ErrorCode.INVALID_RECORD_STATE),  # past the fetched records
        ([(0, 3, [ACCEPT]), (2, 5, [ACCEPT])], "m1", ErrorCode.INVALID_REQUEST),  # overlapping
        ([(5, 6, [ACCEPT]), (0, 1, [ACCEPT])], "m1", ErrorCode.INVALID_REQUEST),  # out of order
        ([(0, 3, [ACCEPT, ACCEPT])], "m1", ErrorCode.INVALID_REQUEST),  # types do not match the range
        ([(0, 0, [7])], "m1", ErrorCode.INVALID_REQUEST),  # unknown type
        ([(3, 1, [ACCEPT])], "m1", ErrorCode.INVALID_REQUEST),  # reversed range
        ([(0, 2**62, [ACCEPT])], "m1", ErrorCode.INVALID_RECORD_STATE),  # huge: refused without a walk
    ]
    for acks, member, code in cases:
        with pytest.raises(AcknowledgeError) as e:
            sp.acknowledge(member, acks)
        assert e.value.code == code, acks
    assert all(sp.state_of(o) == (RecordState.ACQUIRED, 1) for o in range(10))
    sp.acknowledge("m1", [(0, 9, [ACCEPT])])
    with pytest.raises(AcknowledgeError) as e:
        sp.acknowledge("m1", [(0, 0, [ACCEPT])])  # already acknowledged: below the start now
    assert e.value.code == ErrorCode.INVALID_RECORD_STATE


def test_gap_acknowledgement_and_control_batches() -> None:
    sp, _, _, _ = make()
    got = sp.acquire("m1", [(0, 1, False), (2, 2, True), (3, 4, False)], 100)
    assert [(r.first_offset, r.last_offset) for r in got] == [(0, 1), (3, 4)]
    sp.acknowledge("m1", [(0, 1, [ACCEPT]), (2, 2, [GAP]), (3, 4, [ACCEPT])])
    assert sp.start_offset == 5


def test_max_record_locks_bounds_the_window() -> None:
    sp, _, _, _ = make(max_record_locks=100)
    got = sp.acquire("m1", batches((0, 499)), 1000)
    assert got[-1].last_offset == 99
    assert not sp.can_acquire()
    sp.acknowledge("m1", [(0, 49, [ACCEPT])])
    assert sp.can_acquire()


def test_max_records_takes_whole_batches() -> None:
    sp, _, _, _ = make()
    got = sp.acquire("m1", batches((0, 4), (5, 9), (10, 14)), 6)
    assert got[-1].last_offset == 9  # the second batch completes, the third is not started


def test_release_member() -> None:
    sp, _, _, _ = make()
    sp.acquire("m1", batches((0, 2)), 100)
    sp.acquire("m2", batches((3, 4)), 100)
    assert sp.release_member("m1") == 3
    assert sp.state_of(0) == (RecordState.AVAILABLE, 1)
    assert sp.state_of(3) == (RecordState.ACQUIRED, 1)


def test_snapshot_restore_keeps_acknowledgements_and_releases_acquired() -> None:
    sp, _, _, _ = make()
    sp.acquire("m1", batches((0, 9)), 100)
    sp.acknowledge("m1", [(0, 1, [ACCEPT]), (3, 3, [ACCEPT]), (4, 4, [REJECT])])
    state = sp.snapshot()
    assert state.start_offset == 2
    sp2, _, _, _ = make()
    sp2.restore(state)
    assert sp2.start_offset == 2 and sp2.end_offset == 10
    assert sp2.state_of(2) == (RecordState.AVAILABLE, 1)
    assert sp2.state_of(3) == (RecordState.ACKNOWLEDGED, 1)
    assert sp2.state_of(4) == (RecordState.ARCHIVED, 1)
    got = sp2.acquire("m9", batches((0, 12)), 100)
    assert [(r.first_offset, r.last_offset, r.delivery_count) for r in got] == [(2, 2, 2), (5, 9, 2), (10, 12, 1)]


def test_state_records_round_trip_in_kafkas_format() -> None:
    sp, _, _, _ = make()
    sp.acquire("m1", batches((0, 5)), 100)
    sp.acknowledge("m1", [(0, 0, [ACCEPT]), (2, 2, [REJECT])])
    store = MemoryShareStateStore()
    key = ("g", uuid.UUID(int=7), 3)
    anyio.run(store.write, key, sp.snapshot())
    k, v = store.records[0]
    assert k[:2] == b"\x00\x00"  # ShareSnapshotKey
    assert decode_key(k) == (SNAPSHOT_KEY, key)
    assert v is not None
    state, epoch = decode_value(SNAPSHOT_KEY, v)
    assert state == sp.snapshot() and epoch == 0
    # A later update applies on top of the snapshot; a tombstone removes the state.
    upd = sp.snapshot()
    upd.batches = [b for b in upd.batches if b.first_offset >= 3]
    upd.batches[0] = type(upd.batches[0])(3, 3, int(RecordState.ACKNOWLEDGED), 1)
    records = list(store.records) + [(encode_key(UPDATE_KEY, key), encode_update(upd, snapshot_epoch=0, leader_epoch=0))]
    merged = replay(iter(records))[key].state
    assert any(b.first_offset <= 3 <= b.last_offset and b.state == RecordState.ACKNOWLEDGED for b in merged.batches)
    anyio.run(store.delete, key)
    assert store.load() == {}
