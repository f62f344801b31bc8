"""Waits on broker state, for tests that would otherwise sleep and hope.

``tests/`` is on ``sys.path`` (tests/conftest.py), so any test module can
``from wait_helpers import wait_until``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kbroker.testing import BrokerThread

#: How long a wait may take before it fails: generous, since a loaded machine is slow,
#: and a wait that succeeds returns as soon as the predicate holds.
DEFAULT_TIMEOUT = 30.0


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def wait_until(predicate: Callable[[], object], timeout: float = DEFAULT_TIMEOUT,
               what: str | Callable[[], str] = "condition", interval: float = 0.005) -> None:
    """Return once ``predicate()`` is truthy; fail the test if it is not within ``timeout`` s.

    ``what`` (or its result, computed only on failure) names the condition in the failure.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {_describe(what)}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], object], timeout: float = DEFAULT_TIMEOUT,
                           what: str | Callable[[], str] = "condition", interval: float = 0.005) -> None:
    """:func:`wait_until` for asyncio tests: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {_describe(what)}")
        await asyncio.sleep(interval)


def parked_fetches(broker: BrokerThread) -> int:
    """How many partitions have a long-polling fetch waiting on the broker right now."""
    return int(broker.call(lambda: len(broker.broker.replica_manager._notifier)))
