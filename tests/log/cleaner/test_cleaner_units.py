"""Units of the cleaner: the offset map, record walking, grouping, error paths, special batches."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from cleaner_helpers import all_batches, all_records, append, clean, keyed_batch, recovery_accepts

from kbroker.clock import ManualClock
from kbroker.log import PartitionLog
from kbroker.log.cleaner.clean import SegmentRef, group_segments_by_size
from kbroker.log.cleaner.filter import KEY, OFFSET_DELTA, parse_records
from kbroker.log.cleaner.offset_map import BYTES_PER_ENTRY, SkimpyOffsetMap, key_digest
from kbroker.records.batch import (
    DELETE_HORIZON_BIT,
    HEADER_SIZE,
    TIMESTAMP_TYPE_BIT,
    BatchError,
    parse_header,
)
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import iter_records

MakeLog = Callable[..., PartitionLog]


def test_offset_map_capacity_follows_kafkas_formula() -> None:
    omap = SkimpyOffsetMap(1000 * BYTES_PER_ENTRY + 23, load_factor=0.9)
    assert omap.slots == 1000 and omap.max_entries == 900
    assert omap.get(b"a") == -1 and omap.latest_offset == -1
    omap.put(b"a", 5)
    omap.put(b"b", 7)
    omap.put(b"a", 9)
    assert (omap.get(b"a"), omap.get(b"b"), len(omap), omap.latest_offset) == (9, 7, 2, 9)
    assert omap.entries[key_digest(b"a")] == 9 and len(key_digest(b"a")) == 16
    omap.update_latest_offset(3)  # Kafka sets it, never maximises
    assert omap.latest_offset == 3
    assert omap.utilization == pytest.approx(2 / 1000)
    assert not omap.full
    small = SkimpyOffsetMap(2 * BYTES_PER_ENTRY, load_factor=0.5)
    small.put(b"x", 1)
    assert small.full
    small.clear()
    assert len(small) == 0 and small.latest_offset == -1
    with pytest.raises(ValueError):
        SkimpyOffsetMap(BYTES_PER_ENTRY - 1)
    with pytest.raises(ValueError):
        SkimpyOffsetMap(BYTES_PER_ENTRY, load_factor=0.5)


def test_parse_records_matches_the_full_decoder() -> None:
    recs = [NewRecord(b"k" * (i * 7), None if i % 5 == 0 else b"v" * (i * 13), (("h", b"x"),), 1_000 + i * 300)
            for i in range(60)]
    batch = build_batch(recs)
    h = parse_header(batch)
    spans = parse_records(batch, HEADER_SIZE, h.size, h.record_count)
    decoded = list(iter_records(batch))
    assert [(s[OFFSET_DELTA], bytes(s[KEY]) if s[KEY] is not None else None, s[5]) for s in spans] == \
        [(r.offset, r.key, r.value is not None) for r in decoded]
    with pytest.raises(BatchError):
        parse_records(batch, HEADER_SIZE, h.size, h.record_count + 1)
    with pytest.raises(BatchError):
        parse_records(batch, HEADER_SIZE, h.size - 1, h.record_count)


def _ref(base: int, size: int, index: int = 0) -> SegmentRef:
    return SegmentRef(base, f"/x/{base}.log", size, 0, index, index, 0)


def test_grouping_by_size_index_size_and_offset_range() -> None:
    segs = [_ref(0, 400), _ref(10, 400), _ref(20, 400), _ref(30, 100)]
    assert [[r.base_offset for r in g] for g in group_segments_by_size(segs, 1000, 1000, 40)] == [[0, 10], [20, 30]]
    segs = [_ref(0, 10, 600), _ref(10, 10, 600)]
    assert len(group_segments_by_size(segs, 1000, 1000, 20)) == 2
    # Offsets must fit an int32 from the group's base (an empty segment is never the problem).
    far = 2**31
    segs = [_ref(0, 10), _ref(100, 10), _ref(far + 50, 10)]
    assert [[r.base_offset for r in g] for g in group_segments_by_size(segs, 1000, 1000, far + 60)] == \
        [[0], [100, far + 50]]
    segs = [_ref(0, 10), _ref(100, 0), _ref(far + 50, 10)]
    assert [[r.base_offset for r in g] for g in group_segments_by_size(segs, 1000, 1000, far + 60)] == \
        [[0, 100], [far + 50]]


def test_a_corrupt_segment_fails_the_pass_and_leaves_nothing(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=600)
    for i in range(30):
        append(plog, [(b"k%d" % (i % 3), b"v" * 20)])
    seg = plog.segments[1]
    fd = os.open(seg.log_path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\x07", 16)  # the first batch's magic
    finally:
        os.close(fd)
    with pytest.raises(BatchError):
        clean(plog, clock)
    assert not [p for p in plog.dir.iterdir() if p.name.endswith((".cleaned", ".swap"))]
    assert plog.last_cleaning is None


def test_log_append_time_batches_keep_their_time(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(delete_retention_ms=5)
    plog.append(keyed_batch([(b"a", b"1"), (b"b", b"1"), (b"c", None)], ts=10), leader_epoch=0, log_append_time=True)
    append(plog, [(b"a", b"2")])
    plog.roll()
    append(plog, [(b"z", b"1")])
    stamp = clock.time_ms()
    clean(plog, clock)
    h, raw = all_batches(plog)[0]
    assert h.attributes & TIMESTAMP_TYPE_BIT and h.attributes & DELETE_HORIZON_BIT
    assert h.max_timestamp == stamp and h.base_timestamp == stamp + 5
    assert [(r.offset, r.timestamp) for r in iter_records(raw)] == [(1, stamp), (2, stamp)]
    clock.advance(5)
    clean(plog, clock)
    h, raw = all_batches(plog)[0]
    assert [(r.offset, r.key, r.timestamp) for r in iter_records(raw)] == [(1, b"b", stamp)]
    assert h.max_timestamp == stamp and h.attributes & TIMESTAMP_TYPE_BIT


def test_batches_larger_than_the_io_buffer_are_read_whole(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"k%d" % i, b"x" * 1_000) for i in range(20)], compression=4)  # 0-19
    append(plog, [(b"k%d" % i, b"y" * 1_000) for i in range(10)])  # 20-29
    plog.roll()
    append(plog, [(b"z", b"1")])
    clean(plog, clock, io_buffer=512)
    recs = all_records(plog)
    assert [o for o, _, _ in recs] == list(range(10, 31))
    recovery_accepts(plog.dir)


@pytest.mark.parametrize("io_buffer", [1, 12, 60])
def test_an_io_buffer_smaller_than_a_batch_header_still_cleans(make_log: MakeLog, clock: ManualClock,
                                                               io_buffer: int) -> None:
    """``log.cleaner.io.buffer.size`` may be set as low as 0 (each thread then gets 1 byte):
    Kafka grows its buffers to the next batch, so the log is still cleaned. A buffer below one
    batch header used to fail every pass with "partial batch" and compaction stopped."""
    plog = make_log()
    append(plog, [(b"a", b"1"), (b"b", b"1")])
    append(plog, [(b"a", b"2")])
    plog.roll()
    append(plog, [(b"z", b"1")])
    clean(plog, clock, io_buffer=io_buffer)
    assert [(o, k) for o, k, _ in all_records(plog)] == [(1, b"b"), (2, b"a"), (3, b"z")]
    recovery_accepts(plog.dir)
