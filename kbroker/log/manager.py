"""``LogManager``: every partition log across the broker's log directories.

On start it loads (and, after an unclean shutdown, recovers) each ``<topic>-<partition>``
directory; on shutdown it flushes, writes the checkpoints and leaves Kafka's clean
shutdown marker so the next start skips rescanning segments.

While running, a background thread (:mod:`kbroker.log.background`) flushes rolled
segments and logs whose ``flush.ms`` passed, rewrites checkpoints and removes the
directories of deleted partitions; another checks retention every
``log.retention.check.interval.ms`` (:mod:`kbroker.log.retention`, :meth:`LogManager.run_retention`). Each log dir is locked (``.lock``, ``flock``) from
start-up to shutdown, so a second broker on the same directory refuses to start.

Many partitions are created in two steps so the file system work can run off the event
loop: :meth:`LogManager.prepare_logs` (thread-safe: directories, ``partition.metadata``,
empty ``.log``, one file system sync) and :meth:`LogManager.register_prepared` (cheap,
no I/O).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.clock import Clock
from kbroker.fs import MEMORY, drop_memory_root, is_memory_path, store_for, sync_filesystem
from kbroker.log.background import LogBackground
from kbroker.log.checkpoint import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
    REPLICATION_OFFSET_CHECKPOINT_FILE,
    OffsetCheckpointFile,
    PartitionMetadataFile,
    TopicPartition,
    read_high_watermarks,
    read_log_dir_checkpoints,
)
from kbroker.log.cleaner.manager import CleanerConfig, LogCleaner
from kbroker.log.config import LogConfig
from kbroker.log.dirs import (
    DELETE_DIR_SUFFIX,
    FUTURE_DIR_SUFFIX,
    STRAY_DIR_SUFFIX,
    lock_log_dir,
    log_dir_name_with_suffix_capped,
    parse_partition_dir_name,
    partition_dir_name,
    write_new_partition_files,
    write_new_partition_files_in_memory,
)
from kbroker.log.errors import KafkaStorageError
from kbroker.log.partition_log import PartitionLog
from kbroker.log.retention import RetentionScheduler, delete_old_segments

log = logging.getLogger(__name__)

#: Kafka's ``log.flush.offset.checkpoint.interval.ms`` default.
DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000
#: Kafka's ``replica.high.watermark.checkpoint.interval.ms`` default.
DEFAULT_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS = 5_000
#: Kafka's ``log.retention.check.interval.ms`` default.
DEFAULT_RETENTION_CHECK_INTERVAL_MS = 300_000
#: Shutdown makes this many or more flushes durable with one file system sync per dir.
_BATCH_SYNC_THRESHOLD = 32

@dataclass
class PreparedLogs:
    """Partition directories made by :meth:`LogManager.prepare_logs`, not yet registered."""

    topic: str
    topic_id: uuid.UUID
    #: partition -> log dir, for directories created new and empty.
    created: dict[int, Path] = field(default_factory=dict)
    #: Partitions already hosted or with a leftover directory: open them the usual way.
    others: list[int] = field(default_factory=list)
    #: The logs of ``created``, built off the loop too (no I/O, no shared state).
    logs: dict[int, PartitionLog] = field(default_factory=dict)


class LogManager:
    """Owns the :class:`PartitionLog` of every partition hosted by this broker.

    ``config_for(topic)`` (optional) gives a topic's effective config when its logs are
    loaded at startup; without it ``default_config`` is used until
    :meth:`get_or_create_log` passes one.

    ``replicated`` (a broker in a cluster): the high watermark of every log is the
    replication's to move (not the log end offset); it starts at the value of the log dir's
    ``replication-offset-checkpoint`` (clamped to the log's offsets; the log start when
    absent), which is rewritten every ``high_watermark_checkpoint_interval_ms``, with the
    other checkpoints, and at shutdown.
    """

    def __init__(
        self,
        log_dirs: list[Path],
        clock: Clock,
        default_config: LogConfig,
        *,
        config_for: Callable[[str], LogConfig] | None = None,
        checkpoint_interval_ms: int = DEFAULT_CHECKPOINT_INTERVAL_MS,
        retention_check_interval_ms: int = DEFAULT_RETENTION_CHECK_INTERVAL_MS,
        cleaner_config: CleanerConfig | None = None,
        cleaner_in_process: bool = True,
        replicated: bool = False,
        high_watermark_checkpoint_interval_ms: int = DEFAULT_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS,
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
        #: Partitions per log dir (including ones being prepared), for placement.
        self._dir_counts: dict[Path, int] = dict.fromkeys(self.log_dirs, 0)
        self._closed = False
        self.replicated = replicated
        #: High watermarks read at start-up, taken by the logs as they are loaded.
        self._loaded_high_watermarks: dict[TopicPartition, int] = {}
        self._hw_checkpoints = (RetentionScheduler(self.checkpoint_high_watermarks, high_watermark_checkpoint_interval_ms,
                                                   high_watermark_checkpoint_interval_ms,
                                                   name="high watermark checkpoint", clock=clock)
                                if replicated else None)
        self.checkpoint_interval_ms = checkpoint_interval_ms
        self._checkpoint_lock = threading.Lock()
        #: Background flusher/checkpointer/deleter, started on first need.
        self._background = LogBackground(
            log_dirs=self.log_dirs, checkpoint_interval_ms=checkpoint_interval_ms,
            logs=lambda: self.all_logs().values(), log_dir_of=self.log_dir_of,
            checkpoint_dir=self.checkpoint_dir, closed=lambda: self._closed, clock=clock)
        #: Called (on the retention thread, outside any log lock) with ``(topic, partition)``
        #: when retention moved a log's start offset: the replica layer answers fetches
        #: parked below it (OFFSET_OUT_OF_RANGE).
        self.on_log_start_moved: Callable[[str, int], None] | None = None
        #: One retention check at a time (the thread's, or a caller's run_retention).
        self._retention_lock = threading.Lock()
        self._retention = RetentionScheduler(self.run_retention, retention_check_interval_ms, clock=clock)
        #: Renamed ``-delete`` directories found at start-up.
        doomed: list[Path] = []
        #: Descriptors holding each log dir's ``.lock`` until shutdown.
        self._dir_locks: list[int] = []
        started = time.monotonic()
        try:
            for d in self.log_dirs:
                if is_memory_path(d):
                    MEMORY.makedirs(d)  # a memory root is this broker's alone: no lock file
                    continue
                d.mkdir(parents=True, exist_ok=True)
                self._dir_locks.append(lock_log_dir(d))
            for d in self.log_dirs:
                self._load_dir(d, doomed)
        except BaseException:
            self.release_dir_locks()
            raise
        if doomed:
            self._background.delete_dirs(doomed)
        #: The log cleaner (compaction); its threads start with :meth:`start`.
        self.cleaner = LogCleaner(self.log_dirs, logs=self.all_logs, log_dir_of=self.log_dir_of, clock=clock,
                                  config=cleaner_config, run_in_process=cleaner_in_process,
                                  delete_old_segments=self._retain_one)
        log.info("loaded %d logs from %d dirs in %.3fs", len(self._logs), len(self.log_dirs), time.monotonic() - started)

    # -- startup -------------------------------------------------------------------------
    def _load_dir(self, log_dir: Path, doomed: list[Path]) -> None:
        clean, recovery_points, start_offsets = read_log_dir_checkpoints(log_dir)
        if self.replicated:
            self._loaded_high_watermarks = read_high_watermarks(log_dir)
        store = store_for(log_dir)
        for child in sorted(log_dir / name for name in store.listdir(log_dir)):
            if not store.is_dir(child):
                continue
            name = child.name
            if name.endswith(DELETE_DIR_SUFFIX):
                # A deletion interrupted by a crash: finish it (in the background).
                doomed.append(child)
                continue
            if name.endswith((FUTURE_DIR_SUFFIX, STRAY_DIR_SUFFIX)):
                log.warning("skipping %s (future/stray replicas are not supported)", child)
                continue
            tp = parse_partition_dir_name(name)
            if tp is None:
                log.warning("skipping unexpected directory %s", child)
                continue
            if tp in self._logs:
                log.error("skipping %s: partition %s is also in %s", child, name, self._log_dir_of[tp])
                continue
            try:
                plog = PartitionLog(
                    child,
                    self._config_for(tp[0]) if self._config_for else self.default_config,
                    self.clock,
                    recovery_point=recovery_points.get(tp, 0),
                    log_start_offset=start_offsets.get(tp),
                    had_clean_shutdown=clean,
                )
            except Exception:
                # One unreadable partition must not keep the broker (and every other log)
                # down: move it aside, data intact, for the operator; the partition starts
                # empty if its topic still exists.
                aside = log_dir / log_dir_name_with_suffix_capped(tp[0], tp[1], STRAY_DIR_SUFFIX)
                log.exception("cannot load log directory %s; moving it aside to %s", child, aside.name)
                try:
                    store.rename(child, aside)
                except OSError as e:
                    log.error("cannot move %s aside: %s", child, e)
                continue
            self._add(tp, plog, log_dir)
        self._loaded_high_watermarks = {}
        # From here on a crash must trigger recovery again.
        store.unlink(log_dir / CLEAN_SHUTDOWN_FILE, missing_ok=True)

    # -- lookup and creation -------------------------------------------------------------
    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get(TopicPartition(topic, partition))

    def all_logs(self) -> dict[TopicPartition, PartitionLog]:
        """A snapshot of every hosted log."""
        with self._lock:
            return dict(self._logs)

    def log_dir_of(self, topic: str, partition: int) -> Path | None:
        return self._log_dir_of.get(TopicPartition(topic, partition))

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
        tp = TopicPartition(topic, partition)
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
            self._add(tp, plog, log_dir)
            return plog

    def _add(self, tp: TopicPartition, plog: PartitionLog, log_dir: Path, *, counted: bool = False) -> None:
        self._logs[tp] = plog
        self._log_dir_of[tp] = log_dir
        if not counted:
            self._dir_counts[log_dir] = self._dir_counts.get(log_dir, 0) + 1
        plog.on_roll = self._background.log_rolled
        plog.on_recovery_point = self._background.recovery_point_moved
        plog.on_delete_segments = self._background.delete_segments_later
        if self.replicated:
            plog.high_watermark_follows_leo = False
            plog.update_high_watermark(self._loaded_high_watermarks.pop(tp, 0))

    def _next_log_dir(self) -> Path:
        # Kafka places a new partition in the dir hosting the fewest partitions.
        counts = self._dir_counts
        return min(self.log_dirs, key=lambda d: counts.get(d, 0))

    # -- bulk creation -------------------------------------------------------------------
    def prepare_logs(self, topic: str, partitions: Iterable[int], topic_id: uuid.UUID,
                     config: LogConfig | None = None) -> PreparedLogs:
        """Create the directories of new partitions (safe to call from a worker thread).

        Each gets ``partition.metadata`` and an empty first ``.log`` file, written without
        per-file fsyncs; one file system sync per log dir then makes them all durable.
        The index files are created once they have entries.
        Follow with :meth:`register_prepared` (or :meth:`discard_prepared`).
        """
        prepared = PreparedLogs(topic, topic_id)
        with self._lock:
            if self._closed:
                raise KafkaStorageError("log manager is shut down")
            for partition in partitions:
                if partition < 0:
                    raise ValueError(f"invalid partition {partition}")
                if (topic, partition) in self._logs:
                    prepared.others.append(partition)
                    continue
                log_dir = self._next_log_dir()
                self._dir_counts[log_dir] = self._dir_counts.get(log_dir, 0) + 1  # reserved
                prepared.created[partition] = log_dir
        content = PartitionMetadataFile.content(topic_id)
        done: list[int] = []
        dir_fds: dict[Path, int] = {}
        try:
            for partition, log_dir in list(prepared.created.items()):
                name = partition_dir_name(topic, partition)
                in_memory = is_memory_path(log_dir)
                dfd = -1
                if not in_memory:
                    dfd = dir_fds.get(log_dir, -1)
                    if dfd < 0:
                        dfd = dir_fds[log_dir] = os.open(log_dir, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    if in_memory:
                        MEMORY.create_dir(log_dir / name)
                    else:
                        os.mkdir(name, dir_fd=dfd)
                except FileExistsError:
                    # A leftover directory: the usual path checks its topic id and contents.
                    del prepared.created[partition]
                    self._unreserve(log_dir)
                    prepared.others.append(partition)
                    continue
                done.append(partition)
                if in_memory:
                    write_new_partition_files_in_memory(log_dir / name, content)
                else:
                    write_new_partition_files(dfd, name, content)
            for log_dir in dir_fds:
                sync_filesystem(log_dir)
            config = config or self.default_config
            for partition, log_dir in prepared.created.items():
                prepared.logs[partition] = PartitionLog(log_dir / partition_dir_name(topic, partition), config,
                                                        self.clock, topic_id=topic_id, prepared=True)
        except BaseException:
            for partition in done:
                path = prepared.created[partition] / partition_dir_name(topic, partition)
                store_for(path).rmtree(path)
            for log_dir in prepared.created.values():
                self._unreserve(log_dir)
            raise
        finally:
            for dfd in dir_fds.values():
                os.close(dfd)
        return prepared

    def _unreserve(self, log_dir: Path) -> None:
        with self._lock:
            self._dir_counts[log_dir] = self._dir_counts.get(log_dir, 1) - 1

    def register_prepared(self, prepared: PreparedLogs, config: LogConfig | None = None) -> list[int]:
        """Open the logs of :meth:`prepare_logs` (no I/O). Returns ``prepared.others``,
        the partitions the caller still opens with :meth:`get_or_create_log`."""
        topic = prepared.topic
        with self._lock:
            if self._closed:
                raise KafkaStorageError("log manager is shut down")
            for partition, log_dir in prepared.created.items():
                plog = prepared.logs[partition]
                if config is not None and config != plog.config:
                    plog.update_config(config)
                self._add(TopicPartition(topic, partition), plog, log_dir, counted=True)
        return prepared.others

    def discard_prepared(self, prepared: PreparedLogs) -> None:
        """Remove the directories of :meth:`prepare_logs` that will not be registered."""
        for partition, log_dir in prepared.created.items():
            path = log_dir / partition_dir_name(prepared.topic, partition)
            store_for(path).rmtree(path)
            self._unreserve(log_dir)
        prepared.created.clear()
        prepared.logs.clear()

    def create_logs(self, topic: str, partitions: Iterable[int], config: LogConfig | None = None, *,
                    topic_id: uuid.UUID) -> list[int]:
        """:meth:`prepare_logs` then :meth:`register_prepared`, on the calling thread."""
        return self.register_prepared(self.prepare_logs(topic, partitions, topic_id, config))

    def delete_partition(self, topic: str, partition: int) -> bool:
        """Remove a partition's log; False if it was not hosted.

        The directory is renamed to ``<topic>-<partition>.<id>-delete`` at once (so it is
        never loaded again) and removed, with the checkpoints rewritten, by the
        background thread, as Kafka deletes asynchronously.
        """
        return self._delete(topic, (partition,)) > 0

    def delete_partitions(self, topic: str, partitions: Iterable[int]) -> int:
        """:meth:`delete_partition` for many partitions, checkpointing each log dir once;
        returns the number of log dirs that held any of them."""
        dirs: set[Path] = set()
        self._delete(topic, partitions, dirs)
        return len(dirs)

    def _delete(self, topic: str, partitions: Iterable[int], dirs: set[Path] | None = None) -> int:
        removed = 0
        dirs = set() if dirs is None else dirs
        doomed: list[Path] = []
        for partition in partitions:
            found = self._remove(TopicPartition(topic, partition))
            if found is not None:
                removed += 1
                dirs.add(found[0])
                if found[1] is not None:
                    doomed.append(found[1])
        if removed:
            self._background.delete_dirs(doomed, dirs)
        return removed

    def _remove(self, tp: TopicPartition) -> tuple[Path, Path | None] | None:
        """Unregister, close and rename a log; ``(log dir, renamed dir or None)``."""
        # As Kafka's asyncDelete: no cleaner pass may swap segments into a log being deleted.
        self.cleaner.abort_and_pause(tp)
        try:
            removed = self._remove_log(tp)
        finally:
            self.cleaner.resume(tp)
        if removed is not None:
            self.cleaner.partition_removed(tp, removed[0])
        return removed

    def _remove_log(self, tp: TopicPartition) -> tuple[Path, Path | None] | None:
        with self._lock:
            plog = self._logs.pop(tp, None)
            log_dir = self._log_dir_of.pop(tp, None)
            if log_dir is not None:
                self._dir_counts[log_dir] = self._dir_counts.get(log_dir, 1) - 1
        if plog is None or log_dir is None:
            return None
        try:
            plog.close(snapshot=False)
        except OSError as e:  # e.g. a full disk while persisting indexes: the files go anyway
            log.warning("closing %s before deletion failed: %s", plog.dir, e)
        # Rename first so a crash mid-delete never leaves a half log that would be loaded.
        doomed = log_dir / log_dir_name_with_suffix_capped(tp[0], tp[1], DELETE_DIR_SUFFIX)
        store = store_for(plog.dir)
        try:
            store.rename(plog.dir, doomed)
        except OSError as e:
            log.error("cannot rename %s for deletion (%s); removing it in place", plog.dir, e)
            store.rmtree(plog.dir)
            return log_dir, None
        return log_dir, doomed

    def truncate_to(self, topic: str, partition: int, offset: int) -> None:
        """Truncate a log to ``offset`` (replica truncation), pausing its cleaning around it
        and lowering its cleaner checkpoint, as Kafka's ``LogManager.truncateTo``."""
        tp = TopicPartition(topic, partition)
        plog = self._logs.get(tp)
        if plog is None or offset >= plog.log_end_offset:
            return
        pause = offset < plog.active_segment.base_offset
        if pause:
            self.cleaner.abort_and_pause(tp)
        try:
            plog.truncate_to(offset)
            log_dir = self._log_dir_of.get(tp)
            if pause and log_dir is not None:
                self.cleaner.maybe_truncate_checkpoint(log_dir, tp, plog.active_segment.base_offset)
        finally:
            if pause:
                self.cleaner.resume(tp)

    # -- the log cleaner ----------------------------------------------------------------------
    def run_cleaner(self) -> int:
        """Clean every compacted log that is due now, on the calling thread; returns the
        number of passes (for tests and tools: the cleaner threads do this on their own)."""
        return self.cleaner.run_now()

    def reconfigure_cleaner(self, config: CleanerConfig) -> None:
        """Put new ``log.cleaner.*`` settings in force (a dynamic broker config change)."""
        self.cleaner.reconfigure(config)

    # -- flushing and checkpoints --------------------------------------------------------
    def flush_all(self) -> None:
        """fsync every log up to its end offset."""
        for plog in self.all_logs().values():
            plog.flush()

    def flush_dirty_logs(self) -> int:
        """Flush logs whose ``flush_interval_ms`` has elapsed (call periodically); returns count."""
        return sum(1 for plog in self.all_logs().values() if plog.flush_if_due())

    def checkpoint(self) -> None:
        """Write the recovery point and log start offset checkpoints of every log dir (and
        the high watermarks', when replicated)."""
        for d in self.log_dirs:
            self.checkpoint_dir(d)

    def checkpoint_dir(self, log_dir: Path) -> None:
        with self._lock:
            logs = {tp: plog for tp, plog in self._logs.items() if self._log_dir_of[tp] == log_dir}
        with self._checkpoint_lock:  # the background thread checkpoints too
            OffsetCheckpointFile(log_dir / RECOVERY_POINT_CHECKPOINT_FILE).write(
                {tp: plog.recovery_point for tp, plog in logs.items()}
            )
            # As in Kafka, only logs whose start has moved past their first segment are listed.
            OffsetCheckpointFile(log_dir / LOG_START_OFFSET_CHECKPOINT_FILE).write(
                {tp: plog.log_start_offset for tp, plog in logs.items()
                 if plog.log_start_offset > plog.first_segment_base_offset}
            )
            if self.replicated:
                self._write_high_watermarks(log_dir, logs)

    def checkpoint_high_watermarks(self) -> None:
        """Rewrite every log dir's ``replication-offset-checkpoint`` (replicated only; the
        periodic task's, and shutdown's). A dir that fails is logged; the others are written."""
        if not self.replicated:
            return
        for log_dir in self.log_dirs:
            with self._lock:
                logs = {tp: plog for tp, plog in self._logs.items() if self._log_dir_of[tp] == log_dir}
            try:
                with self._checkpoint_lock:
                    self._write_high_watermarks(log_dir, logs)
            except OSError as e:
                log.error("cannot write the high watermark checkpoint of %s: %s", log_dir, e)

    @staticmethod
    def _write_high_watermarks(log_dir: Path, logs: dict[TopicPartition, PartitionLog]) -> None:
        OffsetCheckpointFile(log_dir / REPLICATION_OFFSET_CHECKPOINT_FILE).write(
            {tp: plog.high_watermark for tp, plog in logs.items()})

    # -- retention -----------------------------------------------------------------------
    def wait_periodic_checks(self, timeout: float) -> bool:
        """Wait until the retention (and high watermark checkpoint) checks due on the clock have
        run: after a :class:`~kbroker.clock.ManualClock` moved; False if ``timeout`` seconds of
        real time passed first."""
        deadline = time.monotonic() + timeout
        schedulers = [self._retention] + ([self._hw_checkpoints] if self._hw_checkpoints is not None else [])
        return all(s.wait_idle(max(deadline - time.monotonic(), 0)) for s in schedulers)

    def run_retention(self) -> int:
        """One retention check now (Kafka's ``cleanupLogs``): :func:`delete_old_segments` for
        every open log at the clock's current time. While the cleaner threads run, compacted
        logs are theirs (they run retention between passes, as Kafka's ``deletableLogs``), so a
        pass and a deletion never overlap on one log. Rewrites the checkpoints of the log dirs
        where segments went and reports logs whose start moved to :attr:`on_log_start_moved`.
        A log deleted or closed meanwhile is skipped; a failing log is logged and the others
        are still checked. Returns the number of segments deleted."""
        cleaner = self.cleaner.running
        return self._retain([(tp, plog) for tp, plog in self.all_logs().items()
                             if not (cleaner and plog.config.compact)])

    def _retain_one(self, plog: PartitionLog) -> object:
        # The cleaner threads' retention of a compacted log.
        return self._retain([(TopicPartition(plog.topic, plog.partition), plog)])

    def _retain(self, logs: list[tuple[TopicPartition, PartitionLog]]) -> int:
        with self._retention_lock:
            total = 0
            dirs: set[Path] = set()
            moved: list[TopicPartition] = []
            for tp, plog in logs:
                if self._closed:
                    break
                if plog.closed:
                    continue
                start = plog.log_start_offset
                try:
                    deleted = delete_old_segments(plog, self.clock.time_ms())
                except Exception:
                    if not plog.closed:  # a closed log was deleted under the check: nothing to do
                        log.exception("retention check of %s failed", plog.name)
                    continue
                if deleted:
                    total += deleted
                    d = self._log_dir_of.get(tp)
                    if d is not None:
                        dirs.add(d)
                if plog.log_start_offset != start:
                    moved.append(tp)
            for d in dirs:
                if self._closed:
                    break
                try:
                    self.checkpoint_dir(d)
                except OSError as e:
                    log.error("cannot write the checkpoints of %s after retention: %s", d, e)
            notify = self.on_log_start_moved
            if notify is not None:
                for tp in moved:
                    try:
                        notify(tp.topic, tp.partition)
                    except Exception:
                        log.exception("log start offset listener failed for %s-%d", tp.topic, tp.partition)
            if total:
                log.info("log retention deleted %d segments", total)
            return total

    # -- background flushing and checkpointing --------------------------------------------
    def start(self) -> None:
        """Start the background threads now (the broker calls this at start-up), so the
        periodic ``flush.ms`` flusher runs even before any log rolls, retention is checked
        every ``log.retention.check.interval.ms``, and the log cleaner runs."""
        self._background.start()
        self._retention.start()
        if self._hw_checkpoints is not None:
            self._hw_checkpoints.start()
        self.cleaner.start()

    def _stop_background(self) -> None:
        self._retention.stop()
        if self._hw_checkpoints is not None:
            self._hw_checkpoints.stop()
        self._background.stop()

    def shutdown(self) -> None:
        """Flush and close every log, write checkpoints and the clean shutdown markers.

        With many logs to flush, their writes are made durable with one file system sync
        per log dir instead of an fsync per file.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs = list(self._logs.values())
        try:
            # First, so no cleaned segments are swapped into logs being closed.
            self.cleaner.shutdown()
            self._stop_background()
            dirty = [plog for plog in logs if plog.needs_flush]
            if len(dirty) < _BATCH_SYNC_THRESHOLD:
                for plog in dirty:
                    plog.flush()
                for plog in logs:
                    plog.close()
            else:
                ends = [(plog, plog.log_end_offset) for plog in dirty]
                for plog in logs:
                    plog.close()  # persists indexes (and snapshots) without fsync
                for d in self.log_dirs:
                    store_for(d).sync_filesystem(d)
                for plog, end in ends:
                    plog.mark_durable(end)
            self.checkpoint()
            for d in self.log_dirs:
                store_for(d).write_atomic(d / CLEAN_SHUTDOWN_FILE, b"")
            for path in self._background.take_doomed():
                store_for(path).rmtree(path)
        finally:
            # Even a failed shutdown (a full disk) leaves the dirs to the next broker; without
            # the clean shutdown marker that one recovers the logs.
            self.release_dir_locks()
            for d in self.log_dirs:
                if is_memory_path(d):  # nobody can open a memory root again: free it
                    drop_memory_root(d)

    def release_dir_locks(self) -> None:
        """Release the log dirs' ``.lock`` files (done by :meth:`shutdown`; as a process
        exit would, for tests that simulate a crash and start again on the same dirs)."""
        locks, self._dir_locks = self._dir_locks, []
        for fd in locks:
            os.close(fd)
