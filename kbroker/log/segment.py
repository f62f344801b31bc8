"""``LogSegment``: one ``<20-digit base offset>.log`` file plus its two indexes.

The ``.log`` file holds record batches byte for byte as Kafka writes them. Reads and
writes go through ``os.pread``/``os.pwrite`` on a descriptor from the process-wide LRU
of :mod:`kbroker.log.handles`, so the number of open segment files stays bounded however
many partitions and segments there are; segments never touched after startup hold none.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from kbroker.fs import DISK, MEMORY, FileStore, is_memory_path
from kbroker.log.errors import CorruptIndexError
from kbroker.log.handles import SEGMENT_FILES
from kbroker.log.index import OffsetIndex, TimeIndex, TimestampOffset
from kbroker.log.recovery import scan_valid_batches
from kbroker.log.txn_index import AbortedTxn, TransactionIndex, TxnIndexSearch
from kbroker.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchError,
    BatchHeader,
    parse_header,
    peek_size,
)

log = logging.getLogger(__name__)

LOG_FILE_SUFFIX = ".log"
INDEX_FILE_SUFFIX = ".index"
TIME_INDEX_FILE_SUFFIX = ".timeindex"
TXN_INDEX_FILE_SUFFIX = ".txnindex"
#: Kafka's suffixes for files of a segment on its way out: removed after file.delete.delay.ms.
DELETED_FILE_SUFFIX = ".deleted"

_MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_INT32_MAX = 2**31 - 1
_SCAN_CHUNK = 64 * 1024
NO_TIMESTAMP = -1


def filename_prefix_from_offset(offset: int) -> str:
    """Kafka's file name stem: the base offset zero-padded to 20 digits."""
    return f"{offset:020d}"


def offset_from_filename(name: str) -> int:
    """The base offset encoded in a segment file name such as ``00000000000000000042.log``."""
    return int(name.split(".", 1)[0])


