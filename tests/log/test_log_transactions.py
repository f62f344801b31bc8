"""Transactions in the partition log: open transactions, markers, fencing, the LSO and ``.txnindex``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.log.producer_state import AppendOrigin, ProducerStateError
from kbroker.log.txn_index import ENTRY_SIZE, AbortedTxn
from kbroker.records.batch import iter_headers
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import ControlType, end_txn_marker

MakeLog = Callable[..., PartitionLog]


def txn_batch(pid: int, seq: int, n: int = 1, *, epoch: int = 0, transactional: bool = True) -> bytes:
    """``n`` records of producer ``pid`` from sequence ``seq``."""
    return build_batch([NewRecord(None, b"v%d" % i, (), 1_000) for i in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, transactional=transactional)


def plain_batch(n: int = 1) -> bytes:
    return build_batch([NewRecord(None, b"p", (), 1_000) for _ in range(n)])


def txn_files(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".txnindex"))


# -- open transactions and the LSO ---------------------------------------------------------------
def test_transactional_batch_opens_a_transaction_and_holds_the_lso(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(plain_batch(2), leader_epoch=0)
    assert plog.last_stable_offset == 2 and not plog.has_ongoing_transaction(7)
    plog.append(txn_batch(7, 0, 3), leader_epoch=0)
    plog.append(plain_batch(1), leader_epoch=0)
    assert plog.has_ongoing_transaction(7)
    assert plog.producer_state.producers[7].current_txn_first_offset == 2
    assert plog.last_stable_offset == 2
    assert plog.high_watermark == 6
    plog.append(txn_batch(7, 3, 1), leader_epoch=0)  # same transaction: first offset kept
    assert plog.producer_state.producers[7].current_txn_first_offset == 2
    info = plog.append_marker(7, 0, 0, True, leader_epoch=0)
    assert info.base_offset == 7 and info.last_offset == 7
    assert not plog.has_ongoing_transaction(7)
    assert plog.last_stable_offset == plog.high_watermark == 8
    assert not plog.has_aborted_transactions and txn_files(plog.dir) == []


def test_lso_is_the_oldest_open_transaction_of_any_producer(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # offset 0
    plog.append(txn_batch(2, 0), leader_epoch=0)  # offset 1
    assert plog.last_stable_offset == 0
    plog.append_marker(1, 0, 0, True, leader_epoch=0)  # offset 2
    assert plog.last_stable_offset == 1
    plog.append_marker(2, 0, 0, False, leader_epoch=0)  # offset 3
    assert plog.last_stable_offset == 4


def test_lso_is_capped_at_the_high_watermark_and_waits_for_the_marker_to_be_replicated(make_log: MakeLog) -> None:
    plog = make_log()
    plog.high_watermark_follows_leo = False
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append(plain_batch(), leader_epoch=0)  # 1
    assert plog.high_watermark == 0 and plog.last_stable_offset == 0
    plog.update_high_watermark(2)
    assert plog.last_stable_offset == 0
    plog.append_marker(1, 0, 0, True, leader_epoch=0)  # 2
    # Decided, but the marker is not below the high watermark yet: still unstable.
    assert plog.last_stable_offset == 0
    plog.update_high_watermark(3)
    assert plog.last_stable_offset == 3


def test_non_transactional_write_during_an_open_transaction_is_invalid_txn_state(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(5, 0), leader_epoch=0)
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(5, 1, transactional=False), leader_epoch=0)
    assert e.value.error_code == ErrorCode.INVALID_TXN_STATE
    assert plog.log_end_offset == 1  # nothing written
    assert plog.producer_state.producers[5].last_seq == 0  # state unchanged
    plog.append_marker(5, 0, 0, True, leader_epoch=0)
    plog.append(txn_batch(5, 1, transactional=False), leader_epoch=0)  # fine once ended
    assert plog.log_end_offset == 3


def test_sequences_still_checked_for_transactional_client_batches(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(5, 0), leader_epoch=0)
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(5, 3), leader_epoch=0)
    assert e.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


# -- markers: format and fencing ------------------------------------------------------------------
def test_marker_batch_is_kafkas_control_batch(make_log: MakeLog, clock) -> None:
    plog = make_log()
    plog.append(txn_batch(9, 0, epoch=4), leader_epoch=3)
    plog.append_marker(9, 4, 17, False, leader_epoch=3)
    data = bytes(plog.read(1, 1 << 20))
    [(_, h)] = list(iter_headers(data))
    assert h.is_control and h.is_transactional
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (9, 4, -1)
    assert h.partition_leader_epoch == 3 and h.record_count == 1
    marker = end_txn_marker(data)
    assert marker is not None and (marker.control_type, marker.coordinator_epoch) == (ControlType.ABORT, 17)
    entry = plog.producer_state.producers[9]
    assert entry.coordinator_epoch == 17 and entry.current_txn_first_offset is None


def test_marker_with_older_producer_epoch_is_invalid_producer_epoch(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(9, 0, epoch=4), leader_epoch=0)
    with pytest.raises(ProducerStateError) as e:
        plog.append_marker(9, 3, 0, True, leader_epoch=0)
    assert e.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert plog.log_end_offset == 1 and plog.has_ongoing_transaction(9)


def test_marker_with_older_coordinator_epoch_is_fenced(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(9, 0), leader_epoch=0)
    plog.append_marker(9, 0, 5, True, leader_epoch=0)
    plog.append(txn_batch(9, 1), leader_epoch=0)
    with pytest.raises(ProducerStateError) as e:
        plog.append_marker(9, 0, 4, False, leader_epoch=0)
    assert e.value.error_code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert plog.has_ongoing_transaction(9)
    plog.append_marker(9, 0, 5, False, leader_epoch=0)  # same coordinator epoch: fine
    assert not plog.has_ongoing_transaction(9)


def test_marker_with_newer_epoch_bumps_the_producer_and_data_restarts_at_sequence_zero(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(9, 0, 2), leader_epoch=0)
    plog.append_marker(9, 1, 0, False, leader_epoch=0)  # abort after a fencing bump
    entry = plog.producer_state.producers[9]
    assert entry.producer_epoch == 1 and entry.is_empty
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(9, 0, epoch=0), leader_epoch=0)
    assert e.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(9, 5, epoch=1), leader_epoch=0)
    assert e.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    plog.append(txn_batch(9, 0, epoch=1), leader_epoch=0)
    assert plog.has_ongoing_transaction(9)


def test_marker_without_an_open_transaction_is_written_and_indexes_nothing(make_log: MakeLog) -> None:
    plog = make_log()
    info = plog.append_marker(3, 0, 0, False, leader_epoch=0)
    assert info.base_offset == 0 and plog.log_end_offset == 1
    assert plog.producer_state.producers[3].producer_epoch == 0
    assert not plog.has_aborted_transactions and txn_files(plog.dir) == []


def test_coordinator_origin_skips_sequence_checks_but_not_epochs(make_log: MakeLog) -> None:
    plog = make_log()
    # The group coordinator writes transactional offsets with base sequence -1.
    plog.append(txn_batch(4, -1, epoch=2), leader_epoch=0, origin=AppendOrigin.COORDINATOR)
    plog.append(txn_batch(4, -1, epoch=2), leader_epoch=0, origin=AppendOrigin.COORDINATOR)
    assert plog.log_end_offset == 2  # no duplicate detection either
    assert plog.producer_state.producers[4].current_txn_first_offset == 0
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(4, -1, epoch=1), leader_epoch=0, origin=AppendOrigin.COORDINATOR)
    assert e.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(ProducerStateError) as e:
        plog.append(txn_batch(4, -1, epoch=2, transactional=False), leader_epoch=0,
                    origin=AppendOrigin.COORDINATOR)
    assert e.value.error_code == ErrorCode.INVALID_TXN_STATE


# -- aborted transactions and .txnindex ----------------------------------------------------------
def test_abort_writes_the_txnindex_entry_in_kafkas_format(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(plain_batch(), leader_epoch=0)  # 0
    assert txn_files(plog.dir) == []
    plog.append(txn_batch(1, 0, 2), leader_epoch=0)  # 1-2
    plog.append(txn_batch(2, 0), leader_epoch=0)  # 3
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 4
    assert plog.has_aborted_transactions
    raw = (plog.dir / "00000000000000000000.txnindex").read_bytes()
    assert len(raw) == ENTRY_SIZE
    # version 0, pid 1, first 1, last 4, LSO 3 (producer 2's transaction is still open)
    assert raw == bytes.fromhex("0000" "0000000000000001" "0000000000000001"
                                "0000000000000004" "0000000000000003")
    assert plog.collect_aborted_transactions(0, 5) == [(1, 1)]
    assert plog.collect_aborted_transactions(5, 6) == []  # ended before the range
    assert plog.collect_aborted_transactions(0, 1) == []  # starts after the range


def test_collect_walks_segments_from_the_one_holding_start(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1, index in segment 0
    plog.roll()
    plog.append(txn_batch(2, 0), leader_epoch=0)  # 2
    plog.roll()
    plog.append(plain_batch(), leader_epoch=0)  # 3
    plog.append_marker(2, 0, 0, False, leader_epoch=0)  # 4, index in segment 3
    assert txn_files(plog.dir) == ["00000000000000000000.txnindex", "00000000000000000003.txnindex"]
    assert plog.collect_aborted_transactions(0, 5) == [(1, 0), (2, 2)]
    # From segment 2 on: the transaction that started there is indexed with its marker, later.
    assert plog.collect_aborted_transactions(2, 5) == [(2, 2)]
    # The first segment's entry has LSO 2 >= upper 2: the search stops there.
    assert plog.collect_aborted_transactions(0, 2) == [(1, 0)]


def test_no_index_io_without_aborted_transactions(make_log: MakeLog, monkeypatch: pytest.MonkeyPatch) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)
    plog.append_marker(1, 0, 0, True, leader_epoch=0)
    for seg in plog.segments:
        monkeypatch.setattr(seg.txn_index, "entries", lambda: pytest.fail("read an index"))
    assert plog.collect_aborted_transactions(0, 10) == []


def test_txnindex_goes_with_deleted_segments(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)
    plog.append_marker(1, 0, 0, False, leader_epoch=0)
    plog.roll()
    plog.append(plain_batch(), leader_epoch=0)
    assert txn_files(plog.dir) and plog.has_aborted_transactions
    start, detached = plog.detach_records_before(2)
    assert start == 2 and [s.base_offset for s in detached] == [0]
    assert not plog.has_aborted_transactions
    plog.delete_segments_async(detached)
    assert txn_files(plog.dir) == []


def test_txnindex_goes_with_retention(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)
    plog.append_marker(1, 0, 0, False, leader_epoch=0)
    plog.roll()
    plog.append(plain_batch(), leader_epoch=0)
    assert plog.delete_segments_async(plog.detach_oldest_segments(lambda seg, nxt: nxt is not None)) == 1
    assert txn_files(plog.dir) == [] and not plog.has_aborted_transactions


def test_truncation_cuts_the_txnindex_and_reopens_the_transaction(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1
    plog.append(txn_batch(1, 1), leader_epoch=0)  # 2
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 3
    assert len(plog.active_segment.txn_index.entries()) == 2
    plog.truncate_to(3)
    assert [t.last_offset for t in plog.active_segment.txn_index.entries()] == [1]
    assert plog.has_ongoing_transaction(1) and plog.last_stable_offset == 2
    plog.truncate_to(1)
    assert txn_files(plog.dir) == [] and not plog.has_aborted_transactions
    assert plog.has_ongoing_transaction(1) and plog.last_stable_offset == 0
    plog.truncate_fully_and_start_at(10)
    assert not plog.has_ongoing_transaction(1) and plog.last_stable_offset == plog.high_watermark


def test_roll_removes_a_stale_txnindex_at_the_new_base(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(plain_batch(), leader_epoch=0)
    (plog.dir / "00000000000000000001.txnindex").write_bytes(
        bytes(ENTRY_SIZE))  # a leftover of an earlier life
    plog.roll()
    assert not plog.active_segment.txn_index.maybe_nonempty
    assert txn_files(plog.dir) == []


# -- restart ------------------------------------------------------------------------------------
def test_open_transaction_survives_a_clean_restart(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(plain_batch(), leader_epoch=0)  # 0
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 1
    plog.append(txn_batch(2, 0), leader_epoch=0)  # 2
    plog.append_marker(2, 0, 3, False, leader_epoch=0)  # 3
    plog.close()
    again = make_log()
    assert again.has_ongoing_transaction(1) and not again.has_ongoing_transaction(2)
    assert again.last_stable_offset == 1
    assert again.producer_state.producers[2].coordinator_epoch == 3
    assert again.collect_aborted_transactions(0, 4) == [(2, 2)]
    again.append_marker(1, 0, 0, True, leader_epoch=0)
    assert again.last_stable_offset == 5


def test_recovery_replays_markers_and_rebuilds_the_txnindex(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1
    plog.roll()  # snapshot at 2
    plog.append(txn_batch(2, 0), leader_epoch=0)  # 2
    plog.append(txn_batch(3, 0), leader_epoch=0)  # 3
    plog.append_marker(2, 0, 0, False, leader_epoch=0)  # 4
    plog.flush()
    # A crash: no snapshot at close, and the rolled segment's index lost.
    plog.close(snapshot=False)
    (plog.dir / "00000000000000000002.txnindex").unlink()
    again = make_log(clean=False, recovery_point=2)
    assert again.has_ongoing_transaction(3) and not again.has_ongoing_transaction(2)
    assert again.last_stable_offset == 3
    assert again.collect_aborted_transactions(0, 5) == [(1, 0), (2, 2)]
    assert [t for s in again.segments for t in s.txn_index.entries()] == [
        AbortedTxn(1, 0, 1, 2), AbortedTxn(2, 2, 4, 3)]


def test_recovery_without_snapshots_replays_from_the_start(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1
    plog.append(txn_batch(1, 1), leader_epoch=0)  # 2
    plog.close(snapshot=False)
    for name in os.listdir(plog.dir):
        if name.endswith((".snapshot", ".txnindex")):
            (plog.dir / name).unlink()
    again = make_log(clean=False, recovery_point=0)
    assert again.has_ongoing_transaction(1) and again.last_stable_offset == 2
    assert again.collect_aborted_transactions(0, 3) == [(1, 0)]


def test_torn_txnindex_is_rebuilt_at_load(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1
    plog.append(plain_batch(), leader_epoch=0)  # 2
    plog.close()
    path = plog.dir / "00000000000000000000.txnindex"
    path.write_bytes(path.read_bytes()[:-5])
    again = make_log()
    assert again.collect_aborted_transactions(0, 3) == [(1, 0)]
    assert path.stat().st_size == ENTRY_SIZE


def test_aborted_transactions_are_known_after_a_restart(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)
    plog.append_marker(1, 0, 0, False, leader_epoch=0)
    plog.roll()
    plog.append(plain_batch(), leader_epoch=0)
    plog.close()
    again = make_log()
    assert again.has_aborted_transactions
    assert again.collect_aborted_transactions(0, 3) == [(1, 0)]
    assert again.collect_aborted_transactions(2, 3) == []


def test_lso_never_falls_below_the_log_start(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    plog.append(plain_batch(3), leader_epoch=0)  # 1-3
    assert plog.last_stable_offset == 0
    plog.delete_records_before(2)
    assert plog.has_ongoing_transaction(1) and plog.last_stable_offset == 2


def test_open_transaction_keeps_its_producer_from_expiring(make_log: MakeLog, clock) -> None:
    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)
    plog.append(txn_batch(2, 0, transactional=False), leader_epoch=0)
    clock.advance(10_000_000)
    assert plog.maybe_expire_producers(1_000, 0) == 1
    assert set(plog.producer_state.producers) == {1}


def test_snapshot_carries_the_open_transactions_first_offset(tmp_path: Path) -> None:
    from kbroker.log import producer_snapshot as snap
    from kbroker.log.producer_state_entry import ProducerStateEntry

    open_txn = ProducerStateEntry(1, 2, 3, 4_000, 17)
    open_txn.add_batch(2, 5, 18, 1, 4_000)
    closed = ProducerStateEntry(2, 0, 9, 5_000, None)
    snap.write_snapshot(tmp_path, 20, [open_txn, closed])
    loaded = {e.producer_id: e for e in snap.read_snapshot(tmp_path, 20)}
    assert loaded[1].current_txn_first_offset == 17 and loaded[1].coordinator_epoch == 3
    assert loaded[2].current_txn_first_offset is None and loaded[2].coordinator_epoch == 9


@pytest.mark.parametrize("clean", [True, False])
def test_log_manager_restart_keeps_the_lso_and_aborted_transactions(tmp_path: Path, clock, clean: bool) -> None:
    from kbroker.log import LogConfig, LogManager

    cfg = LogConfig(segment_bytes=400)
    mgr = LogManager([tmp_path], clock, cfg)
    plog = mgr.get_or_create_log("t", 0)
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    for i in range(4):
        plog.append(txn_batch(2, 2 * i, 2), leader_epoch=0)  # 1-8, rolls on the way
    plog.append_marker(2, 0, 0, False, leader_epoch=0)  # 9
    plog.append(txn_batch(3, 0), leader_epoch=0)  # 10
    plog.append_marker(3, 0, 0, True, leader_epoch=0)  # 11
    assert len(plog.segments) > 1
    expected = (plog.last_stable_offset, plog.collect_aborted_transactions(0, 12))
    assert expected == (0, [(2, 1)])
    if clean:
        mgr.shutdown()
    else:
        mgr.checkpoint()  # recovery point 0: nothing flushed
        plog.close(snapshot=False)  # a SIGKILL: no snapshot at the end, no clean marker
        mgr.release_dir_locks()
        for name in os.listdir(plog.dir):
            if name.endswith(".txnindex"):
                (plog.dir / name).unlink()  # lost with the page cache
    mgr2 = LogManager([tmp_path], clock, cfg)
    again = mgr2.get_log("t", 0)
    assert again is not None and again.log_end_offset == 12
    assert (again.last_stable_offset, again.collect_aborted_transactions(0, 12)) == expected
    assert again.has_ongoing_transaction(1) and not again.has_ongoing_transaction(2)
    again.append_marker(1, 0, 0, True, leader_epoch=0)
    assert again.last_stable_offset == 13
    mgr2.shutdown()


def test_txnindex_write_failure_keeps_the_entry_and_rewrites_the_file_later(
        make_log: MakeLog, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbroker.log import KafkaStorageError

    plog = make_log()
    plog.append(txn_batch(1, 0), leader_epoch=0)  # 0
    real_open = os.open

    def failing_open(path: object, *args: int) -> int:
        if str(path).endswith(".txnindex"):
            raise OSError(28, "No space left on device")
        return real_open(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(KafkaStorageError):
        plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1
    monkeypatch.setattr(os, "open", real_open)
    # The marker is in the log and the abort is known to fetches.
    assert plog.log_end_offset == 2 and not plog.has_ongoing_transaction(1)
    assert plog.collect_aborted_transactions(0, 2) == [(1, 0)]
    plog.flush()  # the file catches up
    raw = (plog.dir / "00000000000000000000.txnindex").read_bytes()
    assert len(raw) == ENTRY_SIZE and not plog.active_segment.txn_index.needs_sync
