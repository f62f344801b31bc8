"""``TransactionIndex`` (``.txnindex``): the aborted transactions whose ABORT marker lies in a segment.

Kafka's format, 34-byte big-endian entries::

    version int16 (0) | producer_id int64 | first_offset int64 | last_offset int64 | last_stable_offset int64

``last_offset`` is the offset of the ABORT marker and ``last_stable_offset`` the LSO right
after it was written. A read_committed fetch asks every segment from the one holding its
fetch offset for the entries overlapping its range; consumers drop those producers'
records. The file is created when the segment's first aborted transaction is appended,
so segments of logs without aborted transactions have none.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path
from typing import NamedTuple

from kbroker.fs import store_for
from kbroker.log.errors import CorruptIndexError

_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34
_VERSION = 0


class AbortedTxn(NamedTuple):
    """One ``.txnindex`` entry (Kafka's ``AbortedTxn``)."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndexSearch(NamedTuple):
    """What one segment's index holds for a fetch range (Kafka's ``TxnIndexSearchResult``)."""

    aborted: list[AbortedTxn]
    #: No later segment can hold a transaction overlapping the range.
    complete: bool


class TransactionIndex:
    """The ``.txnindex`` file of one segment, its entries cached once read.

    Entries are written to the file as they are appended (not fsynced until :meth:`flush`,
    like the log data); recovery rebuilds the index of every segment it replays.
    """

    def __init__(self, path: Path, *, exists: bool) -> None:
        """``exists``: whether the file may be there (False for a new segment: no I/O)."""
        self.path = path
        self._store = store_for(path)
        self._exists = exists
        self._entries: list[AbortedTxn] | None = None if exists else []
        self._unsynced = False
        #: A write failed: the file lacks entries that memory has; the next write rewrites it.
        self._file_behind = False

    @property
    def maybe_nonempty(self) -> bool:
        """False when the segment surely has no aborted transaction (no file, or no entries)."""
        if not self._exists:
            return False
        return self._entries is None or bool(self._entries)

    def sane(self) -> bool:
        """Whether the file holds whole entries only (Kafka's ``sanityCheck``); a file torn
        by a crash is rebuilt from the log."""
        try:
            return self._store.size(self.path) % ENTRY_SIZE == 0
        except FileNotFoundError:
            return True

    def entries(self) -> list[AbortedTxn]:
        """All entries, oldest first (read from the file on first use)."""
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> list[AbortedTxn]:
        try:
            data = self._store.read_bytes(self.path)
        except FileNotFoundError:
            self._exists = False
            return []
        if len(data) % ENTRY_SIZE:
            raise CorruptIndexError(f"transaction index {self.path} has {len(data)} bytes, "
                                    f"not a multiple of {ENTRY_SIZE}")
        out = []
        for pos in range(0, len(data), ENTRY_SIZE):
            version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
            if version != _VERSION:
                raise CorruptIndexError(f"transaction index {self.path}: unknown entry version {version}")
            out.append(AbortedTxn(pid, first, last, lso))
        return out

    def append(self, txn: AbortedTxn) -> None:
        """Add an entry; last offsets must increase (Kafka's rule).

        The entry is kept in memory even if writing the file fails (OSError is raised):
        fetches of this process still see the aborted transaction, and the next write
        rewrites the whole file.
        """
        entries = self.entries()
        if entries and txn.last_offset < entries[-1].last_offset:
            raise ValueError(f"aborted transaction ending at {txn.last_offset} appended to {self.path} "
                             f"after one ending at {entries[-1].last_offset}")
        entries.append(txn)
        self._exists = True
        self._unsynced = True
        try:
            if self._file_behind:
                self._rewrite(entries)
                return
            self._store.append(self.path, _ENTRY.pack(_VERSION, *txn))
        except OSError:
            self._file_behind = True
            raise

    def collect(self, fetch_offset: int, upper_bound: int) -> TxnIndexSearch:
        """Entries overlapping ``[fetch_offset, upper_bound)``; complete once an entry's
        last stable offset reaches ``upper_bound`` (Kafka's ``collectAbortedTxns``)."""
        found: list[AbortedTxn] = []
        for txn in self.entries():
            if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound:
                found.append(txn)
            if txn.last_stable_offset >= upper_bound:
                return TxnIndexSearch(found, True)
        return TxnIndexSearch(found, False)

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or after ``offset`` (the log is cut there)."""
        if not self._exists:
            return
        entries = self.entries()
        keep = [t for t in entries if t.last_offset < offset]
        if len(keep) == len(entries):
            return
        self._rewrite(keep)

    def reset(self) -> None:
        """Forget every entry and remove the file (recovery rebuilds it)."""
        if not self._exists:
            self._entries = []
            return  # no file: nothing to remove (the common case, without a syscall)
        self._rewrite([])

    def _rewrite(self, entries: list[AbortedTxn]) -> None:
        self._file_behind = True  # until the new file is in place
        if not entries:
            self._store.unlink(self.path, missing_ok=True)
            self._exists = False
            self._unsynced = False
        else:
            self._store.replace(self.path, b"".join(_ENTRY.pack(_VERSION, *t) for t in entries))
            self._unsynced = True
        self._entries = entries
        self._file_behind = False

    @property
    def needs_sync(self) -> bool:
        return self._unsynced

    def mark_synced(self) -> None:
        """The file was fsynced by the caller (unless it is behind memory: then it still needs a write)."""
        if not self._file_behind:
            self._unsynced = False

    def flush(self) -> None:
        """fsync the file if it holds unsynced entries (rewriting it first if a write failed)."""
        if not self._unsynced:
            return
        if self._file_behind:
            self._rewrite(self.entries())
        with contextlib.suppress(FileNotFoundError):  # nothing written yet
            self._store.fsync(self.path)
        self._unsynced = False

    def delete(self) -> None:
        """Remove the file (with its segment)."""
        self._store.unlink(self.path, missing_ok=True)
        self._exists = False
        self._entries = []
        self._unsynced = False
