"""``ReplicaManager``: appends to, reads from and looks up offsets in local partition logs.

Batches stay opaque bytes on this path: the log validates headers and CRCs, patches
offsets and writes each partition's payload in one append. Fetches long-poll: a fetch
short of ``min_bytes`` sleeps on a per-partition notifier that every append fires, until
enough data arrives or ``max_wait_ms`` passes.

Seams for later work: the high watermark is the log's own attribute (replication will
move it), :meth:`ReplicaManager.last_stable_offset` and
:meth:`ReplicaManager.aborted_transactions` are where transactions plug in, and acks=-1
has nothing to wait for while the ISR is this broker alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from kbroker.codec.error_codes import ErrorCode
from kbroker.log.errors import LogError
from kbroker.records.batch import HEADER_SIZE, BatchError, peek_size
from kbroker.replica.errors import PartitionError
from kbroker.replica.fetch_session import FetchSessionCache
from kbroker.replica.notifier import PartitionNotifier
from kbroker.replica.record_validation import check_compacted_keys
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
    TopicPartition,
)
from kbroker.txn.config import (
    PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS,
    PRODUCER_ID_EXPIRATION_MS,
    int_setting,
)

if TYPE_CHECKING:
    from kbroker.broker import Broker
    from kbroker.log import PartitionLog
    from kbroker.metadata.model import PartitionInfo, TopicInfo

log = logging.getLogger(__name__)
_VALID_ACKS = (0, 1, -1)

__all__ = [
    "CONSUMER_REPLICA_ID", "READ_COMMITTED", "READ_UNCOMMITTED", "AppendResult", "FetchParams", "FetchResult",
    "OffsetResult", "PartitionFetch", "ReplicaManager", "TopicPartition",
]


@dataclass
class _Read:
    """The results of one pass over a fetch's partitions."""

    results: list[tuple[TopicPartition, FetchResult]] = field(default_factory=list)
    bytes_readable: int = 0
    #: An error that should end the long poll at once (unknown partitions do not).
    errored: bool = False


