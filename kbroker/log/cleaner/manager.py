"""The log cleaner's scheduling (Kafka's ``LogCleanerManager`` and ``LogCleaner`` threads).

:class:`LogCleaner` decides which compacted log to clean next and runs the passes:

* ``cleaner-offset-checkpoint`` in each log dir (Kafka's offset checkpoint format) holds, per
  partition, the offset below which its log is clean; it is read at start-up, rewritten after
  each pass and loses the entries of deleted partitions. An entry below the log start offset
  or above the log end is reset to the log start offset, as Kafka does.
* Each pass takes the *filthiest* log (Kafka's ``grabFilthiestCompactedLog``): among logs whose
  ``cleanup.policy`` contains ``compact`` and that are neither being cleaned nor paused, those
  whose dirty ratio (bytes from the first dirty offset to the first uncleanable one, over all
  bytes up to it) is above ``min.cleanable.dirty.ratio``, or whose oldest dirty segment is past
  ``max.compaction.lag.ms``; the highest dirty ratio wins. Nothing at or after the active
  segment, the last stable offset or the first segment younger than ``min.compaction.lag.ms``
  is cleaned.
* ``log.cleaner.threads`` threads repeat passes, sleeping ``log.cleaner.backoff.ms`` when no log
  is due (:meth:`LogCleaner.wakeup` ends the sleep early). The heavy part of a pass runs in a
  worker process of its own (:mod:`kbroker.log.cleaner.worker`), so the broker's
  event loop never competes with it for the interpreter; a worker that dies fails that pass
  only: the log is left alone for a while (:data:`UNCLEANABLE_BACKOFF_MS`) and the broker runs on.
* Deleting or truncating a log first aborts and pauses its cleaning
  (:meth:`LogCleaner.abort_and_pause`, Kafka's ``abortAndPauseCleaning``) and waits until no
  pass touches it; shutdown waits a bounded time for running passes and discards their
  results, so no cleaned segments are swapped into a closed log.

The cleaning of one log (:func:`kbroker.log.cleaner.clean.clean_log`) lives in its own module.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kbroker.clock import Clock
from kbroker.common import CleaningSummary, TopicPartition
from kbroker.fs import is_memory_path, store_for
from kbroker.log.checkpoint import CheckpointError, OffsetCheckpointFile
from kbroker.log.cleaner.clean import CleaningAborted, clean_log, run_clean_job
from kbroker.log.cleaner.worker import WorkerDied, WorkerProcess
from kbroker.log.partition_log import PartitionLog
from kbroker.log.segment import LogSegment

log = logging.getLogger(__name__)

#: Kafka's ``LogCleanerManager.OFFSET_CHECKPOINT_FILE``.
CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"
#: How long a log whose pass failed (an error, a dead worker) is left alone.
UNCLEANABLE_BACKOFF_MS = 60_000
#: Longest a shutdown waits for running passes before discarding them.
SHUTDOWN_WAIT_S = 5.0
#: How often a thread waiting for a worker looks for an abort or a shutdown.
_POLL_S = 0.05
#: Kafka caps a thread's dedupe buffer at Integer.MAX_VALUE bytes.
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class CleanerConfig:
    """The ``log.cleaner.*`` broker settings (Kafka's ``CleanerConfig``)."""

    enabled: bool = True
    threads: int = 1
    backoff_ms: int = 15_000
    #: Dedupe (key to offset map) memory of all threads together.
    dedupe_buffer_size: int = 134_217_728
    #: Read and write buffer memory of all threads together.
    io_buffer_size: int = 524_288
    io_buffer_load_factor: float = 0.9
    #: Read plus write rate of all threads together (inf: unlimited).
    io_max_bytes_per_second: float = math.inf

    @classmethod
    def from_broker_config(cls, config: Any) -> CleanerConfig:
        """The cleaner settings of a broker config (anything with ``get(key)``)."""
        return cls(
            enabled=bool(config.get("log.cleaner.enable")),
            threads=int(config.get("log.cleaner.threads")),
            backoff_ms=int(config.get("log.cleaner.backoff.ms")),
            dedupe_buffer_size=int(config.get("log.cleaner.dedupe.buffer.size")),
            io_buffer_size=int(config.get("log.cleaner.io.buffer.size")),
            io_buffer_load_factor=float(config.get("log.cleaner.io.buffer.load.factor")),
            io_max_bytes_per_second=float(config.get("log.cleaner.io.max.bytes.per.second")),
        )

    def dedupe_buffer_per_thread(self) -> int:
        """Each thread's share of the dedupe buffer, as Kafka splits it (at most 2 GiB)."""
        return min(self.dedupe_buffer_size // max(self.threads, 1), _INT_MAX)

    def io_buffer_per_thread(self) -> int:
        """Each thread's read (and write) buffer: Kafka halves the thread's share."""
        return max(self.io_buffer_size // max(self.threads, 1) // 2, 1)

    def io_rate_per_thread(self) -> float | None:
        """Each thread's share of ``log.cleaner.io.max.bytes.per.second`` (None: unlimited).
        Kafka's threads share one throttler; an even split keeps the total under the limit."""
        rate = self.io_max_bytes_per_second
        if not math.isfinite(rate) or rate >= 1e300:
            return None
        return rate / max(self.threads, 1)


class CleanResultLike(Protocol):
    """What a pass returns: the new cleaner checkpoint and the pass's summary."""

    end_offset: int
    summary: CleaningSummary


class CleanFn(Protocol):
    """:func:`kbroker.log.cleaner.clean.clean_log`."""

    def __call__(self, plog: PartitionLog, *, first_dirty_offset: int, first_uncleanable_offset: int,
                 now_ms: int, dedupe_buffer_bytes: int, io_buffer_bytes: int,
                 io_max_bytes_per_second: float | None = None,
                 run: Callable[[Any], Any] | None = None,
                 aborted: Callable[[], bool] = ...,
                 load_factor: float = ...) -> CleanResultLike: ...


@dataclass(frozen=True)
class LogToClean:
    """A compacted log's cleanable range (Kafka's ``LogToClean``)."""

    tp: TopicPartition
    log: PartitionLog
    first_dirty_offset: int
    #: Rounded down to a segment boundary, as Kafka's ``calculateCleanableBytes`` does.
    first_uncleanable_offset: int
    clean_bytes: int
    cleanable_bytes: int
    #: ``max.compaction.lag.ms`` has passed for the oldest dirty segment.
    need_compaction_now: bool

    @property
    def total_bytes(self) -> int:
        return self.clean_bytes + self.cleanable_bytes

    @property
    def cleanable_ratio(self) -> float:
        return self.cleanable_bytes / self.total_bytes if self.total_bytes else 0.0


def _segments_between(segments: list[LogSegment], start: int, end: int) -> list[LogSegment]:
    """Kafka's ``logSegments(from, to)``: the segments holding offsets in ``[start, end)``
    (from the one containing ``start``, all whose base offset is below ``end``)."""
    out: list[LogSegment] = []
    for i, seg in enumerate(segments):
        nxt = segments[i + 1].base_offset if i + 1 < len(segments) else None
        if seg.base_offset >= end:
            break
        if nxt is not None and nxt <= start:
            continue
        out.append(seg)
    return out


def _non_active_from(segments: list[LogSegment], offset: int) -> list[LogSegment]:
    """Kafka's ``nonActiveLogSegmentsFrom``: segments from the one holding ``offset`` up to,
    not including, the active one."""
    return _segments_between(segments, offset, segments[-1].base_offset)


def cleanable_offsets(plog: PartitionLog, checkpoint: int | None, now_ms: int) -> tuple[int, int, bool]:
    """Kafka's ``cleanableOffsets``: ``(first dirty offset, first uncleanable offset, whether
    the checkpoint was invalid and must be rewritten)``."""
    start = plog.log_start_offset
    dirty = start if checkpoint is None else checkpoint
    force = False
    if dirty < start:
        if not plog.config.delete:  # compact,delete logs lose their head to retention
            log.warning("resetting first dirty offset of %s to log start offset %d since the checkpointed "
                        "offset %d is invalid", plog.name, start, dirty)
        dirty, force = start, True
    elif dirty > plog.log_end_offset:
        log.warning("the last checkpoint dirty offset for partition %s is %d, which is larger than the log end "
                    "offset %d; resetting to the log start offset %d", plog.name, dirty, plog.log_end_offset, start)
        dirty, force = start, True
    segments = plog.segments
    uncleanable = min(plog.last_stable_offset, segments[-1].base_offset)
    lag = max(plog.config.min_compaction_lag_ms, 0)
    if lag > 0:
        for seg in _non_active_from(segments, dirty):
            if seg.max_timestamp > now_ms - lag:
                uncleanable = min(uncleanable, seg.base_offset)
                break
    return dirty, max(dirty, uncleanable), force


def max_compaction_delay(plog: PartitionLog, first_dirty_offset: int, now_ms: int) -> int:
    """Kafka's ``maxCompactionDelay``: how long ago ``max.compaction.lag.ms`` passed for the
    oldest dirty segment (0 if it has not, or the topic sets no maximum)."""
    max_lag = plog.config.max_compaction_lag_ms
    if max_lag is None:
        return 0
    stamps = [ts for seg in _non_active_from(plog.segments, first_dirty_offset)
              if (ts := seg.first_batch_timestamp()) is not None and ts > 0]
    if not stamps:
        return 0
    clean_until = now_ms - max(max_lag, 0)
    earliest = min(stamps)
    return clean_until - earliest if earliest < clean_until else 0


def log_to_clean(tp: TopicPartition, plog: PartitionLog, first_dirty: int, uncleanable: int,
                 need_compaction_now: bool) -> LogToClean:
    """Measure a log's clean and cleanable bytes (Kafka's ``LogToClean`` constructor)."""
    segments = plog.segments
    clean_bytes = sum(s.size for s in _segments_between(segments, -1, first_dirty))
    non_active = _non_active_from(segments, uncleanable)
    first_uncleanable = (non_active[0] if non_active else segments[-1]).base_offset
    cleanable = sum(s.size for s in _segments_between(segments, min(first_dirty, first_uncleanable),
                                                      first_uncleanable))
    return LogToClean(tp, plog, first_dirty, first_uncleanable, clean_bytes, cleanable, need_compaction_now)


class _Paused:
    """Kafka's ``LogCleaningPaused(count)``."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __repr__(self) -> str:
        return f"Paused({self.count})"


_IN_PROGRESS = "in-progress"
_ABORTED = "aborted"
_State = str | _Paused


class LogCleaner:
    """The cleaner threads and the cleaning state of every log (see the module docstring).

    ``logs()`` gives the hosted logs; ``log_dir_of(topic, partition)`` a log's dir. ``clean``
    is the pass over one log (the real one unless a test gives another), and
    ``run_in_process=False`` runs its heavy job on the calling thread (tests).
    ``delete_old_segments(log)``, when given, runs retention on every compacted log after
    each pass while the log is marked in progress (Kafka's cleaner threads run
    ``deleteOldSegments`` on ``deletableLogs``), so retention and a pass never overlap.
    """

    def __init__(
        self,
        log_dirs: Iterable[Path],
        *,
        logs: Callable[[], Mapping[TopicPartition, PartitionLog]],
        log_dir_of: Callable[[str, int], Path | None],
        clock: Clock,
        config: CleanerConfig | None = None,
        clean: CleanFn | None = None,
        job_fn: Callable[[Any], Any] | None = None,
        run_in_process: bool = True,
        delete_old_segments: Callable[[PartitionLog], object] | None = None,
        uncleanable_backoff_ms: int = UNCLEANABLE_BACKOFF_MS,
        shutdown_wait_s: float = SHUTDOWN_WAIT_S,
    ) -> None:
        self._logs = logs
        self._log_dir_of = log_dir_of
        self._clock = clock
        self.config = config or CleanerConfig()
        self._clean: CleanFn = clean or clean_log  # type: ignore[assignment]
        self._job_fn = job_fn or run_clean_job
        self.run_in_process = run_in_process
        self.delete_old_segments = delete_old_segments
        self._uncleanable_backoff_ms = uncleanable_backoff_ms
        self._shutdown_wait_s = shutdown_wait_s
        #: Guards the states, checkpoints and uncleanable marks; ``_cond`` signals pauses.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._states: dict[TopicPartition, _State] = {}
        #: Partition -> monotonic second until which it is not cleaned (a failed pass).
        self._uncleanable: dict[TopicPartition, float] = {}
        self._checkpoint_files = {Path(d): OffsetCheckpointFile(Path(d) / CLEANER_CHECKPOINT_FILE)
                                  for d in log_dirs}
        self._checkpoints: dict[Path, dict[TopicPartition, int]] = {
            d: self._read_checkpoint(f) for d, f in self._checkpoint_files.items()}
        #: Threads wait on this between passes; :meth:`wakeup` notifies it.
        self._wake = threading.Condition()
        self._wake_requested = False
        self._threads: list[threading.Thread] = []
        self._thread_seq = 0
        self._stopping = False
        self._started = False
        #: The worker process of each thread's running pass (keyed by thread id), so an
        #: aborted pass can end its worker without touching another thread's.
        self._workers: dict[int, WorkerProcess] = {}
        self._pool_lock = threading.Lock()
        #: A ManualClock moved: look at once for logs its time made due (max.compaction.lag.ms).
        self._unsubscribe_clock = clock.on_advance(self.wakeup)

    # -- checkpoints -------------------------------------------------------------------------
    @staticmethod
    def _read_checkpoint(f: OffsetCheckpointFile) -> dict[TopicPartition, int]:
        try:
            return f.read()
        except (CheckpointError, ValueError, OSError) as e:
            # Kafka fails the log dir; losing the checkpoint only costs a full clean.
            log.warning("ignoring unreadable cleaner checkpoint %s: %s", f.path, e)
            return {}

    def all_checkpoints(self) -> dict[TopicPartition, int]:
        """Every partition's cleaner checkpoint (Kafka's ``allCleanerCheckpoints``)."""
        with self._lock:
            out: dict[TopicPartition, int] = {}
            for offsets in self._checkpoints.values():
                out.update(offsets)
            return out

    def update_checkpoints(self, log_dir: Path, update: tuple[TopicPartition, int] | None = None,
                           remove: TopicPartition | None = None) -> None:
        """Rewrite ``log_dir``'s cleaner checkpoint without partitions no longer hosted (or
        ``remove``), with ``update`` added (Kafka's ``updateCheckpoints``)."""
        with self._lock:
            current = self._checkpoints.get(log_dir)
            if current is None:
                return
            hosted = self._logs()
            offsets = {tp: off for tp, off in current.items() if tp in hosted and tp != remove}
            if update is not None:
                offsets[update[0]] = update[1]
            self._checkpoints[log_dir] = offsets
            try:
                self._checkpoint_files[log_dir].write(offsets)
            except OSError as e:
                log.error("cannot write cleaner checkpoint in %s: %s", log_dir, e)

    def maybe_truncate_checkpoint(self, log_dir: Path, tp: TopicPartition, offset: int) -> None:
        """Lower a compacted log's checkpoint to ``offset`` after a truncation below it."""
        with self._lock:
            current = self._checkpoints.get(log_dir, {})
            if current.get(tp, 0) > offset:
                self.update_checkpoints(log_dir, (tp, offset))

    # -- choosing a log ----------------------------------------------------------------------
    def _cleanable(self, tp: TopicPartition, now_mono: float) -> bool:
        until = self._uncleanable.get(tp)
        if until is None:
            return True
        if now_mono >= until:
            del self._uncleanable[tp]
            return True
        return False

    def grab_filthiest(self, exclude: frozenset[TopicPartition] = frozenset()) -> LogToClean | None:
        """Choose the log to clean next and mark it in progress (Kafka's
        ``grabFilthiestCompactedLog``); None if no log is due."""
        with self._lock:
            now = self._clock.time_ms()
            mono = time.monotonic()
            last = self.all_checkpoints()
            dirty: list[LogToClean] = []
            for tp, plog in self._logs().items():
                if not plog.config.compact or tp in self._states or tp in exclude or plog.closed:
                    continue
                if not self._cleanable(tp, mono):
                    continue
                try:
                    first_dirty, uncleanable, force = cleanable_offsets(plog, last.get(tp), now)
                    if force:
                        d = self._log_dir_of(tp.topic, tp.partition)
                        if d is not None:
                            self.update_checkpoints(d, (tp, first_dirty))
                    delay = max_compaction_delay(plog, first_dirty, now)
                    ltc = log_to_clean(tp, plog, first_dirty, uncleanable, delay > 0)
                except Exception:  # a log closed meanwhile, an unreadable segment
                    log.exception("cannot compute the cleanable range of %s; leaving it alone for a while", plog.name)
                    self._uncleanable[tp] = mono + self._uncleanable_backoff_ms / 1000
                    continue
                if ltc.total_bytes > 0:
                    dirty.append(ltc)
            cleanable = [ltc for ltc in dirty
                         if (ltc.need_compaction_now and ltc.cleanable_bytes > 0)
                         or ltc.cleanable_ratio > ltc.log.config.min_cleanable_dirty_ratio]
            if not cleanable:
                return None
            filthiest = max(cleanable, key=lambda ltc: ltc.cleanable_ratio)
            self._states[filthiest.tp] = _IN_PROGRESS
            return filthiest

    def done_cleaning(self, tp: TopicPartition, log_dir: Path | None, end_offset: int | None) -> None:
        """A pass over ``tp`` ended: checkpoint ``end_offset`` (None: nothing to record) unless
        the pass was aborted, which leaves the log paused (Kafka's ``doneCleaning``)."""
        with self._lock:
            state = self._states.get(tp)
            if state == _IN_PROGRESS:
                if end_offset is not None and log_dir is not None:
                    self.update_checkpoints(log_dir, (tp, end_offset))
                del self._states[tp]
            elif state == _ABORTED:
                self._states[tp] = _Paused(1)
                self._cond.notify_all()
            else:
                raise RuntimeError(f"partition {tp} cannot end a pass in state {state}")

    # -- pausing and aborting ----------------------------------------------------------------
    def abort_and_pause(self, tp: TopicPartition) -> None:
        """Stop any pass over ``tp`` and keep the cleaner off it until :meth:`resume`;
        returns once no pass touches it (Kafka's ``abortAndPauseCleaning``)."""
        with self._lock:
            state = self._states.get(tp)
            if state is None:
                self._states[tp] = _Paused(1)
            elif state == _IN_PROGRESS:
                self._states[tp] = _ABORTED
            elif isinstance(state, _Paused):
                state.count += 1
            else:
                raise RuntimeError(f"cleaning of {tp} cannot be aborted and paused in state {state}")
            while not isinstance(self._states.get(tp), _Paused):
                self._cond.wait(0.1)

    def resume(self, tp: TopicPartition) -> None:
        """Undo one :meth:`abort_and_pause` (Kafka's ``resumeCleaning``)."""
        with self._lock:
            state = self._states.get(tp)
            if not isinstance(state, _Paused):
                raise RuntimeError(f"cleaning of {tp} cannot be resumed in state {state}")
            if state.count <= 1:
                del self._states[tp]
            else:
                state.count -= 1

    def abort_cleaning(self, tp: TopicPartition) -> None:
        """Stop any pass over ``tp`` and wait for it (Kafka's ``abortCleaning``)."""
        with self._lock:
            self.abort_and_pause(tp)
            self.resume(tp)

    def is_aborted(self, tp: TopicPartition) -> bool:
        """Whether the running pass over ``tp`` must stop (aborted, or the cleaner stopping)."""
        with self._lock:
            return self._stopping or self._states.get(tp) == _ABORTED

    def state_of(self, tp: TopicPartition) -> str | None:
        """``tp``'s cleaning state: None, ``in-progress``, ``aborted`` or ``paused(n)``."""
        with self._lock:
            state = self._states.get(tp)
            return f"paused({state.count})" if isinstance(state, _Paused) else state

    def is_uncleanable(self, tp: TopicPartition) -> bool:
        """Whether a failed pass keeps ``tp`` out of cleaning for now."""
        with self._lock:
            return not self._cleanable(tp, time.monotonic())

    def partition_removed(self, tp: TopicPartition, log_dir: Path) -> None:
        """A partition's log is gone: forget its failures and drop its checkpoint entry
        (the file is rewritten only if it had one: a topic of thousands of partitions is
        deleted one partition at a time)."""
        with self._lock:
            self._uncleanable.pop(tp, None)
            if tp in self._checkpoints.get(log_dir, {}):
                self.update_checkpoints(log_dir, remove=tp)

    # -- one pass ----------------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes running passes now."""
        with self._pool_lock:
            return [w.pid for w in self._workers.values()]

    def _runner(self, tp: TopicPartition, directory: Path) -> Callable[[Any], Any]:
        """The ``run`` given to a pass: runs its heavy job (in a worker process unless
        ``run_in_process`` is off) and raises the pass's abort error when the log is being
        deleted or truncated or the cleaner is stopping, then or once the job is done, so no
        result is swapped in after an abort. A worker running an aborted job is ended and
        what it wrote (``.cleaned`` files in ``directory``) removed: a throttled pass over a
        big log could otherwise hold the worker for hours."""
        job_fn = self._job_fn

        def run(job: Any) -> Any:
            if self.is_aborted(tp):
                raise CleaningAborted(f"cleaning of {tp.topic}-{tp.partition} aborted")
            if not self.run_in_process or is_memory_path(directory):
                # A log in memory is cleaned where its buffers are: in this process.
                result = job_fn(job)
            else:
                result = self._run_in_worker(tp, directory, job_fn, job)
            if self.is_aborted(tp):
                # The job's .cleaned files are void and nothing will swap them in.
                if not self._stopping:  # at shutdown the next load removes them
                    _remove_cleaned_files(directory)
                raise CleaningAborted(f"cleaning of {tp.topic}-{tp.partition} aborted")
            return result

        return run

    def _run_in_worker(self, tp: TopicPartition, directory: Path, job_fn: Callable[[Any], Any], job: Any) -> Any:
        """``job_fn(job)`` in a worker process of its own, ended (and what it wrote removed)
        when the pass is aborted; a dead worker fails the pass (:class:`WorkerDied`)."""
        key = threading.get_ident()
        with self._pool_lock:
            if self._stopping:  # never a new worker after shutdown took the others
                raise CleaningAborted("the log cleaner is shutting down")
            worker = self._workers[key] = WorkerProcess(job_fn, job)
        try:
            while not worker.poll(_POLL_S):
                if self.is_aborted(tp):
                    worker.kill()
                    if not self._stopping:  # at shutdown the next load removes them
                        _remove_cleaned_files(directory)
                    raise CleaningAborted(f"cleaning of {tp.topic}-{tp.partition} aborted")
            try:
                return worker.result()
            except WorkerDied:
                _remove_cleaned_files(directory)
                raise
        finally:
            with self._pool_lock:
                if self._workers.get(key) is worker:
                    del self._workers[key]

    def clean_one(self, ltc: LogToClean, thread_id: int = 0) -> bool:
        """Run one pass over ``ltc`` (marked in progress by :meth:`grab_filthiest`) and record
        its outcome; True if the log was cleaned."""
        tp, plog = ltc.tp, ltc.log
        log_dir = self._log_dir_of(tp.topic, tp.partition)
        end_offset: int | None = None
        cleaned = False
        config = self.config
        try:
            result = self._clean(
                plog, first_dirty_offset=ltc.first_dirty_offset, first_uncleanable_offset=ltc.first_uncleanable_offset,
                now_ms=self._clock.time_ms(), dedupe_buffer_bytes=config.dedupe_buffer_per_thread(),
                io_buffer_bytes=config.io_buffer_per_thread(),
                io_max_bytes_per_second=config.io_rate_per_thread(), run=self._runner(tp, plog.dir),
                aborted=lambda: self.is_aborted(tp), load_factor=config.io_buffer_load_factor)
            end_offset = result.end_offset
            plog.last_cleaning = result.summary
            _log_pass(thread_id, plog.name, ltc.first_dirty_offset, end_offset, result.summary)
            cleaned = True
        except CleaningAborted:
            log.info("cleaning of %s aborted", plog.name)
        except Exception as e:
            # Kafka marks the partition uncleanable; here only for a while, so a passing
            # fault (a worker killed by the OOM killer, a full disk) heals by itself.
            log.error("cleaning of %s failed (%s: %s); not cleaning it again for %d ms", plog.name,
                      type(e).__name__, e, self._uncleanable_backoff_ms, exc_info=not isinstance(
                          e, WorkerDied))
            with self._lock:
                self._uncleanable[tp] = time.monotonic() + self._uncleanable_backoff_ms / 1000
        finally:
            self.done_cleaning(tp, log_dir, end_offset)
        return cleaned

    def _delete_old_segments(self) -> None:
        """Retention for compacted logs, between passes (Kafka's ``deletableLogs``)."""
        delete = self.delete_old_segments
        if delete is None:
            return
        with self._lock:
            mono = time.monotonic()
            deletable = [(tp, plog) for tp, plog in self._logs().items()
                         if plog.config.compact and tp not in self._states and not plog.closed
                         and self._cleanable(tp, mono)]
            for tp, _ in deletable:
                self._states[tp] = _IN_PROGRESS
        try:
            for _, plog in deletable:
                if self._stopping:
                    break
                try:
                    delete(plog)
                except Exception:
                    log.exception("retention of compacted log %s failed", plog.name)
        finally:
            for tp, _ in deletable:
                self.done_cleaning(tp, None, None)

    def clean_filthiest(self, thread_id: int = 0,
                        exclude: frozenset[TopicPartition] = frozenset()) -> tuple[LogToClean | None, bool]:
        """One cleaner iteration: clean the filthiest log, then run retention on compacted
        logs; returns the log chosen (None: none was due) and whether its pass completed."""
        ltc = self.grab_filthiest(exclude)
        cleaned = ltc is not None and self.clean_one(ltc, thread_id)
        self._delete_old_segments()
        return ltc, cleaned

    def run_now(self) -> int:
        """Clean every log due now, on the calling thread (passes while some log is due; a log
        whose pass did not move its checkpoint is not taken again); returns the passes run."""
        passes = 0
        done: set[TopicPartition] = set()
        while not self._stopping:
            before = self.all_checkpoints()
            ltc, _ = self.clean_filthiest(exclude=frozenset(done))
            if ltc is None:
                return passes
            passes += 1
            after = self.all_checkpoints().get(ltc.tp)
            if after is None or after <= before.get(ltc.tp, -1):
                done.add(ltc.tp)
        return passes

    # -- threads -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether cleaner threads run (started, enabled, at least one thread, not stopping):
        then they, not the retention thread, run retention on compacted logs."""
        with self._wake:
            return self._started and not self._stopping and self.config.enabled and self.config.threads > 0

    def start(self) -> None:
        """Start ``log.cleaner.threads`` threads (none if the cleaner is disabled)."""
        with self._wake:
            if self._started or self._stopping:
                return
            self._started = True
        self._resize()

    def _resize(self) -> None:
        with self._wake:
            if not self._started or self._stopping:
                return
            want = self.config.threads if self.config.enabled else 0
            self._threads = [t for t in self._threads if t.is_alive() and not getattr(t, "retired", False)]
            while len(self._threads) > want:
                t = self._threads.pop()
                t.retired = True  # type: ignore[attr-defined]
            while len(self._threads) < want:
                n = self._thread_seq
                self._thread_seq += 1
                t = threading.Thread(target=self._thread_main, args=(n,), name=f"kbroker-log-cleaner-{n}",
                                     daemon=True)
                t.retired = False  # type: ignore[attr-defined]
                self._threads.append(t)
                t.start()
            self._wake.notify_all()

    def reconfigure(self, config: CleanerConfig) -> None:
        """Put new ``log.cleaner.*`` settings in force: the thread count is adjusted at once
        (a retired thread ends after its current pass), the rest applies from the next pass;
        sleeping threads wake up to see it. Never blocks."""
        if config == self.config:
            return
        if config.threads != self.config.threads:
            log.info("log cleaner threads: %d -> %d", self.config.threads, config.threads)
        self.config = config
        self._resize()

    def wakeup(self) -> None:
        """End the threads' back-off sleep now (e.g. after a change of configs)."""
        with self._wake:
            self._wake_requested = True
            self._wake.notify_all()

    def _thread_main(self, thread_id: int) -> None:
        me = threading.current_thread()
        while not self._stopping and not getattr(me, "retired", False):
            try:
                # An aborted or failed pass backs off too, so a log whose passes keep
                # failing cannot keep a thread busy.
                cleaned = self.clean_filthiest(thread_id)[1]
            except Exception:
                log.exception("log cleaner thread %d failed a pass", thread_id)
                cleaned = False
            if cleaned:
                continue
            with self._wake:
                if not self._wake_requested and not self._stopping and not getattr(me, "retired", False):
                    self._wake.wait(self.config.backoff_ms / 1000)
                self._wake_requested = False

    def shutdown(self) -> None:
        """Stop the threads: running passes are aborted (their results discarded) and waited
        for at most ``shutdown_wait_s``; the worker processes are ended."""
        self._unsubscribe_clock()
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            threads = list(self._threads)
            self._threads = []
        with self._lock:
            self._cond.notify_all()
        deadline = time.monotonic() + self._shutdown_wait_s
        for t in threads:
            t.join(max(deadline - time.monotonic(), 0))
            if t.is_alive():
                log.warning("log cleaner thread %s still running at shutdown; its pass is discarded", t.name)
        with self._pool_lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.kill()


def _remove_cleaned_files(directory: Path) -> None:
    """Remove the ``.cleaned`` files a worker ended mid-pass left in a log's directory (no
    other pass runs over that log: it is still marked in progress)."""
    store = store_for(directory)
    try:
        names = store.listdir(directory)
    except OSError as e:
        log.warning("cannot list %s: %s", directory, e)
        return
    for path in (directory / n for n in names if n.endswith(".cleaned")):
        try:
            store.unlink(path)
        except OSError as e:
            log.warning("cannot remove %s: %s", path, e)


def _log_pass(thread_id: int, name: str, start: int, end: int, s: CleaningSummary) -> None:
    secs = max(s.duration_ms / 1000, 1e-3)
    log.info("log cleaner thread %d cleaned %s (dirty section [%d, %d]): segments %d -> %d, bytes %d -> %d, "
             "records read %d, retained %d, %.3f s, %.1f MB/s", thread_id, name, start, end, s.segments_before,
             s.segments_after, s.bytes_before, s.bytes_after, s.records_read, s.records_retained, secs,
             s.bytes_before / secs / (1024 * 1024))
