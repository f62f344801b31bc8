"""Cleaning one partition log (Kafka's ``Cleaner.doClean``).

The heavy part is :func:`run_clean_job`, a pure function of a picklable :class:`CleanJob`
(paths, offsets, settings): it builds the offset map over the dirty section, then rewrites
the segments from the log's start up to the map's end in groups (Kafka's
``groupSegmentsBySize``), each into ``<base>.log.cleaned`` and its index files, fsynced. It
touches no :class:`PartitionLog`, so it can run in a worker process and never holds the GIL
the broker's event loop needs. :func:`clean_log` builds the job under the log's lock, runs it
(in this thread, or through the caller's ``run``) and swaps each group in with
:meth:`PartitionLog.replace_segments`, checking that the log did not change under it.

One deliberate difference from Kafka: the map is built from batches below the first
uncleanable offset only. Kafka reads whole segments, so when that offset lies inside a segment
(the last stable offset) records of still-open transactions could decide which older records
go; here nothing at or past it is looked at.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.common import CleaningSummary
from kbroker.fs import MEMORY, is_memory_path, store_for
from kbroker.log.cleaner import swap
from kbroker.log.cleaner.filter import (
    BatchFilter,
    CleanedTransactionMetadata,
    FilterStats,
    LastRecord,
    batch_records,
    control_type,
)
from kbroker.log.cleaner.offset_map import DEFAULT_LOAD_FACTOR, SkimpyOffsetMap
from kbroker.log.errors import LogError
from kbroker.log.index import OffsetIndex, TimeIndex
from kbroker.log.partition_log import PartitionLog
from kbroker.log.segment import (
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    LogSegment,
)
from kbroker.log.txn_index import ENTRY_SIZE, AbortedTxn
from kbroker.records.batch import HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, BatchError, BatchHeader, parse_header
from kbroker.records.validation import MAX_DECOMPRESSED_BATCH_BYTES

log = logging.getLogger(__name__)

_MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_INT32_MAX = 2**31 - 1
_DELETED_SUFFIX = ".deleted"
NO_TIMESTAMP = -1
#: A ``.txnindex`` entry: version, producer id, first, last and last stable offset.
_TXN_ENTRY = struct.Struct(">hqqqq")


class CleaningAborted(LogError):
    """The pass was given up (the log closed, was truncated, or changed under it); nothing
    it wrote is left behind."""


@dataclass(frozen=True)
class SegmentRef:
    """One segment of the log as the job sees it (plain data)."""

    base_offset: int
    #: The segment's ``.log`` file (a job also tries it with ``.deleted``: retention may
    #: rename it while the job reads).
    log_path: str
    #: Bytes of the ``.log`` at the snapshot (non-active segments do not grow).
    size: int
    #: The next segment's base offset (the active segment's: the log end at the snapshot).
    next_base: int
    index_bytes: int
    time_index_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class CleanJob:
    """Everything :func:`run_clean_job` needs, picklable (no log objects, no callables)."""

    directory: str
    name: str
    #: The non-active segments below the first uncleanable offset, oldest first.
    segments: tuple[SegmentRef, ...]
    #: ``(base offset, .txnindex path)`` of every segment including the active one: aborted
    #: transactions are looked up as Kafka's ``collectAbortedTransactions`` does. The path is
    #: empty for a segment without a transaction index at the snapshot: a ``.txnindex.deleted``
    #: beside it is an earlier generation's (a replaced segment waiting out
    #: ``file.delete.delay.ms``), not its own.
    txn_indexes: tuple[tuple[int, str], ...]
    first_dirty_offset: int
    first_uncleanable_offset: int
    #: The log start offset at the snapshot, for the record: as Kafka, cleaning covers the
    #: segments from the first one, below the log start offset too.
    log_start_offset: int
    now_ms: int
    delete_retention_ms: int
    #: producer id -> (last data offset or -1, epoch) of the active producers.
    last_records: dict[int, tuple[int, int]]
    dedupe_buffer_bytes: int
    io_buffer_bytes: int
    index_interval_bytes: int
    segment_index_bytes: int
    segment_bytes: int
    load_factor: float = DEFAULT_LOAD_FACTOR
    #: ``log.cleaner.io.max.bytes.per.second``: the job throttles its reads and writes to it.
    io_max_bytes_per_second: float | None = None
    decompress_limit: int = MAX_DECOMPRESSED_BATCH_BYTES


@dataclass(frozen=True)
class CleanedGroup:
    """One ``<base>.log.cleaned`` written for a group of segments."""

    base_offset: int
    source_bases: tuple[int, ...]
    bytes_before: int
    bytes_after: int


@dataclass
class CleanOutput:
    """What :func:`run_clean_job` produced (plain data)."""

    #: The offset map's end: the new cleaner checkpoint.
    end_offset: int
    groups: list[CleanedGroup] = field(default_factory=list)
    records_read: int = 0
    records_retained: int = 0
    bytes_read: int = 0
    bytes_retained: int = 0
    map_records_read: int = 0
    map_bytes_read: int = 0
    map_entries: int = 0
    buffer_utilization: float = 0.0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class CleanResult:
    """What :func:`clean_log` returns: the new checkpoint and the pass's summary."""

    end_offset: int
    summary: CleaningSummary


