"""Per-partition producer state (Kafka's ``ProducerStateManager`` / ``ProducerAppendInfo``).

Each partition log remembers, per producer id, the current epoch and the last five
batches. An append is checked against it before anything is written:

* an epoch older than the current one is fenced (INVALID_PRODUCER_EPOCH, which
  produce has answered instead of PRODUCER_FENCED since Kafka 2.7);
* a new epoch must start at sequence 0 and a known epoch must continue at
  ``last_seq + 1`` (wrapping after INT32_MAX), else OUT_OF_ORDER_SEQUENCE_NUMBER;
* a retry of one of the last five batches is a duplicate: nothing is written and the
  original offsets are answered.

A producer the partition does not know (new, or expired, or its batches removed by
retention) may start at any sequence. This is current Kafka's rule (KIP-360 retired
UNKNOWN_PRODUCER_ID from produce; brokers since 2.5 accept any first sequence so a
producer whose state aged out is not stuck), rather than demanding sequence 0.

Transactions (Kafka's ``ProducerAppendInfo``): a transactional data batch opens a
transaction for its producer in this partition (its first offset is remembered until the
COMMIT/ABORT marker); a non-transactional batch from a producer with an open transaction is
INVALID_TXN_STATE; a marker with an older epoch is INVALID_PRODUCER_EPOCH and one from an
older coordinator epoch TRANSACTION_COORDINATOR_FENCED. The open transactions give the last
stable offset. Appends by the broker's own coordinators (:attr:`AppendOrigin.COORDINATOR`)
carry no sequence numbers: only their epochs are checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import producer_snapshot as snapshot
from kbroker.log.producer_state_entry import NO_PRODUCER_EPOCH, BatchMetadata, ProducerStateEntry, in_sequence
from kbroker.log.txn_index import AbortedTxn
from kbroker.records.batch import BatchError, BatchHeader
from kbroker.records.record import ControlType, EndTxnMarker, end_txn_marker

log = logging.getLogger(__name__)

#: Snapshots kept per partition; older ones only help a deep truncation, which can
#: always fall back to replaying the log.
SNAPSHOTS_TO_KEEP = 3


class ProducerStateError(BatchError):
    """An append refused by producer state; ``error_code`` is the Kafka error to answer."""


class AppendOrigin(Enum):
    """Who appends, which decides the checks (Kafka's ``AppendOrigin``)."""

    #: A producer: epochs, sequences and duplicates are checked.
    CLIENT = "client"
    #: The broker's group or transaction coordinator (offset commits, markers): no sequence
    #: numbers (base sequence -1), so only producer and coordinator epochs are checked.
    COORDINATOR = "coordinator"
    #: A follower copying the leader's batches: the leader checked them, so nothing is
    #: refused (Kafka logs stale epochs and fenced coordinators instead of failing).
    REPLICATION = "replication"


class CompletedTxn(NamedTuple):
    """A transaction a marker ended (Kafka's ``CompletedTxn``)."""

    producer_id: int
    first_offset: int
    #: The offset of the marker.
    last_offset: int
    is_aborted: bool


@dataclass
class AppendPlan:
    """The outcome of validating one append: the producers' new entries, or a duplicate."""

    updated: dict[int, ProducerStateEntry] = field(default_factory=dict)
    #: Set when the append retries an already written batch: write nothing, answer this.
    duplicate: BatchMetadata | None = None
    #: ``(first offset, producer id)`` of transactions the append opens (None: none; the
    #: lists are made only when needed, appends without transactions stay as cheap as before).
    started: list[tuple[int, int]] | None = None
    #: Transactions the append's markers end (None: none).
    completed: list[CompletedTxn] | None = None


#: What :meth:`ProducerStateManager.commit` returns for appends that end no transaction.
_NO_ABORTED: tuple[AbortedTxn, ...] = ()


def _marker_of(records: bytes | bytearray | memoryview, headers: Sequence[BatchHeader],
               header: BatchHeader) -> EndTxnMarker | None:
    """The COMMIT/ABORT marker of the control batch ``header`` of ``records``."""
    pos = 0
    for h in headers:
        if h is header:
            return end_txn_marker(memoryview(records)[pos : pos + h.size])
        pos += h.size
    return None


class ProducerStateManager:
    """The producer state of one partition, with its snapshot files in ``directory``."""

    def __init__(self, directory: Path, partition_name: str = "") -> None:
        self.dir = directory
        self.partition_name = partition_name or directory.name
        self.producers: dict[int, ProducerStateEntry] = {}
        #: The state reflects every batch below this offset.
        self.map_end_offset = 0
        self._last_expiry_check_ms: int | None = None
        #: Open transactions: first offset -> producer id, in offset order (transactions
        #: open in append order, and loading inserts them sorted).
        self.ongoing: dict[int, int] = {}
        #: Ended transactions whose marker is not below the high watermark yet (first
        #: offset -> transaction); they still bound the last stable offset.
        self.unreplicated: dict[int, CompletedTxn] = {}

    # -- validation and update -----------------------------------------------------------
    def prepare_append(self, headers: Sequence[BatchHeader], first_offset: int,
                       append_time_ms: int | None = None, *, origin: AppendOrigin = AppendOrigin.CLIENT,
                       records: bytes | bytearray | memoryview | None = None,
                       offsets_assigned: bool = False) -> AppendPlan:
        """Validate batches about to be written from ``first_offset`` (nothing changes yet).

        Raises ProducerStateError; returns the plan to :meth:`commit` after the write.
        ``append_time_ms`` is the batches' timestamp when the log stamps LogAppendTime.
        ``records`` (the payload ``headers`` came from) is needed to read markers of
        control batches; without it control batches are skipped. ``offsets_assigned``: the
        headers carry their final base offsets (a follower's append, where a compacted
        leader log may leave gaps) rather than being laid out from ``first_offset``.
        """
        plan = AppendPlan()
        offset = first_offset
        for h in headers:
            base = h.base_offset if offsets_assigned else offset
            offset = base + h.last_offset_delta + 1
            pid = h.producer_id
            if pid < 0:
                continue
            current = self.producers.get(pid)
            if h.is_control:
                marker = None if records is None else _marker_of(records, headers, h)
                if marker is None:
                    continue  # not a COMMIT/ABORT marker: no producer state
                entry = plan.updated.get(pid)
                if entry is None:
                    entry = plan.updated[pid] = current.copy() if current is not None else ProducerStateEntry(pid)
                ts = h.max_timestamp if append_time_ms is None else append_time_ms
                done = self._end_txn(entry, h.producer_epoch, marker, base, ts, origin)
                if done is not None:
                    if plan.completed is None:
                        plan.completed = []
                    plan.completed.append(done)
                continue
            if current is not None and origin is AppendOrigin.CLIENT:
                dup = current.find_duplicate(h.producer_epoch, h.base_sequence, h.last_sequence)
                if dup is not None:
                    return AppendPlan(duplicate=dup)
            entry = plan.updated.get(pid)
            if entry is None:
                entry = plan.updated[pid] = current.copy() if current is not None else ProducerStateEntry(pid)
            self._check(entry, h, base, origin)
            ts = h.max_timestamp if append_time_ms is None else append_time_ms
            entry.add_batch(h.producer_epoch, h.last_sequence, base + h.last_offset_delta, h.last_offset_delta, ts)
            if entry.current_txn_first_offset is not None:
                if not h.is_transactional and origin is not AppendOrigin.REPLICATION:
                    raise ProducerStateError(
                        f"Expected transactional write from producer {pid} at offset {base} "
                        f"in partition {self.partition_name}", ErrorCode.INVALID_TXN_STATE)
            elif h.is_transactional:
                entry.current_txn_first_offset = base
                if plan.started is None:
                    plan.started = []
                plan.started.append((base, pid))
        return plan

    def _end_txn(self, entry: ProducerStateEntry, epoch: int, marker: EndTxnMarker, offset: int,
                 timestamp: int, origin: AppendOrigin = AppendOrigin.CLIENT) -> CompletedTxn | None:
        """Apply a COMMIT/ABORT marker to ``entry`` after Kafka's fencing checks (logged, not
        raised, for REPLICATION); the transaction it ends, or None if the producer had none
        open here."""
        where = f"producer {entry.producer_id} at offset {offset} in {self.partition_name}"
        replicated = origin is AppendOrigin.REPLICATION
        if epoch < entry.producer_epoch:
            message = f"Epoch of {where} is {epoch}, which is smaller than the last seen epoch {entry.producer_epoch}"
            if not replicated:
                raise ProducerStateError(message, ErrorCode.INVALID_PRODUCER_EPOCH)
            log.warning("%s", message)
        if entry.coordinator_epoch > marker.coordinator_epoch:
            message = (f"Invalid coordinator epoch for {where}: {marker.coordinator_epoch} (zombie), "
                       f"{entry.coordinator_epoch} (current)")
            if not replicated:
                raise ProducerStateError(message, ErrorCode.TRANSACTION_COORDINATOR_FENCED)
            log.info("%s", message)
        first = entry.current_txn_first_offset
        done = None if first is None else CompletedTxn(entry.producer_id, first, offset,
                                                        marker.control_type == ControlType.ABORT)
        entry.end_transaction(epoch, marker.coordinator_epoch, timestamp)
        return done

    def _check(self, entry: ProducerStateEntry, h: BatchHeader, offset: int, origin: AppendOrigin) -> None:
        epoch, first_seq, current = h.producer_epoch, h.base_sequence, entry.producer_epoch
        if epoch < current:
            where = f"producer {entry.producer_id} at offset {offset} in {self.partition_name}"
            if origin is AppendOrigin.REPLICATION:
                log.warning("Epoch of %s is %d, which is smaller than the last seen epoch %d", where, epoch, current)
                return
            raise ProducerStateError(
                f"Epoch of {where} is {epoch}, which is smaller than the last seen epoch {current}",
                ErrorCode.INVALID_PRODUCER_EPOCH)
        if origin is not AppendOrigin.CLIENT:
            return  # coordinator appends carry no sequence numbers
        where = f"producer {entry.producer_id} at offset {offset} in {self.partition_name}"
        if current == NO_PRODUCER_EPOCH:
            return  # unknown producer: any first sequence (see the module docstring)
        if epoch != current:
            if first_seq != 0:
                raise ProducerStateError(
                    f"Invalid sequence number for new epoch {epoch} of {where}: {first_seq} "
                    f"(must be 0; current epoch {current})", ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        elif not in_sequence(entry.last_seq, first_seq):
            raise ProducerStateError(
                f"Out of order sequence number for {where}: {first_seq} (incoming seq. number), "
                f"{entry.last_seq} (current end sequence number)", ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)

    def commit(self, plan: AppendPlan, end_offset: int) -> Sequence[AbortedTxn]:
        """Apply a validated plan once its batches are in the log, which now ends at ``end_offset``.

        Returns the aborted transactions the plan's markers ended, with the last stable
        offset right after each: the caller adds them to the marker's segment's ``.txnindex``.
        """
        if plan.updated:
            self.producers.update(plan.updated)
        self.map_end_offset = end_offset
        if plan.started is None and plan.completed is None:
            return _NO_ABORTED
        for first, pid in plan.started or ():
            self.ongoing[first] = pid
        aborted: list[AbortedTxn] = []
        for txn in plan.completed or ():
            lso = self._complete(txn)
            if txn.is_aborted:
                aborted.append(AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, lso))
        return aborted

    def _complete(self, txn: CompletedTxn) -> int:
        """End an open transaction; returns the last stable offset right after it
        (Kafka's ``lastStableOffset(completedTxn)``: the next open transaction of another
        producer, else the offset after the marker)."""
        lso = txn.last_offset + 1
        for first, pid in self.ongoing.items():
            if pid != txn.producer_id:
                lso = first
                break
        self.ongoing.pop(txn.first_offset, None)
        self.unreplicated[txn.first_offset] = txn
        return lso

    def on_high_watermark(self, high_watermark: int) -> None:
        """Forget ended transactions whose markers are below ``high_watermark``."""
        if self.unreplicated:
            self.unreplicated = {k: t for k, t in self.unreplicated.items() if t.last_offset >= high_watermark}

    def on_log_start_offset_incremented(self, log_start_offset: int) -> None:
        """The log start moved up (retention, DeleteRecords), as Kafka's
        ``onLogStartOffsetIncremented``: ended transactions whose markers fell below it are
        forgotten. Producers and open transactions stay (producers expire by
        ``producer.id.expiration.ms``; the last stable offset is held at the log start)."""
        if self.unreplicated:
            self.unreplicated = {k: t for k, t in self.unreplicated.items() if t.last_offset >= log_start_offset}
        self.map_end_offset = max(self.map_end_offset, log_start_offset)

    def delete_snapshots_below(self, offset: int) -> int:
        """Delete the snapshot files below ``offset`` (those of segments retention or
        DeleteRecords removed, as Kafka's ``deleteProducerSnapshots``); returns how many went.
        The one at ``offset``, the new first segment's base, stays."""
        doomed = [o for o in snapshot.list_snapshots(self.dir) if o < offset]
        for old in doomed:
            snapshot.delete_snapshot(self.dir, old)
        return len(doomed)

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest transaction not yet decided and replicated; None if
        none (the common case, answered without work)."""
        if not self.ongoing and not self.unreplicated:
            return None
        first = next(iter(self.ongoing)) if self.ongoing else None
        if self.unreplicated:
            oldest = min(self.unreplicated)
            first = oldest if first is None else min(first, oldest)
        return first

    def replay(self, h: BatchHeader, marker: EndTxnMarker | None = None) -> AbortedTxn | None:
        """Apply an already written batch (loading, truncation): no checks. ``marker`` is
        the decoded marker of a control batch. Returns the transaction an ABORT marker ended."""
        pid = h.producer_id
        if pid < 0:
            self.map_end_offset = h.next_offset
            return None
        entry = self.producers.get(pid)
        if h.is_control:
            self.map_end_offset = h.next_offset
            if marker is None:
                return None
            if entry is None:
                entry = self.producers[pid] = ProducerStateEntry(pid)
            first = entry.current_txn_first_offset
            entry.end_transaction(h.producer_epoch, marker.coordinator_epoch, h.max_timestamp)
            if first is None:
                return None
            txn = CompletedTxn(pid, first, h.base_offset, marker.control_type == ControlType.ABORT)
            lso = self._complete(txn)
            # Replayed data is below the high watermark once loaded.
            self.unreplicated.pop(first, None)
            return AbortedTxn(pid, first, h.base_offset, lso) if txn.is_aborted else None
        if entry is None:
            entry = self.producers[pid] = ProducerStateEntry(pid)
        entry.add_batch(h.producer_epoch, h.last_sequence, h.last_offset, h.last_offset_delta, h.max_timestamp)
        if h.is_transactional and entry.current_txn_first_offset is None:
            entry.current_txn_first_offset = h.base_offset
            self.ongoing[h.base_offset] = pid
        self.map_end_offset = h.next_offset
        return None

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self.producers.get(producer_id)

    # -- expiration ----------------------------------------------------------------------
    def remove_expired(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle for ``expiration_ms`` (by their last batch's timestamp,
        as Kafka) with no open transaction; returns how many went."""
        doomed = [pid for pid, e in self.producers.items()
                  if e.current_txn_first_offset is None and now_ms - e.last_timestamp >= expiration_ms]
        for pid in doomed:
            del self.producers[pid]
        return len(doomed)

    def maybe_remove_expired(self, now_ms: int, expiration_ms: int, check_interval_ms: int) -> int:
        """:meth:`remove_expired` at most once per ``check_interval_ms`` (called on append)."""
        last = self._last_expiry_check_ms
        if last is not None and now_ms - last < check_interval_ms:
            return 0
        self._last_expiry_check_ms = now_ms
        return self.remove_expired(now_ms, expiration_ms)

    # -- snapshots -----------------------------------------------------------------------
    def take_snapshot(self) -> None:
        """Write a snapshot at :attr:`map_end_offset` (unless one exists) and prune old ones."""
        offsets = snapshot.list_snapshots(self.dir)
        if self.map_end_offset not in offsets:
            snapshot.write_snapshot(self.dir, self.map_end_offset, self.producers.values())
            offsets.append(self.map_end_offset)
            offsets.sort()
        for old in offsets[:-SNAPSHOTS_TO_KEEP]:
            snapshot.delete_snapshot(self.dir, old)

    def latest_snapshot_offset(self) -> int | None:
        offsets = snapshot.list_snapshots(self.dir)
        return offsets[-1] if offsets else None

    def load(self, log_start_offset: int, log_end_offset: int) -> int:
        """Reset to the latest intact snapshot at or below ``log_end_offset``.

        Snapshots above the log end (the log was truncated under them, or recovery
        replays from below them) are deleted.
        Returns the offset from which the caller must replay the log up to its end.
        Open transactions come back from the snapshot's entries.
        """
        self._set_producers({})
        for offset in reversed(snapshot.list_snapshots(self.dir)):
            if offset > log_end_offset:
                snapshot.delete_snapshot(self.dir, offset)
                continue
            try:
                entries = snapshot.read_snapshot(self.dir, offset)
            except (OSError, snapshot.SnapshotError) as e:
                log.warning("deleting unreadable producer snapshot %d of %s: %s", offset, self.partition_name, e)
                snapshot.delete_snapshot(self.dir, offset)
                continue
            self._set_producers({e.producer_id: e for e in entries})
            self.map_end_offset = offset
            return offset
        self.map_end_offset = log_start_offset
        return log_start_offset

    def truncate_fully(self, offset: int) -> None:
        """Forget everything: the log restarts empty at ``offset``."""
        self._set_producers({})
        for old in snapshot.list_snapshots(self.dir):
            snapshot.delete_snapshot(self.dir, old)
        self.map_end_offset = offset

    def _set_producers(self, producers: dict[int, ProducerStateEntry]) -> None:
        """Replace the state; the open transactions are those of the entries."""
        self.producers = producers
        self.unreplicated = {}
        self.ongoing = dict(sorted(
            (e.current_txn_first_offset, e.producer_id) for e in producers.values()
            if e.current_txn_first_offset is not None))
