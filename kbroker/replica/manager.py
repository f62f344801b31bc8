"""``ReplicaManager``: appends to, reads from and looks up offsets in local partition logs.

Batches stay opaque bytes on this path: the log validates headers and CRCs, patches
offsets and writes each partition's payload in one append. Fetches long-poll: a fetch
short of ``min_bytes`` sleeps on a per-partition notifier that every append fires, until
enough data arrives or ``max_wait_ms`` passes.

Transactions: :meth:`ReplicaManager.write_txn_markers` writes the coordinator's COMMIT/ABORT
markers; read_committed fetches stop at the log's last stable offset and carry the aborted
transactions of the range they return. The high watermark is the log's own attribute
(replication will move it), and acks=-1 has nothing to wait for while the ISR is this
broker alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import TaskGroup

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log.errors import LogError
from kbroker.log.producer_state import AppendOrigin
from kbroker.metadata.topic_names import is_internal
from kbroker.records.batch import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    BatchError,
    BatchHeader,
    is_transactional,
    parse_header,
    peek_size,
    verify_uncompressed_crcs,
)
from kbroker.replica.errors import PartitionError
from kbroker.replica.fetch_session import FetchSessionCache
from kbroker.replica.notifier import PartitionNotifier
from kbroker.replica.record_validation import (
    check_timestamps,
    recompress_for_topic,
    timestamp_errors,
    validate_client_batches,
)
from kbroker.replica.types import (
    CONSUMER_REPLICA_ID,
    EARLIEST_LOCAL_TIMESTAMP,
    EARLIEST_PENDING_UPLOAD_TIMESTAMP,
    EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    AppendResult,
    FetchParams,
    FetchResult,
    OffsetResult,
    PartitionFetch,
)
from kbroker.txn.config import (
    PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS,
    PRODUCER_ID_EXPIRATION_MS,
    int_setting,
)
from kbroker.txn.markers import MarkerResults, TxnMarker

_CLIENT = AppendOrigin.CLIENT
_COORDINATOR = AppendOrigin.COORDINATOR
#: DeleteRecords' offset meaning "up to the high watermark".
DELETE_TO_HIGH_WATERMARK = -1

if TYPE_CHECKING:
    from kbroker.log import PartitionLog
    from kbroker.log.config import LogConfig
    from kbroker.log.partition_log import LogPosition
    from kbroker.log.producer_state_entry import ProducerStateEntry
    from kbroker.metadata.model import PartitionInfo, TopicInfo

log = logging.getLogger(__name__)
_VALID_ACKS = (0, 1, -1)

__all__ = [
    "CONSUMER_REPLICA_ID", "READ_COMMITTED", "READ_UNCOMMITTED", "AppendResult", "FetchParams", "FetchResult",
    "OffsetResult", "PartitionFetch", "ReplicaManager", "TopicPartition",
]


class PartitionSource(Protocol):
    """Where partitions are and who leads them (the metadata manager, or a test's stand-in)."""

    def partition(self, topic: str, index: int) -> PartitionInfo | None: ...


#: Produce errors Kafka answers with log start offset -1 (see _failed_append_log_start).
_APPEND_ERRORS_WITHOUT_LOG_START = frozenset({
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.MESSAGE_TOO_LARGE,
    ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.CORRUPT_MESSAGE, ErrorCode.KAFKA_STORAGE_ERROR,
    ErrorCode.INVALID_TOPIC_EXCEPTION,  # a client's write to an internal topic, refused before the log
})


class ReplicaManager:
    """The data path of every partition this broker hosts."""

    def __init__(self, *, node_id: int, config: ConfigHolder, partitions: PartitionSource,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock) -> None:
        """``partitions`` answers where partitions are and who leads them (the metadata);
        ``logs`` finds the local log of a partition."""
        self._node_id = node_id
        self._config = config
        self._partitions = partitions
        self._get_log = logs
        self._clock = clock
        self._notifier = PartitionNotifier()
        self._stopped = False
        self._task_group: TaskGroup | None = None
        current = config.current
        #: KIP-227 incremental fetch sessions, shared by every connection.
        self.fetch_sessions = FetchSessionCache(
            clock, max_sessions=int(current.get("max.incremental.fetch.session.cache.slots")))
        self._producer_expiration_check_ms = int_setting(current, PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS)
        self._producer_expiration_ms = int_setting(current, PRODUCER_ID_EXPIRATION_MS)
        config.subscribe(self._on_config)

    def _on_config(self, config: BrokerConfig) -> None:
        # producer.id.expiration.ms is dynamic (cluster-wide) in Kafka.
        self._producer_expiration_ms = int_setting(config, PRODUCER_ID_EXPIRATION_MS)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, task_group: TaskGroup) -> None:
        """Hook into the broker's task group (for delayed operations) and metadata events."""
        self._task_group = task_group
        self._stopped = False

    async def stop(self) -> None:
        """Release every waiting fetch so in-flight long polls answer now."""
        self._stopped = True
        self._notifier.notify_all()

    def on_topic_deleted(self, topic: TopicInfo) -> None:
        """A topic is gone: wake the fetches waiting on its partitions."""
        # Waiting fetches re-read and report UNKNOWN_TOPIC_OR_PARTITION instead of sleeping on.
        for index in topic.partitions:
            self._notifier.notify(TopicPartition(topic.name, index))

    def notify_partition_changed(self, tp: TopicPartition) -> None:
        """Wake fetches waiting on ``tp`` (for callers that move offsets outside appends,
        e.g. DeleteRecords, truncation or a high watermark advanced by replication)."""
        self._notifier.notify(tp)

    # -- lookup ----------------------------------------------------------------------------
    def _leader_log(self, tp: TopicPartition) -> tuple[PartitionInfo, PartitionLog]:
        """The partition and its local log, if this broker leads it; else PartitionError."""
        info = self._partitions.partition(tp.topic, tp.partition)
        if info is None:
            raise PartitionError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if info.leader != self._node_id:
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        plog = self._get_log(tp.topic, tp.partition)
        if plog is None or plog.closed:
            # Metadata says we lead it but the log is gone (deleted under us or offline dir).
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return info, plog

    @staticmethod
    def _check_leader_epoch(requested: int, current: int) -> None:
        """KIP-320 fencing: a client's view of the leader epoch must match ours."""
        if requested < 0 or requested == current:
            return
        if requested < current:
            raise PartitionError(ErrorCode.FENCED_LEADER_EPOCH)
        raise PartitionError(ErrorCode.UNKNOWN_LEADER_EPOCH)

    def last_stable_offset(self, tp: TopicPartition, plog: PartitionLog) -> int:
        """The offset below which every transaction is decided (the log's LSO, at most
        the high watermark)."""
        return plog.last_stable_offset

    def aborted_transactions(self, tp: TopicPartition, plog: PartitionLog, start: int,
                             end: int) -> list[tuple[int, int]]:
        """``(producer_id, first_offset)`` of aborted transactions overlapping ``[start, end)``."""
        return plog.collect_aborted_transactions(start, end)

    # -- transactions ----------------------------------------------------------------------
    def has_ongoing_transaction(self, tp: TopicPartition, producer_id: int, producer_epoch: int | None = None) -> bool:
        """Whether ``producer_id`` has an open transaction in ``tp``, at ``producer_epoch`` when
        given (False for a partition this broker does not lead or does not know)."""
        try:
            _, plog = self._leader_log(tp)
        except PartitionError:
            return False
        return plog.has_ongoing_transaction(producer_id, producer_epoch)

    async def write_txn_markers(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        """Append each marker's COMMIT/ABORT control batch to every partition it names
        (internal topics included), as Kafka's WriteTxnMarkers handling on the leader.

        Returns, per marker in order, each partition's error code: UNKNOWN_TOPIC_OR_PARTITION,
        NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED,
        KAFKA_STORAGE_ERROR ... (0 when written). Fetches waiting on written partitions wake.
        """
        results: MarkerResults = []
        done = 0
        for marker in markers:
            codes: dict[TopicPartition, int] = {}
            for tp in marker.partitions:
                codes[tp] = self._write_marker(tp, marker)
                done += 1
                if done % 1024 == 0:
                    await anyio.sleep(0)  # a marker may name thousands of partitions
            results.append(codes)
        return results

    def _write_marker(self, tp: TopicPartition, marker: TxnMarker) -> int:
        try:
            info, plog = self._leader_log(tp)
            # Kafka appends markers with acks=-1: the ISR must satisfy min.insync.replicas.
            if len(info.isr) < plog.config.min_insync_replicas:
                return ErrorCode.NOT_ENOUGH_REPLICAS
            plog.append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch,
                               marker.commit, leader_epoch=info.leader_epoch)
        except PartitionError as e:
            return e.error_code
        except BatchError as e:
            log.info("transaction marker for producer %d refused by %s-%d: %s",
                     marker.producer_id, tp.topic, tp.partition, e)
            return e.error_code
        except LogError as e:
            log.warning("transaction marker to %s-%d failed: %s", tp.topic, tp.partition, e)
            return e.error_code
        except OSError as e:
            log.error("transaction marker to %s-%d failed: %s", tp.topic, tp.partition, e)
            return ErrorCode.KAFKA_STORAGE_ERROR
        self._notifier.notify(tp)
        return ErrorCode.NONE

    # -- produce ---------------------------------------------------------------------------
    async def append_records(
        self,
        entries: Mapping[TopicPartition, bytes | bytearray | memoryview | None],
        *,
        acks: int,
        timeout_ms: int = 30_000,
        internal: bool = False,
        transactional_id: str | None = None,
    ) -> dict[TopicPartition, AppendResult]:
        """Append each partition's payload to its log; errors are per partition.

        ``internal`` marks appends by the broker itself (group and transaction
        coordinators), which alone may write to internal topics; they are appended with
        COORDINATOR origin (producer epochs checked, no sequence numbers). A failed partition has
        nothing written; the others are appended regardless. With replication, acks=-1
        would wait here (up to ``timeout_ms``) for the ISR to catch up.
        """
        if acks not in _VALID_ACKS:
            return {tp: AppendResult(ErrorCode.INVALID_REQUIRED_ACKS) for tp in entries}
        out: dict[TopicPartition, AppendResult] = {}
        # Never off the loop for a transactional request: produce verifies its partitions (KIP-890)
        # and appends them with no await in between, so that no marker slips in.
        may_offload: bool | None = None if not internal else False
        for tp, records in entries.items():
            try:
                checked: _Checked | None = None
                if may_offload is not False and _many_records(records):
                    if may_offload is None:
                        may_offload = not _any_transactional(entries)
                    info, plog = self._leader_log(tp)
                    config = plog.config
                    if may_offload and _walks_records(records, config):  # type: ignore[arg-type]
                        # The refusals that come before validation come before it here too (as inline).
                        self._check_target(tp, info, config, acks, internal)
                        # Decompressing and walking a large batch's records takes milliseconds of
                        # Python: done in a worker thread, the loop serves other connections meanwhile.
                        checked = (plog, config,
                                   await anyio.to_thread.run_sync(self._check_client_records, tp, records, config))
                out[tp] = self._append_partition(tp, records, acks=acks, internal=internal, checked=checked)
            except PartitionError as e:
                out[tp] = AppendResult(e.error_code, log_start_offset=self._failed_append_log_start(tp, e.error_code),
                                       error_message=e.message, record_errors=tuple(e.record_errors))
            except BatchError as e:
                out[tp] = AppendResult(e.error_code, log_start_offset=self._failed_append_log_start(tp, e.error_code),
                                       error_message=str(e), record_errors=e.record_errors)
            except LogError as e:
                log.warning("append to %s-%d failed: %s", tp.topic, tp.partition, e)
                out[tp] = AppendResult(e.error_code, error_message=str(e))
            except OSError as e:  # storage trouble outside the log's own mapping (e.g. a full disk)
                log.error("append to %s-%d failed: %s", tp.topic, tp.partition, e)
                out[tp] = AppendResult(ErrorCode.KAFKA_STORAGE_ERROR, error_message=str(e))
            else:
                self._notifier.notify(tp)
        return out

    def _failed_append_log_start(self, tp: TopicPartition, error_code: int) -> int:
        """The log start offset a failed partition's produce answer carries: as Kafka
        (ReplicaManager.appendToLocalLog), none for the errors it lists as not the log's
        (unknown partition, not leader, too large, corrupt, storage, internal topic), the log's own for
        the rest (sequence and epoch errors, invalid records, not enough replicas ...)."""
        if error_code in _APPEND_ERRORS_WITHOUT_LOG_START:
            return -1
        try:
            _, plog = self._leader_log(tp)
        except PartitionError:
            return -1
        return plog.log_start_offset

    def _append_partition(self, tp: TopicPartition, records: bytes | bytearray | memoryview | None, *,
                          acks: int, internal: bool, checked: _Checked | None = None) -> AppendResult:
        """Append one partition's payload; ``checked`` is what :meth:`_check_client_records`
        made of it already (off the loop): used if the partition still has that log and config,
        else the payload is checked again (as if the append had run at once)."""
        info, plog = self._leader_log(tp)
        config = plog.config
        self._check_target(tp, info, config, acks, internal)
        # The headers a client's batches were validated with, so the log does not repeat the checks.
        headers: list[BatchHeader] | None = None
        if checked is not None and checked[0] is plog and checked[1] is config:
            records, headers = checked[2]
        elif internal:
            _check_single_batch(records)
            if config.compression_type != "producer":
                records = recompress_for_topic(records, config,  # type: ignore[arg-type]
                                               self._clock.time_ms() if config.log_append_time else None)
        else:
            records, headers = self._check_client_records(tp, records, config)
        assert records is not None
        # Idle producer ids expire lazily here rather than from a timer task.
        plog.maybe_expire_producers(self._producer_expiration_ms, self._producer_expiration_check_ms)
        result = plog.append(records, leader_epoch=info.leader_epoch, origin=_COORDINATOR if internal else _CLIENT,
                             headers=headers)
        return AppendResult(ErrorCode.NONE, result.base_offset, result.log_append_time_ms, result.log_start_offset)

    @staticmethod
    def _check_target(tp: TopicPartition, info: PartitionInfo, config: LogConfig, acks: int, internal: bool) -> None:
        """The refusals of an append that come before its records are looked at (as Kafka's
        appendToLocalLog and appendRecordsToLeader): a client's write to an internal topic, then
        acks=-1 with fewer in-sync replicas than ``min.insync.replicas``."""
        if not internal and is_internal(tp.topic):
            raise PartitionError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot append to internal topic {tp.topic}")
        if acks == -1 and len(info.isr) < config.min_insync_replicas:
            raise PartitionError(ErrorCode.NOT_ENOUGH_REPLICAS,
                                 f"The size of the current ISR {info.isr} is insufficient to satisfy "
                                 f"the min.isr requirement of {config.min_insync_replicas}")

    def _check_client_records(self, tp: TopicPartition, records: bytes | bytearray | memoryview | None,
                              config: LogConfig) -> _Valid:
        """A client's payload validated as Kafka's LogValidator does, and recompressed when the
        topic's ``compression.type`` says so: the bytes to append and, unless they are new, the
        batch headers they were validated with. Touches no log: it may run in a worker thread."""
        _check_single_batch(records)
        assert records is not None
        now = self._clock.time_ms()
        before, after = config.message_timestamp_before_max_ms, config.message_timestamp_after_max_ms
        compacted = config.compact
        headers: list[BatchHeader] | None = validate_client_batches(
            tp.topic, tp.partition, records, max_message_bytes=config.max_message_bytes, compacted=compacted,
            # Only a compacted topic's keyless records need them (to answer as Kafka does).
            timestamp_errors=(lambda batch, h: timestamp_errors(batch, h, now, before, after, config.log_append_time))
            if compacted else None)
        try:
            check_timestamps(records, now, before, after, log_append_time=config.log_append_time)
        except PartitionError:
            # Kafka checks every batch's CRC (UnifiedLog.analyzeAndValidateRecords) before its
            # timestamps (LogValidator): a corrupt batch is CORRUPT_MESSAGE whatever its timestamps.
            assert headers is not None
            verify_uncompressed_crcs(records, headers)
            raise
        if config.compression_type != "producer":
            # The only step a topic's compression.type adds; "producer" (the default) skips it,
            # so the usual append path neither decompresses nor copies anything more. The CRC of
            # an uncompressed batch is checked first: recompressing would write a fresh one over
            # a corrupt batch (Kafka answers CORRUPT_MESSAGE).
            assert headers is not None
            verify_uncompressed_crcs(records, headers)
            records = recompress_for_topic(records, config, now if config.log_append_time else None)
            headers = None  # new bytes: the log validates them
        return records, headers

    # -- fetch -----------------------------------------------------------------------------
    async def fetch(self, partitions: Sequence[tuple[TopicPartition, PartitionFetch]],
                    params: FetchParams) -> list[tuple[TopicPartition, FetchResult]]:
        """Read ``partitions`` in order, long-polling until ``min_bytes`` are available.

        Answers at once when ``max_wait_ms`` <= 0, there is nothing to read, enough bytes
        are there, or a partition failed; otherwise sleeps until appends to the watched
        partitions bring ``min_bytes`` or the deadline passes. While waiting, the bytes
        available are measured from log positions (as Kafka's DelayedFetch does): the
        records are read again only when answering.
        """
        # As Kafka: read first; a consumer that is behind is answered from this one read.
        results = self._read_all(partitions, params)
        if (params.max_wait_ms <= 0 or not partitions or self._stopped
                or _answer_now(results, params.min_bytes)):
            return results
        positions: dict[int, tuple[PartitionLog, LogPosition]] = {}
        clock = self._clock
        deadline = clock.monotonic() + params.max_wait_ms / 1000.0
        keys = [tp for tp, _ in partitions]
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0 or self._stopped:
                break
            # No await between the last check and registering: an append cannot slip between.
            with self._notifier.watch(keys) as event:
                with anyio.move_on_after(remaining) as scope:
                    await event.wait()
            if scope.cancelled_caught:
                break  # timed out (checked apart from the clock so a manual clock cannot spin)
            if self._stopped or self._fetch_ready(partitions, params, positions):
                break
        return self._read_all(partitions, params)

    def _fetch_ready(self, partitions: Sequence[tuple[TopicPartition, PartitionFetch]], params: FetchParams,
                     positions: dict[int, tuple[PartitionLog, LogPosition]]) -> bool:
        """Whether a waiting fetch should answer now: ``min_bytes`` available, a partition
        failed, the data spans segments, or nothing is readable at all.

        Bytes available are the distance from each partition's fetch position (found once,
        kept in ``positions``) to the position of its upper bound; no records are read.
        """
        available = 0
        known = 0
        for i, (tp, req) in enumerate(partitions):
            try:
                info, plog = self._leader_log(tp)
                self._check_leader_epoch(req.current_leader_epoch, info.leader_epoch)
                if not plog.log_start_offset <= req.fetch_offset <= plog.log_end_offset:
                    return True  # out of range: the read reports it
                known += 1
                upper = self._upper_bound(tp, plog, params)
                if req.fetch_offset >= upper:
                    continue
                cached = positions.get(i)
                if cached is None or cached[0] is not plog:
                    cached = positions[i] = (plog, plog.fetch_position(req.fetch_offset))
                start = cached[1]
                end = plog.end_position(upper)
            except PartitionError as e:
                if e.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    continue  # as Kafka: unknown partitions alone do not end a long poll
                return True
            except LogError:
                return True
            if start.segment_base_offset != end.segment_base_offset:
                return True  # as Kafka: a fetch behind a segment roll (or truncation) answers now
            available += min(max(end.position - start.position, 0), max(req.max_bytes, 0))
            if available >= params.min_bytes:
                return True
        return not known or available >= params.min_bytes

    def _upper_bound(self, tp: TopicPartition, plog: PartitionLog, params: FetchParams) -> int:
        """The offset a fetch may read up to: log end for followers, else the high
        watermark (read_uncommitted) or last stable offset (read_committed)."""
        if params.is_follower:
            return plog.log_end_offset
        if params.isolation_level == READ_COMMITTED:
            return self.last_stable_offset(tp, plog)
        return plog.high_watermark

    def _read_all(self, partitions: Sequence[tuple[TopicPartition, PartitionFetch]],
                  params: FetchParams) -> list[tuple[TopicPartition, FetchResult]]:
        """One pass in request order, sharing ``max_bytes`` as Kafka does: the first batch
        returned is whole even when larger than the limits, later partitions get what is left."""
        results: list[tuple[TopicPartition, FetchResult]] = []
        limit = max(params.max_bytes, 0)
        min_one = True
        for tp, req in partitions:
            result = self._read_partition(tp, req, params, min(req.max_bytes, limit), min_one)
            results.append((tp, result))
            size = len(result.records)
            if size:
                min_one = False
                limit = max(0, limit - size)
        return results

    def _read_partition(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams,
                        max_bytes: int, min_one_message: bool) -> FetchResult:
        try:
            info, plog = self._leader_log(tp)
            self._check_leader_epoch(req.current_leader_epoch, info.leader_epoch)
            hw = plog.high_watermark
            lso = self.last_stable_offset(tp, plog)
            if params.is_follower:
                upper = plog.log_end_offset
            else:
                upper = lso if params.isolation_level == READ_COMMITTED else hw
            records = plog.read(req.fetch_offset, max_bytes, min_one_message=min_one_message,
                                upper_bound=upper)
            aborted = None
            if params.isolation_level == READ_COMMITTED and not params.is_follower:
                aborted = []
                if records and plog.has_aborted_transactions:
                    # As Kafka: up to the first offset-index entry past the data read (else the
                    # next segment or the log end), not just the last batch returned.
                    aborted = self.aborted_transactions(tp, plog, req.fetch_offset,
                                                        plog.fetch_upper_bound_offset(req.fetch_offset, len(records)))
        except PartitionError as e:
            return FetchResult(e.error_code)
        except LogError as e:
            return FetchResult(e.error_code)
        return FetchResult(high_watermark=hw, last_stable_offset=lso, log_start_offset=plog.log_start_offset,
                           records=records, aborted_transactions=aborted)

    # -- delete records --------------------------------------------------------------------
    def delete_records(self, tp: TopicPartition, offset: int) -> tuple[int, int, Callable[[], object] | None]:
        """DeleteRecords for one partition: move its log start offset up to ``offset`` (-1: the
        high watermark). Returns ``(error_code, low_watermark, delete_files)``, the low watermark
        -1 on an error. The segments wholly below the new start are out of the log already;
        ``delete_files`` (None when there are none) removes their files and may run in a worker
        thread, as Kafka deletes segments asynchronously.

        As Kafka's ``ReplicaManager.deleteRecordsOnLocalLog`` and ``Partition.deleteRecordsOnLeader``.
        """
        try:
            _info, plog = self._leader_log(tp)
        except PartitionError as e:
            return e.error_code, -1, None
        # After the existence check, as Kafka: a partition an internal topic lacks (or an internal
        # topic not created yet) is UNKNOWN_TOPIC_OR_PARTITION, not INVALID_TOPIC_EXCEPTION.
        if is_internal(tp.topic):
            return ErrorCode.INVALID_TOPIC_EXCEPTION, -1, None
        if not plog.config.delete:
            return ErrorCode.POLICY_VIOLATION, -1, None
        target = plog.high_watermark if offset == DELETE_TO_HIGH_WATERMARK else offset
        if target < 0:
            return ErrorCode.OFFSET_OUT_OF_RANGE, -1, None
        try:
            low, detached = plog.detach_records_before(target)  # OffsetOutOfRange above the high watermark
        except LogError as e:
            return e.error_code, -1, None
        # Fetches parked below the new start must answer OFFSET_OUT_OF_RANGE now.
        self.notify_partition_changed(tp)
        return ErrorCode.NONE, low, (lambda: plog.delete_segments_async(detached)) if detached else None

    # -- describe producers ----------------------------------------------------------------
    def active_producers(self, tp: TopicPartition) -> tuple[int, list[ProducerStateEntry]]:
        """DescribeProducers for one partition: ``(error code, the producers its log remembers)``.

        As Kafka's ``ReplicaManager.activeProducerState``: only the leader answers.
        """
        try:
            _, plog = self._leader_log(tp)
        except PartitionError as e:
            return e.error_code, []
        return ErrorCode.NONE, plog.active_producers()

    # -- list offsets ----------------------------------------------------------------------
    def fetch_offset_for_timestamp(self, tp: TopicPartition, timestamp: int, *,
                                   isolation_level: int | None = READ_UNCOMMITTED,
                                   current_leader_epoch: int = -1) -> OffsetResult:
        """ListOffsets for one partition (Kafka's ``Partition.fetchOffsetForTimestamp``).

        ``isolation_level`` None means a replica's request: bounded by the log end offset.
        """
        try:
            info, plog = self._leader_log(tp)
            self._check_leader_epoch(current_leader_epoch, info.leader_epoch)
        except PartitionError as e:
            return OffsetResult(e.error_code)
        epoch = info.leader_epoch
        if isolation_level is None:
            last_fetchable = plog.log_end_offset
        elif isolation_level == READ_COMMITTED:
            last_fetchable = self.last_stable_offset(tp, plog)
        else:
            last_fetchable = plog.high_watermark
        try:
            if timestamp == LATEST_TIMESTAMP:
                return OffsetResult(offset=last_fetchable, leader_epoch=epoch)
            if timestamp in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
                # No tiered storage: the local log start is the log start.
                return OffsetResult(offset=plog.log_start_offset, leader_epoch=epoch)
            if timestamp in (LATEST_TIERED_TIMESTAMP, EARLIEST_PENDING_UPLOAD_TIMESTAMP):
                # As Kafka without remote storage: nothing is tiered.
                return OffsetResult()
            if timestamp == MAX_TIMESTAMP:
                ts, offset = plog.max_timestamp()
                found: tuple[int, int] | None = None if offset < 0 else (offset, ts)
            else:
                found = plog.offset_for_timestamp(timestamp)
        except LogError as e:
            return OffsetResult(e.error_code)
        if found is None or found[0] >= last_fetchable:
            return OffsetResult()  # no record at or after the timestamp (yet visible)
        offset, ts = found
        return OffsetResult(timestamp=ts, offset=offset, leader_epoch=epoch)

    # -- offsets for leader epoch ----------------------------------------------------------
    def offsets_for_leader_epoch(self, tp: TopicPartition, current_leader_epoch: int,
                                 leader_epoch: int) -> tuple[int, int, int]:
        """OffsetForLeaderEpoch for one partition: ``(error code, epoch, end offset)``, as
        Kafka's ``Partition.lastOffsetForLeaderEpoch`` (leader only): UNKNOWN_TOPIC_OR_PARTITION
        for a partition the metadata does not know, NOT_LEADER_OR_FOLLOWER where this broker
        holds no log or does not lead, FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH for a
        ``current_leader_epoch`` (-1: unchecked) below / above ours; else the largest epoch
        <= ``leader_epoch`` and its end offset, ``(-1, -1)`` when undefined."""
        info = self._partitions.partition(tp.topic, tp.partition)
        if info is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1, -1
        plog = self._get_log(tp.topic, tp.partition)
        if plog is None or plog.closed:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER, -1, -1
        try:
            # As Kafka's getLocalLog: the epoch is checked before the leadership.
            self._check_leader_epoch(current_leader_epoch, info.leader_epoch)
        except PartitionError as e:
            return e.error_code, -1, -1
        if info.leader != self._node_id:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER, -1, -1
        try:
            epoch, end_offset = plog.end_offset_for_epoch(leader_epoch)
        except LogError as e:
            return e.error_code, -1, -1
        return ErrorCode.NONE, epoch, end_offset


