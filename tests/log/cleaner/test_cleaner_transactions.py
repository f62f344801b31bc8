"""The cleaner and transactions/producers: aborted data, markers, active producers' last batches."""

from __future__ import annotations

from collections.abc import Callable

from cleaner_helpers import all_batches, all_records, append, clean, recovery_accepts

from kbroker.clock import ManualClock
from kbroker.log import PartitionLog
from kbroker.log.cleaner.filter import CleanedTransactionMetadata
from kbroker.log.txn_index import AbortedTxn
from kbroker.records.batch import DELETE_HORIZON_BIT, BatchHeader

MakeLog = Callable[..., PartitionLog]


def layout(plog: PartitionLog) -> list[tuple[int, bool, int]]:
    """``(base offset, control, record count)`` of every batch."""
    return [(h.base_offset, h.is_control, h.record_count) for h, _ in all_batches(plog)]


def expire_producers(plog: PartitionLog, clock: ManualClock) -> None:
    clock.advance(10)
    assert plog.maybe_expire_producers(1, 0) > 0
    assert not plog.producer_state.producers


def test_aborted_data_goes_and_markers_go_only_once_their_transaction_is_gone(
        make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(delete_retention_ms=1_000)
    append(plog, [(b"a", b"1")])  # 0
    append(plog, [(b"a", b"aborted")], producer_id=5, producer_epoch=0, base_sequence=0, transactional=True)  # 1
    plog.append_marker(5, 0, 0, False, leader_epoch=0)  # 2: ABORT
    append(plog, [(b"b", b"committed")], producer_id=6, producer_epoch=0, base_sequence=0, transactional=True)  # 3
    plog.append_marker(6, 0, 0, True, leader_epoch=0)  # 4: COMMIT
    append(plog, [(b"b", b"2")])  # 5: supersedes the committed record
    plog.roll()
    append(plog, [(b"z", b"1")])  # 6
    expire_producers(plog, clock)
    assert plog.has_aborted_transactions

    clean(plog, clock)
    # The aborted batch went at once (and never entered the map: a=1 stays); both markers stay
    # because their transactions still had batches in this pass.
    assert layout(plog) == [(0, False, 1), (2, True, 1), (4, True, 1), (5, False, 1), (6, False, 1)]
    assert [(o, v) for o, _, v in all_records(plog) if o in (0, 5)] == [(0, b"1"), (5, b"2")]
    # The ABORT marker stays, so the cleaned segment's .txnindex still lists its transaction.
    assert plog.has_aborted_transactions
    assert plog.segments[0].txn_index.entries()[0][:3] == (5, 1, 2)
    markers = [h for h, _ in all_batches(plog) if h.is_control]
    assert not any(h.attributes & DELETE_HORIZON_BIT for h in markers)

    now = clock.time_ms()
    clean(plog, clock)
    # Nothing of either transaction is left: the markers stay until their delete horizon.
    markers = [h for h, _ in all_batches(plog) if h.is_control]
    assert [h.base_offset for h in markers] == [2, 4]
    assert all(h.attributes & DELETE_HORIZON_BIT and h.base_timestamp == now + 1_000 for h in markers)
    assert not plog.has_aborted_transactions

    clock.advance(999)
    clean(plog, clock)
    assert [h.base_offset for h, _ in all_batches(plog) if h.is_control] == [2, 4]
    clock.advance(1)
    clean(plog, clock)
    assert layout(plog) == [(0, False, 1), (5, False, 1), (6, False, 1)]
    recovery_accepts(plog.dir)


def test_the_last_batch_of_an_active_producer_is_kept_empty(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"k", b"1")], producer_id=9, producer_epoch=3, base_sequence=0, ts=clock.time_ms())  # 0
    append(plog, [(b"k", b"2")])  # 1
    plog.roll()
    append(plog, [(b"z", b"1")])
    clean(plog, clock)
    h: BatchHeader = all_batches(plog)[0][0]
    # Kafka's writeEmptyHeader: the producer fields and offsets stay, no record, no base timestamp.
    assert (h.base_offset, h.record_count, h.last_offset_delta) == (0, 0, 0)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (9, 3, 0)
    assert h.base_timestamp == -1 and h.max_timestamp == clock.time_ms()
    assert [o for o, _, _ in all_records(plog)] == [1, 2]
    # Without snapshots the producer comes back from the empty batch: a retry is a duplicate
    # and the next sequence is accepted.
    plog.close(snapshot=False)
    for snap in plog.dir.glob("*.snapshot"):
        snap.unlink()
    again = make_log()
    assert again.producer_state.producers[9].last_seq == 0
    from cleaner_helpers import keyed_batch

    dup = again.append(keyed_batch([(b"k", b"1")], producer_id=9, producer_epoch=3, base_sequence=0), leader_epoch=0)
    assert dup.base_offset == 0 and dup.record_count == 0
    nxt = again.append(keyed_batch([(b"k", b"3")], producer_id=9, producer_epoch=3, base_sequence=1), leader_epoch=0)
    assert nxt.base_offset == 3


