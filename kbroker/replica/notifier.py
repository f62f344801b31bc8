"""Wake long-polling fetches when a partition they watch changes.

A waiting fetch registers one :class:`anyio.Event` under every partition it reads;
an append sets (and drops) the events registered under its partition. Nothing polls:
a fetch sleeps until an event fires or its deadline passes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager

import anyio


class PartitionNotifier:
    """Per-partition sets of waiting events."""

    def __init__(self) -> None:
        self._waiters: dict[Hashable, set[anyio.Event]] = {}

    @contextmanager
    def watch(self, keys: Iterable[Hashable]) -> Iterator[anyio.Event]:
        """An event set by the next :meth:`notify` of any of ``keys`` while the block runs."""
        event = anyio.Event()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[key]

    def notify(self, key: Hashable) -> None:
        """Wake every fetch watching ``key``."""
        waiters = self._waiters.pop(key, None)
        if waiters:
            for event in waiters:
                event.set()

    def notify_all(self) -> None:
        """Wake every waiting fetch (shutdown, metadata changes)."""
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for event in events:
                event.set()

    def __len__(self) -> int:
        """Number of partitions with at least one waiter (for tests and metrics)."""
        return len(self._waiters)
