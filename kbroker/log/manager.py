"""``LogManager``: every partition log across the broker's log directories.

On start it loads (and, after an unclean shutdown, recovers) each ``<topic>-<partition>``
directory; on shutdown it flushes, writes the checkpoints and leaves Kafka's clean
shutdown marker so the next start skips rescanning segments.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kbroker.clock import Clock
from kbroker.log.checkpoint import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
    CheckpointError,
    OffsetCheckpointFile,
    TopicPartition,
    atomic_write,
)
from kbroker.log.config import LogConfig
from kbroker.log.errors import KafkaStorageError
from kbroker.log.partition_log import PartitionLog, parse_partition_dir_name, partition_dir_name

log = logging.getLogger(__name__)

DELETE_DIR_SUFFIX = "-delete"
FUTURE_DIR_SUFFIX = "-future"
STRAY_DIR_SUFFIX = "-stray"


class LogManager:
    """Owns the :class:`PartitionLog` of every partition hosted by this broker.

    ``config_for(topic)`` (optional) gives a topic's effective config when its logs are
    loaded at startup; without it ``default_config`` is used until
    :meth:`get_or_create_log` passes one.
    """

    def __init__(
        self,
        log_dirs: list[Path],
        clock: Clock,
        default_config: LogConfig,
        *,
        config_for: Callable[[str], LogConfig] | None = None,
    ) -> None:
        if not log_dirs:
            raise ValueError("at least one log dir is required")
        self.log_dirs = [Path(d) for d in log_dirs]
        self.clock = clock
        self.default_config = default_config
        self._config_for = config_for
        self._lock = threading.RLock()
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._log_dir_of: dict[TopicPartition, Path] = {}
        self._closed = False
        started = time.monotonic()
        for d in self.log_dirs:
            d.mkdir(parents=True, exist_ok=True)
            self._load_dir(d)
        log.info("loaded %d logs from %d dirs in %.3fs", len(self._logs), len(self.log_dirs), time.monotonic() - started)

    # -- startup -------------------------------------------------------------------------
    def _load_dir(self, log_dir: Path) -> None:
        marker = log_dir / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
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
        for child in sorted(log_dir.iterdir()):
            if not child.is_dir():
                continue
            name = child.name
            if name.endswith(DELETE_DIR_SUFFIX):
                # A deletion interrupted by a crash: finish it.
                shutil.rmtree(child, ignore_errors=True)
                continue
            if name.endswith((FUTURE_DIR_SUFFIX, STRAY_DIR_SUFFIX)):
                log.warning("skipping %s (future/stray replicas are not supported)", child)
                continue
            tp = parse_partition_dir_name(name)
            if tp is None:
                log.warning("skipping unexpected directory %s", child)
                continue
            if tp in self._logs:
                raise KafkaStorageError(f"partition {name} found in both {self._log_dir_of[tp]} and {log_dir}")
            plog = PartitionLog(
                child,
                self._config_for(tp[0]) if self._config_for else self.default_config,
                self.clock,
                recovery_point=recovery_points.get(tp, 0),
                log_start_offset=start_offsets.get(tp),
                had_clean_shutdown=clean,
            )
            self._logs[tp] = plog
            self._log_dir_of[tp] = log_dir
        # From here on a crash must trigger recovery again.
        marker.unlink(missing_ok=True)

    # -- lookup and creation -------------------------------------------------------------
    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> dict[TopicPartition, PartitionLog]:
        """A snapshot of every hosted log."""
        with self._lock:
            return dict(self._logs)

    def log_dir_of(self, topic: str, partition: int) -> Path | None:
        return self._log_dir_of.get((topic, partition))

    def get_or_create_log(
        self,
        topic: str,
        partition: int,
        config: LogConfig | None = None,
        *,
        topic_id: uuid.UUID | None = None,
    ) -> PartitionLog:
        """The partition's log, created in the least-loaded log dir if absent.

        A given ``config`` replaces the log's current one; a given ``topic_id`` is
        written to ``partition.metadata`` (and must match an existing one).
        """
        tp = (topic, partition)
        with self._lock:
            if self._closed:
                raise KafkaStorageError("log manager is shut down")
            existing = self._logs.get(tp)
            if existing is not None:
                if config is not None and config != existing.config:
                    existing.update_config(config)
                if topic_id is not None and existing.topic_id != topic_id:
                    existing.assign_topic_id(topic_id)
                return existing
            if partition < 0:
                raise ValueError(f"invalid partition {partition}")
            log_dir = self._next_log_dir()
            plog = PartitionLog(
                log_dir / partition_dir_name(topic, partition),
                config or self.default_config,
                self.clock,
                topic_id=topic_id,
            )
            self._logs[tp] = plog
            self._log_dir_of[tp] = log_dir
            return plog

    def _next_log_dir(self) -> Path:
        # Kafka places a new partition in the dir hosting the fewest partitions.
        counts = dict.fromkeys(self.log_dirs, 0)
        for d in self._log_dir_of.values():
            counts[d] += 1
        return min(self.log_dirs, key=lambda d: counts[d])

    def delete_partition(self, topic: str, partition: int) -> bool:
        """Remove a partition's log and its directory; False if it was not hosted."""
        tp = (topic, partition)
        with self._lock:
            plog = self._logs.pop(tp, None)
            log_dir = self._log_dir_of.pop(tp, None)
        if plog is None or log_dir is None:
            return False
        plog.close()
        # Rename first so a crash mid-delete never leaves a half log that would be loaded.
        doomed = log_dir / f"{plog.dir.name}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}"
        plog.dir.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        self.checkpoint_dir(log_dir)
        return True

    # -- flushing and checkpoints --------------------------------------------------------
    def flush_all(self) -> None:
        """fsync every log up to its end offset."""
        for plog in self.all_logs().values():
            plog.flush()

    def flush_dirty_logs(self) -> int:
        """Flush logs whose ``flush_interval_ms`` has elapsed (call periodically); returns count."""
        return sum(1 for plog in self.all_logs().values() if plog.flush_if_due())

    def checkpoint(self) -> None:
        """Write the recovery point and log start offset checkpoints of every log dir."""
        for d in self.log_dirs:
            self.checkpoint_dir(d)

    def checkpoint_dir(self, log_dir: Path) -> None:
        with self._lock:
            logs = {tp: plog for tp, plog in self._logs.items() if self._log_dir_of[tp] == log_dir}
        OffsetCheckpointFile(log_dir / RECOVERY_POINT_CHECKPOINT_FILE).write(
            {tp: plog.recovery_point for tp, plog in logs.items()}
        )
        # As in Kafka, only logs whose start has moved past their first segment are listed.
        OffsetCheckpointFile(log_dir / LOG_START_OFFSET_CHECKPOINT_FILE).write(
            {tp: plog.log_start_offset for tp, plog in logs.items()
             if plog.log_start_offset > plog.segments[0].base_offset}
        )

    def shutdown(self) -> None:
        """Flush and close every log, write checkpoints and the clean shutdown markers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs = list(self._logs.values())
        for plog in logs:
            plog.flush()
        self.checkpoint()
        for plog in logs:
            plog.close()
        for d in self.log_dirs:
            atomic_write(d / CLEAN_SHUTDOWN_FILE, b"")
