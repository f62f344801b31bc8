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
