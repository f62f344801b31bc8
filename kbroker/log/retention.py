"""Log retention: Kafka's ``UnifiedLog.deleteOldSegments`` and the retention check thread.

For one :class:`PartitionLog`, segments are deleted from the oldest on while a rule holds,
in Kafka's order:

* **log start offset breach** (every cleanup policy): a segment wholly below the log start
  offset (DeleteRecords moved it, or the start was checkpointed past the first segment);
* **retention.bytes** (``cleanup.policy`` containing ``delete``): while the partition's
  size exceeds the limit by at least the oldest segment's size;
* **retention.ms** (``cleanup.policy`` containing ``delete``): while
  ``now - largest timestamp > retention.ms``, the largest timestamp being the segment's
  largest record timestamp, or its file's modification time when no record has one. A
  segment with a timestamp in the future is never expired, and being the oldest it holds
  back the segments after it (Kafka warns about it).

``-1`` (None in :class:`LogConfig`) makes a limit unlimited. Only data below the high
watermark goes: the active segment only when the high watermark is at the log end, and
then, every segment being deletable, a new empty active segment is rolled first. Deleted
segments leave through :meth:`PartitionLog.delete_segments_async` (renamed ``.deleted``,
removed after ``file.delete.delay.ms``); the log start offset moves to the first remaining
segment and producer state follows it (see :meth:`PartitionLog.detach_oldest_segments`).

:class:`RetentionScheduler` runs a check every ``log.retention.check.interval.ms`` on its
own thread (Kafka's ``kafka-log-retention`` task); the :class:`LogManager` owns it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.log.segment import NO_TIMESTAMP, LogSegment

if TYPE_CHECKING:
    from kbroker.log.partition_log import PartitionLog

log = logging.getLogger(__name__)
#: Kafka's ``LogFutureTimestampLogger``: segments that retention.ms cannot expire.
future_timestamp_log = logging.getLogger(__name__ + ".future_timestamps")

#: Kafka's ``log.initial.task.delay.ms`` default: the first check waits at most this long.
INITIAL_TASK_DELAY_MS = 30_000


def largest_timestamp(segment: LogSegment) -> int:
    """Kafka's ``LogSegment.largestTimestamp``: the largest record timestamp, or the ``.log``
    file's modification time (ms) when the segment has no timestamped record."""
    ts = segment.max_timestamp
    if ts != NO_TIMESTAMP and ts >= 0:
        return ts
    try:
        return segment.store.mtime_ms(segment.log_path)
    except FileNotFoundError:  # renamed away under us: nothing left to keep
        return 0


def _describe(segment: LogSegment) -> str:
    # Kafka's LogSegment.toString, without materialising indexes.
    return f"LogSegment(baseOffset={segment.base_offset}, size={segment.size})"


def delete_old_segments(plog: PartitionLog, now_ms: int) -> int:
    """Kafka's ``UnifiedLog.deleteOldSegments`` for one log at clock time ``now_ms``:
    the log start offset rule always, then retention.bytes and retention.ms when
    ``cleanup.policy`` contains ``delete``. Returns the number of segments deleted.

    Raises KafkaStorageError when the log is closed meanwhile (the caller skips it).
    """
    deleted = delete_log_start_offset_breached_segments(plog)
    if plog.config.delete:
        deleted += delete_retention_size_breached_segments(plog)
        deleted += delete_retention_ms_breached_segments(plog, now_ms)
    return deleted


def _delete(plog: PartitionLog, predicate: Callable[[LogSegment, LogSegment | None], bool],
            report: Callable[[list[LogSegment]], None]) -> int:
    """Take the segments ``predicate`` selects (from the oldest, below the high watermark)
    out of the log, log why, and delete them through ``delete_segments_async``."""
    start = plog.log_start_offset
    doomed = plog.detach_oldest_segments(predicate)
    if not doomed:
        return 0
    report(doomed)
    if plog.log_start_offset > start:
        log.info("[%s] incremented log start offset to %d due to segment deletion", plog.name, plog.log_start_offset)
    plog.delete_segments_async(doomed)
    return len(doomed)


def delete_log_start_offset_breached_segments(plog: PartitionLog) -> int:
    """Delete the segments whose successor starts at or below the log start offset."""
    def breached(segment: LogSegment, nxt: LogSegment | None) -> bool:
        return nxt is not None and nxt.base_offset <= plog.log_start_offset

    def report(doomed: list[LogSegment]) -> None:
        # The start before deletion is what the rule compared with.
        log.info("[%s] deleting segments due to log start offset %d breach: %s", plog.name, start,
                 ",".join(_describe(s) for s in doomed))

    start = plog.log_start_offset
    return _delete(plog, breached, report)


