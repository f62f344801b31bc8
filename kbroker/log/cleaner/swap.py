"""The crash-safe swap of cleaned segments into a log (Kafka's ``LocalLog.replaceSegments``)
and its completion at load (Kafka's ``LogLoader`` swap recovery).

A cleaned segment is written as ``<base>.log.cleaned`` with ``.index.cleaned``,
``.timeindex.cleaned`` and ``.txnindex.cleaned`` (each index only if it has entries), all
fsynced. The swap then renames, in this order:

1. ``.cleaned`` -> ``.swap``: the index files first, the ``.log`` last, so a ``.log.swap``
   always has every one of its index files as ``.swap`` (or, from step 3 on, final);
2. (memory) the replaced segments leave the segment list;
3. the replaced segments' files -> ``.deleted`` (removed after ``file.delete.delay.ms``);
4. ``.swap`` -> final: the ``.log`` first, then the index files.

A crash leaves one of these states, which :func:`recover_swaps` completes at load:

- ``.cleaned`` files (step 1 not done): removed with the ``.cleaned`` leftovers; index
  ``.swap`` files whose ``.log`` is still ``.cleaned`` are removed too. The old segments
  are untouched.
- a ``<base>.log.swap`` (steps 1-3): every final-named segment file (log and index) whose
  base offset lies in ``[base, next offset of the swap segment)`` belongs to a replaced
  segment and is removed, then the ``.swap`` files are renamed into place. The range is
  Kafka's; a replaced segment past it (its data all cleaned away) is kept, which leaves
  that uncleaned data in the log, never loses any.
- index ``.swap`` files whose ``.log`` is final (step 4 cut short): renamed into place.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from kbroker.log.errors import LogError
from kbroker.log.segment import (
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    filename_prefix_from_offset,
)
from kbroker.records.batch import HEADER_SIZE, LOG_OVERHEAD, parse_header

log = logging.getLogger(__name__)

CLEANED_FILE_SUFFIX = ".cleaned"
SWAP_FILE_SUFFIX = ".swap"
#: A segment's files in the order step 1 renames them (the ``.log`` last).
INDEX_SUFFIXES = (INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX, TXN_INDEX_FILE_SUFFIX)
SEGMENT_SUFFIXES = (*INDEX_SUFFIXES, LOG_FILE_SUFFIX)
_SEGMENT_FILE_RE = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex|\.txnindex)(\.swap|\.cleaned)?$")


class SegmentsChangedError(LogError):
    """The log changed under a cleaning (truncated, a segment replaced): its result is void."""


def rename(src: Path, dst: Path) -> None:
    """One rename of the swap protocol (a seam: tests stop here to simulate a crash)."""
    os.rename(src, dst)


def segment_file(directory: Path, base_offset: int, suffix: str, extra: str = "") -> Path:
    """``<dir>/<20-digit base><suffix><extra>``, e.g. ``...042.index.cleaned``."""
    return directory / (filename_prefix_from_offset(base_offset) + suffix + extra)


def cleaned_files(directory: Path, base_offset: int) -> list[Path]:
    """The ``.cleaned`` files of the cleaned segment at ``base_offset`` that exist."""
    return [p for s in SEGMENT_SUFFIXES if (p := segment_file(directory, base_offset, s, CLEANED_FILE_SUFFIX)).exists()]


def remove_cleaned(directory: Path, base_offset: int) -> None:
    """Remove what a cleaning wrote for ``base_offset`` (an aborted or superseded pass)."""
    for suffix in SEGMENT_SUFFIXES:
        segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX).unlink(missing_ok=True)


def cleaned_to_swap(directory: Path, base_offset: int) -> None:
    """Step 1: rename the ``.cleaned`` files to ``.swap``, the ``.log`` last."""
    for suffix in SEGMENT_SUFFIXES:
        src = segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX)
        if suffix == LOG_FILE_SUFFIX or src.exists():
            rename(src, segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX))


def swap_to_final(directory: Path, base_offset: int) -> None:
    """Step 4: rename the ``.swap`` files to their final names, the ``.log`` first."""
    for suffix in (LOG_FILE_SUFFIX, *INDEX_SUFFIXES):
        src = segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX)
        if suffix == LOG_FILE_SUFFIX or src.exists():
            rename(src, segment_file(directory, base_offset, suffix))


def swap_back_to_cleaned(directory: Path, base_offset: int) -> None:
    """Undo a step 1 cut short by an I/O error (best effort; a restart completes or drops it)."""
    for suffix in SEGMENT_SUFFIXES:
        src = segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX)
        if src.exists():
            os.rename(src, segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX))


def next_offset_of_file(path: Path) -> int | None:
    """The offset after the last whole batch of a segment file (None if it has none);
    reads batch headers only."""
    next_offset: int | None = None
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while size - pos >= HEADER_SIZE:
            head = os.pread(f.fileno(), HEADER_SIZE, pos)
            if len(head) < HEADER_SIZE:
                break
            h = parse_header(head)
            if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + h.size > size:
                break
            next_offset = h.next_offset
            pos += h.size
    return next_offset


def recover_swaps(directory: Path, names: set[str]) -> set[str]:
    """Complete swaps a crash interrupted (see the module doc); returns the directory's
    entries afterwards. Called by the loader before it drops ``.cleaned`` leftovers."""
    swaps = [n for n in names if n.endswith(SWAP_FILE_SUFFIX)]
    if not swaps:
        return names
    parsed: list[tuple[int, str, str]] = []
    for name in swaps:
        m = _SEGMENT_FILE_RE.match(name)
        if m is None:
            continue
        parsed.append((int(m.group(1)), m.group(2), name))
    log_swaps = sorted(base for base, suffix, _ in parsed if suffix == LOG_FILE_SUFFIX)
    if log_swaps:
        lo = log_swaps[0]
        hi = lo
        for base in log_swaps:
            end = next_offset_of_file(segment_file(directory, base, LOG_FILE_SUFFIX, SWAP_FILE_SUFFIX))
            hi = max(hi, base + 1 if end is None else end)
        for name in names:
            m = _SEGMENT_FILE_RE.match(name)
            if m is not None and m.group(3) is None and lo <= int(m.group(1)) < hi:
                log.info("deleting %s/%s: replaced by an interrupted swap of cleaned segments", directory.name, name)
                (directory / name).unlink(missing_ok=True)
    swapped = set(log_swaps)
    for base, suffix, name in sorted(parsed, key=lambda t: (t[0], t[1] != LOG_FILE_SUFFIX)):
        final = segment_file(directory, base, suffix)
        if base in swapped or (segment_file(directory, base, LOG_FILE_SUFFIX).exists()
                               and not segment_file(directory, base, LOG_FILE_SUFFIX, CLEANED_FILE_SUFFIX).exists()):
            log.info("completing the swap of %s/%s", directory.name, name)
            os.rename(directory / name, final)
        elif suffix != LOG_FILE_SUFFIX:
            # The .log is still .cleaned (step 1 cut short) or gone: the swap never happened.
            (directory / name).unlink(missing_ok=True)
    return set(os.listdir(directory))
