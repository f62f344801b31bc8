"""``PartitionLog`` (Kafka's ``UnifiedLog``/``LocalLog``): one ``<topic>-<partition>/`` directory.

Appends assign offsets by patching batch headers in one copy of the produce payload and
write it to the active segment in one call; reads return whole batches. Offsets only
ever move forward except through :meth:`PartitionLog.truncate_to` (replication).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import CleaningSummary
from kbroker.fs import store_for
from kbroker.log.append import assign_offsets
from kbroker.log.checkpoint import CheckpointError, PartitionMetadataFile
from kbroker.log.cleaner import swap
from kbroker.log.cleaner.swap import SegmentsChangedError
from kbroker.log.config import LogConfig
from kbroker.log.dirs import parse_partition_dir_name, partition_dir_name
from kbroker.log.errors import RECORD_LIST_TOO_LARGE, KafkaStorageError, LogError, OffsetOutOfRange
from kbroker.log.handles import SEGMENT_FILES, fsync_files
from kbroker.log.leader_epoch import (
    LEADER_EPOCH_CHECKPOINT_FILE,
    EpochEntry,
    LeaderEpochCache,
    read_leader_epoch_checkpoint,
)
from kbroker.log.loader import load_log, replay_producer_state, segment_kwargs
from kbroker.log.producer_state import AppendOrigin
from kbroker.log.producer_state_entry import ProducerStateEntry
from kbroker.log.segment import (
    DELETED_FILE_SUFFIX,
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    LogSegment,
)
from kbroker.log.txn_index import AbortedTxn
from kbroker.records.batch import BatchError, BatchHeader, validate_batches, verify_uncompressed_crcs
from kbroker.records.builder import build_control_batch
from kbroker.records.record import ControlType

log = logging.getLogger(__name__)

#: ListOffsets special timestamps.
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3

#: Below this much data (one segment, no producers) close writes no producer snapshot.
_SNAPSHOT_MIN_REPLAY_BYTES = 1024 * 1024


class CleaningSnapshot(NamedTuple):
    """What :meth:`PartitionLog.cleaning_snapshot` returns."""

    segments: list[LogSegment]
    #: producer id -> (last data offset or -1, producer epoch) of every active producer.
    last_records: dict[int, tuple[int, int]]
    truncation_count: int
    log_start_offset: int


class LogPosition(NamedTuple):
    """A byte position in the log: a segment (by base offset) and a position in its file."""

    segment_base_offset: int
    position: int


@dataclass(frozen=True)
class AppendInfo:
    """The outcome of :meth:`PartitionLog.append` (what a ProduceResponse reports)."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime
    log_start_offset: int
    record_count: int
    batch_count: int


def remove_segment_files(segments: Sequence[LogSegment], name: str) -> int:
    """Remove the files of segments out of their log (renamed ``.deleted``); returns how many
    went. A failure is logged: the log no longer refers to them, a restart retries."""
    done = 0
    for seg in segments:
        try:
            seg.delete()
        except OSError as e:
            log.error("cannot delete segment %s of %s: %s", seg.log_path, name, e)
            continue
        done += 1
    return done


