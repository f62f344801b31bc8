"""Sparse segment indexes: ``OffsetIndex`` (``.index``) and ``TimeIndex`` (``.timeindex``).

Both use Kafka's on-disk entry formats (big-endian, offsets relative to the segment's
base offset). Unlike Kafka we do not preallocate and mmap ``segment.index.bytes`` per
file: entries live in compact ``array`` columns that are loaded lazily on first use,
and new entries are appended to the file on flush/close, so the file is always exactly
the used size and an idle partition costs no index memory. ``segment_index_bytes``
still bounds the entry count so segments roll when an index is full, as in Kafka.

kbroker keys offset-index entries by a batch's *base* offset (Kafka uses the last
offset); either is a valid floor key since lookups then scan forward to the batch whose
last offset reaches the target.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import NamedTuple

from kbroker.fs import store_for
from kbroker.log.errors import CorruptIndexError

_INT32_MAX = 2**31 - 1
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_LITTLE = sys.byteorder == "little"


class OffsetPosition(NamedTuple):
    """An offset-index entry: absolute offset and byte position in the ``.log`` file."""

    offset: int
    position: int


class TimestampOffset(NamedTuple):
    """A time-index entry: timestamp and the absolute offset of the batch that reached it."""

    timestamp: int
    offset: int


def _to_native(data: bytes, typecode: str) -> array:
    arr = array(typecode)
    arr.frombytes(data)
    if _LITTLE:
        arr.byteswap()
    return arr


class _Index:
    """What both indexes share: a file, a base offset, lazily loaded entries, persistence."""

    ENTRY_SIZE = 0

    def __init__(self, path: Path, base_offset: int, max_index_size: int, *, create: bool = False,
                 touch: bool = True) -> None:
        self.path = path
        self._store = store_for(path)
        self.base_offset = base_offset
        # Kafka rounds maxIndexSize down to a whole number of entries.
        self.max_entries = max(1, max_index_size // self.ENTRY_SIZE)
        self._loaded = False
        self._keys = self._new_keys()  # relative offsets / timestamps, sorted
        self._vals = array("i")  # positions / relative offsets
        self._file_entries = 0  # entries the file holds that match memory
        self._file_dirty = False
        # A new file is empty; its creation is made durable by the directory fsync.
        self._unsynced = False
        if create:
            # ``touch=False``: a new empty index whose file is written when it first has
            # entries (a missing file reads as empty).
            if touch:
                self._store.write_at(path, b"", 0)
            self._loaded = True

    # -- subclass hooks --------------------------------------------------------------
    def _new_keys(self) -> array:
        raise NotImplementedError

    def _parse(self, data: bytes) -> None:
        raise NotImplementedError

    def _pack(self, start: int, stop: int) -> bytes:
        raise NotImplementedError

    def _check(self) -> None:
        raise NotImplementedError

    # -- loading ---------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        try:
            data = self._store.read_bytes(self.path)
        except FileNotFoundError:
            data = b""
        if len(data) % self.ENTRY_SIZE:
            raise CorruptIndexError(f"index file {self.path} has a partial entry ({len(data)} bytes)")
        self._parse(data)
        self._file_entries = len(self._vals)
        self._loaded = True
        try:
            self._check()
        except CorruptIndexError:
            self.reset()
            raise

    def load(self) -> None:
        """Read the file now (raises CorruptIndexError if it fails the sanity check)."""
        self._ensure_loaded()

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def entries(self) -> int:
        """Number of entries."""
        self._ensure_loaded()
        return len(self._vals)

    @property
    def is_full(self) -> bool:
        # Checked on every append: the loaded entries are counted without the property.
        if not self._loaded:
            self._ensure_loaded()
        return len(self._vals) >= self.max_entries

    @property
    def size_in_bytes(self) -> int:
        return self.entries * self.ENTRY_SIZE

    def reset(self) -> None:
        """Drop every entry (the file is cut on the next flush)."""
        self._keys = self._new_keys()
        self._vals = array("i")
        self._loaded = True
        self._file_entries = 0
        self._file_dirty = True

    def _truncate_entries(self, n: int) -> None:
        if n < len(self._vals):
            del self._keys[n:]
            del self._vals[n:]
            if n < self._file_entries:
                self._file_entries = n
                self._file_dirty = True

    # -- persistence -----------------------------------------------------------------
    def flush(self, fsync: bool = False) -> None:
        """Write entries not yet in the file (and cut stale ones), optionally fsyncing."""
        pending = self._loaded and (len(self._vals) != self._file_entries or self._file_dirty)
        if not pending and not (fsync and self._unsynced):
            return
        data = b""
        pos = 0
        truncate = None
        if pending:
            n = len(self._vals)
            if n > self._file_entries:
                data = self._pack(self._file_entries, n)
                pos = self._file_entries * self.ENTRY_SIZE
            if self._file_dirty:  # entries were dropped; otherwise the file only grew
                truncate = n * self.ENTRY_SIZE
        self._store.write_at(self.path, data, pos, truncate=truncate, fsync=fsync)
        if pending:
            self._file_entries = len(self._vals)
            self._file_dirty = False
            self._unsynced = True
        if fsync:
            self._unsynced = False

    @property
    def needs_sync(self) -> bool:
        """True if entries are pending or were written without fsync."""
        return self._unsynced or (self._loaded and (len(self._vals) != self._file_entries or self._file_dirty))

    def mark_synced(self) -> None:
        """The file was made durable by the caller (after :meth:`flush`)."""
        if not (self._loaded and (len(self._vals) != self._file_entries or self._file_dirty)):
            self._unsynced = False

    def close(self) -> None:
        """Persist and release the in-memory entries (reloaded lazily if used again)."""
        self.flush()
        if self._loaded:
            self._keys = self._new_keys()
            self._vals = array("i")
            self._loaded = False

    def delete(self) -> None:
        self._keys = self._new_keys()
        self._vals = array("i")
        self._loaded = True
        self._file_entries = 0
        self._file_dirty = False
        self._store.unlink(self.path, missing_ok=True)

    def _relative(self, offset: int) -> int:
        rel = offset - self.base_offset
        if not 0 <= rel <= _INT32_MAX:
            raise ValueError(f"offset {offset} does not fit index with base {self.base_offset}")
        return rel


class OffsetIndex(_Index):
    """``<base>.index``: 8-byte entries (relative offset int32, position int32)."""

    ENTRY_SIZE = 8

    def _new_keys(self) -> array:
        return array("i")

    def _parse(self, data: bytes) -> None:
        flat = _to_native(data, "i")
        self._keys = flat[0::2]
        self._vals = flat[1::2]

    def _pack(self, start: int, stop: int) -> bytes:
        out = bytearray((stop - start) * 8)
        for i, j in enumerate(range(start, stop)):
            _OFFSET_ENTRY.pack_into(out, i * 8, self._keys[j], self._vals[j])
        return bytes(out)

    def _check(self) -> None:
        keys, vals = self._keys, self._vals
        for i in range(1, len(keys)):
            if keys[i] <= keys[i - 1] or vals[i] <= vals[i - 1]:
                raise CorruptIndexError(f"offset index {self.path} is not strictly increasing at entry {i}")
        if keys and (keys[0] < 0 or vals[0] < 0):
            raise CorruptIndexError(f"offset index {self.path} has a negative first entry")

    def check_positions(self, log_size: int) -> None:
        """Raise CorruptIndexError if an entry points past the end of the log."""
        self._ensure_loaded()
        if self._vals and self._vals[-1] >= log_size:
            raise CorruptIndexError(f"offset index {self.path} points past the log end {log_size}")

    @property
    def last_offset(self) -> int:
        """Offset of the last entry, or the base offset if empty."""
        self._ensure_loaded()
        return self.base_offset + self._keys[-1] if self._keys else self.base_offset

    def last_entry(self) -> OffsetPosition:
        self._ensure_loaded()
        if not self._keys:
            return OffsetPosition(self.base_offset, 0)
        return OffsetPosition(self.base_offset + self._keys[-1], self._vals[-1])

    def entry(self, n: int) -> OffsetPosition:
        self._ensure_loaded()
        return OffsetPosition(self.base_offset + self._keys[n], self._vals[n])

    def entry_list(self) -> list[OffsetPosition]:
        self._ensure_loaded()
        return [OffsetPosition(self.base_offset + k, v) for k, v in zip(self._keys, self._vals, strict=True)]

    def lookup(self, target_offset: int) -> OffsetPosition:
        """Largest entry with offset <= target, or (base_offset, 0) if there is none."""
        self._ensure_loaded()
        i = bisect_right(self._keys, target_offset - self.base_offset) - 1
        if i < 0:
            return OffsetPosition(self.base_offset, 0)
        return OffsetPosition(self.base_offset + self._keys[i], self._vals[i])

    def fetch_upper_bound_offset(self, position: int, fetch_size: int) -> int | None:
        """Offset of the first entry at or past ``position + fetch_size`` (None if there is none),
        as Kafka's ``OffsetIndex.fetchUpperBoundOffset``: a read_committed fetch collects the
        aborted transactions below it."""
        self._ensure_loaded()
        i = bisect_left(self._vals, position + fetch_size)
        return None if i >= len(self._vals) else self.base_offset + self._keys[i]

    def append(self, offset: int, position: int) -> None:
        """Add an entry; offsets and positions must increase strictly."""
        self._ensure_loaded()
        if len(self._vals) >= self.max_entries:
            raise ValueError(f"offset index {self.path} is full")
        rel = self._relative(offset)
        if self._keys and (rel <= self._keys[-1] or position <= self._vals[-1]):
            raise ValueError(f"offset index entry ({offset}, {position}) is not after the last entry")
        self._keys.append(rel)
        self._vals.append(position)

    def truncate_to(self, offset: int) -> None:
        """Remove every entry whose offset is >= ``offset``."""
        self._ensure_loaded()
        self._truncate_entries(bisect_right(self._keys, offset - self.base_offset - 1))


class TimeIndex(_Index):
    """``<base>.timeindex``: 12-byte entries (timestamp int64, relative offset int32)."""

    ENTRY_SIZE = 12

    def _new_keys(self) -> array:
        return array("q")

    def _parse(self, data: bytes) -> None:
        keys, vals = array("q"), array("i")
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            keys.append(ts)
            vals.append(rel)
        self._keys, self._vals = keys, vals

    def _pack(self, start: int, stop: int) -> bytes:
        out = bytearray((stop - start) * 12)
        for i, j in enumerate(range(start, stop)):
            _TIME_ENTRY.pack_into(out, i * 12, self._keys[j], self._vals[j])
        return bytes(out)

    def _check(self) -> None:
        keys, vals = self._keys, self._vals
        for i in range(1, len(keys)):
            if keys[i] <= keys[i - 1] or vals[i] < vals[i - 1]:
                raise CorruptIndexError(f"time index {self.path} is not increasing at entry {i}")
        if vals and vals[0] < 0:
            raise CorruptIndexError(f"time index {self.path} has a negative offset")

    @property
    def is_full(self) -> bool:
        # Kafka keeps one slot free for the final entry written when the segment closes.
        if not self._loaded:
            self._ensure_loaded()
        return len(self._vals) >= self.max_entries - 1

    def last_entry(self) -> TimestampOffset:
        """The last entry, or (-1, base_offset) if empty."""
        self._ensure_loaded()
        if not self._keys:
            return TimestampOffset(-1, self.base_offset)
        return TimestampOffset(self._keys[-1], self.base_offset + self._vals[-1])

    def entry_list(self) -> list[TimestampOffset]:
        self._ensure_loaded()
        return [TimestampOffset(k, self.base_offset + v) for k, v in zip(self._keys, self._vals, strict=True)]

    def lookup(self, target_timestamp: int) -> TimestampOffset:
        """Largest entry with timestamp <= target, or (-1, base_offset) if there is none."""
        self._ensure_loaded()
        i = bisect_right(self._keys, target_timestamp) - 1
        if i < 0:
            return TimestampOffset(-1, self.base_offset)
        return TimestampOffset(self._keys[i], self.base_offset + self._vals[i])

    def maybe_append(self, timestamp: int, offset: int, skip_full_check: bool = False) -> None:
        """Add an entry if ``timestamp`` is larger than the last one (timestamps only grow)."""
        self._ensure_loaded()
        if not skip_full_check and self.is_full:
            raise ValueError(f"time index {self.path} is full")
        rel = self._relative(offset)
        if self._keys:
            if rel < self._vals[-1]:
                raise ValueError(f"time index offset {offset} is before the last entry")
            if timestamp <= self._keys[-1]:
                return
        self._keys.append(timestamp)
        self._vals.append(rel)

    def truncate_to(self, offset: int) -> None:
        """Remove every entry whose offset is >= ``offset``."""
        self._ensure_loaded()
        rel = offset - self.base_offset
        n = len(self._vals)
        while n and self._vals[n - 1] >= rel:
            n -= 1
        self._truncate_entries(n)
