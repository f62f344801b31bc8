"""Where group records live: the compacted ``__consumer_offsets`` topic, or memory in tests.

A group's records all go to one partition, ``abs(java hashCode(group id)) %
offsets.topic.num.partitions``, so their order is the order they were written in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kbroker.clock import Clock
from kbroker.common import TopicPartition
from kbroker.common import java_string_hash as java_string_hash  # re-exported for group code
from kbroker.common import partition_for as partition_for
from kbroker.groups.errors import Errors
from kbroker.log import PartitionLog
from kbroker.metadata.errors import Result
from kbroker.metadata.model import TopicInfo
from kbroker.records.batch import NO_PRODUCER_ID, NO_SEQUENCE, BatchError, iter_headers
from kbroker.records.builder import build_batch
from kbroker.records.record import ControlType, end_txn_marker, iter_records
from kbroker.replica.types import AppendResult

log = logging.getLogger(__name__)

CONSUMER_OFFSETS = "__consumer_offsets"
_READ_CHUNK = 1 << 20

KeyValue = tuple[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A key/value record as replay finds it, with what its batch says about its producer."""

    offset: int
    key: bytes
    value: bytes | None
    #: The batch's producer id; -1 for the coordinator's own (non-transactional) writes.
    producer_id: int = NO_PRODUCER_ID
    #: A transactional batch: the record counts only once a COMMIT marker follows.
    transactional: bool = False


@dataclass(frozen=True, slots=True)
class StoredMarker:
    """A transaction marker (COMMIT or ABORT control batch) of ``producer_id``."""

    offset: int
    producer_id: int
    commit: bool


Stored = StoredRecord | StoredMarker


class Appended(NamedTuple):
    """The outcome of an append: NONE and the first record's log offset, or the error to answer with."""

    error: Errors
    base_offset: int = -1


#: Append errors of a transactional write that reach the client as they are (Kafka's
#: CoordinatorOperationExceptionHelper passes every error it does not list through).
_PRODUCER_ERRORS = frozenset({
    Errors.INVALID_PRODUCER_EPOCH, Errors.PRODUCER_FENCED, Errors.INVALID_TXN_STATE,
    Errors.INVALID_PRODUCER_ID_MAPPING, Errors.TRANSACTION_COORDINATOR_FENCED, Errors.TRANSACTION_ABORTABLE,
})


def _append_error(code: int) -> Errors:
    """Kafka's mapping of a failed coordinator write to the error clients get."""
    if code in (Errors.NOT_LEADER_OR_FOLLOWER, Errors.KAFKA_STORAGE_ERROR):
        return Errors.NOT_COORDINATOR
    if code in (Errors.MESSAGE_TOO_LARGE, Errors.RECORD_LIST_TOO_LARGE, Errors.INVALID_FETCH_SIZE):
        return Errors.UNKNOWN_SERVER_ERROR
    if code in _PRODUCER_ERRORS:
        return Errors(code)
    # UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS, timeouts, ...: retriable.
    return Errors.COORDINATOR_NOT_AVAILABLE


class OffsetsLog(Protocol):
    """Append and replay key/value records of the group topic."""

    @property
    def num_partitions(self) -> int:
        """How many partitions group ids hash over."""
        ...

    def exists(self) -> bool:
        """Whether the topic has been created."""
        ...

    def ensure(self) -> bool:
        """Create the topic if missing; False when it cannot be created."""
        ...

    async def append(self, partition: int, records: Sequence[KeyValue], *, producer_id: int = NO_PRODUCER_ID,
                     producer_epoch: int = -1, transactional: bool = False) -> Appended:
        """Append ``records`` as one batch; ``transactional`` writes it in ``producer_id``'s
        open transaction (a TxnOffsetCommit), which a later marker commits or aborts."""
        ...

    def replay(self, partition: int) -> Iterator[Stored]:
        """Every record and transaction marker of ``partition`` from the start, in order."""
        ...


class MemoryOffsetsLog:
    """An in-memory :class:`OffsetsLog` for coordinator unit tests.

    Each record takes one offset, as in a log. :meth:`append_marker` stands in for the
    replica manager writing a transaction marker; a producer epoch older than the last
    one seen in the partition is refused with INVALID_PRODUCER_EPOCH, as the log does.
    """

    def __init__(self, num_partitions: int = 50) -> None:
        self.num_partitions = num_partitions
        self.partitions: dict[int, list[Stored]] | None = None
        #: Set to an error code to make appends fail.
        self.fail_with: Errors | None = None
        #: (partition, producer id) -> the latest producer epoch written there.
        self.producer_epochs: dict[tuple[int, int], int] = {}

    def exists(self) -> bool:
        return self.partitions is not None

    def ensure(self) -> bool:
        if self.partitions is None:
            self.partitions = {p: [] for p in range(self.num_partitions)}
        return True

    def _check_epoch(self, partition: int, producer_id: int, producer_epoch: int) -> bool:
        key = (partition, producer_id)
        if producer_epoch < self.producer_epochs.get(key, -1):
            return False
        self.producer_epochs[key] = producer_epoch
        return True

    async def append(self, partition: int, records: Sequence[KeyValue], *, producer_id: int = NO_PRODUCER_ID,
                     producer_epoch: int = -1, transactional: bool = False) -> Appended:
        if self.fail_with is not None:
            return Appended(self.fail_with)
        self.ensure()
        assert self.partitions is not None
        if producer_id >= 0 and not self._check_epoch(partition, producer_id, producer_epoch):
            return Appended(Errors.INVALID_PRODUCER_EPOCH)
        stored = self.partitions[partition]
        base = len(stored)
        stored.extend(StoredRecord(base + i, k, v, producer_id, transactional) for i, (k, v) in enumerate(records))
        return Appended(Errors.NONE, base)

    def append_marker(self, partition: int, producer_id: int, producer_epoch: int, commit: bool) -> Errors:
        """Write a COMMIT or ABORT marker of ``producer_id`` (what WriteTxnMarkers appends)."""
        self.ensure()
        assert self.partitions is not None
        if not self._check_epoch(partition, producer_id, producer_epoch):
            return Errors.INVALID_PRODUCER_EPOCH
        stored = self.partitions[partition]
        stored.append(StoredMarker(len(stored), producer_id, commit))
        return Errors.NONE

    def replay(self, partition: int) -> Iterator[Stored]:
        if self.partitions is not None:
            yield from self.partitions[partition]


