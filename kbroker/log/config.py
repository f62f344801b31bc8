"""Per-topic log configuration, named after Kafka's topic configs."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TimestampType = Literal["CreateTime", "LogAppendTime"]
#: Kafka's topic ``compression.type`` values.
COMPRESSION_TYPES = ("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
DAY_MS = 24 * 60 * 60 * 1000

# Kafka topic-config name -> (LogConfig field, parser). "None" values mean "never"/"unlimited".
_INT_FIELDS = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "index.interval.bytes": "index_interval_bytes",
    "segment.index.bytes": "segment_index_bytes",
    "max.message.bytes": "max_message_bytes",
    "min.insync.replicas": "min_insync_replicas",
    "file.delete.delay.ms": "file_delete_delay_ms",
    "delete.retention.ms": "delete_retention_ms",
    "min.compaction.lag.ms": "min_compaction_lag_ms",
    "segment.jitter.ms": "segment_jitter_ms",
    "compression.gzip.level": "compression_gzip_level",
    "compression.lz4.level": "compression_lz4_level",
    "compression.zstd.level": "compression_zstd_level",
}
_OPTIONAL_INT_FIELDS = {
    "flush.messages": "flush_interval_messages",
    "flush.ms": "flush_interval_ms",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "message.timestamp.before.max.ms": "message_timestamp_before_max_ms",
    "message.timestamp.after.max.ms": "message_timestamp_after_max_ms",
    "max.compaction.lag.ms": "max_compaction_lag_ms",
}
# Kafka encodes "never" as Long.MAX_VALUE for flush.*, message.timestamp.* and
# max.compaction.lag.ms, -1 for retention.*.
_LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class LogConfig:
    """Storage settings of one partition log (Kafka's ``LogConfig``).

    The retention task reads ``retention_*`` and ``cleanup_policy``; the log cleaner the
    compaction fields; the replica layer ``compression_*`` and the timestamp bounds;
    deleted segment files wait ``file_delete_delay_ms``.
    """

    segment_bytes: int = 1 * GiB
    segment_ms: int = 7 * DAY_MS
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10 * MiB
    flush_interval_messages: int | None = None
    flush_interval_ms: int | None = None
    max_message_bytes: int = 1048588
    message_timestamp_type: TimestampType = "CreateTime"
    #: How far a CreateTime timestamp may lie before / after broker time (None: unbounded);
    #: Kafka 4 bounds the future to an hour by default.
    message_timestamp_before_max_ms: int | None = None
    message_timestamp_after_max_ms: int | None = 3_600_000
    retention_ms: int | None = 7 * DAY_MS
    retention_bytes: int | None = None
    cleanup_policy: str = "delete"
    #: Delay between renaming a deleted segment to ``.deleted`` and removing its files.
    file_delete_delay_ms: int = 60_000
    #: How long a compacted topic keeps tombstones (and transaction markers) once cleaned.
    delete_retention_ms: int = DAY_MS
    min_compaction_lag_ms: int = 0
    #: None: no maximum (Kafka's Long.MAX_VALUE).
    max_compaction_lag_ms: int | None = None
    min_cleanable_dirty_ratio: float = 0.5
    #: ``producer`` keeps each batch's codec; a codec name makes the broker recompress.
    compression_type: str = "producer"
    compression_gzip_level: int = -1
    compression_lz4_level: int = 9
    compression_zstd_level: int = 3
    segment_jitter_ms: int = 0
    #: Replicas that must hold an acks=all write (checked by the replica manager).
    min_insync_replicas: int = 1

    @property
    def compact(self) -> bool:
        """True if ``cleanup.policy`` includes ``compact`` (every record needs a key)."""
        return "compact" in self.cleanup_policy.split(",")

    @property
    def delete(self) -> bool:
        """True if ``cleanup.policy`` includes ``delete`` (time and size retention apply)."""
        return "delete" in self.cleanup_policy.split(",")

    def __post_init__(self) -> None:
        if self.segment_bytes < 14:
            raise ValueError("segment_bytes must be at least 14")
        if self.segment_ms <= 0:
            raise ValueError("segment_ms must be positive")
        if self.index_interval_bytes < 0:
            raise ValueError("index_interval_bytes must not be negative")
        # Kafka's floor; an index smaller than one entry still holds one (the segment rolls at once).
        if self.segment_index_bytes < 4:
            raise ValueError("segment_index_bytes must be at least 4")
        if self.compression_type not in COMPRESSION_TYPES:
            raise ValueError(f"unknown compression_type {self.compression_type!r}")
        if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
            raise ValueError(f"unknown message_timestamp_type {self.message_timestamp_type!r}")

    def random_segment_jitter(self) -> int:
        """A new segment's roll jitter (Kafka's ``randomSegmentJitter``): a random amount below
        ``min(segment.jitter.ms, segment.ms)`` taken off its ``segment.ms``; 0 without jitter."""
        if self.segment_jitter_ms <= 0:
            return 0
        return random.randrange(min(self.segment_jitter_ms, self.segment_ms))

    @property
    def log_append_time(self) -> bool:
        """True if the broker stamps batches with its own clock (``message.timestamp.type``)."""
        return self.message_timestamp_type == "LogAppendTime"

    def with_overrides(self, props: Mapping[str, str]) -> LogConfig:
        """This config with Kafka topic-config overrides applied (unknown keys are ignored)."""
        changes: dict[str, object] = {}
        for key, value in props.items():
            if key in _INT_FIELDS:
                changes[_INT_FIELDS[key]] = int(value)
            elif key in _OPTIONAL_INT_FIELDS:
                n = int(value)
                never = n < 0 if key.startswith("retention") else n >= _LONG_MAX
                changes[_OPTIONAL_INT_FIELDS[key]] = None if never else n
            elif key == "message.timestamp.type":
                changes["message_timestamp_type"] = value
            elif key == "cleanup.policy":
                changes["cleanup_policy"] = value
            elif key == "compression.type":
                changes["compression_type"] = value
            elif key == "min.cleanable.dirty.ratio":
                changes["min_cleanable_dirty_ratio"] = float(value)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_properties(self) -> dict[str, str]:
        """The Kafka topic-config view of this config (for DescribeConfigs)."""
        props = {k: str(getattr(self, f)) for k, f in _INT_FIELDS.items()}
        for key, f in _OPTIONAL_INT_FIELDS.items():
            v = getattr(self, f)
            props[key] = str(v if v is not None else (-1 if key.startswith("retention") else _LONG_MAX))
        props["message.timestamp.type"] = self.message_timestamp_type
        props["cleanup.policy"] = self.cleanup_policy
        props["compression.type"] = self.compression_type
        props["min.cleanable.dirty.ratio"] = str(self.min_cleanable_dirty_ratio)
        return props
