"""The log manager's background thread (Kafka's ``kafka-scheduler`` tasks for the logs).

It fsyncs the segments a log rolled past and moves its recovery point up to the new
segment, then rewrites the recovery point checkpoint, so a restart after a crash rescans
only the active segments; recovery points moved by other flushes are checkpointed every
``checkpoint_interval_ms``. It is also the periodic flusher (Kafka's
``log.flush.scheduler.interval.ms`` task): it fsyncs each log whose ``flush.ms`` has
passed, looking at the smallest ``flush.ms`` pace (or once a second while no log sets
one), it removes the directories of deleted partitions after their rename to
``-delete``, and the files of deleted segments (renamed ``.deleted``) once their
``file.delete.delay.ms`` has passed.

The manager is reached only through the callables given to :class:`LogBackground`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.fs import store_for
from kbroker.log.config import LogConfig
from kbroker.log.handles import SEGMENT_FILES
from kbroker.log.segment import LogSegment

log = logging.getLogger(__name__)

#: How often the background thread looks for logs with ``flush.ms`` when none has it.
FLUSH_RESCAN_S = 1.0


class BackgroundLog(Protocol):
    """What the background thread needs of a partition log."""

    topic: str
    partition: int

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> LogConfig: ...

    def flush_rolled(self) -> bool: ...

    def flush_if_due(self) -> bool: ...

    @property
    def closed(self) -> bool: ...


class LogBackground:
    """Queues work from the logs (rolls, moved recovery points, deletions) and runs it
    on one daemon thread, started on first need.

    ``logs()`` lists the hosted logs; ``log_dir_of(topic, partition)`` is the log dir of
    a hosted log (None once it is gone); ``checkpoint_dir(dir)`` rewrites a dir's checkpoints;
    ``closed()`` tells that the manager is shutting down.
    """

    def __init__(
        self,
        *,
        log_dirs: list[Path],
        checkpoint_interval_ms: int,
        logs: Callable[[], Iterable[BackgroundLog]],
        log_dir_of: Callable[[str, int], Path | None],
        checkpoint_dir: Callable[[Path], None],
        closed: Callable[[], bool],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._log_dirs = log_dirs
        #: file.delete.delay.ms runs on this clock (as Kafka's scheduler on its Time), so a
        #: ManualClock's advance() frees deleted segments; the flush and checkpoint paces are
        #: real time.
        self._clock = clock
        self._unsubscribe: Callable[[], None] | None = None
        self._checkpoint_interval_ms = checkpoint_interval_ms
        self._logs = logs
        self._log_dir_of = log_dir_of
        self._checkpoint_dir = checkpoint_dir
        self._closed = closed
        self._cond = threading.Condition()
        self._rolled: dict[int, BackgroundLog] = {}
        self._checkpoint_due = False
        self._stop = False
        self._thread: threading.Thread | None = None
        #: Renamed ``-delete`` directories to remove.
        self._doomed: list[Path] = []
        self._checkpoint_dirs: set[Path] = set()
        #: Deleted segments waiting out file.delete.delay.ms: (due on the clock's monotonic s, seq, log,
        #: segments).
        self._delayed: list[tuple[float, int, BackgroundLog, list[LogSegment]]] = []
        self._seq = itertools.count()

    # -- queueing work (any thread) ---------------------------------------------------------
    def log_rolled(self, plog: BackgroundLog) -> None:
        """A log rolled: flush its older segments and checkpoint (called under the log's
        lock, often on the event loop, so it only queues the work)."""
        with self._cond:
            self._rolled[id(plog)] = plog
            self._ensure()
            self._cond.notify()

    def recovery_point_moved(self, plog: BackgroundLog) -> None:
        """A log's recovery point moved: checkpoint at the next periodic checkpoint."""
        with self._cond:
            self._checkpoint_due = True
            self._ensure()

    def delete_dirs(self, doomed: Iterable[Path], checkpoint_dirs: Iterable[Path] = ()) -> None:
        """Remove the renamed directories ``doomed`` and rewrite the checkpoints of
        ``checkpoint_dirs``."""
        with self._cond:
            self._doomed.extend(doomed)
            self._checkpoint_dirs.update(checkpoint_dirs)
            self._ensure()
            self._cond.notify()

    def delete_segments_later(self, plog: BackgroundLog, segments: list[LogSegment], delay_ms: int) -> None:
        """Remove the files of ``segments`` (out of ``plog``, renamed ``.deleted``) after
        ``delay_ms`` (Kafka's ``file.delete.delay.ms``). Dropped at shutdown: the next load
        removes ``.deleted`` files."""
        with self._cond:
            heapq.heappush(self._delayed, (self._clock.monotonic() + delay_ms / 1000, next(self._seq), plog, segments))
            self._ensure()
            self._cond.notify()

    def _clock_moved(self) -> None:
        # A ManualClock moved (on the moving thread): the thread looks at the delayed deletes again.
        with self._cond:
            self._cond.notify()

    def _remove_due_segments(self) -> None:
        now = self._clock.monotonic()
        while True:
            with self._cond:
                if not self._delayed or self._delayed[0][0] > now:
                    return
                _, _, plog, segments = heapq.heappop(self._delayed)
            if plog.closed:
                # Its directory was renamed away and goes as a whole; the paths are left alone
                # (they could name a new log's files), but descriptors the LRU still holds
                # would keep the removed files' space allocated.
                for seg in segments:
                    SEGMENT_FILES.drop(seg)
                continue
            for seg in segments:
                try:
                    seg.delete()
                except OSError as e:
                    log.error("cannot delete segment %s of %s: %s", seg.log_path, plog.name, e)

    def take_doomed(self) -> list[Path]:
        """The directories still waiting for removal (the caller removes them)."""
        with self._cond:
            doomed, self._doomed = self._doomed, []
        return doomed

    # -- the thread -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread now (so the periodic ``flush.ms`` flusher runs before any roll)."""
        with self._cond:
            self._ensure()

    def stop(self) -> None:
        """Stop the thread and wait for it; queued work is dropped (see :meth:`take_doomed`).
        Segments waiting for deletion keep their ``.deleted`` files (the next load removes
        them) but give back their descriptors."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if thread is not None:
            thread.join()
        with self._cond:
            delayed, self._delayed = self._delayed, []
        for _, _, _, segments in delayed:
            for seg in segments:
                SEGMENT_FILES.drop(seg)

    def _ensure(self) -> None:
        # The caller holds self._cond.
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._run, name="kbroker-log-flusher", daemon=True)
            self._unsubscribe = self._clock.on_advance(self._clock_moved)
            self._thread.start()

    def _flush_due_logs(self) -> float | None:
        """The periodic flusher (Kafka's ``log.flush.scheduler.interval.ms`` task): flush
        every log whose ``flush.ms`` has passed. Returns the smallest ``flush.ms`` in
        seconds (how soon to look again), None if no log sets it."""
        smallest: int | None = None
        for plog in self._logs():
            ms = plog.config.flush_interval_ms
            if ms is None:
                continue
            smallest = ms if smallest is None else min(smallest, ms)
            if self._closed():
                break
            try:
                plog.flush_if_due()
            except OSError as e:
                log.error("periodic flush of %s failed: %s", plog.name, e)
        return None if smallest is None else smallest / 1000

    def _run(self) -> None:
        interval = self._checkpoint_interval_ms / 1000
        next_checkpoint = time.monotonic() + interval
        # Until a scan finds a log with flush.ms, look again at this pace for new ones.
        flush_every: float | None = FLUSH_RESCAN_S
        next_flush = time.monotonic()
        while True:
            with self._cond:
                while not (self._rolled or self._doomed or self._checkpoint_dirs) and not self._stop:
                    timeout = min(next_checkpoint, next_flush) - time.monotonic()
                    if self._delayed:
                        timeout = min(timeout, self._delayed[0][0] - self._clock.monotonic())
                    if timeout <= 0:
                        break
                    self._cond.wait(timeout)
                if self._stop:
                    return
                rolled = list(self._rolled.values())
                self._rolled.clear()
                doomed, self._doomed = self._doomed, []
                dirs, self._checkpoint_dirs = self._checkpoint_dirs, set()
            try:
                for plog in rolled:
                    try:
                        flushed = plog.flush_rolled()
                    except OSError as e:  # the next roll or flush tries again
                        log.error("flush of the rolled segments of %s failed: %s", plog.name, e)
                        continue
                    if flushed:
                        d = self._log_dir_of(plog.topic, plog.partition)
                        if d is not None:
                            dirs.add(d)
                now = time.monotonic()
                if now >= next_flush:
                    flush_every = self._flush_due_logs()
                    # Between min(flush.ms) and the rescan pace for logs configured later.
                    pace = FLUSH_RESCAN_S if flush_every is None else max(min(flush_every, FLUSH_RESCAN_S), 0.01)
                    next_flush = time.monotonic() + pace
                periodic = now >= next_checkpoint
                with self._cond:
                    due = self._checkpoint_due
                    if periodic:
                        self._checkpoint_due = False
                if periodic:
                    next_checkpoint = now + interval
                    if due:
                        dirs = set(self._log_dirs)
                for d in dirs:
                    if self._closed():
                        break
                    try:
                        self._checkpoint_dir(d)
                    except Exception:
                        # A full disk fails checkpoints; the removals below still free space.
                        log.exception("cannot write the checkpoints of %s", d)
                for path in doomed:  # Kafka's delayed delete of renamed log directories
                    store_for(path).rmtree(path)
                self._remove_due_segments()
            except Exception:
                log.exception("background log flush/checkpoint failed")
