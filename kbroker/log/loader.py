"""Loading a partition directory (Kafka's ``LogLoader``, apart from ``UnifiedLog``).

:func:`load_log` brings a ``<topic>-<partition>/`` directory up: it drops leftovers of
interrupted operations, opens the segments, rebuilds missing indexes, recovers the
segments from the recovery point on after an unclean shutdown, and rebuilds the
producer state from the latest snapshot plus the batch headers after it. It returns
what :class:`~kbroker.log.partition_log.PartitionLog` runs on, as a :class:`LoadedLog`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from kbroker.clock import Clock
from kbroker.fs import store_for
from kbroker.log.cleaner import swap
from kbroker.log.config import LogConfig
from kbroker.log.producer_snapshot import SNAPSHOT_SUFFIX
from kbroker.log.producer_state import ProducerStateManager
from kbroker.log.segment import (
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    LogSegment,
    offset_from_filename,
)
from kbroker.log.segments import LogSegments
from kbroker.records.batch import BatchError, BatchHeader
from kbroker.records.record import EndTxnMarker, end_txn_marker

log = logging.getLogger(__name__)

_SEGMENT_FILE_RE = re.compile(r"^\d{20}\.(log|index|timeindex|txnindex)$")
# Leftovers of interrupted operations that are safe to drop on load.
_STALE_SUFFIXES = (".deleted", ".cleaned", ".tmp")


@dataclass
class LoadedLog:
    """A partition directory brought up by :func:`load_log`."""

    segments: LogSegments
    log_start_offset: int
    log_end_offset: int
    recovery_point: int
    producer_state: ProducerStateManager
    #: The directory's entries changed (a first segment was created) and need a dir fsync.
    dir_dirty: bool
    #: The directory may hold producer snapshot files.
    may_have_snapshots: bool


def segment_kwargs(config: LogConfig) -> dict[str, int]:
    """The :class:`LogSegment` constructor arguments that come from the log's config."""
    return {
        "index_interval_bytes": config.index_interval_bytes,
        "segment_index_bytes": config.segment_index_bytes,
    }


def load_log(
    directory: Path,
    config: LogConfig,
    clock: Clock,
    *,
    recovery_point: int,
    log_start_offset: int | None,
    had_clean_shutdown: bool,
    prepared: bool = False,
    partition_name: str = "",
) -> LoadedLog:
    """Open (and after an unclean shutdown, recover) the log in ``directory``.

    ``prepared``: the directory was just created with an empty first ``.log`` at offset
    0 (already durable), so nothing needs to be read from disk.
    """
    segments = LogSegments()
    producer_state = ProducerStateManager(directory, partition_name)
    dir_dirty = False
    rebuild_from: int | None = None
    if prepared:
        segments.add(LogSegment.open_empty(directory, 0, **segment_kwargs(config)))
        recovery_point = log_start_offset = 0
        may_have_snapshots = False
    else:
        may_have_snapshots, dir_dirty, rebuild_from = _load_segments(
            directory, config, segments, had_clean_shutdown, recovery_point, log_start_offset)
    active = segments.active
    log_end_offset = active.next_offset
    lso = segments.first.base_offset if log_start_offset is None else log_start_offset
    lso = min(max(lso, segments.first.base_offset), log_end_offset)
    if not prepared:
        replay_producer_state(producer_state, segments, log_end_offset, rebuild_from=rebuild_from)
    now = clock.time_ms()
    first_ts = active.first_batch_timestamp()
    if first_ts is not None:
        # After a restart the roll timer restarts from the first batch's timestamp (as Kafka).
        active.first_append_ms = now if first_ts < 0 else min(first_ts, now)
    return LoadedLog(
        segments=segments,
        log_start_offset=lso,
        log_end_offset=log_end_offset,
        recovery_point=log_end_offset if had_clean_shutdown else min(recovery_point, log_end_offset),
        producer_state=producer_state,
        dir_dirty=dir_dirty,
        may_have_snapshots=may_have_snapshots,
    )