def delete_retention_size_breached_segments(plog: PartitionLog) -> int:
    """Delete the oldest segments while the partition stays at or above ``retention.bytes``
    without them (Kafka deletes a segment only if the excess is at least its size)."""
    retention_bytes = plog.config.retention_bytes
    if retention_bytes is None or retention_bytes < 0:
        return 0
    size = plog.size_in_bytes
    if size < retention_bytes:
        return 0
    excess = size - retention_bytes

    def breached(segment: LogSegment, nxt: LogSegment | None) -> bool:
        nonlocal excess
        if excess - segment.size < 0:
            return False
        excess -= segment.size
        return True

    def report(doomed: list[LogSegment]) -> None:
        after = size
        for seg in doomed:
            after -= seg.size
            log.info("[%s] deleting segment %s due to log retention size %d breach. Log size after deletion "
                     "will be %d.", plog.name, _describe(seg), retention_bytes, after)

    return _delete(plog, breached, report)


def delete_retention_ms_breached_segments(plog: PartitionLog, now_ms: int) -> int:
    """Delete the oldest segments whose largest timestamp is more than ``retention.ms``
    before ``now_ms``; a segment with a future timestamp stops the deletion."""
    retention_ms = plog.config.retention_ms
    if retention_ms is None or retention_ms < 0:
        return 0
    largest: dict[int, int] = {}

    def breached(segment: LogSegment, nxt: LogSegment | None) -> bool:
        ts = largest[id(segment)] = largest_timestamp(segment)
        if now_ms < ts:
            future_timestamp_log.warning("[%s] %s contains future timestamp(s), making it ineligible to be deleted",
                                         plog.name, _describe(segment))
        return now_ms - ts > retention_ms

    def report(doomed: list[LogSegment]) -> None:
        for seg in doomed:
            basis = "the largest record timestamp" if seg.max_timestamp >= 0 else "the last modified time"
            log.info("[%s] deleting segment %s due to log retention time %dms breach based on %s in the segment "
                     "(%d)", plog.name, _describe(seg), retention_ms, basis, largest.get(id(seg), -1))

    return _delete(plog, breached, report)


class RetentionScheduler:
    """Runs ``check()`` every ``interval_ms`` on a daemon thread (Kafka's ``kafka-log-retention``
    task), the first time after ``min(interval_ms, log.initial.task.delay.ms default)``.

    ``check`` must not raise (the manager's catches per log); anything that escapes is
    logged and the next check still runs. The rules read the broker's clock. The pace is
    real time, and the clock's too: a :class:`~kbroker.clock.ManualClock` moved past the next
    check's time wakes the thread for it (the system clock's two paces are one).
    """

    def __init__(self, check: Callable[[], object], interval_ms: int,
                 initial_delay_ms: int | None = None, *, name: str = "log retention",
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if interval_ms < 1:
            raise ValueError("the retention check interval must be at least 1 ms")
        self._check = check
        self._interval = interval_ms / 1000
        delay = min(interval_ms, INITIAL_TASK_DELAY_MS) if initial_delay_ms is None else initial_delay_ms
        self._initial_delay = delay / 1000
        self._clock = clock
        #: Guards ``_stopped``; notified at stop and when a manual clock moves.
        self._cond = threading.Condition()
        self._stopped = False
        #: Whether the thread is waiting for its next check, and when that is due on the clock.
        self._waiting = False
        self._next_on_clock = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._name = name

    def start(self) -> None:
        """Start the thread (once; a stopped scheduler stays stopped)."""
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="kbroker-" + self._name.replace(" ", "-"),
                                            daemon=True)
            self._thread.start()
        log.info("starting %s checks with a period of %d ms", self._name, int(self._interval * 1000))

    def stop(self) -> None:
        """Stop the thread and wait for a check in progress to end."""
        with self._lock:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no check is due on the clock nor running (a manual clock just moved wakes
        the thread for the check that came due: this waits for that check to end); False if
        ``timeout`` seconds of real time passed first. At once when not started or stopped."""
        def idle() -> bool:
            return (self._stopped or self._thread is None
                    or (self._waiting and self._clock.monotonic() < self._next_on_clock))

        with self._cond:
            return self._cond.wait_for(idle, timeout)

    def _clock_moved(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        clock = self._clock
        unsubscribe = clock.on_advance(self._clock_moved)
        try:
            next_run = time.monotonic() + self._initial_delay
            next_on_clock = clock.monotonic() + self._initial_delay
            while True:
                with self._cond:
                    self._next_on_clock = next_on_clock
                    self._waiting = True
                    self._cond.notify_all()  # for wait_idle
                    while not self._stopped and clock.monotonic() < next_on_clock:
                        timeout = next_run - time.monotonic()
                        if timeout <= 0:
                            break
                        self._cond.wait(timeout)
                    self._waiting = False
                    if self._stopped:
                        return
                try:
                    self._check()
                except Exception:
                    log.exception("%s check failed", self._name)
                # Fixed rate as Kafka's scheduler, but never a burst of catch-up runs after a slow
                # check; a manual clock moved by hours gets one check, the next an interval later.
                next_run = max(next_run + self._interval, time.monotonic())
                next_on_clock += self._interval
                if next_on_clock <= clock.monotonic():
                    next_on_clock = clock.monotonic() + self._interval
        finally:
            unsubscribe()