class OffsetsTopicSource(Protocol):
    """The metadata the offsets topic needs: look it up, and create it on first use."""

    def topic(self, name: str) -> TopicInfo | None: ...

    def ensure_internal_topic(self, name: str, num_partitions: int | None,
                              configs: Mapping[str, str]) -> Result: ...


#: The replica manager's append (``append_records(entries, acks=..., internal=...)``).
AppendRecords = Callable[..., Awaitable[Mapping[TopicPartition, AppendResult]]]


class TopicOffsetsLog:
    """The real ``__consumer_offsets`` topic, through the metadata, replica and log managers."""

    def __init__(self, *, metadata: OffsetsTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 default_partitions: Callable[[], int]) -> None:
        """``default_partitions`` gives ``offsets.topic.num.partitions`` (used until the topic exists)."""
        self._metadata = metadata
        self._append_records = append_records
        self._get_log = logs
        self._clock = clock
        self._default_partitions = default_partitions

    @property
    def num_partitions(self) -> int:
        """The partitions groups hash over: those the topic has, else ``offsets.topic.num.partitions``.

        As in Kafka, an existing topic's own count wins over the setting, so groups
        keep finding their records when the setting changes between restarts.
        """
        topic = self._metadata.topic(CONSUMER_OFFSETS)
        return len(topic.partitions) if topic is not None else self._default_partitions()

    def exists(self) -> bool:
        return self._metadata.topic(CONSUMER_OFFSETS) is not None

    def ensure(self) -> bool:
        if self.exists():
            return True
        try:
            code, message = self._metadata.ensure_internal_topic(
                CONSUMER_OFFSETS, self.num_partitions, {"cleanup.policy": "compact"})
        except OSError as e:  # e.g. a full disk: retriable COORDINATOR_NOT_AVAILABLE, as Kafka
            log.warning("cannot create %s: %s", CONSUMER_OFFSETS, e)
            return False
        if code != 0:
            log.warning("cannot create %s: %s", CONSUMER_OFFSETS, message)
        return self.exists()

    async def append(self, partition: int, records: Sequence[KeyValue], *, producer_id: int = NO_PRODUCER_ID,
                     producer_epoch: int = -1, transactional: bool = False) -> Appended:
        if not self.ensure():
            return Appended(Errors.COORDINATOR_NOT_AVAILABLE)
        now = self._clock.time_ms()
        # As Kafka's coordinator: no sequence numbers (the COORDINATOR origin skips their checks).
        batch = build_batch([(k, v, (), now) for k, v in records], producer_id=producer_id,
                            producer_epoch=producer_epoch, base_sequence=NO_SEQUENCE, transactional=transactional)
        tp = TopicPartition(CONSUMER_OFFSETS, partition)
        try:
            result = (await self._append_records({tp: batch}, acks=-1, internal=True))[tp]
        except Exception:  # the caller answers its clients with an error; it must not die with them waiting
            log.exception("writing group records to %s-%d failed", CONSUMER_OFFSETS, partition)
            return Appended(Errors.NOT_COORDINATOR)
        if result.error_code != 0:
            log.warning("writing group records to %s-%d failed: %s (%s)", CONSUMER_OFFSETS, partition,
                        result.error_code, result.error_message)
            return Appended(_append_error(result.error_code))
        return Appended(Errors.NONE, result.base_offset)

    def replay(self, partition: int) -> Iterator[Stored]:
        plog = self._get_log(CONSUMER_OFFSETS, partition)
        if plog is None:
            return
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            data = plog.read(offset, _READ_CHUNK)
            start = offset
            for pos, h in iter_headers(data):
                offset = h.next_offset
                batch = memoryview(data)[pos:pos + h.size]
                if h.is_control:
                    try:
                        marker = end_txn_marker(batch)
                    except BatchError as e:
                        log.warning("skipping unreadable control batch at %s-%d offset %d: %s", CONSUMER_OFFSETS,
                                    partition, h.base_offset, e)
                        continue
                    if marker is not None:
                        yield StoredMarker(h.base_offset, h.producer_id, marker.control_type == ControlType.COMMIT)
                    continue
                for rec in iter_records(batch):
                    if rec.key is not None:
                        yield StoredRecord(rec.offset, rec.key, rec.value, h.producer_id, h.is_transactional)
            if offset == start:
                break  # nothing whole came back; stop rather than spin
