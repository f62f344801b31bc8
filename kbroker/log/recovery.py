"""The validating scan of a segment file after an unclean shutdown (the core of Kafka's
``LogSegment.recover``): framing, CRC and offset order of every batch from the start."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from kbroker.records.batch import CRC_START, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, BatchHeader, parse_header
from kbroker.records.crc import crc32c

_MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_RECOVER_CHUNK = 4 * 1024 * 1024


class ScanResult(NamedTuple):
    """How far a segment file holds whole, valid batches."""

    #: The end of the last valid batch: where the file is cut.
    valid_bytes: int
    #: The offset after the last valid batch.
    next_offset: int
    #: Why the scan stopped before the end of the file ("" if it did not).
    reason: str


def _pread_into(fd: int | bytearray, mv: memoryview, n: int, pos: int) -> int:
    """Fill ``mv[:n]`` from ``pos``; returns the bytes read (fewer only at end of file).
    ``fd`` is a descriptor, or the file itself as a ``bytearray`` (a segment in memory)."""
    if not isinstance(fd, int):
        chunk = fd[pos : pos + n]
        mv[: len(chunk)] = chunk
        return len(chunk)
    got = 0
    while got < n:
        k = os.preadv(fd, [mv[got:n]], pos + got)
        if k <= 0:
            break
        got += k
    return got


def scan_valid_batches(fd: int | bytearray, end: int, base_offset: int, max_offset: int,
                       on_batch: Callable[[int, BatchHeader], None]) -> ScanResult:
    """Read the file ``fd`` from 0 to ``end`` and call ``on_batch(position, header)`` for
    each valid batch, stopping at the first torn, corrupt or out-of-order one (offsets
    must rise from ``base_offset`` and stay at or below ``max_offset``)."""
    next_offset = base_offset
    pos = 0
    # One reused buffer filled by large sequential reads; CRCs run on views of it.
    buf = bytearray(min(_RECOVER_CHUNK, max(end, HEADER_SIZE)))
    mv = memoryview(buf)
    buf_start = 0
    buf_len = 0
    reason = ""
    while pos < end:
        if end - pos < HEADER_SIZE:
            reason = "partial batch header"
            break
        off = pos - buf_start
        if off + HEADER_SIZE > buf_len:
            buf_len = _pread_into(fd, mv, min(len(buf), end - pos), pos)
            buf_start, off = pos, 0
        h = parse_header(mv, off)
        size = h.batch_length + LOG_OVERHEAD
        if h.magic != MAGIC_V2 or h.batch_length < _MIN_BATCH_LENGTH:
            reason = f"bad batch framing (magic {h.magic}, length {h.batch_length})"
            break
        if pos + size > end:
            reason = "partial batch"
            break
        if off + size > buf_len:
            if size > len(buf):
                mv.release()
                buf = bytearray(size)
                mv = memoryview(buf)
            buf_len = _pread_into(fd, mv, min(len(buf), end - pos), pos)
            buf_start, off = pos, 0
        if crc32c(mv[off + CRC_START : off + size]) != h.crc:
            reason = "CRC mismatch"
            break
        if h.base_offset < next_offset or h.last_offset < h.base_offset or not base_offset <= h.last_offset <= max_offset:
            reason = f"batch offset {h.base_offset} out of order"
            break
        on_batch(pos, h)
        next_offset = h.next_offset
        pos += size
    mv.release()
    return ScanResult(pos, next_offset, reason)
