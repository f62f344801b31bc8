"""Where transaction state lives: the compacted ``__transaction_state`` topic, or memory in tests.

A transactional id's records all go to partition ``abs(java hashCode(id)) % partitions``,
so replaying a partition from its start yields each id's latest state last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.metadata.internal_topic import (
    AppendRecords,
    InternalTopic,
    InternalTopicSource,
    InternalTopicStore,
    KeyValue,
    TopicStore,
)
from kbroker.records.record import iter_records

log = logging.getLogger(__name__)

TRANSACTION_STATE = "__transaction_state"

__all__ = ["KeyValue", "MemoryTransactionLog", "TopicTransactionLog", "TransactionLog", "append_error"]


def append_error(code: int) -> ErrorCode:
    """Kafka's mapping of a failed ``__transaction_state`` write to the error the client gets."""
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


class TransactionLog(TopicStore, Protocol):
    """Append and replay the records of the transaction state topic."""

    async def append(self, partition: int, key: bytes, value: bytes | None) -> ErrorCode:
        """Append one record (``value`` None: a tombstone); NONE or the error to answer with."""
        ...

    def replay(self, partition: int) -> Iterator[KeyValue]:
        """Every record of ``partition`` from the start, in order (may run in a worker thread)."""
        ...


class MemoryTransactionLog:
    """An in-memory :class:`TransactionLog` for coordinator unit tests."""

    def __init__(self, num_partitions: int = 50) -> None:
        self.num_partitions = num_partitions
        self.partitions: dict[int, list[KeyValue]] | None = None
        #: Set to an error code to make appends fail.
        self.fail_with: ErrorCode | None = None
        self.appends = 0

    def exists(self) -> bool:
        return self.partitions is not None

    def ensure(self) -> bool:
        if self.partitions is None:
            self.partitions = {p: [] for p in range(self.num_partitions)}
        return True

    async def append(self, partition: int, key: bytes, value: bytes | None) -> ErrorCode:
        if self.fail_with is not None:
            return self.fail_with
        self.ensure()
        assert self.partitions is not None
        self.partitions[partition].append((key, value))
        self.appends += 1
        return ErrorCode.NONE

    def replay(self, partition: int) -> Iterator[KeyValue]:
        if self.partitions is not None:
            yield from list(self.partitions[partition])


class TopicTransactionLog(InternalTopicStore):
    """The real ``__transaction_state`` topic (an :class:`InternalTopic`)."""

    def __init__(self, *, metadata: InternalTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 topic_configs: Callable[[], Mapping[str, str]],
                 default_partitions: Callable[[], int]) -> None:
        """``default_partitions`` gives ``transaction.state.log.num.partitions`` (used until the topic
        exists); ``topic_configs`` the configs the topic is created with."""
        super().__init__(InternalTopic(TRANSACTION_STATE, metadata=metadata, append_records=append_records, logs=logs,
                                       clock=clock, default_partitions=default_partitions, topic_configs=topic_configs))

    async def append(self, partition: int, key: bytes, value: bytes | None) -> ErrorCode:
        written = await self._topic.append(partition, [(key, value)])
        return append_error(written.error_code) if written.error_code else ErrorCode.NONE

    def replay(self, partition: int) -> Iterator[KeyValue]:
        for h, batch in self._topic.batches(partition):
            if h.is_control:
                continue
            for rec in iter_records(batch):
                if rec.key is not None:
                    yield rec.key, rec.value