def test_an_expired_producers_superseded_batch_goes(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"k", b"1")], producer_id=9, producer_epoch=3, base_sequence=0, ts=clock.time_ms())
    append(plog, [(b"k", b"2")])
    plog.roll()
    append(plog, [(b"z", b"1")])
    expire_producers(plog, clock)
    clean(plog, clock)
    assert layout(plog) == [(1, False, 1), (2, False, 1)]


def test_a_marker_that_is_a_producers_last_entry_is_kept_empty(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(delete_retention_ms=0)
    append(plog, [(b"a", b"x")], producer_id=7, producer_epoch=0, base_sequence=0, transactional=True)  # 0
    plog.append_marker(7, 1, 0, False, leader_epoch=0)  # 1: ABORT at a new epoch: no data batch remembered
    assert plog.producer_state.producers[7].last_offset == -1
    append(plog, [(b"a", b"2")])  # 2
    plog.roll()
    append(plog, [(b"z", b"1")])  # 3
    clean(plog, clock)
    clean(plog, clock)  # the horizon (now + 0) is stamped
    clean(plog, clock)  # and passed: the marker's record goes, its batch stays for the epoch
    h = next(h for h, _ in all_batches(plog) if h.base_offset == 1)
    assert h.is_control and h.record_count == 0 and h.producer_id == 7 and h.producer_epoch == 1
    assert layout(plog) == [(1, True, 0), (2, False, 1), (3, False, 1)]


def test_the_batch_ending_the_cleaning_round_stays_even_if_empty(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"a", b"1")])  # 0
    append(plog, [(b"a", b"aborted")], producer_id=5, producer_epoch=0, base_sequence=0, transactional=True)  # 1
    plog.append_marker(5, 0, 0, False, leader_epoch=0)  # 2
    plog.roll()
    append(plog, [(b"z", b"1")])
    expire_producers(plog, clock)
    # The round ends at 2 (exclusive): the aborted batch 1 ends it and stays as an empty batch.
    clean(plog, clock, end=2)
    assert layout(plog) == [(0, False, 1), (1, False, 0), (2, True, 1), (3, False, 1)]


def test_cleaned_transaction_metadata_follows_kafka() -> None:
    meta = CleanedTransactionMetadata()
    index: list[AbortedTxn] = []
    meta.cleaned_index = index
    meta.add_aborted_transactions([AbortedTxn(1, 10, 12, 10)])

    def header(base: int, pid: int, *, control: bool = False, txn: bool = True) -> BatchHeader:
        attrs = (0x10 if txn else 0) | (0x20 if control else 0)
        return BatchHeader(base, 0, 0, 2, 0, attrs, 0, 0, 0, pid, 0, 0, 1)

    assert meta.on_batch_read(header(10, 1))  # aborted
    assert not meta.on_batch_read(header(11, 2))  # another producer's: committed later
    assert not meta.on_batch_read(header(11, 3, txn=False))
    assert not meta.on_control_batch_read(header(12, 1, control=True), 0)  # ABORT with data seen: kept
    assert index == [AbortedTxn(1, 10, 12, 10)]
    assert not meta.on_control_batch_read(header(13, 2, control=True), 1)  # COMMIT with data seen: kept
    assert meta.on_control_batch_read(header(14, 2, control=True), 1)  # nothing seen since: may go
    assert meta.on_control_batch_read(header(15, 4, control=True), 0)  # ABORT of nothing: may go
    assert meta.on_control_batch_read(header(16, 4, control=True), None)  # an emptied marker
    assert not meta.on_control_batch_read(header(17, 4, control=True), 2)  # other control types stay


def test_a_stale_deleted_txn_index_of_an_earlier_pass_is_not_read_as_the_segments(
        make_log: MakeLog, clock: ManualClock) -> None:
    # Replaced segments wait out file.delete.delay.ms as .deleted files (here: forever). A
    # cleaned segment without aborted transactions has no .txnindex, so a later pass must not
    # take the .txnindex.deleted an earlier generation of that segment left for its index:
    # its aborted transaction would swallow the producer's later, committed transactions.
    plog = make_log(delete_retention_ms=0)
    waiting: list[object] = []
    plog.on_delete_segments = lambda _log, segs, _delay: waiting.extend(segs)
    append(plog, [(b"a", b"1")])  # 0
    append(plog, [(b"a", b"aborted")], producer_id=5, producer_epoch=0, base_sequence=0, transactional=True)  # 1
    plog.append_marker(5, 0, 0, False, leader_epoch=0)  # 2: ABORT
    append(plog, [(b"c", b"committed")], producer_id=5, producer_epoch=0, base_sequence=1, transactional=True)  # 3
    plog.append_marker(5, 0, 0, True, leader_epoch=0)  # 4: COMMIT
    plog.roll()
    append(plog, [(b"z", b"1")])  # 5
    expire_producers(plog, clock)

    for _ in range(4):  # data, then the marker's entry, then the marker itself go; then a quiet pass
        clean(plog, clock)
        clock.advance(1)
    assert list((plog.dir).glob("*.txnindex.deleted")), "the scenario needs a waiting .txnindex"
    assert [(o, k, v) for o, k, v in all_records(plog) if k == b"c"] == [(3, b"c", b"committed")]
    assert [h.base_offset for h, _ in all_batches(plog) if h.is_control] == [4]