def _answer_now(results: Sequence[tuple[TopicPartition, FetchResult]], min_bytes: int) -> bool:
    """Whether a first read ends a fetch: ``min_bytes`` read, a partition failed, or no
    partition is known (unknown partitions alone do not end a long poll, as in Kafka)."""
    size = 0
    known = 0
    for _, result in results:
        if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if result.error_code != ErrorCode.NONE:
            return True
        known += 1
        size += len(result.records)
    return not known or size >= min_bytes


def _check_single_batch(records: bytes | bytearray | memoryview | None) -> None:
    """Kafka's rule for produce v3+: exactly one record batch per partition.

    Only framing is looked at; the log validates the batch itself (CRC, magic, size).
    """
    if not records:
        raise PartitionError(ErrorCode.INVALID_RECORD, "Produce requests must have at least one record batch per partition")
    first = peek_size(records)
    if first is None or first < HEADER_SIZE or first >= len(records):
        return  # one batch, or framing the log's validation refuses as CORRUPT_MESSAGE
    second = peek_size(records, first)
    if second is not None and second >= HEADER_SIZE and first + second <= len(records):
        raise PartitionError(ErrorCode.INVALID_RECORD,
                             "Produce requests are only allowed to contain exactly one record batch per partition")


#: What :meth:`ReplicaManager._check_client_records` returns: the bytes to append and the batch
#: headers they were validated with (None when they are new bytes the log validates).
_Valid = tuple["bytes | bytearray | memoryview", "list[BatchHeader] | None"]
#: A payload checked off the loop: the log and the config it was checked under, and the result.
_Checked = tuple["PartitionLog", "LogConfig", _Valid]


