"""Per-topic log configuration, named after Kafka's topic configs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TimestampType = Literal["CreateTime", "LogAppendTime"]

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
}
_OPTIONAL_INT_FIELDS = {
    "flush.messages": "flush_interval_messages",
    "flush.ms": "flush_interval_ms",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "message.timestamp.before.max.ms": "message_timestamp_before_max_ms",
    "message.timestamp.after.max.ms": "message_timestamp_after_max_ms",
}
# Kafka encodes "never" as Long.MAX_VALUE for flush.* and message.timestamp.*, -1 for retention.*.
_LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class LogConfig:
    """Storage settings of one partition log (Kafka's ``LogConfig``).

    ``retention_ms``/``retention_bytes``/``cleanup_policy`` are stored for the log
    cleaner/retention task, which works through :attr:`PartitionLog.segments` and
    :meth:`PartitionLog.delete_oldest_segments`.
    """

    segment_bytes: int = 1 * GiB
    segment_ms: int = 7 * DAY_MS
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10 * MiB
    flush_interval_messages: int | None = None
    flush_interval_ms: int | None = None
    max_message_bytes: int = 1048588
    message_timestamp_type: TimestampType = "CreateTime"
    #: How far a CreateTime timestamp may lie before / after broker time (None: unbounded).
    message_timestamp_before_max_ms: int | None = None
    message_timestamp_after_max_ms: int | None = None
    retention_ms: int | None = 7 * DAY_MS
    retention_bytes: int | None = None
    cleanup_policy: str = "delete"
    #: Replicas that must hold an acks=all write (checked by the replica manager).
    min_insync_replicas: int = 1

    @property
    def compact(self) -> bool:
        """True if ``cleanup.policy`` includes ``compact`` (every record needs a key)."""
        return "compact" in self.cleanup_policy.split(",")

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
        if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
            raise ValueError(f"unknown message_timestamp_type {self.message_timestamp_type!r}")

    @property
    def log_append_time(self) -> bool:
        """True if the broker stamps batches with its own clock (``message.timestamp.type``)."""
        return self.message_timestamp_type == "LogAppendTime"

    def with_overrides(self, props: Mapping[str, str]) -> LogConfig:
        """This config with Kafka topic-config overrides applied (unknown keys are ignored)."""
        changes: dict[str, object] = {}
        difference = props.get("message.timestamp.difference.max.ms")
        if difference is not None and int(difference) < _LONG_MAX:
            # Kafka's deprecated bound applies to whichever side keeps its default.
            for key in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms"):
                if int(props.get(key, _LONG_MAX)) >= _LONG_MAX:
                    changes[_OPTIONAL_INT_FIELDS[key]] = int(difference)
        for key, value in props.items():
            if key in _INT_FIELDS:
                changes[_INT_FIELDS[key]] = int(value)
            elif key in _OPTIONAL_INT_FIELDS:
                if _OPTIONAL_INT_FIELDS[key] in changes:
                    continue  # set from message.timestamp.difference.max.ms above
                n = int(value)
                never = n < 0 if key.startswith("retention") else n >= _LONG_MAX
                changes[_OPTIONAL_INT_FIELDS[key]] = None if never else n
            elif key == "message.timestamp.type":
                changes["message_timestamp_type"] = value
            elif key == "cleanup.policy":
                changes["cleanup_policy"] = value
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_properties(self) -> dict[str, str]:
        """The Kafka topic-config view of this config (for DescribeConfigs)."""
        props = {k: str(getattr(self, f)) for k, f in _INT_FIELDS.items()}
        for key, f in _OPTIONAL_INT_FIELDS.items():
            v = getattr(self, f)
            props[key] = str(v if v is not None else (-1 if key.startswith("retention") else _LONG_MAX))
        props["message.timestamp.type"] = self.message_timestamp_type
        props["cleanup.policy"] = self.cleanup_policy
        return props
