"""The crash-safe swap of cleaned segments into a log (Kafka's ``LocalLog.replaceSegments``)
and its completion at load (Kafka's ``LogLoader`` swap recovery).

A cleaned segment is written as ``<base>.log.cleaned`` with all three index files
(``.index.cleaned``, ``.timeindex.cleaned``, ``.txnindex.cleaned``, empty ones too), all
fsynced. The swap then renames, in this order:

1. ``.cleaned`` -> ``.swap``: the index files first, the ``.log`` last. A ``.log.swap`` is
   the commit point: from then on the new segment wins;
2. (memory) the replaced segments leave the segment list;
3. the replaced segments' files -> ``.deleted`` (removed after ``file.delete.delay.ms``);
4. ``.swap`` -> final: the index files first, the ``.log`` last (an empty ``.txnindex`` is
   then removed: kbroker writes that file only when it has entries).

A crash leaves one of these states, which :func:`recover_swaps` completes at load:

- no ``.log.swap`` (step 1 cut short, or never started): index ``.swap`` files are removed,
  ``.cleaned`` files go with the loader's other leftovers; the old segments are untouched.
- a ``<base>.log.swap`` (steps 1-4): every final-named segment file whose base offset lies
  in ``[base, next offset of the swap segment)`` belongs to a replaced segment and is
  removed, except the new segment's own index files step 4 already renamed (those whose
  ``.swap`` is gone: the new segment has every index file, so a final one without a
  ``.swap`` beside it is the new one); then the ``.swap`` files are renamed into place.
  The range is Kafka's: a replaced segment past it (all its data cleaned away) is kept,
  which leaves that uncleaned data in the log, never loses any.

Kafka instead deletes index ``.swap`` files and rebuilds the indexes; kbroker keeps them,
as its transaction index is not rebuilt by a segment's recovery.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

from kbroker.fs import store_for
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
    store_for(src).rename(src, dst)


def segment_file(directory: Path, base_offset: int, suffix: str, extra: str = "") -> Path:
    """``<dir>/<20-digit base><suffix><extra>``, e.g. ``...042.index.cleaned``."""
    return directory / (filename_prefix_from_offset(base_offset) + suffix + extra)


def remove_cleaned(directory: Path, base_offset: int) -> None:
    """Remove what a cleaning wrote for ``base_offset`` (an aborted or superseded pass)."""
    store = store_for(directory)
    for suffix in SEGMENT_SUFFIXES:
        store.unlink(segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX), missing_ok=True)


def cleaned_to_swap(directory: Path, base_offset: int) -> None:
    """Step 1: rename the ``.cleaned`` files to ``.swap``, the ``.log`` last."""
    for suffix in SEGMENT_SUFFIXES:
        src = segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX)
        if suffix == LOG_FILE_SUFFIX or store_for(src).exists(src):
            rename(src, segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX))


def swap_to_final(directory: Path, base_offset: int) -> None:
    """Step 4: rename the ``.swap`` files to their final names, the ``.log`` last; then drop
    an empty ``.txnindex``."""
    for suffix in SEGMENT_SUFFIXES:
        src = segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX)
        if suffix == LOG_FILE_SUFFIX or store_for(src).exists(src):
            rename(src, segment_file(directory, base_offset, suffix))
    _drop_empty_txn_index(directory, base_offset)


def _drop_empty_txn_index(directory: Path, base_offset: int) -> None:
    path = segment_file(directory, base_offset, TXN_INDEX_FILE_SUFFIX)
    store = store_for(path)
    with contextlib.suppress(FileNotFoundError):
        if store.size(path) == 0:
            store.unlink(path)


def swap_back_to_cleaned(directory: Path, base_offset: int) -> None:
    """Undo a step 1 cut short by an I/O error (best effort; a restart drops what is left)."""
    for suffix in SEGMENT_SUFFIXES:
        src = segment_file(directory, base_offset, suffix, SWAP_FILE_SUFFIX)
        with contextlib.suppress(OSError):
            store_for(src).rename(src, segment_file(directory, base_offset, suffix, CLEANED_FILE_SUFFIX))


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
    parsed: list[tuple[int, str, str]] = []
    for name in names:
        if not name.endswith(SWAP_FILE_SUFFIX):  # the common case: one suffix test per file
            continue
        m = _SEGMENT_FILE_RE.match(name)
        if m is not None and m.group(3) == SWAP_FILE_SUFFIX:
            parsed.append((int(m.group(1)), m.group(2), name))
    if not parsed:
        return names
    swapped = sorted(base for base, suffix, _ in parsed if suffix == LOG_FILE_SUFFIX)
    for base, _, name in parsed:
        if base not in swapped:
            # Step 1 never reached the .log: the swap did not happen.
            (directory / name).unlink(missing_ok=True)
    if swapped:
        lo, hi = swapped[0], swapped[0]
        for base in swapped:
            end = next_offset_of_file(segment_file(directory, base, LOG_FILE_SUFFIX, SWAP_FILE_SUFFIX))
            hi = max(hi, base + 1 if end is None else end)
        for name in names:
            m = _SEGMENT_FILE_RE.match(name)
            if m is None or m.group(3) is not None or not lo <= int(m.group(1)) < hi:
                continue
            if int(m.group(1)) in swapped and m.group(2) != LOG_FILE_SUFFIX and name + SWAP_FILE_SUFFIX not in names:
                continue  # the new segment's index, renamed by step 4 already
            log.info("deleting %s/%s: replaced by an interrupted swap of cleaned segments", directory.name, name)
            (directory / name).unlink(missing_ok=True)
        for base in swapped:
            log.info("completing the swap of cleaned segment %d of %s", base, directory.name)
            swap_to_final(directory, base)
    return set(os.listdir(directory))