def _any_transactional(entries: Mapping[TopicPartition, bytes | bytearray | memoryview | None]) -> bool:
    """Whether any payload of a produce request starts with a transactional batch."""
    return any(is_transactional(r) for r in entries.values())

#: A client batch of at least this many records whose records must be walked (see
#: :func:`_walks_records`) is validated in a worker thread: about a microsecond per record in
#: Python, so a few milliseconds the event loop would otherwise serve no one else.
OFFLOAD_CHECK_RECORDS = 2000


def _many_records(records: bytes | bytearray | memoryview | None) -> bool:
    """Whether ``records`` starts with a batch whose header claims OFFLOAD_CHECK_RECORDS records
    or more (the count is the header's last field). The client's word: the walk checks it, and a
    batch claiming few records is bounded by max.message.bytes and the decompression caps all the same."""
    return (records is not None and len(records) >= HEADER_SIZE
            and int.from_bytes(records[HEADER_SIZE - 4:HEADER_SIZE], "big", signed=True) >= OFFLOAD_CHECK_RECORDS)


def _walks_records(records: bytes | bytearray | memoryview, config: LogConfig) -> bool:
    """Whether validating ``records`` walks each record rather than the batch header only: a
    compressed batch, a compacted topic (keys), a lower timestamp bound, a topic's own compression."""
    return bool(config.compact or config.compression_type != "producer"
                or config.message_timestamp_before_max_ms is not None
                or parse_header(records).attributes & COMPRESSION_MASK)
