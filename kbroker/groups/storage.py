"""Where group records live: the compacted ``__consumer_offsets`` topic, or memory in tests.

A group's records all go to one partition, ``abs(java hashCode(group id)) %
offsets.topic.num.partitions``, so their order is the order they were written in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from kbroker.groups.errors import Errors

if TYPE_CHECKING:
    from kbroker.broker import Broker

log = logging.getLogger(__name__)

CONSUMER_OFFSETS = "__consumer_offsets"
_READ_CHUNK = 1 << 20

KeyValue = tuple[bytes, bytes | None]


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, int32 overflow)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group_id`` (Kafka's ``Utils.abs`` of the hash)."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


class OffsetsLog(Protocol):
    """Append and replay key/value records of the group topic."""

    num_partitions: int

    def exists(self) -> bool:
        """Whether the topic has been created."""
        ...

    def ensure(self) -> bool:
        """Create the topic if missing; False when it cannot be created."""
        ...

    async def append(self, partition: int, records: Sequence[KeyValue]) -> Errors:
        """Append ``records`` as one batch; NONE or the error to answer with."""
        ...

    def replay(self, partition: int) -> Iterator[KeyValue]:
        """Every record of ``partition`` from the start, in order."""
        ...


class MemoryOffsetsLog:
    """An in-memory :class:`OffsetsLog` for coordinator unit tests."""

    def __init__(self, num_partitions: int = 50) -> None:
        self.num_partitions = num_partitions
        self.partitions: dict[int, list[KeyValue]] | None = None
        #: Set to an error code to make appends fail.
        self.fail_with: Errors | None = None

    def exists(self) -> bool:
        return self.partitions is not None

    def ensure(self) -> bool:
        if self.partitions is None:
            self.partitions = {p: [] for p in range(self.num_partitions)}
        return True

    async def append(self, partition: int, records: Sequence[KeyValue]) -> Errors:
        if self.fail_with is not None:
            return self.fail_with
        self.ensure()
        assert self.partitions is not None
        self.partitions[partition].extend(records)
        return Errors.NONE

    def replay(self, partition: int) -> Iterator[KeyValue]:
        if self.partitions is not None:
            yield from self.partitions[partition]


class TopicOffsetsLog:
    """The real ``__consumer_offsets`` topic, through the metadata, replica and log managers."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.num_partitions = broker.config.offsets_topic_num_partitions

    def exists(self) -> bool:
        return self.broker.metadata.topic(CONSUMER_OFFSETS) is not None

    def ensure(self) -> bool:
        if self.exists():
            return True
        try:
            code, message = self.broker.metadata.ensure_internal_topic(
                CONSUMER_OFFSETS, self.num_partitions, {"cleanup.policy": "compact"})
        except OSError as e:  # e.g. a full disk: retriable COORDINATOR_NOT_AVAILABLE, as Kafka
            log.warning("cannot create %s: %s", CONSUMER_OFFSETS, e)
            return False
        if code != 0:
            log.warning("cannot create %s: %s", CONSUMER_OFFSETS, message)
        return self.exists()

    async def append(self, partition: int, records: Sequence[KeyValue]) -> Errors:
        from kbroker.records.builder import build_batch
        from kbroker.replica.manager import TopicPartition

        if not self.ensure():
            return Errors.COORDINATOR_NOT_AVAILABLE
        now = self.broker.clock.time_ms()
        batch = build_batch([(k, v, (), now) for k, v in records])
        tp = TopicPartition(CONSUMER_OFFSETS, partition)
        result = (await self.broker.replica_manager.append_records({tp: batch}, acks=-1, internal=True))[tp]
        if result.error_code != 0:
            log.warning("writing group records to %s-%d failed: %s (%s)", CONSUMER_OFFSETS, partition,
                        result.error_code, result.error_message)
            # Kafka maps storage failures to a retriable coordinator error.
            return Errors.COORDINATOR_NOT_AVAILABLE
        return Errors.NONE

    def replay(self, partition: int) -> Iterator[KeyValue]:
        from kbroker.records.batch import iter_headers
        from kbroker.records.record import iter_records

        plog = self.broker.log_manager.get_log(CONSUMER_OFFSETS, partition)
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