class PartitionLog:
    """The log of one partition: segments, offsets and the append/read/recover logic."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        clock: Clock,
        *,
        recovery_point: int = 0,
        log_start_offset: int | None = None,
        had_clean_shutdown: bool = False,
        topic_id: uuid.UUID | None = None,
        prepared: bool = False,
    ) -> None:
        """``prepared``: the directory was just created by :meth:`LogManager.prepare_logs`
        (``partition.metadata`` with ``topic_id`` and an empty first ``.log`` at offset 0,
        already durable), so nothing needs to be read from disk."""
        parsed = parse_partition_dir_name(directory.name)
        if parsed is None:
            raise KafkaStorageError(f"{directory} is not named <topic>-<partition>")
        self.topic, self.partition = parsed
        self.dir = directory
        self._store = store_for(directory)
        self.config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        #: Bumped by truncations, so a flush done outside the lock can tell it raced one.
        self._truncations = 0
        #: Called (under this log's lock) after a roll, and after the recovery point moved;
        #: the LogManager flushes rolled segments and checkpoints in the background.
        self.on_roll: Callable[[PartitionLog], None] | None = None
        self.on_recovery_point: Callable[[PartitionLog], None] | None = None
        #: Called with segments renamed to ``.deleted`` and the delay before their files go
        #: (``file.delete.delay.ms``); the LogManager removes them in the background. Without
        #: it (a log outside a manager) they are removed at once.
        self.on_delete_segments: Callable[[PartitionLog, list[LogSegment], int], None] | None = None
        #: The log cleaner's last pass over this log (None: never cleaned since start-up).
        self.last_cleaning: CleaningSummary | None = None
        self._metadata = PartitionMetadataFile(directory)
        if prepared:
            self.topic_id = topic_id
        else:
            self._store.makedirs(directory)
            self.topic_id = self._init_topic_id(topic_id)
        loaded = load_log(directory, config, clock, recovery_point=recovery_point,
                          log_start_offset=log_start_offset, had_clean_shutdown=had_clean_shutdown,
                          prepared=prepared, partition_name=self.name)
        self._segments = loaded.segments
        self._dir_dirty = loaded.dir_dirty
        #: False only for a log created empty by this process (no snapshot files yet).
        self._may_have_snapshots = loaded.may_have_snapshots
        #: Idempotent producers' epochs and recent batches (duplicate and sequence checks).
        self.producer_state = loaded.producer_state
        self._log_end_offset = loaded.log_end_offset
        self._log_start_offset = loaded.log_start_offset
        self._recovery_point = loaded.recovery_point
        #: Equal to the LEO on a single broker; replication moves it independently
        #: (``high_watermark_follows_leo`` False, :meth:`update_high_watermark`).
        self._high_watermark = self._log_end_offset
        self.high_watermark_follows_leo = True
        #: Which leader epoch started at which offset (``leader-epoch-checkpoint``).
        self.leader_epoch_cache = self._load_leader_epochs(prepared)
        self._last_flush_ms = clock.time_ms()
        #: Taken off segment.ms for the active segment (Kafka's per-segment rollJitterMs).
        self._roll_jitter_ms = config.random_segment_jitter()
        self._unflushed_messages = 0
        #: Segments whose ``.txnindex`` may hold entries: 0 spares read_committed fetches
        #: of logs without aborted transactions any index lookup.
        self._txn_index_segments = 0
        self._count_txn_indexes()
        #: Transaction markers appended since the log was opened: a produce verified with a
        #: coordinator on another broker checks that none came in meanwhile (Kafka's VerificationGuard).
        self.markers_appended = 0

    def _load_leader_epochs(self, prepared: bool) -> LeaderEpochCache:
        """The leader epoch cache at open: the checkpoint file cut to the log's offsets; for a
        log with batches but no readable file, rebuilt from the batch headers."""
        path = self.dir / LEADER_EPOCH_CHECKPOINT_FILE
        if prepared:
            return LeaderEpochCache(path)
        cache: LeaderEpochCache | None = None
        try:
            entries = read_leader_epoch_checkpoint(path)
            if entries is not None:
                cache = LeaderEpochCache(path, entries)
        except CheckpointError as e:
            log.warning("rebuilding the leader epochs of %s from its batches: %s", self.name, e)
            cache = None
        except OSError as e:
            raise KafkaStorageError(f"cannot read {path}: {e}") from e
        try:
            if cache is None:
                if self._log_end_offset <= self._log_start_offset:
                    return LeaderEpochCache(path)
                cache = LeaderEpochCache(path, self._epochs_from_batches(), write=True)
            # A crash may have lost data the file still describes (it is written before the data).
            cache.truncate_from_end(self._log_end_offset)
            cache.truncate_from_start(self._log_start_offset)
        except OSError as e:
            raise KafkaStorageError(f"cannot write {path}: {e}") from e
        return cache

    def _epochs_from_batches(self) -> list[EpochEntry]:
        """The leader epoch entries the batch headers describe (each epoch's first batch)."""
        entries: list[EpochEntry] = []
        latest = -1
        for seg in self._segments:
            for _, h in seg.iter_batches():
                epoch = h.partition_leader_epoch
                if epoch > latest:
                    entries.append(EpochEntry(epoch, h.base_offset))
                    latest = epoch
        return entries

    # -- topic id ------------------------------------------------------------------------
    def assign_topic_id(self, topic_id: uuid.UUID) -> None:
        """Record the topic id in ``partition.metadata`` (must match an existing one)."""
        with self._lock:
            self.topic_id = self._init_topic_id(topic_id)

    def _init_topic_id(self, topic_id: uuid.UUID | None) -> uuid.UUID | None:
        stored = self._metadata.read()
        if topic_id is None:
            return stored
        if stored is not None and stored != topic_id:
            raise KafkaStorageError(f"{self.dir} belongs to topic id {stored}, not {topic_id}")
        if stored is None:
            self._metadata.write(topic_id)
        return topic_id

    def active_producers(self) -> list[ProducerStateEntry]:
        """Copies of the producers this partition remembers, by producer id (DescribeProducers)."""
        with self._lock:
            return [entry.copy() for _, entry in sorted(self.producer_state.producers.items())]

    def has_ongoing_transaction(self, producer_id: int, producer_epoch: int | None = None) -> bool:
        """Whether ``producer_id`` has an open transaction in this partition (at
        ``producer_epoch``, when given: as Kafka, a newer epoch's transaction may have ended)."""
        entry = self.producer_state.producers.get(producer_id)
        return (entry is not None and entry.current_txn_first_offset is not None
                and (producer_epoch is None or entry.producer_epoch == producer_epoch))

    def maybe_expire_producers(self, expiration_ms: int, check_interval_ms: int) -> int:
        """Forget producers idle for ``expiration_ms``, checking at most once per interval."""
        with self._lock:
            return self.producer_state.maybe_remove_expired(self._clock.time_ms(), expiration_ms, check_interval_ms)

    # -- properties ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return partition_dir_name(self.topic, self.partition)

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    def update_high_watermark(self, offset: int) -> int:
        """Set the high watermark (clamped to ``[log_start_offset, log_end_offset]``)."""
        with self._lock:
            self._high_watermark = min(max(offset, self._log_start_offset), self._log_end_offset)
            self.producer_state.on_high_watermark(self._high_watermark)
            return self._high_watermark

    @property
    def last_stable_offset(self) -> int:
        """The offset below which every transaction is decided (Kafka's LSO): the first
        offset of the oldest open (or ended but not yet replicated) transaction, at least
        the log start offset and at most the high watermark; the high watermark when none
        is open."""
        first = self.producer_state.first_unstable_offset()
        hw = self._high_watermark
        if first is None or first >= hw:
            return hw
        # As Kafka: a transaction whose start was deleted (retention, DeleteRecords) holds
        # the LSO at the log start.
        return min(max(first, self._log_start_offset), hw)

    @property
    def recovery_point(self) -> int:
        """Offsets below this are fsynced; recovery after a crash starts here."""
        return self._recovery_point

    @property
    def segments(self) -> list[LogSegment]:
        """The segments, oldest first (a copy; for retention and the cleaner)."""
        return self._segments.to_list()

    @property
    def first_segment_base_offset(self) -> int:
        return self._segments.first.base_offset

    @property
    def active_segment(self) -> LogSegment:
        return self._segments.active

    @property
    def size_in_bytes(self) -> int:
        return self._segments.size_in_bytes

    def update_config(self, config: LogConfig) -> None:
        """Apply new topic configs (segment-shape settings take effect at the next roll)."""
        with self._lock:
            self.config = config

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"log {self.name} is closed")

    # -- appending -----------------------------------------------------------------------
    def append(self, records: bytes | bytearray | memoryview, *, leader_epoch: int, log_append_time: bool = False,
               origin: AppendOrigin = AppendOrigin.CLIENT, headers: list[BatchHeader] | None = None) -> AppendInfo:
        """Validate, assign offsets to and append a produce payload of whole batches.

        Raises BatchError (and writes nothing) if any batch is invalid; the error code
        is MESSAGE_TOO_LARGE (10) for a batch above ``max_message_bytes``, or a producer
        state error (ProducerStateError). A retried duplicate of a recent idempotent batch
        writes nothing and reports the original offsets. ``origin`` COORDINATOR (the
        broker's own coordinators) skips the sequence and duplicate checks.

        ``headers``, when given, are those ``validate_batches(records, max_message_bytes,
        check_crc=None)`` returned for exactly these bytes under this log's config: the
        checks are not repeated, only the CRCs of uncompressed batches are verified here.
        """
        config = self.config
        if headers is None:
            headers = validate_batches(records, config.max_message_bytes)
        else:
            verify_uncompressed_crcs(records, headers)
        size = len(records)
        if size > config.segment_bytes:
            raise BatchError(f"record set of {size} bytes exceeds segment.bytes {config.segment_bytes}", RECORD_LIST_TOO_LARGE)
        stamp = log_append_time or config.log_append_time
        with self._lock:
            self._check_open()
            now = self._clock.time_ms()
            plan = self.producer_state.prepare_append(headers, self._log_end_offset, now if stamp else None,
                                                      origin=origin, records=records)
            if plan.duplicate is not None:
                dup = plan.duplicate
                # As Kafka (UnifiedLog.append), a duplicate reports the remembered batch timestamp as
                # its append time whatever the timestamp type: CreateTime gives the batch's max timestamp.
                return AppendInfo(base_offset=dup.first_offset, last_offset=dup.last_offset,
                                  log_append_time_ms=dup.timestamp,
                                  log_start_offset=self._log_start_offset, record_count=0, batch_count=0)
            assigned = assign_offsets(records, headers, self._log_end_offset, leader_epoch, now if stamp else None)
            next_offset, record_count = assigned.next_offset, assigned.record_count
            base_offset = self._log_end_offset
            if leader_epoch > self.leader_epoch_cache.latest_epoch:  # the only per-append cost
                self._assign_epoch(leader_epoch, base_offset)
            try:
                segment = self._maybe_roll(size, next_offset - 1, now)
                segment.append(assigned.data, assigned.positioned, now)
            except OSError as e:
                # A full disk or I/O error: the segment cut itself back to its last whole
                # batch, nothing was acknowledged, and the client retries (KAFKA_STORAGE_ERROR).
                log.error("append to %s failed: %s", self.name, e)
                raise KafkaStorageError(f"append to {self.name} failed: {e}") from e
            self._log_end_offset = next_offset
            producer_state = self.producer_state
            aborted = producer_state.commit(plan, next_offset)
            if self.high_watermark_follows_leo:
                self._high_watermark = next_offset
                if producer_state.unreplicated:
                    producer_state.on_high_watermark(next_offset)
            self._unflushed_messages += record_count
            if aborted:
                self._index_aborted(segment, aborted)
            try:
                self._maybe_flush(now)
            except OSError as e:
                # Written but not durable as flush.messages/flush.ms promise: not acknowledged.
                log.error("flush of %s failed: %s", self.name, e)
                raise KafkaStorageError(f"flush of {self.name} failed: {e}") from e
            return AppendInfo(
                base_offset=base_offset,
                last_offset=next_offset - 1,
                log_append_time_ms=now if stamp else -1,
                log_start_offset=self._log_start_offset,
                record_count=record_count,
                batch_count=len(headers),
            )

    def append_as_follower(self, records: bytes | bytearray | memoryview) -> AppendInfo:
        """Append batches fetched from the leader as they are (Kafka's ``appendAsFollower``).

        Whole batches only (the caller drops a partial trailing batch). Offsets, partition leader
        epochs and timestamps are kept; the first batch must start at or after the log end
        offset (after it only where the leader's log has a gap, e.g. compaction) and offsets
        must increase, else LogError UNKNOWN_SERVER_ERROR ("out of order"); CRCs are checked
        (BatchError CORRUPT_MESSAGE). The leader epoch cache takes each batch's epoch; producer
        state is updated without sequence checks (REPLICATION), and aborted transactions are
        indexed. The high watermark does not move: the leader tells it.
        """
        headers = validate_batches(records)  # no max.message.bytes: the leader accepted them
        size = len(records)
        if size > self.config.segment_bytes and len(headers) > 1:
            # A fetch answer of many batches may be larger than a segment: appended in parts
            # that each fit one (the segments roll between them, as the leader's did).
            return self._append_as_follower_in_parts(records, headers)
        if size > self.config.segment_bytes:
            raise BatchError(f"record set of {size} bytes exceeds segment.bytes {self.config.segment_bytes}",
                             RECORD_LIST_TOO_LARGE)
        with self._lock:
            self._check_open()
            first = headers[0].base_offset
            if first < self._log_end_offset:
                raise LogError(f"out of order: batch at offset {first} appended to {self.name} "
                               f"whose log end offset is {self._log_end_offset}", ErrorCode.UNKNOWN_SERVER_ERROR)
            expected = first
            positioned: list[tuple[int, BatchHeader]] = []
            pos = record_count = 0
            for h in headers:
                if h.base_offset < expected:
                    raise LogError(f"out of order offsets in an append to {self.name}: batch at {h.base_offset} "
                                   f"after offset {expected - 1}", ErrorCode.UNKNOWN_SERVER_ERROR)
                expected = h.base_offset + h.last_offset_delta + 1
                positioned.append((pos, h))
                pos += h.size
                record_count += h.record_count
            now = self._clock.time_ms()
            plan = self.producer_state.prepare_append(headers, first, None, origin=AppendOrigin.REPLICATION,
                                                      records=records, offsets_assigned=True)
            cache = self.leader_epoch_cache
            before = cache.entries if any(h.partition_leader_epoch != cache.latest_epoch for h in headers) else None
            try:
                if before is not None:
                    for h in headers:
                        if h.partition_leader_epoch >= 0:
                            cache.assign(h.partition_leader_epoch, h.base_offset)
                segment = self._maybe_roll(size, expected - 1, now)
                segment.append(records, positioned, now)
            except OSError as e:
                log.error("follower append to %s failed: %s", self.name, e)
                if before is not None:
                    self._restore_epochs(before)
                raise KafkaStorageError(f"append to {self.name} failed: {e}") from e
            self._log_end_offset = expected
            aborted = self.producer_state.commit(plan, expected)
            self._unflushed_messages += record_count
            if aborted:
                self._index_aborted(segment, aborted)
            try:
                self._maybe_flush(now)
            except OSError as e:
                log.error("flush of %s failed: %s", self.name, e)
                raise KafkaStorageError(f"flush of {self.name} failed: {e}") from e
            return AppendInfo(base_offset=first, last_offset=expected - 1, log_append_time_ms=-1,
                              log_start_offset=self._log_start_offset, record_count=record_count,
                              batch_count=len(headers))

    def _append_as_follower_in_parts(self, records: bytes | bytearray | memoryview,
                                     headers: Sequence[BatchHeader]) -> AppendInfo:
        view = memoryview(records)
        limit = self.config.segment_bytes
        parts: list[AppendInfo] = []
        start = end = 0
        for h in headers:
            if end > start and end + h.size - start > limit:
                parts.append(self.append_as_follower(view[start:end]))
                start = end
            end += h.size
        parts.append(self.append_as_follower(view[start:end]))
        return AppendInfo(base_offset=parts[0].base_offset, last_offset=parts[-1].last_offset, log_append_time_ms=-1,
                          log_start_offset=parts[-1].log_start_offset,
                          record_count=sum(p.record_count for p in parts), batch_count=sum(p.batch_count for p in parts))

    # -- leader epochs ---------------------------------------------------------------------
    def _assign_epoch(self, epoch: int, start_offset: int) -> None:
        try:
            self.leader_epoch_cache.assign(epoch, start_offset)
        except OSError as e:
            raise KafkaStorageError(f"cannot write the leader epochs of {self.name}: {e}") from e

    def _restore_epochs(self, entries: list[EpochEntry]) -> None:
        """Put back the epoch entries of before a failed append (best effort: the file may
        be as unwritable as the segment was)."""
        try:
            self.leader_epoch_cache = LeaderEpochCache(self.leader_epoch_cache.path, entries, write=True)
        except OSError as e:
            self.leader_epoch_cache = LeaderEpochCache(self.leader_epoch_cache.path, entries)
            log.error("cannot restore the leader epochs of %s: %s", self.name, e)

    def assign_leader_epoch(self, epoch: int, *, write: bool = True) -> None:
        """This broker became the leader at ``epoch``: the epoch starts at the log end offset
        (Kafka's ``maybeAssignEpochStartOffset`` on becoming leader). With ``write=False`` the
        checkpoint file is left to :meth:`write_leader_epochs` (many leaderships at once write
        theirs in a worker thread; nothing may be appended at the epoch until then)."""
        with self._lock:
            self._check_open()
            if write:
                self._assign_epoch(epoch, self._log_end_offset)
            else:
                self.leader_epoch_cache.assign(epoch, self._log_end_offset, write=False)

    def write_leader_epochs(self) -> None:
        """Write the leader epochs :meth:`assign_leader_epoch` kept in memory (blocking: fsync)."""
        with self._lock:
            if not self.closed:
                try:
                    self.leader_epoch_cache.write_file()
                except OSError as e:
                    raise KafkaStorageError(f"cannot write the leader epochs of {self.name}: {e}") from e

    @property
    def latest_epoch(self) -> int:
        """The latest leader epoch in the log's epoch cache (-1 when none)."""
        return self.leader_epoch_cache.latest_epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """``(epoch, end offset)`` for a requested leader epoch (Kafka's ``endOffsetForEpoch``,
        see :meth:`LeaderEpochCache.end_offset_for`); ``(-1, -1)`` when undefined."""
        with self._lock:
            self._check_open()
            return self.leader_epoch_cache.end_offset_for(epoch, self._log_end_offset)

    def _index_aborted(self, segment: LogSegment, aborted: Sequence[AbortedTxn]) -> None:
        """Add aborted transactions to the ``.txnindex`` of the segment holding their markers."""
        had = segment.txn_index.maybe_nonempty
        try:
            for txn in aborted:
                segment.append_aborted_txn(txn)
        except OSError as e:
            # The marker is written and the abort is known in memory (the file catches up at the
            # next write or flush); answered as a storage error, as Kafka fails the log dir.
            log.error("cannot update the transaction index of %s: %s", self.name, e)
            raise KafkaStorageError(f"transaction index update of {self.name} failed: {e}") from e
        finally:
            if not had and segment.txn_index.maybe_nonempty:
                self._txn_index_segments += 1
                self._dir_dirty = True

    def append_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool, *,
                      leader_epoch: int) -> AppendInfo:
        """Write a COMMIT or ABORT control batch ending ``producer_id``'s transaction here.

        Kafka's marker format (key: version 0, type; value: version 0, coordinator epoch), in
        a transactional control batch with base sequence -1, appended with COORDINATOR
        origin. Raises ProducerStateError: INVALID_PRODUCER_EPOCH for an epoch older than
        the producer's, TRANSACTION_COORDINATOR_FENCED for an older coordinator epoch.
        A marker for a producer with no open transaction here is written all the same
        (as Kafka) and changes nothing but the producer's epochs.
        """
        batch = build_control_batch(ControlType.COMMIT if commit else ControlType.ABORT,
                                    producer_id=producer_id, producer_epoch=producer_epoch,
                                    coordinator_epoch=coordinator_epoch, timestamp=self._clock.time_ms())
        info = self.append(batch, leader_epoch=leader_epoch, origin=AppendOrigin.COORDINATOR)
        self.markers_appended += 1
        return info

    # -- aborted transactions --------------------------------------------------------------
    @property
    def has_aborted_transactions(self) -> bool:
        """False when no segment holds an aborted transaction (read_committed needs no lookup)."""
        return self._txn_index_segments > 0

    def _count_txn_indexes(self) -> None:
        self._txn_index_segments = sum(1 for seg in self._segments if seg.txn_index.maybe_nonempty)

    def fetch_upper_bound_offset(self, offset: int, fetch_size: int) -> int:
        """Up to where a read_committed fetch of ``fetch_size`` bytes from ``offset`` reports
        aborted transactions (see ``Segments.fetch_upper_bound_offset``)."""
        with self._lock:
            self._check_open()
            try:
                return self._segments.fetch_upper_bound_offset(offset, fetch_size, self._log_end_offset)
            except OSError as e:
                raise KafkaStorageError(f"read from {self.name} failed: {e}") from e

    def collect_aborted_transactions(self, start: int, upper: int) -> list[tuple[int, int]]:
        """``(producer_id, first_offset)`` of the aborted transactions overlapping
        ``[start, upper)``, as Kafka's ``collectAbortedTransactions``: from the segment
        holding ``start`` on, until an entry's last stable offset reaches ``upper``.
        No I/O when the log has no aborted transactions."""
        if not self._txn_index_segments:
            return []
        with self._lock:
            self._check_open()
            out: list[tuple[int, int]] = []
            try:
                for seg in self._segments.from_index(self._segments.floor_index(start)):
                    if not seg.txn_index.maybe_nonempty:
                        continue
                    found = seg.collect_aborted_txns(start, upper)
                    out.extend((t.producer_id, t.first_offset) for t in found.aborted)
                    if found.complete:
                        break
            except OSError as e:
                raise KafkaStorageError(f"read of the transaction index of {self.name} failed: {e}") from e
            except LogError as e:
                raise KafkaStorageError(f"transaction index of {self.name}: {e}") from e
            return out

    def _should_roll(self, segment: LogSegment, size: int, last_offset: int, now: int) -> bool:
        if segment.size == 0:
            # An empty segment is reused unless the offsets cannot be expressed relative to it.
            return segment.base_offset != self._log_end_offset
        if segment.size + size > self.config.segment_bytes:
            return True
        # Kafka rolls once the segment is *older* than segment.ms less its jitter (strictly greater).
        if (segment.first_append_ms is not None
                and now - segment.first_append_ms > self.config.segment_ms - self._roll_jitter_ms):
            return True
        return segment.indexes_full or not segment.can_convert_to_relative_offset(last_offset)

    def _maybe_roll(self, size: int, last_offset: int, now: int) -> LogSegment:
        segment = self._segments.active
        if self._should_roll(segment, size, last_offset, now):
            segment = self.roll()
        return segment

    def roll(self) -> LogSegment:
        """Start a new active segment at the log end offset and return it."""
        with self._lock:
            self._check_open()
            active = self._segments.active
            new_base = self._log_end_offset
            if active.size == 0:
                if active.base_offset == new_base:
                    return active
                self._segments.remove(active)
                active.delete()
            else:
                active.on_become_inactive()
                # As Kafka: a snapshot per segment boundary bounds replay after a crash.
                self.producer_state.take_snapshot()
                self._may_have_snapshots = True
            for suffix in (LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX, TXN_INDEX_FILE_SUFFIX):
                # A leftover file from an earlier truncation must not block the new segment.
                self._store.unlink(self.dir / f"{new_base:020d}{suffix}", missing_ok=True)
            segment = LogSegment.create(self.dir, new_base, **segment_kwargs(self.config))
            self._segments.add(segment)
            self._roll_jitter_ms = self.config.random_segment_jitter()
            self._dir_dirty = True
            log.debug("rolled %s to new segment %d", self.name, new_base)
            if self.on_roll is not None and new_base > self._recovery_point:
                self.on_roll(self)
            return segment

    # -- flushing ------------------------------------------------------------------------
    def _maybe_flush(self, now: int) -> None:
        # Only flush.messages is checked on append, as in Kafka: flush.ms is the periodic
        # flusher's job (LogManager's background thread), so its fsyncs stay off the
        # event loop and happen without a further append.
        c = self.config
        if c.flush_interval_messages is not None and self._unflushed_messages >= c.flush_interval_messages:
            self.flush()

    def flush_if_due(self) -> bool:
        """Flush if ``flush_interval_ms`` has passed with unflushed data (for the periodic
        flusher thread; the fsyncs run outside the log's lock). True if it flushed."""
        with self._lock:
            if self._closed or self.config.flush_interval_ms is None or self._recovery_point >= self._log_end_offset:
                return False
            if self._clock.time_ms() - self._last_flush_ms < self.config.flush_interval_ms:
                return False
        return self._sync_outside_lock(include_active=True)

    def flush(self) -> None:
        """fsync everything up to the log end offset and advance the recovery point."""
        with self._lock:
            if self._closed:
                return
            start = max(self._segments.floor_index(self._recovery_point), 0)
            for seg in self._segments.from_index(start):
                seg.flush()
            if self._dir_dirty:
                self._store.fsync_dir(self.dir)
                self._dir_dirty = False
            self._advance_recovery_point(self._log_end_offset)
            self._unflushed_messages = 0
            self._last_flush_ms = self._clock.time_ms()

    def _advance_recovery_point(self, offset: int) -> None:
        if offset > self._recovery_point:
            self._recovery_point = offset
            if self.on_recovery_point is not None:
                self.on_recovery_point(self)

    @property
    def needs_flush(self) -> bool:
        """True if a :meth:`flush` would have anything to make durable."""
        return (self._recovery_point < self._log_end_offset or self._dir_dirty
                or self._segments.active.needs_sync)

    def flush_rolled(self) -> bool:
        """fsync the segments below the active one and move the recovery point up to the
        active segment (Kafka flushes up to the new segment after a roll, in the background).

        For a background thread: the fsyncs run on separate descriptors outside the
        log's lock, so appends are never blocked behind them. Returns True if the
        recovery point moved.
        """
        return self._sync_outside_lock(include_active=False)

    def _sync_outside_lock(self, *, include_active: bool) -> bool:
        """fsync up to the log end (``include_active``) or up to the active segment, with
        the fsyncs outside the lock; then advance the recovery point unless a truncation
        raced. Segments appended to meanwhile stay marked unsynced."""
        with self._lock:
            if self._closed:
                return False
            active = self._segments.active
            target = self._log_end_offset if include_active else active.base_offset
            if target <= self._recovery_point:
                return False
            start = max(self._segments.floor_index(self._recovery_point), 0)
            segs = [seg for seg in self._segments.from_index(start) if include_active or seg is not active]
            sizes = [seg.size for seg in segs]
            paths = [path for seg in segs for path in seg.sync_paths()]
            sync_dir = self._dir_dirty
            truncations = self._truncations
            unflushed = self._unflushed_messages
            now = self._clock.time_ms()
        fsync_files(paths)
        if sync_dir:
            try:
                self._store.fsync_dir(self.dir)
            except FileNotFoundError:  # renamed for deletion meanwhile
                return False
        with self._lock:
            if self._closed or self._truncations != truncations:
                return False
            for seg, size in zip(segs, sizes, strict=True):
                if seg.size == size:  # not appended to since (appends only grow a segment)
                    seg.mark_synced()
            if include_active:
                self._unflushed_messages = max(0, self._unflushed_messages - unflushed)
                self._last_flush_ms = now
            self._advance_recovery_point(target)
            return True

    def mark_durable(self, offset: int) -> None:
        """Everything up to ``offset`` was made durable by the caller (a file system sync
        after :meth:`close`, at shutdown): move the recovery point."""
        with self._lock:
            if offset <= self._log_end_offset:
                self._recovery_point = max(self._recovery_point, offset)

    # -- reading -------------------------------------------------------------------------
    def fetch_position(self, offset: int) -> LogPosition:
        """Where the data from ``offset`` on starts (Kafka's fetch offset metadata).

        Reads batch headers only. Raises OffsetOutOfRange outside ``[log_start_offset,
        log_end_offset]``.
        """
        with self._lock:
            self._check_open()
            leo = self._log_end_offset
            if offset < self._log_start_offset or offset > leo:
                raise OffsetOutOfRange(
                    f"offset {offset} is out of range [{self._log_start_offset}, {leo}] for {self.name}"
                )
            active = self._segments.active
            if offset >= leo:
                return LogPosition(active.base_offset, active.size)
            found = self._segments.fetch_position(offset)
            return LogPosition(*found) if found else LogPosition(active.base_offset, active.size)

    def end_position(self, upper_bound: int) -> LogPosition:
        """Where the data below ``upper_bound`` (capped at the log end) ends.

        At the log end (the usual high watermark) this reads nothing.
        """
        with self._lock:
            self._check_open()
            active = self._segments.active
            if upper_bound >= self._log_end_offset:
                return LogPosition(active.base_offset, active.size)
            seg = self._segments.floor(upper_bound) or self._segments.first
            return LogPosition(seg.base_offset, seg.position_bound(upper_bound))

    def read(self, offset: int, max_bytes: int, *, min_one_message: bool = True,
             upper_bound: int | None = None) -> bytes | memoryview:
        """Whole batches from the one containing ``offset``, at most ``max_bytes`` (except a
        first batch with ``min_one_message``), none starting at or after ``upper_bound``.

        Raises OffsetOutOfRange outside ``[log_start_offset, log_end_offset]``.
        """
        with self._lock:
            self._check_open()
            leo = self._log_end_offset
            if offset < self._log_start_offset or offset > leo:
                raise OffsetOutOfRange(
                    f"offset {offset} is out of range [{self._log_start_offset}, {leo}] for {self.name}"
                )
            bound = leo if upper_bound is None else min(upper_bound, leo)
            if offset >= bound:
                return b""
            try:
                return self._segments.read(offset, max_bytes, min_one_message, bound, leo)
            except OSError as e:
                raise KafkaStorageError(f"read from {self.name} failed: {e}") from e

    # -- timestamps ----------------------------------------------------------------------
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record with timestamp >= ``timestamp``.

        Also answers ListOffsets' special values: -2 earliest, -1 latest (timestamp -1),
        -3 the record with the largest timestamp. None if no record qualifies.
        """
        with self._lock:
            self._check_open()
            if timestamp == EARLIEST_TIMESTAMP:
                return self._log_start_offset, -1
            if timestamp == LATEST_TIMESTAMP:
                return self._log_end_offset, -1
            if timestamp == MAX_TIMESTAMP:
                ts, off = self.max_timestamp()
                return None if off < 0 else (off, ts)
            return self._segments.find_offset_by_timestamp(timestamp, self._log_start_offset)

    def max_timestamp(self) -> tuple[int, int]:
        """``(timestamp, offset)`` of the first record with the largest timestamp; (-1, -1) if empty.
        Records DeleteRecords put below the log start offset count while their segment is kept,
        as in Kafka."""
        with self._lock:
            self._check_open()
            return self._segments.max_timestamp()

    # -- deleting and truncating ---------------------------------------------------------
    def delete_records_before(self, offset: int) -> int:
        """Advance the log start offset to ``offset`` (DeleteRecords) and delete whole
        segments below it (:meth:`delete_segments_async`). Returns the new log start offset."""
        start, detached = self.detach_records_before(offset)
        self.delete_segments_async(detached)
        return start

    def detach_records_before(self, offset: int) -> tuple[int, list[LogSegment]]:
        """:meth:`delete_records_before` without the file work: ``(new log start offset, the
        segments taken out of the log)``. The caller hands those to :meth:`delete_segments_async`,
        e.g. in a worker thread, so a request removing thousands of segments does not hold up
        the event loop with renames."""
        with self._lock:
            self._check_open()
            if offset > self._high_watermark or offset < 0:
                raise OffsetOutOfRange(f"cannot delete records before {offset}: high watermark is {self._high_watermark}")
            if offset > self._log_start_offset:
                self._log_start_offset = offset
                self.producer_state.on_log_start_offset_incremented(offset)
                self._epochs_follow_log_start()
            detached = self.detach_oldest_segments(
                lambda seg, nxt: nxt is not None and nxt.base_offset <= self._log_start_offset)
            return self._log_start_offset, detached

    def delete_segments_async(self, segments: Sequence[LogSegment]) -> int:
        """Delete segments already taken out of this log, as Kafka's ``deleteSegmentFiles``:
        each is renamed to ``.deleted`` now and its files removed after ``file.delete.delay.ms``
        (by the manager's background thread; at once without a manager or with a delay of 0).
        A restart removes ``.deleted`` files left behind. Safe from any thread; returns how many
        were renamed. Once the log is closed (its partition deleted, its directory renamed away)
        nothing more is touched: the paths could name a new log's files. A file that cannot be
        renamed is logged and left: the log no longer refers to it."""
        renamed: list[LogSegment] = []
        with self._lock:
            for seg in segments:
                if self._closed:
                    # Their files go with the renamed directory; only the descriptors the
                    # LRU holds are released, or the removed files would stay allocated.
                    SEGMENT_FILES.drop(seg)
                    continue
                try:
                    seg.change_file_suffixes("", DELETED_FILE_SUFFIX)
                except OSError as e:
                    log.error("cannot rename segment %s of %s for deletion: %s", seg.log_path, self.name, e)
                    continue
                renamed.append(seg)
            if renamed:
                self._dir_dirty = True
            delay = self.config.file_delete_delay_ms
            hand_off = self.on_delete_segments
        if not renamed:
            return 0
        if hand_off is not None and delay > 0:
            hand_off(self, renamed, delay)
        else:
            remove_segment_files(renamed, self.name)
        return len(renamed)

    def detach_oldest_segments(self, predicate: Callable[[LogSegment, LogSegment | None], bool]) -> list[LogSegment]:
        """Take segments out of the log from the oldest while ``predicate(segment, next_segment)``
        holds and the segment lies below the high watermark (DeleteRecords and retention); the
        caller hands them to :meth:`delete_segments_async`.

        If every segment goes, a new empty active segment is rolled first. The log start offset,
        producer state and snapshots follow."""
        with self._lock:
            self._check_open()
            segs = self._segments.to_list()
            doomed: list[LogSegment] = []
            for i, seg in enumerate(segs):
                nxt = segs[i + 1] if i + 1 < len(segs) else None
                below_hw = nxt.base_offset <= self._high_watermark if nxt else (seg.size > 0 and self._high_watermark >= self._log_end_offset)
                if not below_hw or not predicate(seg, nxt):
                    break
                doomed.append(seg)
            if not doomed:
                return []
            if len(doomed) == len(segs):
                self.roll()
            for seg in doomed:
                self._segments.remove(seg)
            self._count_txn_indexes()
            self._log_start_offset = max(self._log_start_offset, self._segments.first.base_offset)
            self._recovery_point = max(self._recovery_point, self._log_start_offset)
            # As Kafka's deleteSegments: producer state follows the new start and the
            # producer snapshots of the removed segments go.
            self.producer_state.on_log_start_offset_incremented(self._log_start_offset)
            self._epochs_follow_log_start()
            if self._may_have_snapshots:
                try:
                    # Those of the removed segments only: DeleteRecords may have put the start
                    # inside the new first segment, whose snapshot a crash's replay starts from.
                    self.producer_state.delete_snapshots_below(self._segments.first.base_offset)
                except OSError as e:  # stale snapshots only cost a longer replay at load
                    log.warning("cannot delete producer snapshots of %s: %s", self.name, e)
            return doomed

    def truncate_to(self, offset: int) -> None:
        """Remove every batch starting at or after ``offset`` (replica truncation); the leader
        epochs starting there go too. A negative offset is refused (LogError), as Kafka's
        ``truncateTo``: it would restart the log below offset 0."""
        if offset < 0:
            raise LogError(f"cannot truncate {self.name} to the negative offset {offset}",
                           ErrorCode.UNKNOWN_SERVER_ERROR)
        with self._lock:
            self._check_open()
            if offset >= self._log_end_offset:
                return
            self._truncate_epochs_from_end(offset)
            if offset <= self._segments.first.base_offset:
                self.truncate_fully_and_start_at(offset)
                return
            for seg in reversed(self._segments.to_list()):
                if seg.base_offset >= offset:
                    self._segments.remove(seg)
                    seg.delete()
            self._truncations += 1
            active = self._segments.active
            active.truncate_to(offset)
            self._log_end_offset = active.next_offset
            self._after_truncation()
            self._count_txn_indexes()
            replay_producer_state(self.producer_state, self._segments, self._log_end_offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop all data and restart the log empty at ``offset``, with no leader epochs."""
        with self._lock:
            self._check_open()
            try:
                self.leader_epoch_cache.clear()
            except OSError as e:
                raise KafkaStorageError(f"cannot write the leader epochs of {self.name}: {e}") from e
            self._truncations += 1
            for seg in self._segments.to_list():
                self._segments.remove(seg)
                seg.delete()
            self._segments.add(LogSegment.create(self.dir, offset, **segment_kwargs(self.config)))
            self._roll_jitter_ms = self.config.random_segment_jitter()
            self._dir_dirty = True
            self._log_end_offset = offset
            self._log_start_offset = offset
            self._after_truncation()
            self._txn_index_segments = 0
            self.producer_state.truncate_fully(offset)

    def _truncate_epochs_from_end(self, offset: int) -> None:
        try:
            self.leader_epoch_cache.truncate_from_end(offset)
        except OSError as e:
            raise KafkaStorageError(f"cannot write the leader epochs of {self.name}: {e}") from e

    def _epochs_follow_log_start(self) -> None:
        """The log start moved up: so does the first leader epoch's start (Kafka's
        ``truncateFromStart``). In memory only (DeleteRecords runs on the event loop): the file
        follows at the next change, and the next open cuts what it still holds below the start."""
        self.leader_epoch_cache.truncate_from_start(self._log_start_offset, write=False)

    def _after_truncation(self) -> None:
        leo = self._log_end_offset
        self._log_start_offset = min(self._log_start_offset, leo)
        self._recovery_point = min(self._recovery_point, leo)
        self._high_watermark = min(self._high_watermark, leo)
        self.producer_state.on_high_watermark(self._high_watermark)

    # -- log cleaner ---------------------------------------------------------------------
    def cleaning_snapshot(self) -> CleaningSnapshot:
        """What a cleaning pass starts from, taken under the log's lock: the segments, each
        active producer's last data offset and epoch (Kafka's ``lastRecordsOfActiveProducers``)
        and the truncation count :meth:`replace_segments` checks against."""
        with self._lock:
            self._check_open()
            last = {pid: (entry.last_offset, entry.producer_epoch)
                    for pid, entry in self.producer_state.producers.items()}
            return CleaningSnapshot(self._segments.to_list(), last, self._truncations, self._log_start_offset)

    def replace_segments(self, new_bases: Sequence[int], old: Sequence[LogSegment], *,
                         truncation_count: int | None = None) -> list[LogSegment]:
        """Swap cleaned segments in for ``old`` (Kafka's ``replaceSegments``): ``new_bases`` name
        ``<base>.log.cleaned`` file sets (fsynced) in this log's directory. Crash-safe through
        ``.swap`` files (:mod:`kbroker.log.cleaner.swap`); the old segments leave through
        :meth:`delete_segments_async`. Old segments retention or DeleteRecords removed meanwhile
        are skipped (if none is left the cleaned files are dropped and nothing changes).

        Raises :class:`~kbroker.log.cleaner.swap.SegmentsChangedError` (the cleaned files left
        for the caller to remove) if the log was truncated since ``truncation_count``, or a
        segment at an old base offset is another one or the active one.
        """
        with self._lock:
            self._check_open()
            if truncation_count is not None and truncation_count != self._truncations:
                raise SegmentsChangedError(f"{self.name} was truncated during cleaning")
            live: list[LogSegment] = []
            for seg in old:
                current = self._segments.floor(seg.base_offset)
                if current is seg:
                    live.append(seg)
                elif current is not None and current.base_offset == seg.base_offset:
                    raise SegmentsChangedError(f"segment {seg.base_offset} of {self.name} was replaced")
            if any(seg is self._segments.active for seg in live):
                raise SegmentsChangedError(f"cannot replace the active segment of {self.name}")
            bases = sorted(new_bases)
            if not live:
                for base in bases:
                    swap.remove_cleaned(self.dir, base)
                return []
            try:
                for base in reversed(bases):
                    swap.cleaned_to_swap(self.dir, base)
                self._store.fsync_dir(self.dir)
            except OSError as e:
                for base in bases:
                    swap.swap_back_to_cleaned(self.dir, base)
                raise KafkaStorageError(f"cannot swap cleaned segments into {self.name}: {e}") from e
            for seg in live:
                self._segments.remove(seg)
            try:
                self.delete_segments_async(live)
                for base in bases:
                    swap.swap_to_final(self.dir, base)
                kw = segment_kwargs(self.config)
                new = [LogSegment.open(self.dir, base, index_interval_bytes=kw["index_interval_bytes"],
                                       segment_index_bytes=kw["segment_index_bytes"]) for base in bases]
                self._store.fsync_dir(self.dir)
            except OSError as e:
                # The files are mid-swap; the next load completes it (LogLoader's swap recovery).
                log.error("swap of cleaned segments into %s failed: %s", self.name, e)
                self._closed = True
                raise KafkaStorageError(f"swap of cleaned segments into {self.name} failed: {e}") from e
            for seg in new:
                self._segments.add(seg)
            self._count_txn_indexes()
            return new

    # -- lifecycle -----------------------------------------------------------------------
    def close(self, *, snapshot: bool = True) -> None:
        """Persist indexes (and a producer state snapshot at the log end, so the next
        load replays nothing) and release file descriptors (does not fsync; see flush)."""
        with self._lock:
            if self._closed:
                return
            if snapshot and self._snapshot_worthwhile():
                try:
                    self.producer_state.take_snapshot()
                except OSError as e:  # only costs replay time at the next load
                    log.warning("cannot write producer snapshot of %s: %s", self.name, e)
            for seg in self._segments:
                seg.close()
            self._closed = True

    def _snapshot_worthwhile(self) -> bool:
        """A snapshot at close spares the next load a replay of batch headers. Without
        producers and with one small segment that replay costs less than writing the
        file (the tail scan at load reads the same bytes), so none is written then."""
        if (self.producer_state.producers or len(self._segments) > 1
                or self._segments.active.size > _SNAPSHOT_MIN_REPLAY_BYTES):
            return True
        # An older snapshot would be loaded instead and bring back producers since gone.
        return self._may_have_snapshots and self.producer_state.latest_snapshot_offset() is not None

    def delete(self) -> None:
        """Close the log and remove its directory."""
        with self._lock:
            self.close(snapshot=False)
            self._store.rmtree(self.dir)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"PartitionLog({self.name}, start={self._log_start_offset}, end={self._log_end_offset})"
