"""The one source of time for the whole broker.

Every component reads time through a :class:`Clock` so tests can swap in a
:class:`ManualClock` and drive roll, retention, session timeouts and long polls
deterministically.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the broker needs from time."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (record timestamps, file times)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (timeouts, deadlines)."""
        ...


class SystemClock:
    """The real clock."""

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 0.0

    def time_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, ms: int) -> None:
        """Move both scales forward by ``ms`` milliseconds."""
        self._ms += ms
        self._mono += ms / 1000.0


SYSTEM_CLOCK = SystemClock()
