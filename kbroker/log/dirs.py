"""Names and locks of log directories: partition dir names, renamed (``-delete``,
``-stray``) dir names, and the per-log-dir ``.lock``."""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from pathlib import Path

from kbroker.common import TopicPartition
from kbroker.log.errors import KafkaStorageError

DELETE_DIR_SUFFIX = "-delete"
FUTURE_DIR_SUFFIX = "-future"
STRAY_DIR_SUFFIX = "-stray"
#: Kafka's per-log-dir lock file: held (flock) by the one broker using the directory.
LOCK_FILE = ".lock"
#: The longest file name most file systems accept (NAME_MAX).
_MAX_NAME_BYTES = 255
_DIR_RE = re.compile(r"^(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>\d+)$")


def partition_dir_name(topic: str, partition: int) -> str:
    """Kafka's partition directory name, ``<topic>-<partition>``."""
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> TopicPartition | None:
    """``(topic, partition)`` from a directory name, or None if it is not a partition dir."""
    m = _DIR_RE.match(name)
    if m is None:
        return None
    return TopicPartition(m.group("topic"), int(m.group("partition")))


def log_dir_name_with_suffix_capped(topic: str, partition: int, suffix: str) -> str:
    """``<topic>-<partition>.<32 hex><suffix>`` with the topic cut so the name fits in
    255 bytes (Kafka's ``UnifiedLog.logDirNameWithSuffixCappedLength``): a topic name may
    be 249 characters long, and the renamed directory must still be creatable."""
    full_suffix = f"-{partition}.{uuid.uuid4().hex}{suffix}"
    # Legal topic names are ASCII, so characters are bytes.
    return topic[: max(0, _MAX_NAME_BYTES - len(full_suffix))] + full_suffix


def lock_log_dir(log_dir: Path) -> int:
    """Take ``<log_dir>/.lock`` exclusively (as Kafka does); returns the descriptor that
    holds it. KafkaStorageError if another broker (process or thread) holds it."""
    fd = os.open(log_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise KafkaStorageError(f"Failed to acquire lock on file {LOCK_FILE} in {log_dir}. "
                                "A Kafka instance in another process or thread is using this directory.") from e
    return fd
