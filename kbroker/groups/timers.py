"""Deadline timers on the broker's clock, run by one task that sleeps until the next one.

Timers are plain callbacks: the task wakes when the earliest deadline passes or an
earlier timer is added, never on a polling tick. The task sleeps on the clock: moving a
ManualClock wakes it when a deadline comes due (tests driving a scheduler without its task
call :meth:`Scheduler.run_due`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

import anyio

from kbroker.clock import Clock

log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("deadline", "callback", "cancelled", "seq")

    def __init__(self, deadline: float, callback: Callable[[], None], seq: int = 0) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False
        #: Orders timers due at the same instant: when it was set (or last extended).
        self.seq = seq

    def cancel(self) -> None:
        """Stop the callback from running (harmless if it already ran)."""
        self.cancelled = True


class Scheduler:
    """Runs callbacks at deadlines on ``clock.monotonic()``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()

    def call_later(self, delay_ms: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once ``delay_ms`` milliseconds have passed."""
        timer = Timer(self.clock.monotonic() + max(delay_ms, 0) / 1000.0, callback, next(self._seq))
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (timer.deadline, timer.seq, timer))
        if earliest is None or timer.deadline < earliest:
            self._wake.set()
        return timer

    def extend(self, timer: Timer, delay_ms: float) -> bool:
        """Move a pending ``timer`` to ``delay_ms`` from now if that is no earlier than its
        deadline; False (nothing changed) if it already ran, was cancelled, or would move earlier.

        Nothing is pushed: the heap entry keeps the old deadline and, when it comes due, is
        pushed again at the new one. A session timer restarted by every heartbeat thus costs
        no allocation and no heap growth per heartbeat. Timers still run in the order a cancel
        and a new :meth:`call_later` would give: by deadline, then by when they were set.
        """
        if timer.cancelled:
            return False
        deadline = self.clock.monotonic() + max(delay_ms, 0) / 1000.0
        if deadline < timer.deadline:
            return False
        timer.deadline = deadline
        timer.seq = next(self._seq)
        return True

    def poke(self) -> None:
        """Wake the runner to re-check deadlines (after a ManualClock moved)."""
        self._wake.set()

    def run_due(self) -> int:
        """Run every timer whose deadline has passed; returns how many ran."""
        ran = 0
        while self._heap:
            deadline, seq, timer = self._heap[0]
            if deadline > self.clock.monotonic():
                break
            heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            if seq != timer.seq:
                # Extended since it was pushed: queued again at its new deadline, even one already
                # past, so that it runs after the timers due before it (or set before it).
                heapq.heappush(self._heap, (timer.deadline, timer.seq, timer))
                continue
            timer.cancelled = True
            ran += 1
            try:
                timer.callback()
            except Exception:
                log.exception("group coordinator timer failed")
        return ran

    def pending(self) -> int:
        """Timers scheduled and not cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    async def run(self) -> None:
        """Serve timers until cancelled."""
        while True:
            self.run_due()
            while self._heap and self._heap[0][2].cancelled:
                heapq.heappop(self._heap)
            self._wake = anyio.Event()
            if not self._heap:
                await self._wake.wait()
                continue
            delay = self._heap[0][0] - self.clock.monotonic()
            if delay > 0:
                with self.clock.move_on_after(delay):
                    await self._wake.wait()
