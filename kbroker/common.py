"""Small value types every floor shares (Kafka's ``org.apache.kafka.common``)."""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    """A partition by topic name; a plain ``(topic, partition)`` tuple compares equal to it."""

    topic: str
    partition: int
