"""A progress line on stderr for long produce/consume runs to a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: Seconds a run lasts before the line appears (short runs stay silent).
FIRST_AFTER = 1.0
#: Seconds between two updates of the line.
EVERY = 0.5


class Progress:
    """``\\r<verb> N records (R/s)`` rewritten in place, then erased by :meth:`finish`.

    Shown only when ``stream`` is a terminal and ``enabled`` (the caller's judgement, e.g.
    the records themselves do not go to that same terminal).
    """

    def __init__(self, stream: TextIO, verb: str, *, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.verb = verb
        self.clock = clock
        self.active = enabled and _isatty(stream)
        self.started = clock()
        self.next_at = self.started + FIRST_AFTER
        self.shown = False

    def update(self, count: int) -> None:
        """Redraw the line if it is due."""
        if not self.active:
            return
        now = self.clock()
        if now < self.next_at:
            return
        self.next_at = now + EVERY
        rate = count / max(now - self.started, 1e-9)
        self.stream.write(f"\r\x1b[K{self.verb} {count} records ({rate:,.0f}/s)")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        """Erase the line (the final summary, if any, is the caller's)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
