"""Keep the broker's long-lived state out of the garbage collector's full passes.

A broker holds an object graph that grows with its partitions (logs, segments, indexes,
metadata) and lives as long as they do. CPython's full collection walks every tracked
object and runs on the event loop: with a 10,000-partition topic about 350k objects and
~140 ms during which no connection is served. Frozen objects (``gc.freeze``) are skipped
by collections and still freed by reference counting when a topic goes, which is how
partition state dies (it holds no reference cycles), so freezing costs nothing later.

The interpreter's thread switch interval is set here too (:func:`share_interpreter`).

Both affect the whole process, so only a broker that owns its process (``kbroker serve``)
does them; an embedded broker (tests, :mod:`kbroker.testing`) leaves its host's interpreter
alone.
"""

from __future__ import annotations

import gc
import logging
import sys

log = logging.getLogger(__name__)

#: Seconds a thread running Python code keeps the interpreter before another thread that
#: waits for it gets a turn. CPython's default is 5 ms: while a background thread runs Python
#: (retention, checkpoints, a large request decoded off the loop), the event loop thread that
#: wakes for a request waits up to that long for every step, which is what a client sees as its
#: tail latency. 0.5 ms bounds that wait at the cost of more switches while both are busy.
SWITCH_INTERVAL_S = 0.0005

def settle(reason: str, *, collect: bool = False) -> None:
    """Freeze every object tracked now; with ``collect``, free what is garbage first
    (a full pass: at start-up, before serving, not after a creation on the loop)."""
    if collect:
        gc.collect()
    gc.freeze()
    log.debug("heap settled (%s): %d objects frozen", reason, gc.get_freeze_count())


def share_interpreter() -> None:
    """Let the event loop thread take the interpreter back within :data:`SWITCH_INTERVAL_S`
    of waking while another thread runs Python code."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
