"""Kafka's checkpoint and marker files, written atomically (tmp + fsync + rename).

* ``OffsetCheckpointFile``: ``recovery-point-offset-checkpoint``,
  ``log-start-offset-checkpoint`` and (replicated logs only) the high watermarks'
  ``replication-offset-checkpoint`` at the log dir root, as text::

      0                 <- version
      2                 <- entry count
      my-topic 0 42     <- topic partition offset
      my-topic 1 17

* ``PartitionMetadataFile``: ``partition.metadata`` in each partition dir.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path

from kbroker.common import TopicPartition
from kbroker.fs import store_for

RECOVERY_POINT_CHECKPOINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT_FILE = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT_FILE = "replication-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
PARTITION_METADATA_FILE = "partition.metadata"


log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A malformed checkpoint file."""


class OffsetCheckpointFile:
    """A ``topic partition offset`` checkpoint (Kafka's ``OffsetCheckpointFile``, version 0)."""

    VERSION = 0

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, offsets: Mapping[TopicPartition, int]) -> None:
        lines = [str(self.VERSION), str(len(offsets))]
        lines += [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())]
        store_for(self.path).write_atomic(self.path, ("\n".join(lines) + "\n").encode())

    def read(self) -> dict[TopicPartition, int]:
        """The checkpointed offsets; empty if the file does not exist."""
        try:
            text = store_for(self.path).read_bytes(self.path).decode()
        except FileNotFoundError:
            return {}
        lines = text.splitlines()
        try:
            version = int(lines[0])
            count = int(lines[1])
        except (IndexError, ValueError) as e:
            raise CheckpointError(f"malformed checkpoint header in {self.path}") from e
        if version != self.VERSION:
            raise CheckpointError(f"unsupported checkpoint version {version} in {self.path}")
        entries = [line for line in lines[2:] if line.strip()]
        if len(entries) != count:
            raise CheckpointError(f"{self.path} declares {count} entries but holds {len(entries)}")
        out: dict[TopicPartition, int] = {}
        for line in entries:
            parts = line.split()
            if len(parts) != 3:
                raise CheckpointError(f"malformed checkpoint line {line!r} in {self.path}")
            out[TopicPartition(parts[0], int(parts[1]))] = int(parts[2])
        return out


def encode_topic_id(topic_id: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString()``: URL-safe base64 of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode()


def decode_topic_id(text: str) -> uuid.UUID:
    """Inverse of :func:`encode_topic_id`."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 16:
        raise ValueError(f"not a topic id: {text!r}")
    return uuid.UUID(bytes=raw)


class PartitionMetadataFile:
    """``partition.metadata``: ``version: 0`` and ``topic_id: <base64url uuid>``."""

    def __init__(self, partition_dir: Path) -> None:
        self.path = partition_dir / PARTITION_METADATA_FILE

    def exists(self) -> bool:
        return store_for(self.path).exists(self.path)

    @staticmethod
    def content(topic_id: uuid.UUID) -> bytes:
        return f"version: 0\ntopic_id: {encode_topic_id(topic_id)}\n".encode()

    def write(self, topic_id: uuid.UUID) -> None:
        store_for(self.path).write_atomic(self.path, self.content(topic_id))

    def write_new(self, topic_id: uuid.UUID) -> None:
        """Create the file in a new partition directory without fsync (the caller makes
        many of them durable at once with :func:`sync_filesystem`). A crash before that
        leaves at worst an empty file, which :meth:`read` treats as absent."""
        store_for(self.path).create_new(self.path, self.content(topic_id))

    def read(self) -> uuid.UUID | None:
        """The stored topic id, or None if the file is absent (or empty: torn by a crash
        before it was ever synced)."""
        try:
            text = store_for(self.path).read_bytes(self.path).decode()
        except FileNotFoundError:
            return None
        if not text:
            return None
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields.get("version") != "0" or "topic_id" not in fields:
            raise CheckpointError(f"malformed {self.path}")
        return decode_topic_id(fields["topic_id"])


def read_log_dir_checkpoints(log_dir: Path) -> tuple[bool, dict[TopicPartition, int], dict[TopicPartition, int]]:
    """``(clean shutdown, recovery points, log start offsets)`` of a log dir at start-up.

    An unreadable checkpoint is ignored (logged); without recovery points the logs are
    recovered as after an unclean shutdown.
    """
    clean = store_for(log_dir).exists(log_dir / CLEAN_SHUTDOWN_FILE)
    try:
        recovery_points = OffsetCheckpointFile(log_dir / RECOVERY_POINT_CHECKPOINT_FILE).read()
    except (CheckpointError, ValueError) as e:
        log.warning("ignoring unreadable recovery point checkpoint in %s: %s", log_dir, e)
        recovery_points, clean = {}, False
    try:
        start_offsets = OffsetCheckpointFile(log_dir / LOG_START_OFFSET_CHECKPOINT_FILE).read()
    except (CheckpointError, ValueError) as e:
        log.warning("ignoring unreadable log start offset checkpoint in %s: %s", log_dir, e)
        start_offsets = {}
    return clean, recovery_points, start_offsets


def read_high_watermarks(log_dir: Path) -> dict[TopicPartition, int]:
    """The high watermarks in a log dir's ``replication-offset-checkpoint`` (empty if absent;
    an unreadable file is logged and ignored: the high watermarks start at the log start and
    the leaders bring them up again)."""
    try:
        return OffsetCheckpointFile(log_dir / REPLICATION_OFFSET_CHECKPOINT_FILE).read()
    except (CheckpointError, ValueError, UnicodeDecodeError) as e:
        log.warning("ignoring unreadable high watermark checkpoint in %s: %s", log_dir, e)
        return {}