class SegmentGoneError(LogError):
    """A segment file the job needs was deleted meanwhile."""


# -- throttling ------------------------------------------------------------------------------------
class Throttler:
    """Kafka's ``Throttler``: sleeps when the observed I/O rate exceeds ``rate`` bytes/s,
    checked every ``check_interval_s`` — or sooner, once more than an interval's worth of
    bytes went by, so a pass shorter than one interval is held to the rate too."""

    def __init__(self, rate: float | None, check_interval_s: float = 0.3,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate if rate is not None and 0 < rate < 1.7e308 else None
        self._interval = check_interval_s
        self._sleep = sleep
        self._now = monotonic
        self._start = monotonic()
        self._observed = 0.0

    def maybe_throttle(self, n: int) -> None:
        if self.rate is None:
            return
        self._observed += n
        elapsed = self._now() - self._start
        if elapsed < self._interval and self._observed <= self.rate * self._interval:
            return
        want = self._observed / self.rate
        if want > elapsed:
            self._sleep(want - elapsed)
        self._start = self._now()
        self._observed = 0.0


Check = Callable[[], None]


def _no_check() -> None:
    return None


# -- reading ---------------------------------------------------------------------------------------
class _SourceFile:
    """A segment's ``.log`` opened for reading (following a rename to ``.deleted``)."""

    def __init__(self, ref: SegmentRef) -> None:
        self.ref = ref
        #: The file itself when it is in memory (``log.dirs=:memory:``), else None.
        self.buf: bytearray | None = None
        self.fd = -1
        try:
            self._open(ref.log_path)
        except FileNotFoundError:
            try:
                self._open(ref.log_path + _DELETED_SUFFIX)
            except FileNotFoundError:
                raise SegmentGoneError(f"segment {ref.log_path} was deleted during cleaning") from None

    def _open(self, path: str) -> None:
        if is_memory_path(path):
            self.buf = MEMORY.open_buffer(Path(path))
        else:
            self.fd = os.open(path, os.O_RDONLY)

    def _pread(self, n: int, pos: int) -> bytes:
        if self.buf is not None:
            return bytes(self.buf[pos : pos + n])
        return os.pread(self.fd, n, pos)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)

    def __enter__(self) -> _SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self, start: int, io_buffer: int, throttler: Throttler,
                check: Check) -> Iterator[tuple[bytes, int, BatchHeader]]:
        """``(chunk, position in chunk, header)`` of each batch from file position ``start``,
        reading ``io_buffer`` bytes at a time (a larger batch whole, as Kafka grows its
        buffers to the next batch's size); stops at the segment's size. Raises BatchError
        for a batch that is not a magic-2 batch or runs past the segment."""
        end = self.ref.size
        pos = start
        while pos < end:
            check()
            # At least one batch header, whatever the buffer (log.cleaner.io.buffer.size may be 0):
            # the header says how much more to read.
            want = min(max(io_buffer, HEADER_SIZE), end - pos)
            chunk = self._pread(want, pos)
            throttler.maybe_throttle(len(chunk))
            off = 0
            n = len(chunk)
            while n - off >= HEADER_SIZE:
                h = parse_header(chunk, off)
                if h.batch_length < _MIN_BATCH_LENGTH or h.magic != MAGIC_V2:
                    raise BatchError(f"corrupt batch at position {pos + off} of {self.ref.log_path}", 2)
                if off + h.size > n:
                    break
                yield chunk, off, h
                off += h.size
            if off == 0:
                # Not even one whole batch: read exactly the next one (Kafka grows its buffers).
                if n < HEADER_SIZE:
                    raise BatchError(f"partial batch at position {pos} of {self.ref.log_path}", 2)
                size = parse_header(chunk).size
                if pos + size > end:
                    raise BatchError(f"batch of {size} bytes at position {pos} of {self.ref.log_path} "
                                     "runs past the segment", 2)
                big = self._pread(size, pos)
                throttler.maybe_throttle(len(big))
                yield big, 0, parse_header(big)
                off = size
            pos += off


