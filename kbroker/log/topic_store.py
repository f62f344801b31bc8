"""``TopicStore``: topic metadata (name, id, partition count, config overrides) on disk.

kbroker has no controller quorum yet, so topics live in one JSON file under the first
log dir, replaced atomically (tmp + fsync + rename) on every change.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.fs import read_text, save_file

TOPIC_STORE_FILE = "kbroker-topics.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TopicRecord:
    """One topic's metadata; ``configs`` holds only the per-topic overrides."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "topic_id": str(self.topic_id), "partitions": self.partitions,
                "configs": dict(self.configs)}

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> TopicRecord:
        configs = obj.get("configs") or {}
        if not isinstance(configs, dict):
            raise ValueError("topic configs must be an object")
        partitions = obj["partitions"]
        if not isinstance(partitions, int):
            raise ValueError("partitions must be an integer")
        return cls(name=str(obj["name"]), topic_id=uuid.UUID(str(obj["topic_id"])), partitions=partitions,
                   configs={str(k): str(v) for k, v in configs.items()})


class TopicStore:
    """Persistent map of topic name -> :class:`TopicRecord`."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / TOPIC_STORE_FILE
        self._lock = threading.Lock()
        self._topics: dict[str, TopicRecord] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(read_text(self.path))
        except FileNotFoundError:
            return
        if raw.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported topic store version in {self.path}")
        for obj in raw.get("topics", []):
            rec = TopicRecord.from_json(obj)
            self._topics[rec.name] = rec

    def _save(self, topics: dict[str, TopicRecord]) -> None:
        """Write ``topics`` to disk, then make them the current map: a failed write (a full
        disk) changes nothing, in memory or on disk."""
        doc = {"version": _FORMAT_VERSION, "topics": [r.to_json() for r in sorted(topics.values(), key=lambda r: r.name)]}
        save_file(self.path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        self._topics = topics

    def _with(self, record: TopicRecord) -> dict[str, TopicRecord]:
        topics = dict(self._topics)
        topics[record.name] = record
        return topics

    def topics(self) -> dict[str, TopicRecord]:
        """A snapshot of all topics."""
        with self._lock:
            return dict(self._topics)

    def get(self, name: str) -> TopicRecord | None:
        return self._topics.get(name)

    def get_by_id(self, topic_id: uuid.UUID) -> TopicRecord | None:
        return next((r for r in self._topics.values() if r.topic_id == topic_id), None)

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def create(self, name: str, partitions: int, configs: Mapping[str, str] | None = None,
               topic_id: uuid.UUID | None = None) -> TopicRecord:
        """Add a topic (a fresh random id unless one is given); KeyError if it exists."""
        if partitions <= 0:
            raise ValueError("a topic needs at least one partition")
        with self._lock:
            if name in self._topics:
                raise KeyError(f"topic {name!r} already exists")
            rec = TopicRecord(name, topic_id or uuid.uuid4(), partitions, dict(configs or {}))
            self._save(self._with(rec))
            return rec

    def put(self, record: TopicRecord) -> None:
        """Insert or replace a topic record."""
        with self._lock:
            self._save(self._with(record))

    def put_many(self, records: Sequence[TopicRecord]) -> None:
        """Insert or replace several topic records with one write."""
        with self._lock:
            topics = dict(self._topics)
            for record in records:
                topics[record.name] = record
            self._save(topics)

    def delete(self, name: str) -> TopicRecord | None:
        """Remove a topic; returns its record, or None if absent."""
        with self._lock:
            rec = self._topics.get(name)
            if rec is not None:
                topics = dict(self._topics)
                del topics[name]
                self._save(topics)
            return rec

    def set_configs(self, name: str, configs: Mapping[str, str]) -> TopicRecord:
        """Replace a topic's config overrides (AlterConfigs)."""
        with self._lock:
            rec = self._topics[name]
            rec = TopicRecord(rec.name, rec.topic_id, rec.partitions, dict(configs))
            self._save(self._with(rec))
            return rec

    def set_partition_count(self, name: str, partitions: int) -> TopicRecord:
        """Grow a topic (CreatePartitions); partition counts never shrink."""
        with self._lock:
            rec = self._topics[name]
            if partitions < rec.partitions:
                raise ValueError("partition count can only grow")
            rec = TopicRecord(rec.name, rec.topic_id, partitions, dict(rec.configs))
            self._save(self._with(rec))
            return rec
