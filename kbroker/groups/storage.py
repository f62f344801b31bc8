"""Where group records live: the compacted ``__consumer_offsets`` topic, or memory in tests.

A group's records all go to one partition, ``abs(java hashCode(group id)) %
offsets.topic.num.partitions``, so their order is the order they were written in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kbroker.clock import Clock
from kbroker.common import java_string_hash as java_string_hash  # re-exported for group code
from kbroker.common import partition_for as partition_for
from kbroker.groups.errors import Errors
from kbroker.log import PartitionLog
from kbroker.metadata.internal_topic import (
    AppendRecords,
    InternalTopic,
    InternalTopicSource,
    InternalTopicStore,
    KeyValue,
    TopicStore,
)
from kbroker.records.batch import NO_PRODUCER_ID, BatchError
from kbroker.records.record import ControlType, end_txn_marker, iter_records

log = logging.getLogger(__name__)

CONSUMER_OFFSETS = "__consumer_offsets"

__all__ = ["CONSUMER_OFFSETS", "Appended", "KeyValue", "MemoryOffsetsLog", "OffsetsLog", "Stored", "StoredMarker",
           "StoredRecord", "TopicOffsetsLog", "java_string_hash", "partition_for"]


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


class OffsetsLog(TopicStore, Protocol):
    """Append and replay key/value records of the group topic."""

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


class TopicOffsetsLog(InternalTopicStore):
    """The real ``__consumer_offsets`` topic (an :class:`InternalTopic`)."""

    def __init__(self, *, metadata: InternalTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 default_partitions: Callable[[], int]) -> None:
        """``default_partitions`` gives ``offsets.topic.num.partitions`` (used until the topic exists)."""
        super().__init__(InternalTopic(CONSUMER_OFFSETS, metadata=metadata, append_records=append_records, logs=logs,
                                       clock=clock, default_partitions=default_partitions,
                                       topic_configs=lambda: {"cleanup.policy": "compact"}))

    async def append(self, partition: int, records: Sequence[KeyValue], *, producer_id: int = NO_PRODUCER_ID,
                     producer_epoch: int = -1, transactional: bool = False) -> Appended:
        written = await self._topic.append(partition, records, producer_id=producer_id,
                                           producer_epoch=producer_epoch, transactional=transactional)
        if written.error_code:
            return Appended(_append_error(written.error_code))
        return Appended(Errors.NONE, written.base_offset)

    def replay(self, partition: int) -> Iterator[Stored]:
        for h, batch in self._topic.batches(partition):
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