def _index_start_position(ref: SegmentRef, offset: int) -> int:
    """The offset index's floor position for ``offset`` (0 if the index is missing or torn)."""
    if offset <= ref.base_offset or ref.index_bytes == 0:
        return 0
    path = ref.log_path[: -len(LOG_FILE_SUFFIX)] + INDEX_FILE_SUFFIX
    try:
        data = store_for(path).read_bytes(Path(path))
    except FileNotFoundError:
        return 0
    target = offset - ref.base_offset
    best = 0
    lo, hi = 0, len(data) // 8
    mv = memoryview(data)
    while lo < hi:  # last entry whose relative offset is <= target
        mid = (lo + hi) // 2
        rel = int.from_bytes(mv[mid * 8 : mid * 8 + 4], "big", signed=True)
        if rel <= target:
            best = int.from_bytes(mv[mid * 8 + 4 : mid * 8 + 8], "big", signed=True)
            lo = mid + 1
        else:
            hi = mid
    return best if 0 <= best <= ref.size else 0


def _read_txn_index(path: str) -> list[AbortedTxn]:
    """The entries of a ``.txnindex`` file (or of it renamed ``.deleted``); whole entries
    only, as the active segment's may be mid-append. An empty path: the segment has none."""
    if not path:
        return []
    for candidate in (path, path + _DELETED_SUFFIX):
        try:
            data = store_for(candidate).read_bytes(Path(candidate))
        except FileNotFoundError:
            continue
        return [AbortedTxn(*_TXN_ENTRY.unpack_from(data, pos)[1:])
                for pos in range(0, len(data) - len(data) % ENTRY_SIZE, ENTRY_SIZE)]
    return []


class _AbortedIndex:
    """Every segment's aborted transactions, searched as Kafka's ``collectAbortedTransactions``."""

    def __init__(self, indexes: Sequence[tuple[int, str]]) -> None:
        self._bases = [base for base, _ in indexes]
        self._paths = [path for _, path in indexes]
        self._cache: dict[int, list[AbortedTxn]] = {}

    def _entries(self, i: int) -> list[AbortedTxn]:
        if i not in self._cache:
            self._cache[i] = _read_txn_index(self._paths[i])
        return self._cache[i]

    def collect(self, start: int, upper: int) -> list[AbortedTxn]:
        i = max(bisect_right(self._bases, start) - 1, 0)
        found: list[AbortedTxn] = []
        for j in range(i, len(self._bases)):
            for txn in self._entries(j):
                if txn.last_offset >= start and txn.first_offset < upper:
                    found.append(txn)
                if txn.last_stable_offset >= upper:
                    return found
        return found


