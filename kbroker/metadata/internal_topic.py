"""A coordinator's compacted internal topic (``__consumer_offsets``, ``__transaction_state``).

The group and transaction coordinators keep their state as key/value records in an
internal topic they create on first use and read back from the start at load. This holds
what both do alike: the topic's partition count, its creation, one batch appended through
the replica manager's internal path, and every batch of a partition read back in order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.log import PartitionLog
from kbroker.metadata.errors import Result
from kbroker.metadata.model import TopicInfo
from kbroker.records.batch import NO_PRODUCER_ID, NO_SEQUENCE, BatchHeader, iter_headers
from kbroker.records.builder import build_batch

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20

KeyValue = tuple[bytes, bytes | None]


class InternalTopicSource(Protocol):
    """The metadata an internal topic needs: look it up, and create it on first use."""

    def topic(self, name: str) -> TopicInfo | None: ...

    def ensure_internal_topic(self, name: str, num_partitions: int | None,
                              configs: Mapping[str, str]) -> Result: ...


#: The replica manager's append (``append_records(entries, acks=..., internal=...)``); its
#: per-partition results carry ``error_code``, ``error_message`` and ``base_offset``.
AppendRecords = Callable[..., Awaitable[Mapping[TopicPartition, Any]]]


class TopicStore(Protocol):
    """What a coordinator asks of its state topic besides its own records."""

    @property
    def num_partitions(self) -> int:
        """How many partitions keys hash over."""
        ...

    def exists(self) -> bool:
        """Whether the topic has been created."""
        ...

    def ensure(self) -> bool:
        """Create the topic if missing; False when it cannot be created."""
        ...


class Written(NamedTuple):
    """The outcome of :meth:`InternalTopic.append`: the append's error code (0 when written)
    and the first record's offset. A topic that cannot be created reports
    UNKNOWN_TOPIC_OR_PARTITION and an unexpected failure KAFKA_STORAGE_ERROR, so each
    coordinator maps them with the rest of its append errors (retriable / not coordinator)."""

    error_code: int
    base_offset: int = -1


class InternalTopic:
    """One internal topic, through the metadata, replica and log managers."""

    def __init__(self, name: str, *, metadata: InternalTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 default_partitions: Callable[[], int],
                 topic_configs: Callable[[], Mapping[str, str]]) -> None:
        """``default_partitions`` gives the partition count setting (used until the topic exists);
        ``topic_configs`` the configs the topic is created with."""
        self.name = name
        self._metadata = metadata
        self._append_records = append_records
        self._get_log = logs
        self._clock = clock
        self._default_partitions = default_partitions
        self._topic_configs = topic_configs

    @property
    def num_partitions(self) -> int:
        """The partitions keys hash over: those the topic has, else the setting.

        As in Kafka, an existing topic's own count wins over the setting, so keys keep
        finding their records when the setting changes between restarts.
        """
        topic = self._metadata.topic(self.name)
        return len(topic.partitions) if topic is not None else self._default_partitions()

    def exists(self) -> bool:
        return self._metadata.topic(self.name) is not None

    def ensure(self) -> bool:
        """Create the topic if missing; False when it cannot be created."""
        if self.exists():
            return True
        try:
            code, message = self._metadata.ensure_internal_topic(self.name, self.num_partitions,
                                                                 dict(self._topic_configs()))
        except OSError as e:  # e.g. a full disk: the coordinator answers a retriable error
            log.warning("cannot create %s: %s", self.name, e)
            return False
        if code != 0:
            log.warning("cannot create %s: %s", self.name, message)
        return self.exists()

    async def append(self, partition: int, records: Sequence[KeyValue], *, producer_id: int = NO_PRODUCER_ID,
                     producer_epoch: int = -1, transactional: bool = False) -> Written:
        """Append ``records`` as one batch (``transactional``: in ``producer_id``'s transaction)."""
        if not self.ensure():
            return Written(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        now = self._clock.time_ms()
        # As Kafka's coordinators: no sequence numbers (the COORDINATOR origin skips their checks).
        batch = build_batch([(k, v, (), now) for k, v in records], producer_id=producer_id,
                            producer_epoch=producer_epoch, base_sequence=NO_SEQUENCE, transactional=transactional)
        tp = TopicPartition(self.name, partition)
        try:
            result = (await self._append_records({tp: batch}, acks=-1, internal=True))[tp]
        except Exception:  # the caller answers its clients with an error; it must not die with them waiting
            log.exception("writing to %s-%d failed", self.name, partition)
            return Written(ErrorCode.KAFKA_STORAGE_ERROR)
        if result.error_code != 0:
            log.warning("writing to %s-%d failed: %s (%s)", self.name, partition, result.error_code,
                        result.error_message)
            return Written(result.error_code)
        return Written(ErrorCode.NONE, result.base_offset)

    def batches(self, partition: int) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Every batch of ``partition`` from the log start to its end, in order (may run in a
        worker thread: the log reads under its own lock)."""
        plog = self._get_log(self.name, partition)
        if plog is None:
            return
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            data = plog.read(offset, _READ_CHUNK)
            start = offset
            for pos, h in iter_headers(data):
                offset = h.next_offset
                yield h, memoryview(data)[pos:pos + h.size]
            if offset == start:
                break  # nothing whole came back; stop rather than spin


class InternalTopicStore:
    """Base of a coordinator's record store over an :class:`InternalTopic`: the partition count,
    existence and creation (the :class:`TopicStore` part) are the topic's own."""

    def __init__(self, topic: InternalTopic) -> None:
        self._topic = topic

    @property
    def num_partitions(self) -> int:
        """The topic's own partition count once it exists (as Kafka), else the setting."""
        return self._topic.num_partitions

    def exists(self) -> bool:
        return self._topic.exists()

    def ensure(self) -> bool:
        return self._topic.ensure()
