"""PartitionLog for replication: leader epochs (assignment, cache across restarts and
truncations) and follower appends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.log.errors import KafkaStorageError, LogError
from kbroker.log.leader_epoch import LEADER_EPOCH_CHECKPOINT_FILE, LeaderEpochCache
from kbroker.records.batch import BatchError, iter_headers
from kbroker.records.builder import NewRecord, build_batch, build_control_batch
from kbroker.records.record import ControlType

MakeLog = Callable[..., PartitionLog]


def batch(n: int = 1, *, base: int = 0, epoch: int = -1, ts: int = 1_000, pid: int = -1, producer_epoch: int = -1,
          seq: int = -1, transactional: bool = False) -> bytes:
    return build_batch([NewRecord(None, b"v%d" % i, (), ts + i) for i in range(n)], base_offset=base,
                       partition_leader_epoch=epoch, producer_id=pid, producer_epoch=producer_epoch,
                       base_sequence=seq, transactional=transactional)


def epochs(plog: PartitionLog) -> list[tuple[int, int]]:
    return [(e.epoch, e.start_offset) for e in plog.leader_epoch_cache.entries]


def epoch_file(plog: PartitionLog) -> str:
    return (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).read_text()


# -- leader appends -------------------------------------------------------------------------
def test_leader_append_assigns_each_new_epoch_at_its_first_offset(make_log: MakeLog) -> None:
    plog = make_log()
    assert plog.latest_epoch == -1 and epochs(plog) == []
    plog.append(batch(3), leader_epoch=0)
    plog.append(batch(2), leader_epoch=0)
    assert epochs(plog) == [(0, 0)] and epoch_file(plog) == "0\n1\n0 0\n"
    plog.append(batch(1), leader_epoch=2)
    assert epochs(plog) == [(0, 0), (2, 5)] and plog.latest_epoch == 2
    plog.append(batch(1), leader_epoch=1)  # a stale epoch changes nothing
    assert epochs(plog) == [(0, 0), (2, 5)]
    assert [h.partition_leader_epoch for _, h in iter_headers(plog.read(0, 1 << 20))] == [0, 0, 2, 1]


def test_leader_append_touches_the_cache_only_when_the_epoch_is_new(make_log: MakeLog,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plog = make_log()
    calls: list[tuple[int, int]] = []
    real = LeaderEpochCache.assign

    def counting(self: LeaderEpochCache, epoch: int, start: int) -> bool:
        calls.append((epoch, start))
        return real(self, epoch, start)

    monkeypatch.setattr(LeaderEpochCache, "assign", counting)
    for _ in range(50):
        plog.append(batch(), leader_epoch=4)
    assert calls == [(4, 0)]


def test_leader_append_with_no_epoch_records_none(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(), leader_epoch=-1)
    assert epochs(plog) == [] and not (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).exists()


def test_failed_epoch_write_fails_the_append_before_any_data(make_log: MakeLog,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plog = make_log()
    plog.append(batch(), leader_epoch=0)

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("kbroker.fs.atomic_write", fail)
    with pytest.raises(KafkaStorageError):
        plog.append(batch(), leader_epoch=1)
    assert plog.log_end_offset == 1 and plog.active_segment.size == len(batch())


def test_assign_leader_epoch_starts_the_epoch_at_the_log_end(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(4), leader_epoch=0)
    plog.assign_leader_epoch(3)
    assert epochs(plog) == [(0, 0), (3, 4)] and plog.latest_epoch == 3
    plog.append(batch(2), leader_epoch=3)  # already known: no new entry
    assert epochs(plog) == [(0, 0), (3, 4)]
    assert plog.end_offset_for_epoch(0) == (0, 4)
    assert plog.end_offset_for_epoch(1) == (0, 4)
    assert plog.end_offset_for_epoch(3) == (3, 6)
    assert plog.end_offset_for_epoch(4) == (-1, -1)
    assert plog.end_offset_for_epoch(-1) == (-1, -1)


def test_end_offset_for_epoch_of_a_closed_log(make_log: MakeLog) -> None:
    plog = make_log()
    plog.close()
    with pytest.raises(KafkaStorageError):
        plog.end_offset_for_epoch(0)


# -- the cache across restarts ------------------------------------------------------------------
def test_epochs_survive_a_restart(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(2), leader_epoch=0)
    plog.append(batch(2), leader_epoch=5)
    plog.close()
    assert epochs(make_log()) == [(0, 0), (5, 2)]


def test_missing_file_is_rebuilt_from_the_batches(make_log: MakeLog) -> None:
    plog = make_log(segment_bytes=200)
    for epoch in (0, 0, 1, 1, 3):
        plog.append(batch(2), leader_epoch=epoch)
    assert len(plog.segments) > 1
    plog.close()
    (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).unlink()
    reopened = make_log(segment_bytes=200)
    assert epochs(reopened) == [(0, 0), (1, 4), (3, 8)]
    assert epoch_file(reopened) == "0\n3\n0 0\n1 4\n3 8\n"


def test_corrupt_file_is_rebuilt_from_the_batches(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(2), leader_epoch=1)
    plog.append(batch(2), leader_epoch=2)
    plog.close()
    (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).write_text("0\n7\nnot a checkpoint\n")
    assert epochs(make_log()) == [(1, 0), (2, 2)]


def test_empty_log_without_file_opens_with_no_epochs(make_log: MakeLog) -> None:
    plog = make_log()
    plog.close()
    reopened = make_log()
    assert epochs(reopened) == [] and not (reopened.dir / LEADER_EPOCH_CHECKPOINT_FILE).exists()


def test_entries_past_the_log_end_are_cut_at_open(make_log: MakeLog) -> None:
    # The file is written before the data: a crash can leave an epoch whose data is lost.
    plog = make_log()
    plog.append(batch(3), leader_epoch=0)
    plog.close()
    (plog.dir / LEADER_EPOCH_CHECKPOINT_FILE).write_text("0\n3\n0 0\n1 3\n2 9\n")
    assert epochs(make_log()) == [(0, 0)]


def test_entries_below_the_log_start_are_cut_at_open(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(3), leader_epoch=0)
    plog.append(batch(3), leader_epoch=1)
    plog.close()
    assert epochs(make_log(log_start_offset=4)) == [(1, 4)]


# -- truncation -----------------------------------------------------------------------------
def test_truncate_to_cuts_the_epochs(make_log: MakeLog) -> None:
    plog = make_log()
    for epoch in (0, 1, 2):
        plog.append(batch(2), leader_epoch=epoch)
    plog.truncate_to(4)
    assert epochs(plog) == [(0, 0), (1, 2)] and plog.latest_epoch == 1
    assert epoch_file(plog) == "0\n2\n0 0\n1 2\n"
    plog.append(batch(), leader_epoch=4)
    assert epochs(plog) == [(0, 0), (1, 2), (4, 4)]


def test_truncate_to_the_first_offset_drops_every_epoch(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(2), leader_epoch=0)
    plog.truncate_to(0)
    assert epochs(plog) == [] and plog.log_end_offset == 0


def test_truncate_fully_clears_the_epochs(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(2), leader_epoch=3)
    plog.truncate_fully_and_start_at(50)
    assert epochs(plog) == [] and epoch_file(plog) == "0\n0\n"
    plog.close()
    assert epochs(make_log()) == []


def test_delete_records_moves_the_first_epoch_start(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(batch(3), leader_epoch=0)
    plog.append(batch(3), leader_epoch=1)
    plog.delete_records_before(2)
    assert epochs(plog) == [(0, 2), (1, 3)]
    plog.delete_records_before(5)
    assert epochs(plog) == [(1, 5)]
    # The file is left to the next change (no write on the event loop); reopening cuts it the same.
    assert epoch_file(plog) == "0\n2\n0 0\n1 3\n"
    plog.close()
    assert epochs(make_log(log_start_offset=5)) == [(1, 5)]


# -- follower appends -----------------------------------------------------------------------
def test_follower_append_keeps_offsets_epochs_and_timestamps(make_log: MakeLog) -> None:
    plog = make_log()
    data = batch(3, base=0, epoch=2, ts=500) + batch(2, base=3, epoch=2, ts=900) + batch(1, base=5, epoch=4, ts=700)
    info = plog.append_as_follower(data)
    assert (info.base_offset, info.last_offset, info.record_count, info.batch_count) == (0, 5, 6, 3)
    assert info.log_append_time_ms == -1
    assert plog.log_end_offset == 6
    assert bytes(plog.read(0, 1 << 20)) == data  # byte for byte
    assert epochs(plog) == [(2, 0), (4, 5)]
    assert plog.high_watermark == 0  # the leader moves it
    assert plog.offset_for_timestamp(800) == (3, 900)


def test_follower_append_larger_than_a_segment_goes_in_parts(make_log: MakeLog) -> None:
    # A fetch answer of many batches may exceed segment.bytes: each part fits a segment.
    data = b"".join(batch(2, base=2 * i, epoch=1 + i // 3) for i in range(6))
    one = len(batch(2, base=0, epoch=1))
    plog = make_log(segment_bytes=2 * one + 10)
    info = plog.append_as_follower(data)
    assert (info.base_offset, info.last_offset, info.record_count, info.batch_count) == (0, 11, 12, 6)
    assert plog.log_end_offset == 12 and len(plog.segments) == 3
    assert epochs(plog) == [(1, 0), (2, 6)]
    assert b"".join(bytes(plog.read(o, 1 << 20, upper_bound=12)) for o in (0, 4, 8)) == data


def test_follower_append_of_one_batch_larger_than_a_segment_is_refused(make_log: MakeLog) -> None:
    plog = make_log(segment_bytes=100)
    with pytest.raises(BatchError):
        plog.append_as_follower(batch(20, base=0, epoch=0))
    assert plog.log_end_offset == 0


def test_follower_append_continues_at_the_log_end(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append_as_follower(batch(2, base=0, epoch=0))
    plog.append_as_follower(batch(2, base=2, epoch=0))
    assert plog.log_end_offset == 4 and epochs(plog) == [(0, 0)]


def test_follower_append_accepts_a_gap_left_by_compaction(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append_as_follower(batch(2, base=0, epoch=0))
    plog.append_as_follower(batch(1, base=7, epoch=0))
    assert plog.log_end_offset == 8
    assert [h.base_offset for _, h in iter_headers(plog.read(2, 1 << 20))] == [7]


@pytest.mark.parametrize("data", [
    batch(1, base=2),  # below the log end
    batch(2, base=3) + batch(1, base=4),  # overlapping batches
    batch(1, base=5) + batch(1, base=3),  # going backwards
])
def test_follower_append_out_of_order_is_refused(make_log: MakeLog, data: bytes) -> None:
    plog = make_log()
    plog.append_as_follower(batch(3, base=0, epoch=1))
    size = plog.active_segment.size
    with pytest.raises(LogError, match="out of order") as e:
        plog.append_as_follower(data)
    assert e.value.error_code == ErrorCode.UNKNOWN_SERVER_ERROR
    assert plog.log_end_offset == 3 and plog.active_segment.size == size and epochs(plog) == [(1, 0)]


def test_follower_append_checks_crcs(make_log: MakeLog) -> None:
    plog = make_log()
    data = bytearray(batch(2, base=0, epoch=1))
    data[-1] ^= 0xFF
    with pytest.raises(BatchError) as e:
        plog.append_as_follower(bytes(data))
    assert e.value.error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 0 and epochs(plog) == []


def test_follower_append_refuses_a_partial_trailing_batch(make_log: MakeLog) -> None:
    # The fetcher trims a partial batch at the end of a fetch response; the log takes whole
    # batches only and writes nothing otherwise.
    plog = make_log()
    whole = batch(2, base=0, epoch=1)
    with pytest.raises(BatchError):
        plog.append_as_follower(whole + batch(2, base=2, epoch=1)[:30])
    assert plog.log_end_offset == 0 and plog.active_segment.size == 0
    plog.append_as_follower(whole)
    assert plog.log_end_offset == 2


def test_follower_append_ignores_max_message_bytes(make_log: MakeLog) -> None:
    plog = make_log(max_message_bytes=100)
    plog.append_as_follower(batch(20, base=0, epoch=0))
    assert plog.log_end_offset == 20


def test_follower_append_takes_any_producer_sequence(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append_as_follower(batch(2, base=0, epoch=0, pid=7, producer_epoch=1, seq=0))
    # A gap in sequences and an older producer epoch: the leader accepted them; a client
    # append would be refused.
    plog.append_as_follower(batch(1, base=2, epoch=0, pid=7, producer_epoch=1, seq=9))
    plog.append_as_follower(batch(1, base=3, epoch=0, pid=7, producer_epoch=0, seq=0))
    entry = plog.producer_state.last_entry(7)
    assert entry is not None and entry.last_offset == 3
    assert plog.log_end_offset == 4


def test_follower_append_builds_producer_state_and_indexes_aborted_transactions(make_log: MakeLog) -> None:
    plog = make_log()
    plog.update_high_watermark(0)
    plog.high_watermark_follows_leo = False
    plog.append_as_follower(batch(2, base=0, epoch=0, pid=5, producer_epoch=0, seq=0, transactional=True))
    assert plog.has_ongoing_transaction(5)
    abort = build_control_batch(ControlType.ABORT, producer_id=5, producer_epoch=0, coordinator_epoch=3,
                                base_offset=2, timestamp=2_000, partition_leader_epoch=0)
    plog.append_as_follower(abort)
    assert not plog.has_ongoing_transaction(5)
    assert plog.has_aborted_transactions
    assert plog.collect_aborted_transactions(0, 3) == [(5, 0)]
    assert plog.producer_state.last_entry(5).coordinator_epoch == 3  # type: ignore[union-attr]
    # Until the leader's high watermark passes the marker, the transaction bounds the LSO.
    assert plog.last_stable_offset == 0
    plog.update_high_watermark(3)
    assert plog.last_stable_offset == 3
    plog.close()
    reopened = make_log()
    assert reopened.collect_aborted_transactions(0, 3) == [(5, 0)]
    assert epochs(reopened) == [(0, 0)]


def test_follower_append_of_a_fenced_marker_is_kept(make_log: MakeLog) -> None:
    # A marker from an older coordinator epoch is logged, not refused, on the follower.
    plog = make_log()
    plog.append_as_follower(build_control_batch(ControlType.COMMIT, producer_id=5, producer_epoch=0,
                                                coordinator_epoch=4, base_offset=0, partition_leader_epoch=0))
    plog.append_as_follower(build_control_batch(ControlType.ABORT, producer_id=5, producer_epoch=0,
                                                coordinator_epoch=2, base_offset=1, partition_leader_epoch=0))
    assert plog.log_end_offset == 2


def test_follower_truncates_and_continues_in_a_new_epoch(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append_as_follower(batch(3, base=0, epoch=1) + batch(1, base=3, epoch=2) + batch(2, base=4, epoch=2))
    # The new leader's epoch 2 ended at 4: the follower cuts its divergent tail.
    plog.truncate_to(4)
    assert epochs(plog) == [(1, 0), (2, 3)] and plog.log_end_offset == 4
    plog.append_as_follower(batch(2, base=4, epoch=3))
    assert epochs(plog) == [(1, 0), (2, 3), (3, 4)] and plog.log_end_offset == 6


def test_follower_append_failure_restores_the_epochs(make_log: MakeLog, monkeypatch: pytest.MonkeyPatch) -> None:
    plog = make_log()
    plog.append_as_follower(batch(1, base=0, epoch=1))

    def fail(*_: object, **__: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(type(plog.active_segment), "append", fail)
    with pytest.raises(KafkaStorageError):
        plog.append_as_follower(batch(1, base=1, epoch=2))
    assert epochs(plog) == [(1, 0)] and plog.log_end_offset == 1
    assert epoch_file(plog) == "0\n1\n1 0\n"


def test_follower_append_to_a_closed_log(make_log: MakeLog, tmp_path: Path) -> None:
    plog = make_log()
    plog.close()
    with pytest.raises(KafkaStorageError):
        plog.append_as_follower(batch(1, base=0, epoch=0))
