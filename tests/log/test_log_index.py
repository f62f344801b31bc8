"""OffsetIndex and TimeIndex."""

from __future__ import annotations

import struct

import pytest

from kbroker.log import CorruptIndexError, OffsetIndex, TimeIndex


def test_offset_index_lookup_and_file_format(tmp_path):
    idx = OffsetIndex(tmp_path / "00000000000000000100.index", 100, 1024, create=True)
    assert idx.lookup(150) == (100, 0)
    for off, pos in [(110, 1000), (120, 2000), (130, 3000)]:
        idx.append(off, pos)
    assert idx.lookup(99) == (100, 0)
    assert idx.lookup(110) == (110, 1000)
    assert idx.lookup(119) == (110, 1000)
    assert idx.lookup(10**9) == (130, 3000)
    assert idx.path.read_bytes() == b""  # entries reach the file on flush/close
    idx.close()
    assert idx.path.read_bytes() == struct.pack(">iiiiii", 10, 1000, 20, 2000, 30, 3000)
    again = OffsetIndex(idx.path, 100, 1024)
    assert again.entry_list() == [(110, 1000), (120, 2000), (130, 3000)]
    with pytest.raises(ValueError):
        again.append(130, 4000)  # offsets must increase
    again.truncate_to(120)
    assert again.entry_list() == [(110, 1000)]
    again.flush()
    assert len(again.path.read_bytes()) == 8


def test_offset_index_fetch_upper_bound_offset(tmp_path):
    """Kafka's fetchUpperBoundOffset: the first entry at or past position + fetch size."""
    idx = OffsetIndex(tmp_path / "00000000000000000100.index", 100, 1024, create=True)
    assert idx.fetch_upper_bound_offset(0, 10) is None
    idx.append(110, 400)
    idx.append(120, 800)
    assert idx.fetch_upper_bound_offset(0, 100) == 110
    assert idx.fetch_upper_bound_offset(0, 400) == 110  # an entry exactly at the bound counts
    assert idx.fetch_upper_bound_offset(400, 1) == 120
    assert idx.fetch_upper_bound_offset(400, 401) is None


def test_offset_index_full_and_corrupt(tmp_path):
    idx = OffsetIndex(tmp_path / "00000000000000000000.index", 0, 16, create=True)
    idx.append(1, 10)
    idx.append(2, 20)
    assert idx.is_full
    with pytest.raises(ValueError):
        idx.append(3, 30)
    idx.close()
    idx.path.write_bytes(struct.pack(">iiii", 5, 50, 3, 60))
    with pytest.raises(CorruptIndexError):
        OffsetIndex(idx.path, 0, 16).load()
    idx.path.write_bytes(b"\x00" * 9)
    with pytest.raises(CorruptIndexError):
        OffsetIndex(idx.path, 0, 16).load()


def test_time_index_only_grows(tmp_path):
    idx = TimeIndex(tmp_path / "00000000000000000010.timeindex", 10, 12 * 10, create=True)
    assert idx.lookup(5) == (-1, 10)
    idx.maybe_append(100, 10)
    idx.maybe_append(100, 12)  # not larger: skipped
    idx.maybe_append(90, 13)  # smaller: skipped
    idx.maybe_append(200, 14)
    assert idx.entry_list() == [(100, 10), (200, 14)]
    assert idx.lookup(99) == (-1, 10)
    assert idx.lookup(150) == (100, 10)
    assert idx.lookup(200) == (200, 14)
    idx.close()
    assert idx.path.read_bytes() == struct.pack(">qiqi", 100, 0, 200, 4)
    again = TimeIndex(idx.path, 10, 12 * 10)
    assert again.last_entry() == (200, 14)
    again.truncate_to(14)
    assert again.entry_list() == [(100, 10)]


def test_time_index_keeps_a_slot_for_the_final_entry(tmp_path):
    idx = TimeIndex(tmp_path / "00000000000000000000.timeindex", 0, 36, create=True)
    idx.maybe_append(1, 0)
    idx.maybe_append(2, 1)
    assert idx.is_full
    with pytest.raises(ValueError):
        idx.maybe_append(3, 2)
    idx.maybe_append(3, 2, skip_full_check=True)
    assert idx.entries == 3


def test_index_is_loaded_lazily(tmp_path):
    idx = OffsetIndex(tmp_path / "00000000000000000000.index", 0, 1024, create=True)
    idx.append(5, 100)
    idx.close()
    lazy = OffsetIndex(idx.path, 0, 1024)
    assert not lazy.loaded
    assert lazy.lookup(7) == (5, 100)
    assert lazy.loaded