def _pread(fd: int, n: int, pos: int) -> bytes:
    """Read up to ``n`` bytes at ``pos`` (fewer only at end of file)."""
    data = os.pread(fd, n, pos)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, pos + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class LogSegment:
    """A segment of a partition log: the ``.log`` file, ``.index`` and ``.timeindex``.

    Create new segments with :meth:`create` and existing ones with :meth:`open`.
    """

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
        create: bool,
        empty: bool = False,
        txn_index_exists: bool | None = None,
    ) -> None:
        self.dir = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        stem = filename_prefix_from_offset(base_offset)
        self.log_path = directory / (stem + LOG_FILE_SUFFIX)
        new = create or empty
        self.offset_index = OffsetIndex(directory / (stem + INDEX_FILE_SUFFIX), base_offset, segment_index_bytes,
                                        create=new, touch=create)
        self.time_index = TimeIndex(directory / (stem + TIME_INDEX_FILE_SUFFIX), base_offset, segment_index_bytes,
                                    create=new, touch=create)
        txn_path = directory / (stem + TXN_INDEX_FILE_SUFFIX)
        if txn_index_exists is None:
            txn_index_exists = not new and self.store.exists(txn_path)
        #: Aborted transactions whose ABORT marker is in this segment.
        self.txn_index = TransactionIndex(txn_path, exists=txn_index_exists)
        # Owned by SEGMENT_FILES: the open descriptor (None while closed) and its pin count.
        self._fd: int | None = None
        self._pins = 0
        self._open_flags = os.O_RDWR | os.O_CREAT if empty else os.O_RDWR
        self._size = self._open_log_file(create, empty)
        self._dirty = False  # written since the last fsync
        # Tail state (next offset, max timestamp, index cursor), computed lazily on open.
        self._tail_loaded = new
        self._next_offset = base_offset
        self._max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = base_offset
        self._last_index_position = 0
        self._final_entry_done = False
        #: Clock time of the first append (drives segment.ms rolls); None while empty.
        self.first_append_ms: int | None = None

    #: The store of this segment's files (the disk; memory for :class:`MemoryLogSegment`).
    store: FileStore = DISK

    def _open_log_file(self, create: bool, empty: bool) -> int:
        """Create or find the ``.log`` file; returns its size."""
        if create:
            SEGMENT_FILES.adopt(self, os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
            return 0
        if empty:
            return 0  # opened (or created) on first use
        return self.log_path.stat().st_size

    @classmethod
    def create(cls, directory: Path, base_offset: int, *, index_interval_bytes: int, segment_index_bytes: int) -> LogSegment:
        """Create the three (empty) files of a new segment."""
        if is_memory_path(directory):
            cls = MemoryLogSegment
        return cls(directory, base_offset, index_interval_bytes=index_interval_bytes,
                   segment_index_bytes=segment_index_bytes, create=True)

    @classmethod
    def open_empty(cls, directory: Path, base_offset: int, *, index_interval_bytes: int,
                   segment_index_bytes: int) -> LogSegment:
        """A new empty segment (bulk partition creation): nothing is read, the ``.log``
        file is opened on first use (and created then if missing), and the index files
        are only written once they have entries."""
        if is_memory_path(directory):
            cls = MemoryLogSegment
        return cls(directory, base_offset, index_interval_bytes=index_interval_bytes,
                   segment_index_bytes=segment_index_bytes, create=False, empty=True)

    @classmethod
    def open(cls, directory: Path, base_offset: int, *, index_interval_bytes: int, segment_index_bytes: int,
             txn_index_exists: bool | None = None) -> LogSegment:
        """Open an existing segment without reading it (indexes load lazily).
        ``txn_index_exists``: whether a ``.txnindex`` file is there, if the caller knows."""
        if is_memory_path(directory):
            cls = MemoryLogSegment
        return cls(directory, base_offset, index_interval_bytes=index_interval_bytes,
                   segment_index_bytes=segment_index_bytes, create=False, txn_index_exists=txn_index_exists)

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self._size})"

    # -- basic state ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes in the ``.log`` file."""
        return self._size

    @property
    def next_offset(self) -> int:
        """One past the last offset in this segment (the base offset if empty)."""
        self._load_tail()
        return self._next_offset

    @property
    def max_timestamp(self) -> int:
        """Largest batch max-timestamp in the segment, -1 if empty."""
        self._load_tail()
        return self._max_timestamp

    @property
    def offset_of_max_timestamp(self) -> int:
        """Base offset of the first batch that reached :attr:`max_timestamp`."""
        self._load_tail()
        return self._offset_of_max_timestamp

    def _open_fd(self) -> int:
        # Called by SEGMENT_FILES (under its lock) when the descriptor is needed again.
        return os.open(self.log_path, self._open_flags, 0o644)

    def _read_at(self, n: int, pos: int) -> bytes:
        fd = SEGMENT_FILES.acquire(self)
        try:
            return _pread(fd, n, pos)
        finally:
            SEGMENT_FILES.release(self)

    def _ensure_indexes(self) -> None:
        """Load the indexes, rebuilding them from the log if they fail the sanity check."""
        try:
            self.offset_index.load()
            self.time_index.load()
            self.offset_index.check_positions(self._size)
            if self.time_index.entries and self.time_index.last_entry().offset >= self._next_offset_bound():
                raise CorruptIndexError(f"time index {self.time_index.path} points past the log end")
        except CorruptIndexError as e:
            log.warning("rebuilding indexes of %s: %s", self.log_path, e)
            self.rebuild_indexes()

    def _next_offset_bound(self) -> int:
        # Cheap upper bound used by the sanity check before the tail is known.
        return self._next_offset if self._tail_loaded else 2**63 - 1

    def _load_tail(self) -> None:
        """Find next offset, max timestamp and the index cursor from the last index entries."""
        if self._tail_loaded:
            return
        was_loaded = self.offset_index.loaded and self.time_index.loaded
        self._compute_tail()
        if not was_loaded:
            # Keep idle segments cheap: the entries reload lazily when needed.
            self.offset_index.close()
            self.time_index.close()

    def _compute_tail(self) -> None:
        self._ensure_indexes()
        if self._tail_loaded:  # rebuild_indexes scanned everything
            return
        start = self.offset_index.last_entry()
        ts_entry = self.time_index.last_entry()
        max_ts, max_off = ts_entry.timestamp, ts_entry.offset
        next_offset = self.base_offset
        end = start.position
        for pos, h in self.iter_batches(start.position):
            if h.max_timestamp > max_ts:
                max_ts, max_off = h.max_timestamp, h.base_offset
            next_offset = h.next_offset
            end = pos + h.size
        if end != self._size:
            # A clean segment ends on a batch boundary; trailing bytes mean it needs recovery.
            log.warning("%s has %d trailing bytes after its last whole batch", self.log_path, self._size - end)
            self.recover()
            return
        self._next_offset = next_offset
        self._max_timestamp = max_ts
        self._offset_of_max_timestamp = max_off if max_ts != NO_TIMESTAMP else self.base_offset
        self._last_index_position = start.position
        self._tail_loaded = True

    def first_batch_timestamp(self) -> int | None:
        """Max timestamp of the first batch (Kafka's rolling-based timestamp), None if empty."""
        if self._size < HEADER_SIZE:
            return None
        return parse_header(self._read_at(HEADER_SIZE, 0)).max_timestamp

    # -- scanning ------------------------------------------------------------------------
    def iter_batches(self, start_position: int = 0, end_position: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """Yield ``(position, header)`` of each whole batch from ``start_position``, headers only."""
        for pos, h, _buf, _buf_start in self._scan(start_position, end_position):
            yield pos, h

    def _scan(self, start_position: int, end_position: int | None = None) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
        """:meth:`iter_batches`, with the bytes last read and the position they start at (they
        hold the batch yielded, and often what follows it)."""
        end = self._size if end_position is None else min(end_position, self._size)
        pos = start_position
        buf = b""
        buf_start = pos
        big = False  # the last batch was large: read just the next header, not a chunk
        while end - pos >= HEADER_SIZE:
            off = pos - buf_start
            if off < 0 or off + HEADER_SIZE > len(buf):
                buf = self._read_at(HEADER_SIZE if big else min(_SCAN_CHUNK, end - pos), pos)
                buf_start, off = pos, 0
                if len(buf) < HEADER_SIZE:
                    return
            h = parse_header(buf, off)
            if h.batch_length < _MIN_BATCH_LENGTH or pos + h.size > end:
                return
            yield pos, h, buf, buf_start
            big = h.size >= _SCAN_CHUNK // 4
            pos += h.size

    def translate_offset(self, offset: int, start_position: int = 0) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset is >= ``offset``."""
        found = self._locate(offset, start_position)
        return None if found is None else (found[0], found[1])

    def _locate(self, offset: int, start_position: int = 0) -> tuple[int, BatchHeader, bytes, int] | None:
        """:meth:`translate_offset`, with the bytes last read while scanning and the position
        they start at (they hold the batch found, and often what follows it: the read that
        usually follows takes them rather than reading again)."""
        self._ensure_indexes()
        start = max(start_position, self.offset_index.lookup(offset).position)
        for found in self._scan(start):
            h = found[1]
            if h.base_offset + h.last_offset_delta >= offset:
                return found
        return None

    def position_bound(self, offset: int) -> int:
        """Position of the first batch whose base offset is >= ``offset`` (size if none)."""
        found = self.translate_offset(offset)
        if found is None:
            return self._size
        pos, h = found
        return pos if h.base_offset >= offset else pos + h.size

    # -- reading -------------------------------------------------------------------------
    def fetch_position(self, offset: int) -> int | None:
        """Position of the batch that holds ``offset``; None if no batch here reaches it.

        Only headers are read; a waiting fetch measures new data against this position.
        """
        found = self.translate_offset(offset)
        return None if found is None else found[0]

    def read(self, start_offset: int, max_bytes: int, max_position: int | None = None,
             min_one_message: bool = True) -> bytes | memoryview | None:
        """Whole batches starting with the one that contains ``start_offset``.

        Returns None if no batch in this segment reaches ``start_offset``; b"" if one does
        but it lies at/after ``max_position`` or is larger than ``max_bytes`` while
        ``min_one_message`` is False. With ``min_one_message`` the first batch is returned
        whole even when it is larger than ``max_bytes`` (so consumers always progress).
        """
        found = self._locate(start_offset)
        if found is None:
            return None
        pos, first, scanned, scanned_start = found
        limit = self._size if max_position is None else min(max_position, self._size)
        if pos >= limit:
            return b""
        want = min(max_bytes, limit - pos)
        if first.size > want:
            if min_one_message and pos + first.size <= limit:
                return self._read_at(first.size, pos)
            return b""
        rel = pos - scanned_start
        if rel + want <= len(scanned):
            # The scan already read these bytes (the usual small fetch): no second read. A view
            # when it holds most of the scan, else a copy, so a small answer does not keep a
            # whole scan chunk alive until it is sent.
            data: bytes | memoryview
            if rel == 0 and want == len(scanned):
                data = scanned
            elif 2 * want >= len(scanned):
                data = memoryview(scanned)[rel : rel + want]
            else:
                data = scanned[rel : rel + want]
        else:
            data = self._read_at(want, pos)
        cut = 0
        while True:
            size = peek_size(data, cut)
            if size is None or size < LOG_OVERHEAD + _MIN_BATCH_LENGTH or cut + size > len(data):
                break
            cut += size
        # A view, not a copy, of the whole batches (responses can be tens of MB).
        return memoryview(data)[:cut] if cut != len(data) else data

    def read_batch(self, position: int, header: BatchHeader) -> bytes:
        """The raw bytes of one batch."""
        return self._read_at(header.size, position)

    # -- appending -----------------------------------------------------------------------
    def _last_of(self, batches: Sequence[tuple[int, BatchHeader]]) -> BatchHeader | None:
        """The last of the batches an append brings (None: nothing to append), once the tail is
        loaded and its offset is known to fit this segment's 32-bit relative offsets."""
        self._load_tail()
        if not batches:
            return None
        last = batches[-1][1]
        if last.last_offset - self.base_offset > _INT32_MAX:
            raise ValueError(f"offset {last.last_offset} does not fit segment {self.base_offset}")
        return last

    def append(self, data: bytes | bytearray | memoryview | list[bytes | memoryview],
               batches: Sequence[tuple[int, BatchHeader]], now_ms: int) -> None:
        """Append ``data`` (whole batches, offsets already assigned) in one write.

        ``data`` may be a list of buffers, written in order with one ``pwritev`` (no
        joining copy). ``batches`` gives each batch's position within ``data`` and its
        final header.
        """
        last = self._last_of(batches)
        if last is None:
            return
        base_pos = self._size
        fd = SEGMENT_FILES.acquire(self)
        try:
            total = self._write_all(fd, data, base_pos)
        except OSError:
            # A full disk (ENOSPC) or I/O error mid-write: cut the file back to the last
            # whole batch so the log stays consistent and a retry appends at the same place.
            try:
                os.ftruncate(fd, base_pos)
            except OSError as e:  # the next append overwrites from base_pos anyway
                log.warning("cannot truncate %s back to %d after a failed write: %s", self.log_path, base_pos, e)
            raise
        finally:
            SEGMENT_FILES.release(self)
        if self.first_append_ms is None:
            self.first_append_ms = now_ms
        for rel, h in batches:
            self._index_batch(base_pos + rel, h)
        self._size = base_pos + total
        self._next_offset = last.next_offset
        self._dirty = True
        self._final_entry_done = False

    def _write_all(self, fd: int, data: bytes | bytearray | memoryview | list[bytes | memoryview],
                   pos: int) -> int:
        """Write ``data`` at ``pos`` completely; returns its length."""
        if isinstance(data, list):
            total = 0
            for part in data:  # a loop, not sum() over a generator: usually two parts
                total += len(part)
            written = os.pwritev(fd, data, pos)
            view = memoryview(b"".join(data))[written:] if written < total else memoryview(b"")
        else:
            view = memoryview(data)
            total = len(view)
            written = os.pwrite(fd, view, pos)
            view = view[written:]
        while view:  # regular files only write short on e.g. a full disk
            n = os.pwrite(fd, view, pos + written)
            if n <= 0:
                raise OSError(f"short write to {self.log_path}")
            written += n
            view = view[n:]
        return total

    def _index_batch(self, position: int, h: BatchHeader) -> None:
        # Shared by append and recover so rebuilt indexes match the appended ones exactly.
        if h.max_timestamp > self._max_timestamp:
            self._max_timestamp = h.max_timestamp
            self._offset_of_max_timestamp = h.base_offset
        if position - self._last_index_position > self.index_interval_bytes and not self.indexes_full:
            self.offset_index.append(h.base_offset, position)
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
            self._last_index_position = position

    def can_convert_to_relative_offset(self, offset: int) -> bool:
        return 0 <= offset - self.base_offset <= _INT32_MAX

    @property
    def indexes_full(self) -> bool:
        """True if either index has no room left (the log must roll)."""
        return self.offset_index.is_full or self.time_index.is_full

    # -- timestamps ----------------------------------------------------------------------
    def find_batch_by_timestamp(self, timestamp: int, start_offset: int) -> tuple[int, BatchHeader] | None:
        """First batch with max timestamp >= ``timestamp`` and last offset >= ``start_offset``."""
        self._ensure_indexes()
        ts_entry = self.time_index.lookup(timestamp)
        from_offset = max(ts_entry.offset, start_offset)
        start_pos = self.offset_index.lookup(from_offset).position
        for pos, h in self.iter_batches(start_pos):
            if h.last_offset >= start_offset and h.max_timestamp >= timestamp:
                return pos, h
        return None

    def find_offset_by_timestamp(self, timestamp: int, start_offset: int = 0) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record at/after ``start_offset`` whose timestamp
        is >= ``timestamp`` (Kafka's ``findOffsetByTimestamp``); None if the segment has none.

        The time index narrows the scan; only batches whose max timestamp qualifies are
        decoded, and as Kafka's ``searchForTimestamp`` a batch without a qualifying record (one
        the cleaner emptied, or whose records are older) is passed over for the next.
        """
        self._ensure_indexes()
        ts_entry = self.time_index.lookup(timestamp)
        from_offset = max(ts_entry.offset, start_offset)
        start_pos = self.offset_index.lookup(from_offset).position
        for pos, h in self.iter_batches(start_pos):
            if h.last_offset < start_offset or h.max_timestamp < timestamp or h.record_count <= 0:
                continue
            if h.log_append_time and h.record_count == h.last_offset_delta + 1:
                # Every record carries the batch's append time and no offset is missing.
                return max(h.base_offset, start_offset), h.max_timestamp
            try:
                from kbroker.records.record import iter_records  # lazy: decoding is off the hot path
            except ImportError:
                return max(h.base_offset, start_offset), h.max_timestamp
            try:
                for rec in iter_records(self.read_batch(pos, h)):
                    if rec.offset >= start_offset and rec.timestamp >= timestamp:
                        return rec.offset, rec.timestamp
            except BatchError:  # a damaged batch must not fail ListOffsets; the batch answer is close
                log.warning("cannot decode records of %s at position %d", self.log_path, pos)
                return max(h.base_offset, start_offset), h.max_timestamp
        return None

    # -- recovery ------------------------------------------------------------------------
    def recover(self) -> int:
        """Rescan the log validating framing and CRC, truncate at the first bad batch and
        rebuild both indexes. Returns the number of bytes truncated."""
        fd = SEGMENT_FILES.acquire(self)
        try:
            return self._recover(fd)
        finally:
            SEGMENT_FILES.release(self)

    def _cut(self, size: int) -> None:
        """Cut the ``.log`` file to ``size`` bytes."""
        fd = SEGMENT_FILES.acquire(self)
        try:
            os.ftruncate(fd, size)
        finally:
            SEGMENT_FILES.release(self)

    def _recover(self, fd: int | bytearray) -> int:
        """:meth:`recover` on the file open as ``fd`` (or held in memory as a ``bytearray``)."""
        self.offset_index.reset()
        self.time_index.reset()
        self._max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = self.base_offset
        self._last_index_position = 0
        end = self._size
        pos, next_offset, reason = scan_valid_batches(fd, end, self.base_offset, self.base_offset + _INT32_MAX,
                                                      self._index_batch)
        truncated = end - pos
        if truncated:
            log.warning("truncating %s at position %d (%d bytes): %s", self.log_path, pos, truncated, reason)
            self._cut(pos)
            self._size = pos
            self._dirty = True
            self.txn_index.truncate_to(next_offset)
        self._next_offset = next_offset
        if self._wants_final_time_entry():
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp, skip_full_check=True)
        self._final_entry_done = True
        self._tail_loaded = True
        return truncated

    def rebuild_indexes(self) -> None:
        """Rebuild the indexes from the log (same as :meth:`recover`)."""
        self.recover()

    # -- truncation ----------------------------------------------------------------------
    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose base offset is >= ``offset``; returns bytes removed.

        A batch containing ``offset`` but starting before it is kept (Kafka truncates at
        batch boundaries too).
        """
        self._load_tail()
        bound = self.position_bound(offset)
        removed = self._size - bound
        if removed <= 0:
            return 0
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        self._cut(bound)
        self._size = bound
        self._dirty = True
        if bound == 0:
            self.first_append_ms = None
        # Recompute the tail state from the remaining index entries.
        self._tail_loaded = False
        self._final_entry_done = False
        self._load_tail()
        return removed

    # -- lifecycle -----------------------------------------------------------------------
    def on_become_inactive(self) -> None:
        """Called when the log rolls past this segment: final time-index entry, persist indexes."""
        self._append_final_time_entry()
        # Persist and drop the entries from memory; they reload lazily if the segment is read.
        self.offset_index.close()
        self.time_index.close()

    def _append_final_time_entry(self) -> None:
        if self._final_entry_done or not self._tail_loaded:
            return
        if self._wants_final_time_entry():
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp, skip_full_check=True)
        self._final_entry_done = True

    def _wants_final_time_entry(self) -> bool:
        # A segment within one index interval is scanned whole by every lookup and by the
        # tail scan at load, so an (otherwise empty) time index would add nothing but a
        # file to create: closing thousands of small partitions stays cheap.
        if self._max_timestamp == NO_TIMESTAMP:
            return False
        return self._size > self.index_interval_bytes or self.time_index.entries > 0

    def flush(self) -> None:
        """fsync the log (if written) and persist + fsync the indexes."""
        if self._dirty:
            # Possibly a reopened descriptor: fsync covers every write to the file.
            fd = SEGMENT_FILES.acquire(self)
            try:
                os.fsync(fd)
            finally:
                SEGMENT_FILES.release(self)
        self._dirty = False
        self.offset_index.flush(fsync=True)
        self.time_index.flush(fsync=True)
        self.txn_index.flush()

    @property
    def needs_sync(self) -> bool:
        """True if the log or an index holds writes that were not fsynced."""
        return (self._dirty or self.offset_index.needs_sync or self.time_index.needs_sync
                or self.txn_index.needs_sync)

    def sync_paths(self) -> list[Path]:
        """For an fsync outside the log's lock: the files with unsynced writes (the log
        file, index files), to open and fsync one at a time. The indexes' pending entries
        are written first."""
        self.offset_index.flush()
        self.time_index.flush()
        paths = [self.log_path] if self._dirty else []
        paths += [idx.path for idx in (self.offset_index, self.time_index) if idx.needs_sync]
        if self.txn_index.needs_sync:
            paths.append(self.txn_index.path)
        return paths

    def mark_synced(self) -> None:
        """Everything written so far was made durable by the caller (fsync of the
        :meth:`sync_paths`, or a file system sync); only for segments not written since."""
        self._dirty = False
        self.offset_index.mark_synced()
        self.time_index.mark_synced()
        self.txn_index.mark_synced()

    @property
    def dirty(self) -> bool:
        return self._dirty

    def close(self) -> None:
        """Persist the indexes (with the final time-index entry) and release the descriptor."""
        self._append_final_time_entry()
        self.offset_index.close()
        self.time_index.close()
        SEGMENT_FILES.drop(self)

    def change_file_suffixes(self, old: str, new: str) -> None:
        """Rename this segment's files (``.log``, ``.index``, ``.timeindex``, ``.txnindex``)
        from suffix ``old`` to ``new`` (Kafka's ``changeFileSuffixes``), e.g. "" to ``.deleted``.

        The in-memory paths follow, so a descriptor evicted from the LRU reopens the
        renamed file; an index file not written yet is skipped.
        """
        def renamed(path: Path) -> Path:
            name = path.name
            if old and not name.endswith(old):
                raise ValueError(f"{path} does not end with {old!r}")
            return path.with_name((name[: -len(old)] if old else name) + new)

        new_log = renamed(self.log_path)
        self.store.rename(self.log_path, new_log)
        self.log_path = new_log
        for holder in (self.offset_index, self.time_index, self.txn_index):
            target = renamed(holder.path)
            with contextlib.suppress(FileNotFoundError):
                self.store.rename(holder.path, target)
            holder.path = target

    def delete(self) -> None:
        """Close and remove all of this segment's files."""
        SEGMENT_FILES.drop(self)
        self.offset_index.delete()
        self.time_index.delete()
        self.store.unlink(self.log_path, missing_ok=True)
        self.txn_index.delete()

    # -- aborted transactions ------------------------------------------------------------
    def append_aborted_txn(self, txn: AbortedTxn) -> None:
        """Record an aborted transaction whose ABORT marker was written to this segment."""
        self.txn_index.append(txn)

    def collect_aborted_txns(self, fetch_offset: int, upper_bound: int) -> TxnIndexSearch:
        """This segment's aborted transactions overlapping ``[fetch_offset, upper_bound)``."""
        return self.txn_index.collect(fetch_offset, upper_bound)

    def time_index_entries(self) -> list[TimestampOffset]:
        return self.time_index.entry_list()


