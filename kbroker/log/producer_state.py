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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import producer_snapshot as snapshot
from kbroker.log.producer_state_entry import NO_PRODUCER_EPOCH, BatchMetadata, ProducerStateEntry, in_sequence
from kbroker.records.batch import BatchError, BatchHeader

log = logging.getLogger(__name__)

#: Snapshots kept per partition; older ones only help a deep truncation, which can
#: always fall back to replaying the log.
SNAPSHOTS_TO_KEEP = 3


class ProducerStateError(BatchError):
    """An append refused by producer state; ``error_code`` is the Kafka error to answer."""


@dataclass
class AppendPlan:
    """The outcome of validating one append: the producers' new entries, or a duplicate."""

    updated: dict[int, ProducerStateEntry] = field(default_factory=dict)
    #: Set when the append retries an already written batch: write nothing, answer this.
    duplicate: BatchMetadata | None = None


class ProducerStateManager:
    """The producer state of one partition, with its snapshot files in ``directory``."""

    def __init__(self, directory: Path, partition_name: str = "") -> None:
        self.dir = directory
        self.partition_name = partition_name or directory.name
        self.producers: dict[int, ProducerStateEntry] = {}
        #: The state reflects every batch below this offset.
        self.map_end_offset = 0
        self._last_expiry_check_ms: int | None = None

    # -- validation and update -----------------------------------------------------------
    def prepare_append(self, headers: Sequence[BatchHeader], first_offset: int,
                       append_time_ms: int | None = None) -> AppendPlan:
        """Validate batches about to be written from ``first_offset`` (nothing changes yet).

        Raises ProducerStateError; returns the plan to :meth:`commit` after the write.
        ``append_time_ms`` is the batches' timestamp when the log stamps LogAppendTime.
        """
        plan = AppendPlan()
        offset = first_offset
        for h in headers:
            base = offset
            offset += h.last_offset_delta + 1
            if h.producer_id < 0 or h.is_control:
                continue  # control batches (transaction markers) belong to the transactions work
            pid = h.producer_id
            current = self.producers.get(pid)
            if current is not None:
                dup = current.find_duplicate(h.producer_epoch, h.base_sequence, h.last_sequence)
                if dup is not None:
                    return AppendPlan(duplicate=dup)
            entry = plan.updated.get(pid)
            if entry is None:
                entry = plan.updated[pid] = current.copy() if current is not None else ProducerStateEntry(pid)
            self._check(entry, h, base)
            ts = h.max_timestamp if append_time_ms is None else append_time_ms
            entry.add_batch(h.producer_epoch, h.last_sequence, base + h.last_offset_delta, h.last_offset_delta, ts)
        return plan

    def _check(self, entry: ProducerStateEntry, h: BatchHeader, offset: int) -> None:
        epoch, first_seq, current = h.producer_epoch, h.base_sequence, entry.producer_epoch
        where = f"producer {entry.producer_id} at offset {offset} in {self.partition_name}"
        if epoch < current:
            raise ProducerStateError(
                f"Epoch of {where} is {epoch}, which is smaller than the last seen epoch {current}",
                ErrorCode.INVALID_PRODUCER_EPOCH)
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

    def commit(self, plan: AppendPlan, end_offset: int) -> None:
        """Apply a validated plan once its batches are in the log, which now ends at ``end_offset``."""
        self.producers.update(plan.updated)
        self.map_end_offset = end_offset

    def replay(self, h: BatchHeader) -> None:
        """Apply an already written batch (loading, truncation): no checks."""
        if h.producer_id >= 0 and not h.is_control:
            entry = self.producers.get(h.producer_id)
            if entry is None:
                entry = self.producers[h.producer_id] = ProducerStateEntry(h.producer_id)
            entry.add_batch(h.producer_epoch, h.last_sequence, h.last_offset, h.last_offset_delta, h.max_timestamp)
        self.map_end_offset = h.next_offset

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

        Snapshots above the log end (the log was truncated under them) are deleted.
        Returns the offset from which the caller must replay the log up to its end.
        """
        self.producers = {}
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
            self.producers = {e.producer_id: e for e in entries}
            self.map_end_offset = offset
            return offset
        self.map_end_offset = log_start_offset
        return log_start_offset

    def truncate_fully(self, offset: int) -> None:
        """Forget everything: the log restarts empty at ``offset``."""
        self.producers = {}
        for old in snapshot.list_snapshots(self.dir):
            snapshot.delete_snapshot(self.dir, old)
        self.map_end_offset = offset