def _load_segments(directory: Path, config: LogConfig, segments: LogSegments, clean: bool,
                   recovery_point: int, log_start_offset: int | None) -> tuple[bool, bool, int | None]:
    """Fill ``segments`` from the directory; ``(may have snapshots, dir dirty, base offset
    of the first recovered segment)``: the producer state replay rebuilds the ``.txnindex``
    of the recovered segments (None after a clean shutdown)."""
    # Swaps of cleaned segments a crash interrupted are completed first (Kafka's LogLoader).
    store = store_for(directory)
    names = swap.recover_swaps(directory, set(store.listdir(directory)))
    may_have_snapshots = any(n.endswith(SNAPSHOT_SUFFIX) for n in names)
    for name in list(names):
        if name.endswith(_STALE_SUFFIXES):
            store.unlink(directory / name, missing_ok=True)
            names.discard(name)
    bases = sorted(offset_from_filename(n) for n in names if n.endswith(LOG_FILE_SUFFIX) and _SEGMENT_FILE_RE.match(n))
    base_set = set(bases)
    for name in names:  # indexes without a log file (Kafka deletes these too)
        if _SEGMENT_FILE_RE.match(name) and not name.endswith(LOG_FILE_SUFFIX) and offset_from_filename(name) not in base_set:
            store.unlink(directory / name, missing_ok=True)
    kw = segment_kwargs(config)
    missing_index: list[LogSegment] = []
    #: Base offset of the first segment whose .txnindex is torn (its size not whole entries).
    torn_txn_index: int | None = None
    for base in bases:
        stem = f"{base:020d}"
        has_txn_index = stem + TXN_INDEX_FILE_SUFFIX in names
        seg = LogSegment.open(directory, base, **kw, txn_index_exists=has_txn_index)
        if has_txn_index and torn_txn_index is None and not seg.txn_index.sane():
            log.warning("%s is torn: rebuilding the transaction indexes from there", seg.txn_index.path)
            torn_txn_index = base
        if (stem + INDEX_FILE_SUFFIX not in names or stem + TIME_INDEX_FILE_SUFFIX not in names) \
                and seg.size > config.index_interval_bytes:
            # Index files are written once they have entries; a segment no larger than
            # one index interval has no offset-index entry, and its tail scan from
            # position 0 recomputes the max timestamp, so only larger ones need a rebuild.
            missing_index.append(seg)
        segments.add(seg)
    if not segments:
        segments.add(LogSegment.create(directory, log_start_offset or 0, **kw))
        return may_have_snapshots, True, None
    if clean:
        for seg in missing_index:
            log.info("rebuilding missing indexes of %s", seg.log_path)
            seg.rebuild_indexes()
        return may_have_snapshots, False, _reset_txn_indexes(segments, torn_txn_index)
    # Unclean shutdown: rescan everything from the segment holding the recovery point.
    start_index = max(segments.floor_index(recovery_point), 0)
    to_recover = segments.from_index(start_index)
    for seg in missing_index:
        if seg not in to_recover:
            seg.rebuild_indexes()
    for i, seg in enumerate(to_recover):
        if seg.recover():
            # Nothing after a torn batch can be trusted (Kafka drops the later segments).
            for later in to_recover[i + 1 :]:
                log.warning("deleting %s after corruption in an earlier segment", later.log_path)
                segments.remove(later)
                later.delete()
            break
    rebuild_from = segments.from_index(start_index)[0].base_offset
    if torn_txn_index is not None:
        rebuild_from = min(rebuild_from, torn_txn_index)
    return may_have_snapshots, False, _reset_txn_indexes(segments, rebuild_from)


def _reset_txn_indexes(segments: LogSegments, rebuild_from: int | None) -> int | None:
    """Empty the ``.txnindex`` of the segments from ``rebuild_from`` on: the producer state
    replay finds their aborted transactions again. Returns ``rebuild_from``."""
    if rebuild_from is not None:
        for seg in segments.from_index(segments.floor_index(rebuild_from)):
            seg.txn_index.reset()
    return rebuild_from


def replay_producer_state(producer_state: ProducerStateManager, segments: LogSegments, log_end_offset: int, *,
                          rebuild_from: int | None = None) -> None:
    """Load the latest snapshot at or below the log end, then replay the batch headers
    (and transaction markers) after it (at load, and after a truncation).

    ``rebuild_from``: the segments from this base offset on were recovered and their
    ``.txnindex`` emptied; the replay starts at a snapshot no later than that (later ones
    are deleted) and adds
    the aborted transactions it meets there (Kafka rebuilds them in ``LogSegment.recover``).
    """
    # As Kafka's recovery (rebuildProducerState up to the first recovered segment), snapshots
    # above the recovered segments' start are dropped: they may describe lost data.
    upper = log_end_offset if rebuild_from is None else min(rebuild_from, log_end_offset)
    start = producer_state.load(segments.first.base_offset, upper)
    for seg in segments.from_index(max(segments.floor_index(start), 0)):
        if seg.next_offset <= start:
            continue
        rebuild = rebuild_from is not None and seg.base_offset >= rebuild_from
        found = seg.translate_offset(start) if seg.base_offset < start else None
        for pos, h in seg.iter_batches(found[0] if found else 0):
            if h.base_offset < start:
                continue
            marker = _read_marker(seg, pos, h) if h.is_control and h.producer_id >= 0 else None
            aborted = producer_state.replay(h, marker)
            if aborted is not None and rebuild:
                seg.append_aborted_txn(aborted)
    producer_state.map_end_offset = log_end_offset


def _read_marker(seg: LogSegment, pos: int, h: BatchHeader) -> EndTxnMarker | None:
    """The COMMIT/ABORT marker of the control batch at ``pos`` (None if it is none or unreadable)."""
    try:
        return end_txn_marker(seg.read_batch(pos, h))
    except BatchError as e:
        log.warning("unreadable control batch at offset %d of %s: %s", h.base_offset, seg.log_path, e)
        return None
