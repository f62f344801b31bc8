"""Where transaction state lives: the compacted ``__transaction_state`` topic, or memory in tests.

A transactional id's records all go to partition ``abs(java hashCode(id)) % partitions``,
so replaying a partition from its start yields each id's latest state last.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.log import PartitionLog
from kbroker.metadata.errors import Result
from kbroker.metadata.model import TopicInfo
from kbroker.records.batch import iter_headers
from kbroker.records.builder import build_batch
from kbroker.records.record import iter_records

log = logging.getLogger(__name__)

TRANSACTION_STATE = "__transaction_state"
_READ_CHUNK = 1 << 20

KeyValue = tuple[bytes, bytes | None]


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


class TransactionLog(Protocol):
    """Append and replay the records of the transaction state topic."""

    @property
    def num_partitions(self) -> int:
        """How many partitions transactional ids hash over."""
        ...

    def exists(self) -> bool:
        """Whether the topic has been created."""
        ...

    def ensure(self) -> bool:
        """Create the topic if missing; False when it cannot be created."""
        ...

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


class StateTopicSource(Protocol):
    """The metadata the state topic needs: look it up, and create it on first use."""

    def topic(self, name: str) -> TopicInfo | None: ...

    def ensure_internal_topic(self, name: str, num_partitions: int | None,
                              configs: Mapping[str, str]) -> Result: ...


#: The replica manager's append (``append_records(entries, acks=..., internal=...)``); its
#: per-partition results carry ``error_code`` and ``error_message``.
AppendRecords = Callable[..., Awaitable[Mapping[TopicPartition, Any]]]


class TopicTransactionLog:
    """The real ``__transaction_state`` topic, through the metadata, replica and log managers."""

    def __init__(self, *, metadata: StateTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 topic_configs: Callable[[], Mapping[str, str]],
                 default_partitions: Callable[[], int]) -> None:
        """``default_partitions`` gives ``transaction.state.log.num.partitions`` (used until the topic
        exists); ``topic_configs`` the configs the topic is created with."""
        self._metadata = metadata
        self._append_records = append_records
        self._get_log = logs
        self._clock = clock
        self._topic_configs = topic_configs
        self._default_partitions = default_partitions

    @property
    def num_partitions(self) -> int:
        """The topic's own partition count once it exists (as Kafka), else the setting."""
        topic = self._metadata.topic(TRANSACTION_STATE)
        return len(topic.partitions) if topic is not None else self._default_partitions()

    def exists(self) -> bool:
        return self._metadata.topic(TRANSACTION_STATE) is not None

    def ensure(self) -> bool:
        if self.exists():
            return True
        try:
            code, message = self._metadata.ensure_internal_topic(
                TRANSACTION_STATE, self.num_partitions, dict(self._topic_configs()))
        except OSError as e:  # a full disk, say: the retriable COORDINATOR_NOT_AVAILABLE
            log.warning("cannot create %s: %s", TRANSACTION_STATE, e)
            return False
        if code != 0:
            log.warning("cannot create %s: %s", TRANSACTION_STATE, message)
        return self.exists()

    async def append(self, partition: int, key: bytes, value: bytes | None) -> ErrorCode:
        if not self.ensure():
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        batch = build_batch([(key, value, (), self._clock.time_ms())])
        tp = TopicPartition(TRANSACTION_STATE, partition)
        try:
            result = (await self._append_records({tp: batch}, acks=-1, internal=True))[tp]
        except Exception:  # the caller answers its client with an error; it must not die with it waiting
            log.exception("writing transaction state to %s-%d failed", TRANSACTION_STATE, partition)
            return ErrorCode.NOT_COORDINATOR
        if result.error_code != 0:
            log.warning("writing transaction state to %s-%d failed: %s (%s)", TRANSACTION_STATE, partition,
                        result.error_code, result.error_message)
            return append_error(result.error_code)
        return ErrorCode.NONE

    def replay(self, partition: int) -> Iterator[KeyValue]:
        plog = self._get_log(TRANSACTION_STATE, partition)
        if plog is None:
            return
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            data = plog.read(offset, _READ_CHUNK)
            start = offset
            for pos, h in iter_headers(data):
                offset = h.next_offset
                if h.is_control:
                    continue
                for rec in iter_records(memoryview(data)[pos:pos + h.size]):
                    if rec.key is not None:
                        yield rec.key, rec.value
            if offset == start:
                break  # nothing whole came back; stop rather than spin