class MemoryLogSegment(LogSegment):
    """A segment whose ``.log`` file is a ``bytearray`` of the memory store (``log.dirs``
    is ``:memory:``): the same batches, indexes and answers, no descriptor and no disk.

    Reads return copies (``bytes``), never views of the buffer: an append may grow it
    while a fetch response is still being sent.
    """

    store: FileStore = MEMORY
    _buf: bytearray

    def _open_log_file(self, create: bool, empty: bool) -> int:
        self._buf = MEMORY.open_buffer(self.log_path, create=create or empty, exclusive=create)
        return len(self._buf)

    def _open_fd(self) -> int:
        raise AssertionError(f"{self.log_path} is in memory: it has no descriptor")

    def _read_at(self, n: int, pos: int) -> bytes:
        return bytes(self._buf[pos : pos + n])

    def append(self, data: bytes | bytearray | memoryview | list[bytes | memoryview],
               batches: Sequence[tuple[int, BatchHeader]], now_ms: int) -> None:
        """:meth:`LogSegment.append` into the buffer."""
        last = self._last_of(batches)
        if last is None:
            return
        base_pos = self._size
        buf = self._buf
        del buf[base_pos:]  # bytes of an append that failed part way (as the disk path cuts them)
        if isinstance(data, list):
            for part in data:
                buf += part
        else:
            buf += data
        MEMORY.touch(self.log_path)
        if self.first_append_ms is None:
            self.first_append_ms = now_ms
        for rel, h in batches:
            self._index_batch(base_pos + rel, h)
        self._size = len(buf)
        self._next_offset = last.next_offset
        self._final_entry_done = False

    def recover(self) -> int:
        return self._recover(self._buf)

    def _cut(self, size: int) -> None:
        del self._buf[size:]

    def flush(self) -> None:
        self._dirty = False  # nothing to fsync: only the indexes' pending entries are written
        super().flush()

    def sync_paths(self) -> list[Path]:
        self.offset_index.flush()
        self.time_index.flush()
        self._dirty = False
        return []
