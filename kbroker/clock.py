"""The one source of time for the whole broker.

Every component reads time through a :class:`Clock` so tests can swap in a
:class:`ManualClock` and drive roll, retention, session timeouts and long polls
deterministically.

Components also *wait* through the clock: :meth:`Clock.move_on_after` and
:meth:`Clock.sleep` on the event loop, :meth:`Clock.on_advance` for threads. On the
system clock these are anyio's own calls (nothing added on the serving path). On a
:class:`ManualClock` a wait ends when :meth:`ManualClock.advance` carries the clock past
its deadline, or after the same duration of real time, whichever comes first: what is
*due* (a session expiring, a segment old enough to delete, a transaction past its
timeout) is always decided by the clock's readings, so it happens exactly when a test
advances the clock, while a consumer's long poll on an idle topic still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import operator
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import anyio


class Clock(Protocol):
    """What the broker needs from time."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (record timestamps, file times)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (timeouts, deadlines)."""
        ...

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope ending the block once ``seconds`` have passed on this clock
        (``scope.cancelled_caught`` says whether it did), as :func:`anyio.move_on_after`."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock."""
        ...

    def on_advance(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from the moving thread) each time the clock is moved by hand, so
        a thread waiting on a condition can look at the clock again; returns the unsubscriber.
        A clock that only moves by itself never calls it."""
        ...


def _unsubscribed() -> None:
    """Nothing to undo: the system clock keeps no listeners."""


class SystemClock:
    """The real clock."""

    #: Waits are anyio's: the serving path pays nothing for the clock seam.
    move_on_after = staticmethod(anyio.move_on_after)
    sleep = staticmethod(anyio.sleep)

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def on_advance(self, callback: Callable[[], None]) -> Callable[[], None]:
        """The system clock is never moved by hand: ``callback`` is never called."""
        return _unsubscribed


class _Waiter:
    """A wait parked on a :class:`ManualClock` until its deadline."""

    __slots__ = ("wake", "loop", "thread", "done")

    def __init__(self, wake: Callable[[], None], loop: asyncio.AbstractEventLoop | None) -> None:
        self.wake = wake
        self.loop = loop
        self.thread = threading.get_ident()
        self.done = False

    def fire(self) -> None:
        # On its own loop's thread directly; from another thread (a test moving the clock of a
        # broker served by a background thread) through that loop, never touching its state here.
        if self.loop is None or threading.get_ident() == self.thread:
            self.wake()
        else:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing waits any more
                self.loop.call_soon_threadsafe(self.wake)


class ManualClock:
    """A clock that only moves when told to; for tests.

    Safe to move from any thread. Waits through :meth:`move_on_after` and :meth:`sleep`
    end once :meth:`advance` carries the clock to their deadline (or, as a fallback that
    keeps clients flowing, once that long has passed in real time).
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 0.0
        self._lock = threading.Lock()
        self._waiters: list[tuple[float, int, _Waiter]] = []
        self._seq = itertools.count()
        self._listeners: dict[int, Callable[[], None]] = {}
        #: Entries of ``_waiters`` whose wait ended some other way (compacted now and then).
        self._finished = 0

    def time_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, ms: int) -> None:
        """Move both scales forward by ``ms`` milliseconds and wake every wait now due.

        ``ms`` is a whole number (TypeError otherwise: a fractional millisecond would make the
        wall clock, and every timestamp taken from it, a float)."""
        if isinstance(ms, bool) or not isinstance(ms, int):
            try:  # numpy integers and the like are whole numbers too
                ms = operator.index(ms)
            except TypeError:
                raise TypeError(f"a clock moves by whole milliseconds, not {ms!r}") from None
        if ms < 0:
            raise ValueError(f"a clock cannot move backwards ({ms} ms)")
        due: list[_Waiter] = []
        with self._lock:
            self._ms += ms
            self._mono += ms / 1000.0
            while self._waiters and self._waiters[0][0] <= self._mono:
                waiter = heapq.heappop(self._waiters)[2]
                if waiter.done:
                    self._finished -= 1
                else:
                    waiter.done = True
                    due.append(waiter)
            listeners = list(self._listeners.values())
        for waiter in due:
            waiter.fire()
        for listener in listeners:
            listener()

    def pending_waits(self) -> int:
        """Waits parked on the clock (for tests and diagnostics)."""
        with self._lock:
            return sum(1 for _, _, w in self._waiters if not w.done)

    def _park(self, seconds: float, wake: Callable[[], None]) -> _Waiter:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not on an asyncio loop: woken on the moving thread
            loop = None
        waiter = _Waiter(wake, loop)
        with self._lock:
            heapq.heappush(self._waiters, (self._mono + max(seconds, 0.0), next(self._seq), waiter))
        return waiter

    @contextlib.contextmanager
    def move_on_after(self, seconds: float) -> Iterator[anyio.CancelScope]:
        """A cancel scope ending the block at ``seconds`` on this clock, or in real time."""
        with anyio.move_on_after(seconds) as scope:
            waiter = self._park(seconds, scope.cancel)
            try:
                yield scope
            finally:
                self._finish(waiter)

    def _finish(self, waiter: _Waiter) -> None:
        """A wait ended: its heap entry is skipped when it comes due, and entries of ended
        waits are dropped once they are most of the heap (a clock never advanced, its long
        polls answered by data, would otherwise keep every one)."""
        with self._lock:
            if waiter.done:
                return
            waiter.done = True
            self._finished += 1
            if self._finished > 64 and 2 * self._finished > len(self._waiters):
                self._waiters = [entry for entry in self._waiters if not entry[2].done]
                heapq.heapify(self._waiters)
                self._finished = 0

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock (or in real time)."""
        with self.move_on_after(seconds):
            await anyio.sleep_forever()

    def on_advance(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every :meth:`advance`; returns the unsubscriber."""
        key = next(self._seq)
        with self._lock:
            self._listeners[key] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe


SYSTEM_CLOCK = SystemClock()
