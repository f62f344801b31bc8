"""Bridge between the metadata model and the log layer's on-disk ``TopicStore``.

The store keeps name, id, partition count and config overrides; placement is
rebuilt on load (single node: this broker holds and leads every replica).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kbroker.log.topic_store import TopicRecord, TopicStore
from kbroker.metadata.model import TopicInfo


class TopicStoreAdapter:
    """Loads and saves :class:`TopicInfo` through a :class:`TopicStore` in the first log dir."""

    def __init__(self, log_dirs: Sequence[Path]) -> None:
        self.store = TopicStore(log_dirs[0])

    def records(self) -> list[TopicRecord]:
        """Every persisted topic, by name."""
        return sorted(self.store.topics().values(), key=lambda r: r.name)

    def save(self, topic: TopicInfo) -> None:
        """Persist the topic's id, partition count and overrides (insert or replace)."""
        self.store.put(TopicRecord(topic.name, topic.topic_id, len(topic.partitions), dict(topic.configs)))

    def save_many(self, topics: Sequence[TopicInfo]) -> None:
        """Persist several topics with one write of the store (insert or replace)."""
        self.store.put_many([TopicRecord(t.name, t.topic_id, len(t.partitions), dict(t.configs)) for t in topics])

    def delete(self, topic: TopicInfo) -> None:
        """Forget the topic."""
        self.store.delete(topic.name)
