"""Small value types every floor shares (Kafka's ``org.apache.kafka.common``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple

from anyio.abc import TaskGroup


class TopicPartition(NamedTuple):
    """A partition by topic name; a plain ``(topic, partition)`` tuple compares equal to it."""

    topic: str
    partition: int


@dataclass(frozen=True)
class CleaningSummary:
    """One log cleaner pass over a partition log (Kafka's ``CleanerStats``, per log): what the
    broker keeps and DescribeLogDirs' kbroker tagged field carries to clients."""

    #: Clock time the pass ended, in milliseconds since the epoch.
    ended_ms: int
    duration_ms: int
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    records_read: int
    records_retained: int
    #: The cleaner checkpoint after the pass: offsets below it are clean.
    cleaned_up_to: int


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, int32 overflow)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(key: str, num_partitions: int) -> int:
    """The internal-topic partition of a group or transactional id: Kafka's ``Utils.abs``
    of the id's Java hash modulo the partition count (``__consumer_offsets``, ``__transaction_state``)."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


def start_guarded(tg: TaskGroup, log: logging.Logger, what: str,
                  fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
    """Run ``fn(*args)`` in ``tg`` as a background step whose failure is logged (as ``what``),
    so that it cannot take the broker's task group down."""
    async def guarded() -> None:
        try:
            await fn(*args)
        except Exception:
            log.exception("%s task %s failed", what, getattr(fn, "__name__", fn))

    tg.start_soon(guarded)