# -- the offset map --------------------------------------------------------------------------------
def build_offset_map(job: CleanJob, omap: SkimpyOffsetMap, aborted: _AbortedIndex, throttler: Throttler,
                     check: Check, out: CleanOutput) -> None:
    """Kafka's ``buildOffsetMap``: the latest offset of every key in
    ``[first_dirty_offset, first_uncleanable_offset)``, aborted data and control batches
    skipped, stopping when the map is full (its latest offset then ends the pass)."""
    start, end = job.first_dirty_offset, job.first_uncleanable_offset
    omap.clear()
    dirty = [ref for ref in job.segments if ref.base_offset < end and ref.next_base > start]
    txn = CleanedTransactionMetadata()
    txn.add_aborted_transactions(aborted.collect(start, end))
    entries = omap.entries
    max_entries = omap.max_entries
    md5 = hashlib.md5
    for ref in dirty:
        next_start = min(ref.next_base, end)
        with _SourceFile(ref) as src:
            for chunk, pos, h in src.batches(_index_start_position(ref, start), job.io_buffer_bytes,
                                             throttler, check):
                if h.base_offset >= end:
                    break
                out.map_bytes_read += h.size
                if h.is_control:
                    _, recs = batch_records(chunk, pos, h, job.decompress_limit)
                    txn.on_control_batch_read(h, control_type(recs))
                    out.map_records_read += 1
                elif txn.on_batch_read(h):
                    out.map_records_read += max(h.record_count, 0)
                else:
                    _, recs = batch_records(chunk, pos, h, job.decompress_limit)
                    base = h.base_offset
                    for _, _, _, offset_delta, key, _ in recs:
                        offset = base + offset_delta
                        if key is not None and offset >= start:
                            if len(entries) < max_entries:
                                entries[md5(key).digest()] = offset
                                omap.latest_offset = offset
                            else:
                                return
                        out.map_records_read += 1
                if h.last_offset >= start:
                    omap.latest_offset = h.last_offset
        # Offsets may have gaps: the map covers everything up to the next segment.
        omap.latest_offset = next_start - 1


# -- grouping --------------------------------------------------------------------------------------
def group_segments_by_size(segments: Sequence[SegmentRef], max_size: int, max_index_size: int,
                           first_uncleanable_offset: int) -> list[list[SegmentRef]]:
    """Kafka's ``groupSegmentsBySize``: consecutive segments whose log bytes and index bytes
    each stay within ``max_size`` / ``max_index_size`` and whose offsets fit an int32 from the
    group's base offset."""
    groups: list[list[SegmentRef]] = []
    rest = list(segments)
    i = 0
    while i < len(rest):
        group = [rest[i]]
        log_size = rest[i].size
        index_size = rest[i].index_bytes
        time_index_size = rest[i].time_index_bytes
        i += 1
        while i < len(rest):
            seg = rest[i]
            last_offset = rest[i + 1].base_offset - 1 if i + 1 < len(rest) else first_uncleanable_offset - 1
            if not (log_size + seg.size <= max_size and index_size + seg.index_bytes <= max_index_size
                    and time_index_size + seg.time_index_bytes <= max_index_size
                    and (seg.size == 0 or last_offset - group[0].base_offset <= _INT32_MAX)):
                break
            group.append(seg)
            log_size += seg.size
            index_size += seg.index_bytes
            time_index_size += seg.time_index_bytes
            i += 1
        groups.append(group)
    return groups


