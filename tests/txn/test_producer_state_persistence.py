"""Producer state across segment rolls, restarts (clean and not), truncation and expiry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.log import producer_snapshot as snap
from kbroker.log.producer_state import SNAPSHOTS_TO_KEEP, ProducerStateError
from kbroker.log.producer_state_entry import ProducerStateEntry

from .helpers import pbatch

MakeLog = Callable[..., PartitionLog]
DAY_MS = 86_400_000


def _fill(plog: PartitionLog, batches: int, pid: int = 1, n: int = 3) -> list[int]:
    return [plog.append(pbatch(pid, 0, i * n, n), leader_epoch=0).base_offset for i in range(batches)]


def _state(plog: PartitionLog) -> dict[int, tuple[int, list[tuple[int, int]]]]:
    return {pid: (e.producer_epoch, [(b.last_seq, b.last_offset) for b in e.batches])
            for pid, e in plog.producer_state.producers.items()}


def test_snapshot_round_trip_and_corruption(tmp_path: Path) -> None:
    e = ProducerStateEntry(7, 2, 1, 123, None)
    e.add_batch(2, 9, 40, 4, 123)
    e.add_batch(2, 10, 41, 0, 124)
    data = snap.encode(41, [e, ProducerStateEntry(8, 0, current_txn_first_offset=3)])
    out = snap.decode(data, 41)
    assert [(x.producer_id, x.producer_epoch, x.last_timestamp, x.current_txn_first_offset) for x in out] == \
        [(7, 2, 124, None), (8, 0, -1, 3)]
    assert list(out[0].batches) == list(e.batches) and out[0].batches[0].first_seq == 5
    for bad in (data[:-1], data[:10] + bytes([data[10] ^ 1]) + data[11:], b"", b"XXXX" + data[4:]):
        with pytest.raises(snap.SnapshotError):
            snap.decode(bad)
    with pytest.raises(snap.SnapshotError):
        snap.decode(data, 40)


def test_rolls_write_snapshots_and_keep_the_latest(make_log: MakeLog) -> None:
    plog = make_log(segment_bytes=250)
    _fill(plog, 12)
    bases = [s.base_offset for s in plog.segments]
    assert len(bases) > SNAPSHOTS_TO_KEEP + 1
    assert snap.list_snapshots(plog.dir) == bases[-SNAPSHOTS_TO_KEEP:]
    # Each snapshot holds exactly the batches below its offset.
    at = bases[-1]
    entry = {e.producer_id: e for e in snap.read_snapshot(plog.dir, at)}[1]
    assert entry.last_offset == at - 1


def test_clean_restart_keeps_duplicates_and_sequences(make_log: MakeLog) -> None:
    plog = make_log(segment_bytes=250)
    firsts = _fill(plog, 8)
    before = _state(plog)
    leo = plog.log_end_offset
    plog.close()
    assert snap.list_snapshots(plog.dir)[-1] == leo  # written at close: nothing to replay
    again = make_log(segment_bytes=250)
    assert _state(again) == before
    assert again.append(pbatch(1, 0, 21, 3), leader_epoch=0).base_offset == firsts[-1]  # duplicate
    assert again.append(pbatch(1, 0, 12, 3), leader_epoch=0).base_offset == firsts[4]  # older duplicate
    assert again.log_end_offset == leo
    with pytest.raises(ProducerStateError) as info:
        again.append(pbatch(1, 0, 25), leader_epoch=0)
    assert info.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert again.append(pbatch(1, 0, 24), leader_epoch=0).base_offset == leo


@pytest.mark.parametrize("keep", ["none", "older"])
def test_unclean_restart_replays_the_log(make_log: MakeLog, keep: str) -> None:
    plog = make_log(segment_bytes=250)
    _fill(plog, 8)
    plog.append(pbatch(2, 4, 0, 2), leader_epoch=0)
    before = _state(plog)
    plog.close(snapshot=False)  # a crash: no snapshot at the log end
    offsets = snap.list_snapshots(plog.dir)
    doomed = offsets if keep == "none" else offsets[-1:]
    for off in doomed:
        snap.delete_snapshot(plog.dir, off)
    again = make_log(clean=False, segment_bytes=250)
    assert _state(again) == before
    assert again.producer_state.map_end_offset == again.log_end_offset


def test_corrupt_and_stale_snapshots_are_discarded(make_log: MakeLog) -> None:
    plog = make_log()
    _fill(plog, 3)
    before = _state(plog)
    plog.close()
    path = snap.snapshot_path(plog.dir, 9)
    path.write_bytes(path.read_bytes()[:-3])  # torn
    snap.write_snapshot(plog.dir, 50, [])  # above the log end: from a log since truncated
    again = make_log(clean=False)
    assert _state(again) == before
    assert snap.list_snapshots(plog.dir) == []


def test_truncation_rebuilds_state(make_log: MakeLog) -> None:
    plog = make_log(segment_bytes=250)
    firsts = _fill(plog, 8)
    plog.truncate_to(firsts[5])
    assert all(off <= firsts[5] for off in snap.list_snapshots(plog.dir))
    entry = plog.producer_state.producers[1]
    assert entry.last_seq == 14 and entry.last_offset == firsts[5] - 1
    # Batch 5 is gone, so its retry is appended anew, not answered as a duplicate.
    assert plog.append(pbatch(1, 0, 15, 3), leader_epoch=0).base_offset == firsts[5]
    plog.truncate_fully_and_start_at(100)
    assert plog.producer_state.producers == {} and snap.list_snapshots(plog.dir) == []
    assert plog.append(pbatch(1, 0, 99), leader_epoch=0).base_offset == 100


def test_idle_producers_expire(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    plog.append(pbatch(1, 0, 0, ts=clock.time_ms()), leader_epoch=0)
    assert plog.maybe_expire_producers(DAY_MS, 600_000) == 0
    clock.advance(DAY_MS - 1)
    plog.append(pbatch(2, 0, 0, ts=clock.time_ms()), leader_epoch=0)
    assert plog.maybe_expire_producers(DAY_MS, 600_000) == 0  # checked at most every interval
    clock.advance(600_000)
    assert plog.maybe_expire_producers(DAY_MS, 600_000) == 1
    assert set(plog.producer_state.producers) == {2}
    # Forgotten: a retry is no longer recognised and any sequence starts it afresh.
    assert plog.append(pbatch(1, 0, 0, ts=clock.time_ms()), leader_epoch=0).base_offset == 2
