"""A bounded, process-wide LRU of open segment ``.log`` descriptors.

Kafka keeps every segment's file open (and its indexes mapped) and asks operators for a
large ``ulimit -n``; with thousands of partitions or small ``segment.bytes`` that runs a
process out of descriptors. kbroker instead opens a segment's ``.log`` on demand and
keeps at most :attr:`FileHandleCache.capacity` of them open, closing the least recently
used one when a new one is needed. Active segments are no exception: a write to a
partition whose descriptor was evicted simply reopens it (one ``open(2)``), and an fsync
through a fresh descriptor still makes every earlier write to the file durable.

The capacity is a quarter of the soft ``RLIMIT_NOFILE`` at first use (at least 16, at
most 65536), leaving the rest for client sockets and the short-lived descriptors of
index, checkpoint and snapshot files. :func:`set_capacity` overrides it.

Users pin a descriptor between :meth:`FileHandleCache.acquire` and
:meth:`FileHandleCache.release`; a pinned descriptor is never closed by eviction, so a
read in one thread cannot have its descriptor closed (and its number reused) by an
open in another.
"""

from __future__ import annotations

import errno
import os
import resource
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

_MIN_CAPACITY = 16
_MAX_CAPACITY = 65536


class CachedFile(Protocol):
    """What the cache needs of an owner: its descriptor slot, pin count and how to open."""

    _fd: int | None
    _pins: int

    def _open_fd(self) -> int: ...


def default_capacity() -> int:
    """A quarter of the soft descriptor limit, within [16, 65536]."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 0 or soft == resource.RLIM_INFINITY:
        return _MAX_CAPACITY
    return max(_MIN_CAPACITY, min(soft // 4, _MAX_CAPACITY))


class FileHandleCache:
    """LRU of open descriptors, one per owner (a segment)."""

    def __init__(self, capacity: int | None = None) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[CachedFile, None] = OrderedDict()
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        if self._capacity is None:
            self._capacity = default_capacity()
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        with self._lock:
            self._capacity = max(1, value)
            self._evict(self._capacity)

    @property
    def open_count(self) -> int:
        """Descriptors currently held by the cache."""
        return len(self._open)

    def acquire(self, owner: CachedFile) -> int:
        """``owner``'s descriptor, opened if needed, pinned until :meth:`release`."""
        with self._lock:
            fd = owner._fd
            if fd is None:
                capacity = self.capacity
                self._evict(capacity - 1)
                try:
                    fd = owner._open_fd()
                except OSError as e:
                    if e.errno not in (errno.EMFILE, errno.ENFILE):
                        raise
                    self._evict(0)  # out of descriptors: give back every unpinned one, once
                    fd = owner._open_fd()
                owner._fd = fd
                self._open[owner] = None
            else:
                self._open.move_to_end(owner)
            owner._pins += 1
            return fd

    def release(self, owner: CachedFile) -> None:
        """Unpin ``owner``'s descriptor (it stays open until evicted or dropped)."""
        with self._lock:
            owner._pins -= 1
            if len(self._open) > self.capacity:  # went over while everything was pinned
                self._evict(self.capacity)

    def adopt(self, owner: CachedFile, fd: int) -> None:
        """Take over a descriptor the owner just opened itself (unpinned)."""
        with self._lock:
            self._evict(self.capacity - 1)
            owner._fd = fd
            self._open[owner] = None

    def drop(self, owner: CachedFile) -> None:
        """Close ``owner``'s descriptor now (the owner closes or deletes its file)."""
        with self._lock:
            fd = owner._fd
            if fd is None:
                return
            owner._fd = None
            self._open.pop(owner, None)
        os.close(fd)

    def _evict(self, keep: int) -> None:
        """Close least recently used unpinned descriptors until at most ``keep`` are open."""
        excess = len(self._open) - keep
        if excess <= 0:
            return
        victims = []
        for owner in self._open:
            if not owner._pins:
                victims.append(owner)
                if len(victims) >= excess:
                    break
        for owner in victims:
            del self._open[owner]
            fd = owner._fd
            owner._fd = None
            if fd is not None:
                os.close(fd)


#: The cache every :class:`~kbroker.log.segment.LogSegment` uses.
SEGMENT_FILES = FileHandleCache()


def set_capacity(capacity: int) -> None:
    """Bound the segment descriptors kept open by this process."""
    SEGMENT_FILES.capacity = capacity


def fsync_files(paths: Iterable[Path]) -> None:
    """fsync each file through a short-lived descriptor of its own, one at a time (a
    burst of rolled segments must not need a descriptor each); files deleted meanwhile
    (retention, topic deletion) are skipped. Any descriptor's fsync makes every earlier
    write to the file durable."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
