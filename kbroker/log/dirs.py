"""Names, locks and new partition dirs: partition dir names, renamed (``-delete``,
``-stray``) dir names, the per-log-dir ``.lock`` and the files of a new partition dir."""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from pathlib import Path

from kbroker.common import TopicPartition
from kbroker.fs import MEMORY
from kbroker.log.checkpoint import PARTITION_METADATA_FILE
from kbroker.log.errors import KafkaStorageError
from kbroker.log.segment import LOG_FILE_SUFFIX, filename_prefix_from_offset

DELETE_DIR_SUFFIX = "-delete"
FUTURE_DIR_SUFFIX = "-future"
STRAY_DIR_SUFFIX = "-stray"
#: Kafka's per-log-dir lock file: held (flock) by the one broker using the directory.
LOCK_FILE = ".lock"
#: The longest file name most file systems accept (NAME_MAX).
_MAX_NAME_BYTES = 255
_FIRST_SEGMENT_LOG = filename_prefix_from_offset(0) + LOG_FILE_SUFFIX
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


def write_new_partition_files(dir_fd: int, name: str, metadata: bytes) -> None:
    """Write ``partition.metadata`` and an empty first ``.log`` into the new partition dir
    ``name`` under the log dir open as ``dir_fd``, without fsyncs (the caller syncs the
    file system once for many); the indexes are created once they have entries."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(f"{name}/{PARTITION_METADATA_FILE}", flags, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, metadata)
    finally:
        os.close(fd)
    os.close(os.open(f"{name}/{_FIRST_SEGMENT_LOG}", flags, 0o644, dir_fd=dir_fd))


def write_new_partition_files_in_memory(partition_dir: Path, metadata: bytes) -> None:
    """:func:`write_new_partition_files` for a partition dir in memory (``log.dirs=:memory:``)."""
    MEMORY.create_new(partition_dir / PARTITION_METADATA_FILE, metadata)
    MEMORY.create_new(partition_dir / _FIRST_SEGMENT_LOG)