# -- writing ---------------------------------------------------------------------------------------
class CleanedSegmentWriter:
    """Writes ``<base>.log.cleaned`` and its indexes, indexing batches exactly as
    :class:`LogSegment` does on append (an entry every ``index.interval.bytes``)."""

    def __init__(self, directory: Path, base_offset: int, *, index_interval_bytes: int,
                 segment_index_bytes: int, io_buffer_bytes: int, throttler: Throttler) -> None:
        self.dir = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_path = swap.segment_file(directory, base_offset, LOG_FILE_SUFFIX, swap.CLEANED_FILE_SUFFIX)
        #: The file itself when it is in memory (``log.dirs=:memory:``), else None.
        self.buf: bytearray | None = None
        if is_memory_path(directory):
            MEMORY.write_at(self.log_path, b"", 0, truncate=0)
            self.buf = MEMORY.open_buffer(self.log_path)
            self.fd = -1
        else:
            self.fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset_index = OffsetIndex(
            swap.segment_file(directory, base_offset, INDEX_FILE_SUFFIX, swap.CLEANED_FILE_SUFFIX),
            base_offset, segment_index_bytes, create=True, touch=True)
        self.time_index = TimeIndex(
            swap.segment_file(directory, base_offset, TIME_INDEX_FILE_SUFFIX, swap.CLEANED_FILE_SUFFIX),
            base_offset, segment_index_bytes, create=True, touch=True)
        #: Aborted transactions whose ABORT marker stays in this segment.
        self.txn_entries: list[AbortedTxn] = []
        self.position = 0
        self._pending: list[bytes | bytearray | memoryview] = []
        self._pending_bytes = 0
        self._io_buffer = io_buffer_bytes
        self._throttler = throttler
        self._max_ts = NO_TIMESTAMP
        self._offset_of_max_ts = base_offset
        self._last_index_position = 0

    def append(self, data: bytes | bytearray | memoryview, h: BatchHeader) -> None:
        position = self.position
        if h.last_offset - self.base_offset > _INT32_MAX or h.base_offset < self.base_offset:
            raise ValueError(f"batch at offset {h.base_offset} does not fit segment {self.base_offset}")
        if h.max_timestamp > self._max_ts:
            self._max_ts = h.max_timestamp
            self._offset_of_max_ts = h.base_offset
        if (position - self._last_index_position > self.index_interval_bytes
                and not (self.offset_index.is_full or self.time_index.is_full)):
            self.offset_index.append(h.base_offset, position)
            self.time_index.maybe_append(self._max_ts, self._offset_of_max_ts)
            self._last_index_position = position
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.position += len(data)
        if self._pending_bytes >= self._io_buffer:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        if self.buf is not None:
            for part in self._pending:
                self.buf += part
            self._pending = []
            self._pending_bytes = 0
            return
        view = memoryview(b"".join(self._pending))
        written = 0
        while written < len(view):
            written += os.pwrite(self.fd, view[written:], self.position - len(view) + written)
        self._throttler.maybe_throttle(len(view))
        self._pending = []
        self._pending_bytes = 0

    def finish(self, mtime_ns: int) -> None:
        """Write everything, with the final time-index entry, and fsync every file."""
        self._flush_pending()
        if self._max_ts != NO_TIMESTAMP and (self.position > self.index_interval_bytes or self.time_index.entries):
            self.time_index.maybe_append(self._max_ts, self._offset_of_max_ts, skip_full_check=True)
        # Every index file is written, empty ones too: the swap's recovery relies on it.
        self.offset_index.flush(fsync=True)
        self.time_index.flush(fsync=True)
        txn_path = swap.segment_file(self.dir, self.base_offset, TXN_INDEX_FILE_SUFFIX, swap.CLEANED_FILE_SUFFIX)
        if self.buf is not None:
            data = b"".join(_TXN_ENTRY.pack(0, *t) for t in self.txn_entries)
            MEMORY.write_at(txn_path, data, 0, truncate=len(data))
            MEMORY.set_mtime_ms(self.log_path, mtime_ns // 1_000_000)
            return
        with open(txn_path, "wb") as f:
            f.write(b"".join(_TXN_ENTRY.pack(0, *t) for t in self.txn_entries))
            f.flush()
            os.fsync(f.fileno())
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        # As Kafka, the cleaned segment keeps the replaced segments' modification time.
        os.utime(self.log_path, ns=(mtime_ns, mtime_ns))

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        swap.remove_cleaned(self.dir, self.base_offset)


def clean_group(job: CleanJob, group: Sequence[SegmentRef], omap: SkimpyOffsetMap, aborted: _AbortedIndex,
                txn: CleanedTransactionMetadata, stats: FilterStats, throttler: Throttler,
                check: Check) -> CleanedGroup:
    """Kafka's ``cleanSegments`` up to the swap: the group's batches through the filter into
    one ``.cleaned`` segment at the group's base offset."""
    directory = Path(job.directory)
    writer = CleanedSegmentWriter(directory, group[0].base_offset, index_interval_bytes=job.index_interval_bytes,
                                  segment_index_bytes=job.segment_index_bytes, io_buffer_bytes=job.io_buffer_bytes,
                                  throttler=throttler)
    txn.cleaned_index = writer.txn_entries
    last_records = {pid: LastRecord(*v) for pid, v in job.last_records.items()}
    flt = BatchFilter(omap, txn, last_records, job.first_uncleanable_offset, job.now_ms, job.delete_retention_ms,
                      stats, job.decompress_limit)
    try:
        for i, ref in enumerate(group):
            upper = group[i + 1].base_offset if i + 1 < len(group) else ref.next_base
            txn.add_aborted_transactions(aborted.collect(ref.base_offset, upper))
            with _SourceFile(ref) as src:
                for chunk, pos, h in src.batches(0, job.io_buffer_bytes, throttler, check):
                    out = flt.filter(chunk, pos, h)
                    if out is None:
                        continue
                    # A view is the original batch kept whole; anything else was re-encoded.
                    writer.append(out, h if isinstance(out, memoryview) else parse_header(out))
        writer.finish(group[-1].mtime_ns)
    except BaseException:
        writer.discard()
        raise
    finally:
        txn.cleaned_index = None
    return CleanedGroup(group[0].base_offset, tuple(r.base_offset for r in group), sum(r.size for r in group),
                        writer.position)


def run_clean_job(job: CleanJob, *, check: Check = _no_check,
                  throttle: Callable[[int], None] | None = None) -> CleanOutput:
    """Clean the log the job describes into ``.cleaned`` files (Kafka's ``doClean`` without
    the swaps). Pure: reads the job's files, writes ``.cleaned`` ones, touches no log object.
    ``check`` is called per I/O chunk and may raise to abort; ``throttle(bytes)`` too.
    Raises BatchError for a corrupt segment (Kafka then marks the log uncleanable), OSError
    for I/O errors, SegmentGoneError when a segment file vanished; on any error the
    ``.cleaned`` files written are removed."""
    started = time.monotonic()
    throttler = Throttler(job.io_max_bytes_per_second)
    if throttle is not None:
        inner = throttler.maybe_throttle

        def both(n: int) -> None:
            inner(n)
            throttle(n)

        throttler.maybe_throttle = both  # type: ignore[method-assign]
    omap = SkimpyOffsetMap(job.dedupe_buffer_bytes, job.load_factor)
    aborted = _AbortedIndex(job.txn_indexes)
    out = CleanOutput(end_offset=job.first_dirty_offset)
    build_offset_map(job, omap, aborted, throttler, check, out)
    end_offset = omap.latest_offset + 1
    out.end_offset = max(end_offset, job.first_dirty_offset) if omap.latest_offset >= 0 else job.first_dirty_offset
    out.map_entries = len(omap)
    out.buffer_utilization = omap.utilization
    to_clean = [ref for ref in job.segments if ref.base_offset < out.end_offset]
    groups = group_segments_by_size(to_clean, job.segment_bytes, job.segment_index_bytes, job.first_uncleanable_offset)
    txn = CleanedTransactionMetadata()
    stats = FilterStats()
    try:
        for group in groups:
            out.groups.append(clean_group(job, group, omap, aborted, txn, stats, throttler, check))
    except BaseException:
        for done in out.groups:
            swap.remove_cleaned(Path(job.directory), done.base_offset)
        raise
    out.records_read = stats.records_read
    out.records_retained = stats.records_retained
    out.bytes_read = stats.bytes_read
    out.bytes_retained = stats.bytes_retained
    out.elapsed_s = time.monotonic() - started
    return out


# -- the entry point -------------------------------------------------------------------------------
def make_clean_job(plog: PartitionLog, *, first_dirty_offset: int, first_uncleanable_offset: int, now_ms: int,
                   dedupe_buffer_bytes: int, io_buffer_bytes: int, io_max_bytes_per_second: float | None = None,
                   load_factor: float = DEFAULT_LOAD_FACTOR) -> tuple[CleanJob, list[LogSegment], int]:
    """The job for a pass over ``plog`` (taken under its lock), the segment objects it covers
    and the log's truncation count then."""
    snap = plog.cleaning_snapshot()
    segs = snap.segments
    config = plog.config
    refs: list[SegmentRef] = []
    covered: list[LogSegment] = []
    for i, seg in enumerate(segs[:-1]):  # never the active segment
        if seg.base_offset >= first_uncleanable_offset:
            break
        stem = seg.log_path.name[: -len(LOG_FILE_SUFFIX)]
        refs.append(SegmentRef(
            base_offset=seg.base_offset, log_path=str(seg.log_path), size=seg.size,
            next_base=segs[i + 1].base_offset,
            index_bytes=_file_size(seg.dir / (stem + INDEX_FILE_SUFFIX)),
            time_index_bytes=_file_size(seg.dir / (stem + TIME_INDEX_FILE_SUFFIX)),
            mtime_ns=_mtime_ns(seg.log_path),
        ))
        covered.append(seg)
    job = CleanJob(
        directory=str(plog.dir), name=plog.name, segments=tuple(refs),
        txn_indexes=tuple((seg.base_offset, str(seg.txn_index.path) if seg.txn_index.maybe_nonempty else "")
                          for seg in segs),
        first_dirty_offset=first_dirty_offset, first_uncleanable_offset=first_uncleanable_offset,
        log_start_offset=snap.log_start_offset, now_ms=now_ms, delete_retention_ms=config.delete_retention_ms,
        last_records=dict(snap.last_records), dedupe_buffer_bytes=dedupe_buffer_bytes,
        io_buffer_bytes=io_buffer_bytes,
        index_interval_bytes=config.index_interval_bytes, segment_index_bytes=config.segment_index_bytes,
        segment_bytes=config.segment_bytes, load_factor=load_factor,
        io_max_bytes_per_second=io_max_bytes_per_second,
    )
    return job, covered, snap.truncation_count


def _file_size(path: Path) -> int:
    try:
        return store_for(path).size(path)
    except FileNotFoundError:
        return 0


def _mtime_ns(path: Path) -> int:
    try:
        if is_memory_path(path):
            return MEMORY.mtime_ms(path) * 1_000_000
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return time.time_ns()


def clean_log(plog: PartitionLog, *, first_dirty_offset: int, first_uncleanable_offset: int, now_ms: int,
              dedupe_buffer_bytes: int, io_buffer_bytes: int, io_max_bytes_per_second: float | None = None,
              run: Callable[[CleanJob], CleanOutput] | None = None,
              aborted: Callable[[], bool] = lambda: False,
              throttle: Callable[[int], None] | None = None,
              load_factor: float = DEFAULT_LOAD_FACTOR) -> CleanResult:
    """Clean ``plog``: dedupe ``[first_dirty_offset, first_uncleanable_offset)`` into the
    segments from the log's start (Kafka's ``Cleaner.clean``), swapping each cleaned group in.

    ``run`` runs the job (e.g. submit to a process pool and wait); by default it runs in this
    thread, where ``aborted()`` is polled per I/O chunk and ``throttle(bytes)`` called per chunk
    (with a ``run`` the job throttles itself to ``io_max_bytes_per_second`` only). Raises
    :class:`CleaningAborted` when ``aborted()`` turns true, or the log was closed, truncated or
    changed under the pass; everything written is then removed. Segments retention or
    DeleteRecords removed meanwhile are tolerated (as Kafka's ``replaceSegments``).
    """
    started = time.monotonic()
    try:
        job, covered, truncations = make_clean_job(
            plog, first_dirty_offset=first_dirty_offset, first_uncleanable_offset=first_uncleanable_offset,
            now_ms=now_ms, dedupe_buffer_bytes=dedupe_buffer_bytes, io_buffer_bytes=io_buffer_bytes,
            io_max_bytes_per_second=io_max_bytes_per_second, load_factor=load_factor)
    except LogError as e:
        raise CleaningAborted(f"cannot clean {plog.name}: {e}") from e

    def check() -> None:
        if aborted() or plog.closed:
            raise CleaningAborted(f"cleaning of {plog.name} aborted")

    try:
        output = run_clean_job(job, check=check, throttle=throttle) if run is None else run(job)
    except CleaningAborted:
        raise
    except SegmentGoneError as e:
        raise CleaningAborted(f"cleaning of {plog.name} aborted: {e}") from e
    except Exception as e:
        # The log went away under the job (deleted, its directory removed): not an error.
        if aborted() or plog.closed:
            raise CleaningAborted(f"cleaning of {plog.name} aborted: {e}") from e
        raise
    by_base = {seg.base_offset: seg for seg in covered}
    directory = Path(job.directory)
    swapped: list[CleanedGroup] = []
    pending = list(output.groups)
    try:
        while pending:
            group = pending[0]
            if aborted() or plog.closed:
                raise CleaningAborted(f"cleaning of {plog.name} aborted")
            try:
                new = plog.replace_segments([group.base_offset], [by_base[b] for b in group.source_bases],
                                            truncation_count=truncations)
            except swap.SegmentsChangedError as e:
                raise CleaningAborted(f"cleaning of {plog.name} aborted: {e}") from e
            except LogError as e:
                if plog.closed:
                    raise CleaningAborted(f"cleaning of {plog.name} aborted: {e}") from e
                raise
            pending.pop(0)
            if new:
                swapped.append(group)
    except Exception:
        # (After a crash the loader removes them.)
        for group in pending:
            swap.remove_cleaned(directory, group.base_offset)
        raise
    duration_ms = int((time.monotonic() - started) * 1000)
    summary = CleaningSummary(
        ended_ms=now_ms + duration_ms, duration_ms=duration_ms,
        segments_before=sum(len(g.source_bases) for g in swapped), segments_after=len(swapped),
        bytes_before=sum(g.bytes_before for g in swapped), bytes_after=sum(g.bytes_after for g in swapped),
        records_read=output.records_read, records_retained=output.records_retained,
        cleaned_up_to=output.end_offset,
    )
    plog.last_cleaning = summary
    # The cleaner manager logs each pass at INFO; the offset map's fill is for debugging.
    log.debug("cleaned %s up to offset %d: %d segments (%d bytes) into %d (%d bytes), %d of %d records kept, "
             "map %d keys (%.0f%% full), %d ms", plog.name, output.end_offset, summary.segments_before,
             summary.bytes_before, summary.segments_after, summary.bytes_after, summary.records_retained,
             summary.records_read, output.map_entries, output.buffer_utilization * 100, duration_ms)
    return CleanResult(output.end_offset, summary)