class ReplicaManager:
    """The data path of every partition this broker hosts."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._notifier = PartitionNotifier()
        self._stopped = False
        self._task_group: TaskGroup | None = None
        #: KIP-227 incremental fetch sessions, shared by every connection.
        self.fetch_sessions = FetchSessionCache(broker.clock)
        self._producer_expiration_ms = int_setting(broker.config, PRODUCER_ID_EXPIRATION_MS)
        self._producer_expiration_check_ms = int_setting(broker.config, PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, task_group: TaskGroup) -> None:
        """Hook into the broker's task group (for delayed operations) and metadata events."""
        self._task_group = task_group
        self._stopped = False
        self.broker.metadata.on_topic_deleted.append(self._on_topic_deleted)

    async def stop(self) -> None:
        """Release every waiting fetch so in-flight long polls answer now."""
        self._stopped = True
        self._notifier.notify_all()

    def _on_topic_deleted(self, topic: TopicInfo) -> None:
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
        info = self.broker.metadata.partition(tp.topic, tp.partition)
        if info is None:
            raise PartitionError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if info.leader != self.broker.node_id:
            raise PartitionError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        plog = self.broker.log_manager.get_log(tp.topic, tp.partition)
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
        """The offset below which no transaction is open.

        Transactions seam: without a producer state manager every record is stable,
        so this is the high watermark.
        """
        return plog.high_watermark

    def aborted_transactions(self, tp: TopicPartition, plog: PartitionLog, start: int,
                             end: int) -> list[tuple[int, int]]:
        """``(producer_id, first_offset)`` of aborted transactions overlapping ``[start, end)``.

        Transactions seam: no transaction index yet, so none.
        """
        return []

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
        coordinators), which alone may write to internal topics. A failed partition has
        nothing written; the others are appended regardless. With replication, acks=-1
        would wait here (up to ``timeout_ms``) for the ISR to catch up.
        """
        if acks not in _VALID_ACKS:
            return {tp: AppendResult(ErrorCode.INVALID_REQUIRED_ACKS) for tp in entries}
        out: dict[TopicPartition, AppendResult] = {}
        for tp, records in entries.items():
            try:
                out[tp] = self._append_partition(tp, records, acks=acks, internal=internal)
            except PartitionError as e:
                out[tp] = AppendResult(e.error_code, error_message=e.message,
                                       record_errors=tuple(e.record_errors))
            except BatchError as e:
                out[tp] = AppendResult(e.error_code, error_message=str(e))
            except LogError as e:
                log.warning("append to %s-%d failed: %s", tp.topic, tp.partition, e)
                out[tp] = AppendResult(e.error_code, error_message=str(e))
            except OSError as e:  # storage trouble outside the log's own mapping (e.g. a full disk)
                log.error("append to %s-%d failed: %s", tp.topic, tp.partition, e)
                out[tp] = AppendResult(ErrorCode.KAFKA_STORAGE_ERROR, error_message=str(e))
            else:
                self._notifier.notify(tp)
        return out

    def _append_partition(self, tp: TopicPartition, records: bytes | bytearray | memoryview | None, *,
                          acks: int, internal: bool) -> AppendResult:
        info, plog = self._leader_log(tp)
        if not internal:
            topic = self.broker.metadata.topic(tp.topic)
            if topic is not None and topic.internal:
                raise PartitionError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Cannot append to internal topic {tp.topic}")
        if acks == -1 and len(info.isr) < self._min_insync_replicas(tp.topic):
            raise PartitionError(ErrorCode.NOT_ENOUGH_REPLICAS,
                                 f"The size of the current ISR {info.isr} is insufficient to satisfy "
                                 f"the min.isr requirement of {self._min_insync_replicas(tp.topic)}")
        _check_single_batch(records)
        assert records is not None
        if not internal and "compact" in self._cleanup_policy(tp.topic):
            check_compacted_keys(tp.topic, tp.partition, records)
        # Idle producer ids expire lazily here rather than from a timer task.
        plog.maybe_expire_producers(self._producer_expiration_ms, self._producer_expiration_check_ms)
        result = plog.append(records, leader_epoch=info.leader_epoch)
        return AppendResult(base_offset=result.base_offset, log_append_time_ms=result.log_append_time_ms,
                            log_start_offset=result.log_start_offset)

    def _cleanup_policy(self, topic: str) -> str:
        info = self.broker.metadata.topic(topic)
        value = info.configs.get("cleanup.policy") if info is not None else None
        if value is None:
            policy = self.broker.config.get("log.cleanup.policy")
            value = ",".join(policy) if isinstance(policy, list) else str(policy)
        return value

    def _min_insync_replicas(self, topic: str) -> int:
        info = self.broker.metadata.topic(topic)
        value = info.configs.get("min.insync.replicas") if info is not None else None
        return int(value) if value else int(self.broker.config.min_insync_replicas)

    # -- fetch -----------------------------------------------------------------------------
    async def fetch(self, partitions: Sequence[tuple[TopicPartition, PartitionFetch]],
                    params: FetchParams) -> list[tuple[TopicPartition, FetchResult]]:
        """Read ``partitions`` in order, long-polling until ``min_bytes`` are available.

        Answers at once when ``max_wait_ms`` <= 0, there is nothing to read, enough bytes
        are there, or a partition failed; otherwise sleeps until appends to the watched
        partitions bring ``min_bytes`` or the deadline passes, then reads again.
        """
        read = self._read_all(partitions, params)
        if (params.max_wait_ms <= 0 or read.bytes_readable >= params.min_bytes or read.errored
                or not partitions or self._stopped):
            return read.results
        clock = self.broker.clock
        deadline = clock.monotonic() + params.max_wait_ms / 1000.0
        keys = [tp for tp, _ in partitions]
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0 or self._stopped:
                break
            # No await between the last read and registering: an append cannot slip between.
            with self._notifier.watch(keys) as event:
                with anyio.move_on_after(remaining) as scope:
                    await event.wait()
            if scope.cancelled_caught:
                break  # timed out (checked apart from the clock so a manual clock cannot spin)
            read = self._read_all(partitions, params)
            if read.bytes_readable >= params.min_bytes or read.errored or self._stopped:
                return read.results
        return self._read_all(partitions, params).results

    def _read_all(self, partitions: Sequence[tuple[TopicPartition, PartitionFetch]],
                  params: FetchParams) -> _Read:
        """One pass in request order, sharing ``max_bytes`` as Kafka does: the first batch
        returned is whole even when larger than the limits, later partitions get what is left."""
        read = _Read()
        limit = max(params.max_bytes, 0)
        min_one = True
        known = 0
        for tp, req in partitions:
            result = self._read_partition(tp, req, params, min(req.max_bytes, limit), min_one)
            read.results.append((tp, result))
            if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                continue  # as Kafka: unknown partitions alone do not end a long poll
            known += 1
            if result.error_code != ErrorCode.NONE:
                read.errored = True
            size = len(result.records)
            if size:
                min_one = False
                limit = max(0, limit - size)
                read.bytes_readable += size
        if partitions and not known:
            read.errored = True  # nothing readable at all: answer now
        return read

    def _read_partition(self, tp: TopicPartition, req: PartitionFetch, params: FetchParams,
                        max_bytes: int, min_one_message: bool) -> FetchResult:
        try:
            info, plog = self._leader_log(tp)
            self._check_leader_epoch(req.current_leader_epoch, info.leader_epoch)
            hw = plog.high_watermark
            lso = self.last_stable_offset(tp, plog)
            if params.is_follower:
                upper = plog.log_end_offset
            elif params.isolation_level == READ_COMMITTED:
                upper = lso
            else:
                upper = hw
            records = plog.read(req.fetch_offset, max_bytes, min_one_message=min_one_message,
                                upper_bound=upper)
        except PartitionError as e:
            return FetchResult(e.error_code)
        except LogError as e:
            return FetchResult(e.error_code)
        aborted = None
        if params.isolation_level == READ_COMMITTED and not params.is_follower:
            aborted = self.aborted_transactions(tp, plog, req.fetch_offset, upper) if records else []
        return FetchResult(high_watermark=hw, last_stable_offset=lso, log_start_offset=plog.log_start_offset,
                           records=records, aborted_transactions=aborted)

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


def _check_single_batch(records: bytes | bytearray | memoryview | None) -> None:
    """Kafka's rule for produce v3+: exactly one record batch per partition.

    Only framing is looked at; the log validates the batch itself (CRC, magic, size).
    """
    if not records:
        raise PartitionError(ErrorCode.INVALID_RECORD, "Produce requests must have at least one record batch per partition")
    first = peek_size(records)
    if first is None or first >= len(records):
        return
    second = peek_size(records, first)
    if second is not None and second >= HEADER_SIZE and first + second <= len(records):
        raise PartitionError(ErrorCode.INVALID_RECORD,
                             "Produce requests are only allowed to contain exactly one record batch per partition")
