"""LogSegment on its own."""

from __future__ import annotations

from log_helpers import batch_offsets, build_batch

from kbroker.log import LogSegment
from kbroker.records.batch import iter_headers, set_base_offset


def _batches(start: int, n: int, records: int = 2) -> list[bytes]:
    out = []
    for i in range(n):
        b = bytearray(build_batch([b"r%d" % i] * records, base_timestamp=1000 + 10 * i))
        set_base_offset(b, 0, start + i * records)
        out.append(bytes(b))
    return out


def _append(seg: LogSegment, batches: list[bytes], now: int = 0) -> None:
    data = b"".join(batches)
    seg.append(data, list(iter_headers(data)), now)


def test_segment_append_read_and_lookup(tmp_path):
    seg = LogSegment.create(tmp_path, 50, index_interval_bytes=100, segment_index_bytes=4096)
    assert seg.log_path.name == "00000000000000000050.log"
    batches = _batches(50, 10)
    for b in batches:
        _append(seg, [b], now=123)
    assert seg.first_append_ms == 123
    assert seg.next_offset == 70
    assert seg.read(49, 10**6) is not None  # below base: from the first batch
    assert seg.read(70, 100) is None
    assert seg.read(55, 1) == batches[2]
    assert batch_offsets(seg.read(55, 10**6)) == [(50 + 2 * i, 51 + 2 * i) for i in range(2, 10)]
    pos = seg.position_bound(56)
    assert batch_offsets(seg.read(50, 10**6, max_position=pos)) == [(50, 51), (52, 53), (54, 55)]
    assert seg.max_timestamp == 1091 and seg.offset_of_max_timestamp == 68
    found = seg.find_batch_by_timestamp(1031, 0)
    assert found is not None and found[1].base_offset == 56
    assert seg.find_batch_by_timestamp(5000, 0) is None
    seg.close()


def test_segment_recover_and_truncate(tmp_path):
    seg = LogSegment.create(tmp_path, 0, index_interval_bytes=0, segment_index_bytes=4096)
    batches = _batches(0, 6)
    _append(seg, batches)
    entries = seg.offset_index.entry_list()
    assert len(entries) == 5
    assert seg.recover() == 0
    assert seg.offset_index.entry_list() == entries
    removed = seg.truncate_to(6)
    assert removed == sum(len(b) for b in batches[3:])
    assert seg.next_offset == 6 and seg.max_timestamp == 1021
    assert seg.offset_index.last_offset == 4
    seg.delete()
    assert not list(tmp_path.iterdir())


def test_reopened_segment_knows_its_tail(tmp_path):
    seg = LogSegment.create(tmp_path, 0, index_interval_bytes=64, segment_index_bytes=4096)
    _append(seg, _batches(0, 8))
    seg.close()
    again = LogSegment.open(tmp_path, 0, index_interval_bytes=64, segment_index_bytes=4096)
    assert again.size == seg.size
    assert again.next_offset == 16
    assert again.max_timestamp == 1071
    assert not again.offset_index.loaded  # idle segments keep no index in memory
    assert again.first_batch_timestamp() == 1001
    again.close()


def _reference_read(seg: LogSegment, data: bytes, start_offset: int, max_bytes: int, max_position: int | None,
                    min_one_message: bool) -> bytes | None:
    """What LogSegment.read must answer, computed from the segment's bytes by a plain walk."""
    limit = len(data) if max_position is None else min(max_position, len(data))
    for pos, h in iter_headers(data):
        if h.last_offset < start_offset:
            continue
        if pos >= limit:
            return b""
        want = min(max_bytes, limit - pos)
        if h.size > want:
            return data[pos:pos + h.size] if min_one_message and pos + h.size <= limit else b""
        end = pos
        for p, h2 in iter_headers(data[pos:pos + want]):
            end = pos + p + h2.size
        return data[pos:end]
    return None


def test_segment_read_from_scan_buffer_matches_a_fresh_read(tmp_path):
    # Small batches (read from the bytes the offset scan already holds), batches of a few KB, and
    # batches above a quarter of the scan chunk (the scan then reads headers only): every read
    # must return exactly the bytes of a plain walk over the file, whichever way it was served.
    seg = LogSegment.create(tmp_path, 0, index_interval_bytes=4096, segment_index_bytes=1 << 20)
    sizes = [1] * 40 + [3000] * 10 + [20_000] * 4 + [1] * 10 + [70_000] * 2 + [1] * 5
    offset = 0
    for i, n in enumerate(sizes):
        b = bytearray(build_batch([bytes([i % 251]) * n], base_timestamp=1000 + i))
        set_base_offset(b, 0, offset)
        _append(seg, [bytes(b)])
        offset += 1
    data = seg.log_path.read_bytes()
    for start in range(0, offset + 1, 3):
        for max_bytes in (1, 100, 5000, 70_000, 1 << 20):
            for max_position in (None, len(data) // 2, len(data) - 1):
                for min_one in (True, False):
                    got = seg.read(start, max_bytes, max_position, min_one)
                    want = _reference_read(seg, data, start, max_bytes, max_position, min_one)
                    assert (None if got is None else bytes(got)) == want, (start, max_bytes, max_position, min_one)
    seg.close()


def test_segment_read_sees_appends_after_a_read(tmp_path):
    # The bytes a read reuses come from this read's own scan: data appended later is seen.
    seg = LogSegment.create(tmp_path, 0, index_interval_bytes=4096, segment_index_bytes=4096)
    first = _batches(0, 1)[0]
    _append(seg, [first])
    assert bytes(seg.read(0, 1 << 20)) == first
    second = _batches(2, 1)[0]
    _append(seg, [second])
    assert bytes(seg.read(0, 1 << 20)) == first + second
    assert bytes(seg.read(2, 1 << 20)) == second
    seg.close()
