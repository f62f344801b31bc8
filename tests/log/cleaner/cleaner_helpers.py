"""Helpers of the log cleaner tests: writing keyed batches, reading a log back whole, cleaning."""

from __future__ import annotations

from pathlib import Path

from kbroker.clock import ManualClock
from kbroker.log import PartitionLog
from kbroker.log.cleaner.clean import CleanResult, clean_log
from kbroker.log.recovery import scan_valid_batches
from kbroker.records.batch import BatchHeader, iter_headers, verify_crc
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import iter_records

KeyValue = tuple[bytes | None, bytes | None]


def keyed_batch(pairs: list[KeyValue], *, ts: int = 1_000, compression: int = 0, producer_id: int = -1,
                producer_epoch: int = -1, base_sequence: int = -1, transactional: bool = False) -> bytes:
    """One batch of ``(key, value)`` records (value None: a tombstone), timestamps ``ts``, ``ts+1``..."""
    return build_batch([NewRecord(k, v, (), ts + i) for i, (k, v) in enumerate(pairs)], compression=compression,
                       producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
                       transactional=transactional)


def append(plog: PartitionLog, pairs: list[KeyValue], **kw: object) -> int:
    """Append one batch; returns its base offset."""
    return plog.append(keyed_batch(pairs, **kw), leader_epoch=0).base_offset  # type: ignore[arg-type]


def all_batches(plog: PartitionLog) -> list[tuple[BatchHeader, bytes]]:
    """Every batch from the log start to its end, in order, each checked: CRC valid, offsets
    increasing across the log."""
    out: list[tuple[BatchHeader, bytes]] = []
    offset = plog.log_start_offset
    last = -1
    while offset < plog.log_end_offset:
        data = bytes(plog.read(offset, 1 << 30))
        if not data:
            break
        for pos, h in iter_headers(data):
            raw = data[pos : pos + h.size]
            assert verify_crc(raw), f"bad CRC at offset {h.base_offset}"
            assert h.base_offset > last and h.last_offset >= h.base_offset
            last = h.last_offset
            out.append((h, raw))
        offset = last + 1
    return out


def all_records(plog: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """``(offset, key, value)`` of every record, offsets strictly increasing."""
    recs = [(r.offset, r.key, r.value) for _, raw in all_batches(plog) for r in iter_records(raw)]
    offsets = [r[0] for r in recs]
    assert offsets == sorted(set(offsets))
    return recs


def recovery_accepts(directory: Path) -> None:
    """Kafka's recovery scan (framing, CRC, offset order) accepts every segment file whole."""
    import os

    for path in sorted(directory.glob("*.log")):
        size = path.stat().st_size
        base = int(path.name.split(".")[0])
        fd = os.open(path, os.O_RDONLY)
        try:
            result = scan_valid_batches(fd, size, base, base + 2**31 - 1, lambda pos, h: None)
        finally:
            os.close(fd)
        assert result.valid_bytes == size, f"{path.name}: {result.reason}"


def clean(plog: PartitionLog, clock: ManualClock, *, first_dirty: int = 0, end: int | None = None,
          dedupe: int = 1 << 20, io_buffer: int = 64 * 1024, **kw: object) -> CleanResult:
    """One cleaning pass up to the active segment (or ``end``) at the clock's time."""
    return clean_log(plog, first_dirty_offset=first_dirty,
                     first_uncleanable_offset=plog.active_segment.base_offset if end is None else end,
                     now_ms=clock.time_ms(), dedupe_buffer_bytes=dedupe, io_buffer_bytes=io_buffer,
                     **kw)  # type: ignore[arg-type]


def expected_compaction(records: list[tuple[int, bytes | None, bytes | None]], end: int,
                        keep_tombstones: bool = True) -> list[tuple[int, bytes | None, bytes | None]]:
    """What a full cleaning below ``end`` keeps: the latest record per key (tombstones if asked)."""
    latest = {k: off for off, k, _ in records if off < end}
    return [(off, k, v) for off, k, v in records
            if off >= end or (latest[k] == off and (v is not None or keep_tombstones))]


def segment_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
