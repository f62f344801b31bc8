"""``ReplicaManager``: appends to, reads from and looks up offsets in local partition logs.

Batches stay opaque bytes on this path: the log validates headers and CRCs, patches
offsets and writes each partition's payload in one append. Fetches long-poll: a fetch
short of ``min_bytes`` sleeps on a per-partition notifier that every append fires, until
enough data arrives or ``max_wait_ms`` passes.

Transactions: :meth:`ReplicaManager.write_txn_markers` writes the coordinator's COMMIT/ABORT
markers; read_committed fetches stop at the log's last stable offset and carry the aborted
transactions of the range they return.

Replication (a cluster: a :class:`ReplicationSeam`; None on a single broker, where the high
watermark follows each append and acks=-1 has nothing to wait for): the metadata hands every
change of a local replica to :meth:`ReplicaManager.apply_partitions`; a partition led here has a
:class:`~kbroker.replica.partition_state.LeaderState` that follower fetches update and that
moves the high watermark; acks=-1 appends and transaction markers wait for it; a follower's
partitions are fetched by the seam's fetchers, and consumers with client metadata may read them
(KIP-392).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

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
from kbroker.replica.partition_state import (
    NEVER_MS,
    RACK_AWARE_SELECTOR,
    LeaderState,
    ReplicationSeam,
    ReplicaView,
    effective_min_isr,
    rack_aware_select,
)
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
#: How long WriteTxnMarkers waits for the ISR to have its markers (Kafka: request.timeout.ms).
MARKER_TIMEOUT_MS = 30_000
_K = TypeVar("_K")
#: From this many new leaderships in one metadata change, their epoch checkpoints are written
#: in a worker thread (an fsync each: thousands would stop the event loop for seconds).
BULK_LEADERSHIPS = 32
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
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 replication: ReplicationSeam | None = None) -> None:
        """``partitions`` answers where partitions are and who leads them (the metadata);
        ``logs`` finds the local log of a partition. ``replication`` (a cluster; None on a
        single broker) is the cluster's side of replication: partitions are then led and
        followed as :meth:`apply_partitions` says, high watermarks move by the ISR's progress,
        and acks=all produces wait for it."""
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
        #: None on a single broker: every replication path below is behind this test.
        self._replication = replication
        #: The partitions this broker leads (replicated only).
        self._leaders: dict[TopicPartition, LeaderState] = {}
        #: New leaderships whose epoch checkpoint is being written off the loop: no appends yet.
        self._epochs_pending: set[TopicPartition] = set()
        #: (leader, leader epoch) each followed partition was handed to the fetchers with.
        self._following: dict[TopicPartition, tuple[int, int]] = {}
        self._max_lag_ms = int(current.get("replica.lag.time.max.ms"))
        selector = current.get("replica.selector.class")
        self._rack_aware = selector == RACK_AWARE_SELECTOR
        if selector and not self._rack_aware:
            log.warning("replica.selector.class %s is not supported: consumers read from leaders", selector)
        self._isr_scope: anyio.CancelScope | None = None
        if replication is not None:
            # Chosen once: a single broker's reads pay nothing for the replication checks.
            self._read_one = self._read_replicated  # type: ignore[method-assign]

    def _on_config(self, config: BrokerConfig) -> None:
        # producer.id.expiration.ms is dynamic (cluster-wide) in Kafka.
        self._producer_expiration_ms = int_setting(config, PRODUCER_ID_EXPIRATION_MS)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, task_group: TaskGroup) -> None:
        """Hook into the broker's task group (for delayed operations) and metadata events."""
        self._task_group = task_group
        self._stopped = False
        if self._replication is not None:
            self._isr_scope = anyio.CancelScope()
            task_group.start_soon(self._isr_expiration, self._isr_scope)

    async def stop(self) -> None:
        """Release every waiting fetch so in-flight long polls answer now (and acks=all
        produces, NOT_LEADER_OR_FOLLOWER); stop the ISR expiration task."""
        self._stopped = True
        if self._isr_scope is not None:
            self._isr_scope.cancel()
        leaders, self._leaders = self._leaders, {}
        for state in leaders.values():
            state.close()
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
    def _leader_log(self, tp: TopicPartition, current_leader_epoch: int = -1) -> tuple[PartitionInfo, PartitionLog]:
        """The partition and its local log, if this broker leads it; else PartitionError.

        As Kafka's ``Partition.getLocalLog``, a replica held here checks ``current_leader_epoch``
        (-1: unchecked) before the leadership: a client behind a leader change is told
        FENCED_LEADER_EPOCH (or UNKNOWN_LEADER_EPOCH when ahead) by a follower too."""
        info = self._partitions.partition(tp.topic, tp.partition)
        if info is None:
            raise PartitionError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        plog = self._get_log(tp.topic, tp.partition)
        if plog is None or plog.closed:
            # Not a replica here, or the log is gone (deleted under us or offline dir).
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._check_leader_epoch(current_leader_epoch, info.leader_epoch)
        if info.leader != self._node_id:
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

    def markers_appended(self, tp: TopicPartition) -> int:
        """How many transaction markers this leader's log of ``tp`` has taken since it was opened
        (-1 when this broker does not lead ``tp``)."""
        try:
            _, plog = self._leader_log(tp)
        except PartitionError:
            return -1
        return plog.markers_appended

    async def write_txn_markers(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        """Append each marker's COMMIT/ABORT control batch to every partition it names
        (internal topics included), as Kafka's WriteTxnMarkers handling on the leader.

        Returns, per marker in order, each partition's error code: UNKNOWN_TOPIC_OR_PARTITION,
        NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED,
        KAFKA_STORAGE_ERROR ... (0 when written). Fetches waiting on written partitions wake.
        """
        results: MarkerResults = []
        done = 0
        # In a cluster, as Kafka (appended with acks=-1): answered once the ISR has the markers.
        replicated: dict[tuple[int, TopicPartition], tuple[TopicPartition, int]] | None = (
            None if self._replication is None else {})
        for i, marker in enumerate(markers):
            codes: dict[TopicPartition, int] = {}
            for tp in marker.partitions:
                code = codes[tp] = self._write_marker(tp, marker)
                if replicated is not None and code == ErrorCode.NONE:
                    state = self._leaders.get(tp)
                    # The marker is the last batch: no await since the append.
                    replicated[(i, tp)] = (tp, state.plog.log_end_offset if state is not None else -1)
                done += 1
                if done % 1024 == 0:
                    await anyio.sleep(0)  # a marker may name thousands of partitions
            results.append(codes)
        if replicated:
            for (i, tp), error in (await self._await_replication(replicated, MARKER_TIMEOUT_MS)).items():
                results[i][tp] = error
        return results

    def _write_marker(self, tp: TopicPartition, marker: TxnMarker) -> int:
        try:
            info, plog = self._leader_log(tp)
            if self._epochs_pending and tp in self._epochs_pending:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER  # retried by the coordinator
            # Kafka appends markers with acks=-1: the ISR must satisfy min.insync.replicas.
            if _in_sync_replicas(info) < effective_min_isr(plog.config, info):
                return ErrorCode.NOT_ENOUGH_REPLICAS
            plog.append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch,
                               marker.commit, leader_epoch=info.leader_epoch)
            if self._replication is not None:
                self._after_leader_append(tp)
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
        nothing written; the others are appended regardless. In a cluster, acks=-1 waits
        here (up to ``timeout_ms``) for the ISR to have the records.
        """
        if acks not in _VALID_ACKS:
            return {tp: AppendResult(ErrorCode.INVALID_REQUIRED_ACKS) for tp in entries}
        if self._replication is not None and not self._replication.lease_valid():
            # This broker's etcd lease may have lapsed (it was paused, or lost etcd): another broker
            # may lead these partitions already, so it takes no write at all.
            return {tp: AppendResult(ErrorCode.NOT_LEADER_OR_FOLLOWER, error_message="This broker's cluster "
                                     "membership lapsed; it cannot take writes.") for tp in entries}
        out: dict[TopicPartition, AppendResult] = {}
        # Never off the loop for a transactional request: produce verifies its partitions (KIP-890)
        # and appends them with no await in between, so that no marker slips in.
        may_offload: bool | None = None if not internal else False
        replicated = self._replication is not None
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
                if replicated:
                    self._after_leader_append(tp)
                self._notifier.notify(tp)
        if acks == -1 and replicated:
            await self._await_acks(out, timeout_ms)
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
        if self._epochs_pending and tp in self._epochs_pending:
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER, "The leader is still taking over the partition.")
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
        return AppendResult(ErrorCode.NONE, result.base_offset, result.log_append_time_ms, result.log_start_offset,
                            last_offset=result.last_offset)

    @staticmethod
    def _check_target(tp: TopicPartition, info: PartitionInfo, config: LogConfig, acks: int, internal: bool) -> None:
        """The refusals of an append that come before its records are looked at (as Kafka's
        appendToLocalLog and appendRecordsToLeader): a client's write to an internal topic, then
        acks=-1 with fewer in-sync replicas than ``min.insync.replicas``."""
        if not internal and is_internal(tp.topic):
            raise PartitionError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot append to internal topic {tp.topic}")
        min_isr = effective_min_isr(config, info)
        if acks == -1 and _in_sync_replicas(info) < min_isr:
            raise PartitionError(ErrorCode.NOT_ENOUGH_REPLICAS,
                                 f"The size of the current ISR {info.isr} is insufficient to satisfy "
                                 f"the min.isr requirement of {min_isr}")

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
                or _answer_now(results, params.min_bytes)
                or (self._replication is not None and _redirected(results))):
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
            with self._notifier.watch(keys) as event, clock.move_on_after(remaining) as scope:
                await event.wait()
            if scope.cancelled_caught:
                break  # timed out (on the clock, or in real time on a manual one: it cannot spin)
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
        replicated = self._replication is not None
        for i, (tp, req) in enumerate(partitions):
            try:
                if replicated:
                    plog = self._fetchable_log(tp, req, params)
                else:
                    info, plog = self._leader_log(tp, req.current_leader_epoch)
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
        read = self._read_one
        for tp, req in partitions:
            result = read(tp, req, params, min(req.max_bytes, limit), min_one)
            results.append((tp, result))
            size = len(result.records)
            if size:
                min_one = False
                limit = max(0, limit - size)
        return results

    def _read_partition(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams,
                        max_bytes: int, min_one_message: bool) -> FetchResult:
        try:
            info, plog = self._leader_log(tp, req.current_leader_epoch)
        except PartitionError as e:
            return FetchResult(e.error_code)
        return self._read_log(tp, req, params, plog, max_bytes, min_one_message)

    #: How :meth:`_read_all` reads one partition: replaced by :meth:`_read_replicated` in a cluster.
    _read_one = _read_partition

    def _read_log(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams, plog: PartitionLog,
                  max_bytes: int, min_one_message: bool) -> FetchResult:
        """Read ``plog`` for one partition of a fetch (its leadership and epoch checked)."""
        try:
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

    async def await_low_watermarks(self, required: Mapping[TopicPartition, int],
                                   timeout_ms: int) -> dict[TopicPartition, tuple[int, int]]:
        """In a cluster, DeleteRecords answers once the replicas on live brokers moved their log
        start too (Kafka's ``DelayedDeleteRecords``): per partition, ``(error, low watermark)``
        once the low watermark reached the offset in ``required``; NOT_LEADER_OR_FOLLOWER (-1)
        when the leadership ended, REQUEST_TIMED_OUT with the low watermark reached after
        ``timeout_ms``. Without replication every offset is reached at once."""
        out: dict[TopicPartition, tuple[int, int]] = {}
        clock = self._clock
        deadline = clock.monotonic() + max(timeout_ms, 0) / 1000.0
        pending = dict(required)
        while True:
            event = anyio.Event()
            registered: list[LeaderState] = []
            for tp, offset in list(pending.items()):
                state = self._leaders.get(tp)
                if state is None or state.closed:
                    out[tp] = (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1)
                    del pending[tp]
                    continue
                low = state.low_watermark()
                if low >= offset:
                    out[tp] = (ErrorCode.NONE, low)
                    del pending[tp]
                else:
                    state.add_low_waiter(offset, event)
                    registered.append(state)
            if not pending:
                return out
            if await self._wait_for(event, deadline, registered, LeaderState.remove_low_waiter):
                for tp in pending:
                    state = self._leaders.get(tp)
                    out[tp] = (ErrorCode.REQUEST_TIMED_OUT, state.low_watermark() if state is not None else -1)
                return out

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

    # -- replication: leadership ------------------------------------------------------------
    def _now_ms(self) -> int:
        """Milliseconds on the monotonic scale (follower lag, caught-up times)."""
        return int(self._clock.monotonic() * 1000)

    def leader_state(self, tp: TopicPartition) -> LeaderState | None:
        """The leader-side state of ``tp`` when this broker leads it in a cluster."""
        return self._leaders.get(tp)

    def apply_partitions(self, changes: Sequence[tuple[PartitionInfo | None, PartitionInfo | None]]) -> None:
        """Follow the cluster's partition changes ``(old, new)`` whose replicas include this broker
        before or after (called on the event loop after each batch the metadata applied).

        Leader of a new leadership or epoch: the epoch starts at the log end offset, fetching
        stops, followers start afresh (ISR members count as caught up now). Same epoch: the new
        ISR and replicas are taken. Leader elsewhere: acks=all produces waiting here answer
        NOT_LEADER_OR_FOLLOWER and the fetchers follow the new leader (or stop without one).
        Not a replica any more: the same, and fetching stops. A no-op on a single broker.
        """
        seam = self._replication
        if seam is None:
            return
        now = self._now_ms()
        # Many new leaderships at once (a large topic created, a broker's partitions moving here):
        # their epoch checkpoints (an fsync each) are written in a worker thread, not on the loop.
        bulk = sum(1 for _, new in changes if new is not None and new.leader == self._node_id) >= BULK_LEADERSHIPS
        deferred: list[tuple[TopicPartition, PartitionLog]] = []
        for old, new in changes:
            ref = new if new is not None else old
            if ref is None:
                continue
            tp = TopicPartition(ref.topic, ref.index)
            if new is None or self._node_id not in new.replicas:
                self._stop_leading(tp)
                self._following.pop(tp, None)
                seam.fetchers.remove(tp)
            elif new.leader == self._node_id:
                state = self._leaders.get(tp)
                if state is None or new.leader_epoch > state.leader_epoch:
                    plog = self._become_leader(tp, new, state, now, write_epoch=not bulk)
                    if plog is not None and bulk:
                        deferred.append((tp, plog))
                elif new.leader_epoch == state.leader_epoch and state.update_info(new, now):
                    state.maybe_increment_hw(now, self._max_lag_ms)
            else:
                self._stop_leading(tp)
                if new.leader >= 0:
                    target = (new.leader, new.leader_epoch)
                    if self._following.get(tp) != target:
                        self._following[tp] = target
                        seam.fetchers.add(tp, new.leader, new.leader_epoch)
                else:
                    self._following.pop(tp, None)
                    seam.fetchers.remove(tp)
            # Fetches waiting on the partition re-read: its leader, epoch or high watermark changed.
            self._notifier.notify(tp)
        if deferred:
            self._write_epochs_off_loop(deferred)

    def _write_epochs_off_loop(self, deferred: list[tuple[TopicPartition, PartitionLog]]) -> None:
        """Write the epoch checkpoints of new leaderships in a worker thread; until a partition's
        is written, appends to it answer NOT_LEADER_OR_FOLLOWER (retriable), so that no record of
        the new epoch is on disk before the epoch is."""
        pending = self._epochs_pending
        batch = {tp for tp, _ in deferred}
        pending.update(batch)

        def write_all() -> None:
            for tp, plog in deferred:
                try:
                    plog.write_leader_epochs()
                except LogError as e:
                    log.error("%s; it stays unwritable until this broker leads it again", e)
                    continue
                pending.discard(tp)

        async def run() -> None:
            try:
                await anyio.to_thread.run_sync(write_all)
            finally:
                for tp in batch:
                    self._notifier.notify(tp)

        if self._task_group is None:
            write_all()
        else:
            self._task_group.start_soon(run)

    def _become_leader(self, tp: TopicPartition, info: PartitionInfo, previous: LeaderState | None,
                       now: int, *, write_epoch: bool = True) -> PartitionLog | None:
        """Kafka's makeLeader for a new leadership or leader epoch; the log led (None: no log)."""
        seam = self._replication
        assert seam is not None
        self._following.pop(tp, None)
        seam.fetchers.remove(tp)
        plog = self._get_log(tp.topic, tp.partition)
        if plog is None or plog.closed:
            log.warning("cannot lead %s-%d at epoch %d: no local log", tp.topic, tp.partition, info.leader_epoch)
            self._stop_leading(tp)
            return None
        # A replicated log's high watermark moves by the ISR's progress, never with its own appends.
        plog.high_watermark_follows_leo = False
        # Followers of earlier epochs truncate to where this epoch starts (OffsetForLeaderEpoch).
        plog.assign_leader_epoch(info.leader_epoch, write=write_epoch)
        if write_epoch:
            self._epochs_pending.discard(tp)  # an earlier deferred write of it may have failed
        state = LeaderState(tp, info, plog, self._node_id, now, seam.lease_valid, seam.isr_eligible)
        if previous is not None:
            # Re-elected at a newer epoch (Kafka's resetReplicaState, not a new leader): the
            # followers' positions are still known; ISR members count as fetching now.
            for r, follower in state.followers.items():
                known = previous.followers.get(r)
                if known is not None:
                    follower.log_end_offset = known.log_end_offset
                    follower.log_start_offset = known.log_start_offset
                    follower.last_fetch_leader_leo = state.epoch_start_offset
                    follower.last_fetch_ms = now if r in info.isr else NEVER_MS
            # Waiting acks=all produces move to the new state (they look it up again when woken).
            previous.close()
        self._leaders[tp] = state
        log.info("leading %s-%d at epoch %d from offset %d, ISR %s, high watermark %d", tp.topic, tp.partition,
                 info.leader_epoch, state.epoch_start_offset, info.isr, plog.high_watermark)
        # The ISR may be this broker alone.
        state.maybe_increment_hw(now, self._max_lag_ms)
        return plog

    def _stop_leading(self, tp: TopicPartition) -> None:
        state = self._leaders.pop(tp, None)
        if state is not None:
            state.close()

    def _after_leader_append(self, tp: TopicPartition) -> None:
        """A leader append: with the ISR this broker alone, the high watermark follows it."""
        state = self._leaders.get(tp)
        if state is not None:
            state.maybe_increment_hw(self._now_ms(), self._max_lag_ms)

    @property
    def replicated(self) -> bool:
        """Whether partitions are replicated (a cluster)."""
        return self._replication is not None

    def high_watermark_lagging(self, tp: TopicPartition) -> bool:
        """Whether this leader's high watermark is still below the start of its leader epoch
        (just elected, the ISR not caught up yet): Kafka then answers a client's ListOffsets for
        the latest offset, or a lookup past the high watermark, OFFSET_NOT_AVAILABLE."""
        state = self._leaders.get(tp)
        return state is not None and state.epoch_start_offset > state.plog.high_watermark

    # -- replication: ISR changes -------------------------------------------------------------
    def maybe_shrink_isr(self) -> int:
        """Propose removing, from the ISR of every partition led here, the followers not caught
        up for ``replica.lag.time.max.ms`` (Kafka's maybeShrinkIsr); returns the proposals made."""
        now = self._now_ms()
        proposed = 0
        for state in list(self._leaders.values()):
            isr = state.isr_shrink(now, self._max_lag_ms)
            if isr is not None:
                log.info("shrinking the ISR of %s-%d from %s to %s (out of sync: %s)", state.tp.topic,
                         state.tp.partition, state.isr, isr, [r for r in state.isr if r not in isr])
                if self._propose_isr(state, isr):
                    proposed += 1
        return proposed

    async def _isr_expiration(self, scope: anyio.CancelScope) -> None:
        """Check every ``replica.lag.time.max.ms / 2`` for followers to drop from ISRs."""
        with scope:
            while not self._stopped:
                await self._clock.sleep(self._max_lag_ms / 2000.0)
                self.maybe_shrink_isr()

    def _propose_isr(self, state: LeaderState, isr: list[int]) -> bool:
        """Start the compare-and-swap of ``state``'s ISR to ``isr`` (one in flight per partition)."""
        if self._task_group is None or self._stopped:
            log.debug("ISR change of %s-%d to %s not sent: not started", state.tp.topic, state.tp.partition, isr)
            return False
        state.pending_isr = isr
        self._task_group.start_soon(self._alter_isr, state, isr)
        return True

    async def _alter_isr(self, state: LeaderState, isr: list[int]) -> None:
        seam = self._replication
        assert seam is not None
        result: PartitionInfo | None = None
        try:
            result = await seam.alter_isr(state.info, isr)
        except Exception as e:  # the etcd write failed: the next fetch or check proposes again
            log.warning("ISR change of %s-%d to %s failed: %s", state.tp.topic, state.tp.partition, isr, e)
        finally:
            if state.pending_isr is isr:
                state.pending_isr = None
        if state.closed or self._leaders.get(state.tp) is not state:
            return
        now = self._now_ms()
        if result is not None and result.leader == self._node_id and result.leader_epoch == state.leader_epoch:
            state.update_info(result, now)
        if state.maybe_increment_hw(now, self._max_lag_ms):
            self._notifier.notify(state.tp)

    # -- replication: follower fetches and KIP-392 ---------------------------------------------
    def _fetchable_log(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams) -> PartitionLog:
        """The log a fetch may read in a cluster: the leader's (fenced by epoch), or for a consumer
        with client metadata (Fetch v11+) this follower's own, up to its high watermark (KIP-392)."""
        if params.is_follower or params.client_rack is None or tp in self._leaders:
            return self._leader_log(tp, req.current_leader_epoch)[1]
        info = self._partitions.partition(tp.topic, tp.partition)
        if info is None:
            raise PartitionError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        plog = self._get_log(tp.topic, tp.partition) if self._node_id in info.replicas else None
        if plog is None or plog.closed:
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._check_leader_epoch(req.current_leader_epoch, info.leader_epoch)
        return plog

    def _read_replicated(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams,
                         max_bytes: int, min_one_message: bool) -> FetchResult:
        """One partition of a fetch in a cluster: a follower's fetch records its position (and may
        find its log diverging); a consumer may be sent to a preferred read replica (KIP-392)."""
        try:
            plog = self._fetchable_log(tp, req, params)
            state = self._leaders.get(tp)
            if params.is_follower:
                if state is None:
                    raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
                return self._read_for_follower(tp, req, params, state, max_bytes, min_one_message)
            if state is not None and params.client_rack is not None and self._rack_aware:
                preferred = self._preferred_read_replica(state, req.fetch_offset, params.client_rack)
                if preferred >= 0:
                    # As Kafka: no read, the offsets only; the consumer goes to the replica.
                    return FetchResult(high_watermark=plog.high_watermark,
                                       last_stable_offset=self.last_stable_offset(tp, plog),
                                       log_start_offset=plog.log_start_offset, preferred_read_replica=preferred)
        except PartitionError as e:
            return FetchResult(e.error_code)
        return self._read_log(tp, req, params, plog, max_bytes, min_one_message)

    def _read_for_follower(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams, state: LeaderState,
                           max_bytes: int, min_one_message: bool) -> FetchResult:
        """Kafka's Partition.fetchRecords for a follower: only an assigned replica; the last
        fetched epoch checked for divergence; after the read, its fetch state updated (its LEO,
        caught-up time), which may grow the ISR and move the high watermark."""
        replica_id = params.replica_id
        seam = self._replication
        if seam is not None and not seam.lease_valid():
            # Its leadership may be a previous incarnation's (or already another broker's): a
            # diverging-epoch answer from it could make the follower truncate committed records.
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if replica_id not in state.followers:
            # With an epoch the follower may just be ahead of our view (a reassignment): it retries.
            raise PartitionError(ErrorCode.UNKNOWN_LEADER_EPOCH if req.current_leader_epoch >= 0
                                 else ErrorCode.NOT_LEADER_OR_FOLLOWER)
        plog = state.plog
        leader_leo = plog.log_end_offset  # before the read: later appends do not hold a follower back
        if req.last_fetched_epoch >= 0:
            diverging = self._diverging_epoch(plog, req)
            if diverging is not None:
                return FetchResult(high_watermark=plog.high_watermark,
                                   last_stable_offset=self.last_stable_offset(tp, plog),
                                   log_start_offset=plog.log_start_offset, diverging_epoch=diverging)
        result = self._read_log(tp, req, params, plog, max_bytes, min_one_message)
        if result.error_code == ErrorCode.NONE:
            now = self._now_ms()
            moved = state.update_follower(replica_id, req.fetch_offset, req.log_start_offset, now, leader_leo)
            expansion = state.isr_expansion(replica_id)
            if expansion is not None:
                log.info("expanding the ISR of %s-%d from %s to %s", tp.topic, tp.partition, state.isr, expansion)
                self._propose_isr(state, expansion)
            # Also when nothing moved but the HW lags the log end: it may have been held while
            # the lease was not known valid.
            if (moved or plog.high_watermark < plog.log_end_offset) and state.maybe_increment_hw(now, self._max_lag_ms):
                self._notifier.notify(tp)
        return result

    @staticmethod
    def _diverging_epoch(plog: PartitionLog, req: PartitionFetch) -> tuple[int, int] | None:
        """Where a follower's log leaves ours (Kafka's readRecords with a last fetched epoch):
        ``(epoch, end offset)`` of its last epoch here when that epoch ended before its fetch
        offset or is unknown here; OFFSET_OUT_OF_RANGE when no epoch answers or it fetches below
        our log start."""
        epoch, end = plog.end_offset_for_epoch(req.last_fetched_epoch)
        if epoch < 0 or end < 0:
            raise PartitionError(ErrorCode.OFFSET_OUT_OF_RANGE,
                                 f"no end offset for the last fetched epoch {req.last_fetched_epoch}")
        if req.fetch_offset < plog.log_start_offset:
            raise PartitionError(ErrorCode.OFFSET_OUT_OF_RANGE)
        if epoch < req.last_fetched_epoch or end < req.fetch_offset:
            return int(epoch), int(end)
        return None

    def _preferred_read_replica(self, state: LeaderState, fetch_offset: int, client_rack: str) -> int:
        """Kafka's findPreferredReadReplica with the RackAwareReplicaSelector: among the leader
        and the ISR followers holding ``fetch_offset``, one in the consumer's rack; -1 for the leader."""
        seam = self._replication
        assert seam is not None
        now = self._now_ms()
        leader = ReplicaView(self._node_id, seam.rack_of(self._node_id), state.plog.log_end_offset, 0)
        views = [leader]
        isr = state.isr
        for r, follower in state.followers.items():
            # ISR members only: a lagging follower would keep a consumer behind.
            if r in isr and follower.log_start_offset <= fetch_offset <= follower.log_end_offset:
                views.append(ReplicaView(r, seam.rack_of(r), follower.log_end_offset, now - follower.last_caught_up_ms))
        chosen = rack_aware_select(client_rack, leader, views)
        return -1 if chosen.node_id == self._node_id else chosen.node_id

    # -- replication: acks=all ----------------------------------------------------------------
    async def _await_acks(self, out: dict[TopicPartition, AppendResult], timeout_ms: int) -> None:
        """Wait until the high watermark of each appended partition passes its last offset
        (Kafka's DelayedProduce); the errors found replace the results in ``out``."""
        pending = {tp: (tp, r.last_offset + 1) for tp, r in out.items()
                   if r.error_code == ErrorCode.NONE and r.last_offset >= 0}
        if pending:
            for tp, error in (await self._await_replication(pending, timeout_ms)).items():
                out[tp] = dataclasses.replace(out[tp], error_code=error)

    async def _wait_for(self, event: anyio.Event, deadline: float, registered: list[LeaderState],
                        unregister: Callable[[LeaderState, anyio.Event], None]) -> bool:
        """Wait for ``event`` until ``deadline`` (or until the manager stops), then take it off the
        leader states it was registered with; whether the deadline passed first."""
        remaining = deadline - self._clock.monotonic()
        timed_out = True
        try:
            if remaining > 0 and not self._stopped:
                with self._clock.move_on_after(remaining) as scope:
                    await event.wait()
                timed_out = scope.cancelled_caught
        finally:
            for state in registered:
                unregister(state, event)
        return timed_out

    async def _await_replication(self, pending: dict[_K, tuple[TopicPartition, int]],
                                 timeout_ms: int) -> dict[_K, int]:
        """Wait until each partition's high watermark reaches its offset in ``pending``,
        event-driven. Returns the errors: REQUEST_TIMED_OUT after ``timeout_ms``,
        NOT_LEADER_OR_FOLLOWER when the leadership ends, NOT_ENOUGH_REPLICAS_AFTER_APPEND when
        reached with the ISR under ``min.insync.replicas``."""
        errors: dict[_K, int] = {}
        clock = self._clock
        deadline = clock.monotonic() + max(timeout_ms, 0) / 1000.0
        pending = dict(pending)
        while True:
            event = anyio.Event()
            registered: list[LeaderState] = []
            for key, (tp, required) in list(pending.items()):
                state = self._leaders.get(tp)
                done, error = (True, ErrorCode.NOT_LEADER_OR_FOLLOWER) if state is None else state.check_acks(required)
                if done:
                    del pending[key]
                    if error != ErrorCode.NONE:
                        errors[key] = error
                elif state is not None:
                    state.add_waiter(required, event)
                    registered.append(state)
            if not pending:
                return errors
            if await self._wait_for(event, deadline, registered, LeaderState.remove_waiter):
                for key in pending:
                    errors[key] = ErrorCode.REQUEST_TIMED_OUT
                return errors

    # -- list offsets ----------------------------------------------------------------------
    def fetch_offset_for_timestamp(self, tp: TopicPartition, timestamp: int, *,
                                   isolation_level: int | None = READ_UNCOMMITTED,
                                   current_leader_epoch: int = -1) -> OffsetResult:
        """ListOffsets for one partition (Kafka's ``Partition.fetchOffsetForTimestamp``).

        ``isolation_level`` None means a replica's request: bounded by the log end offset.
        """
        try:
            info, plog = self._leader_log(tp, current_leader_epoch)
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
        if info.leader != self._node_id or (self._replication is not None and not self._replication.lease_valid()):
            # As for follower fetches: no end offset a follower would truncate to while this
            # broker's leadership is not known to be current.
            return ErrorCode.NOT_LEADER_OR_FOLLOWER, -1, -1
        try:
            epoch, end_offset = plog.end_offset_for_epoch(leader_epoch)
        except LogError as e:
            return e.error_code, -1, -1
        return ErrorCode.NONE, epoch, end_offset


def _in_sync_replicas(info: PartitionInfo) -> int:
    """The ISR's size, counting only replicas (a broken or foreign state may name other brokers)."""
    return sum(1 for r in info.isr if r in info.replicas)


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


def _redirected(results: Sequence[tuple[TopicPartition, FetchResult]]) -> bool:
    """Whether a fetch answers now in a cluster: a consumer sent to another replica (KIP-392),
    or a follower whose log diverges."""
    return any(r.preferred_read_replica >= 0 or r.diverging_epoch is not None for _, r in results)


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
