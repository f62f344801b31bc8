"""Recovery: torn writes, corruption, missing indexes, restarts."""

from __future__ import annotations

import os

from log_helpers import batch_of_size, batch_offsets, build_batch

from kbroker.records.batch import iter_headers


def _fill(plog, n: int = 20, size: int = 150) -> list[bytes]:
    for i in range(n):
        plog.append(batch_of_size(size + i, timestamp=1000 + i), leader_epoch=0)
    return [plog.read(i, 1) for i in range(n)]


def _reopen(make_log, plog, **kw):
    plog.close()
    return make_log(plog.dir.name, **kw)


def _positions(path) -> list[int]:
    return [pos for pos, _ in iter_headers(path.read_bytes())]


def test_restart_keeps_offsets_and_data(make_log):
    plog = make_log(segment_bytes=1000, index_interval_bytes=100)
    batches = _fill(plog)
    seg_bases = [s.base_offset for s in plog.segments]
    plog = _reopen(make_log, plog, segment_bytes=1000, index_interval_bytes=100)
    assert plog.log_end_offset == 20
    assert [s.base_offset for s in plog.segments] == seg_bases
    assert [plog.read(i, 1) for i in range(20)] == batches
    assert plog.max_timestamp() == (1019, 19)
    assert plog.append(build_batch([b"more"]), leader_epoch=1).base_offset == 20


def test_torn_write_mid_batch_truncates_to_last_good_batch(make_log):
    plog = make_log()
    batches = _fill(plog, 10)
    path = plog.active_segment.log_path
    positions = _positions(path)
    plog.close()
    with open(path, "r+b") as f:
        f.truncate(positions[7] + 30)  # half of batch 7
    plog = make_log(plog.dir.name, clean=False)
    assert plog.log_end_offset == 7
    assert path.stat().st_size == positions[7]
    assert [plog.read(i, 1) for i in range(7)] == batches[:7]
    assert plog.append(build_batch([b"x"]), leader_epoch=0).base_offset == 7


def test_flipped_byte_truncates_at_corrupt_batch(make_log):
    plog = make_log()
    batches = _fill(plog, 10)
    path = plog.active_segment.log_path
    positions = _positions(path)
    plog.close()
    with open(path, "r+b") as f:
        f.seek(positions[4] + 70)  # inside the CRC-covered records
        byte = f.read(1)
        f.seek(positions[4] + 70)
        f.write(bytes([byte[0] ^ 0x01]))
    plog = make_log(plog.dir.name, clean=False)
    assert plog.log_end_offset == 4
    assert [plog.read(i, 1) for i in range(4)] == batches[:4]


def test_garbage_tail_is_removed(make_log):
    plog = make_log()
    batches = _fill(plog, 5)
    path = plog.active_segment.log_path
    size = path.stat().st_size
    plog.close()
    with open(path, "ab") as f:
        f.write(os.urandom(100))
    plog = make_log(plog.dir.name, clean=False)
    assert path.stat().st_size == size
    assert plog.log_end_offset == 5
    assert [plog.read(i, 1) for i in range(5)] == batches
    # Zero padding (a preallocated tail) is handled the same way.
    plog.close()
    with open(path, "ab") as f:
        f.write(bytes(200))
    plog = make_log(plog.dir.name, clean=False)
    assert path.stat().st_size == size and plog.log_end_offset == 5


def test_garbage_tail_found_even_after_clean_shutdown(make_log):
    plog = make_log()
    _fill(plog, 3)
    path = plog.active_segment.log_path
    size = path.stat().st_size
    plog.close()
    with open(path, "ab") as f:
        f.write(b"\x00" * 5)
    plog = make_log(plog.dir.name, clean=True)
    assert plog.log_end_offset == 3 and path.stat().st_size == size


def test_corruption_in_old_segment_drops_later_segments(make_log):
    plog = make_log(segment_bytes=700)
    batches = _fill(plog, 20)
    segs = plog.segments
    assert len(segs) >= 3
    victim = segs[1]
    positions = _positions(victim.log_path)
    later = [s.log_path for s in segs[2:]]
    plog.close()
    with open(victim.log_path, "r+b") as f:
        f.truncate(positions[1] + 10)
    plog = make_log(plog.dir.name, clean=False, segment_bytes=700)
    assert plog.log_end_offset == victim.base_offset + 1
    assert not any(p.exists() for p in later)
    assert [plog.read(i, 1) for i in range(plog.log_end_offset)] == batches[: plog.log_end_offset]


def test_segments_before_recovery_point_are_not_rescanned(make_log):
    plog = make_log(segment_bytes=700)
    _fill(plog, 20)
    segs = plog.segments
    first = segs[0]
    plog.flush()
    rp = plog.recovery_point
    plog.close()
    # Damage the first segment's tail: below the recovery point nobody looks at it.
    with open(first.log_path, "ab") as f:
        f.write(b"\xff" * 3)
    size = first.log_path.stat().st_size
    plog = make_log(plog.dir.name, clean=False, recovery_point=rp, segment_bytes=700)
    assert first.log_path.stat().st_size == size
    assert plog.log_end_offset == 20


def test_deleted_index_files_are_rebuilt_identically(make_log):
    plog = make_log(segment_bytes=2000, index_interval_bytes=300)
    _fill(plog, 40)
    plog.close()
    files = sorted(p for p in plog.dir.iterdir() if p.suffix in (".index", ".timeindex"))
    assert len(files) >= 4
    before = {p.name: p.read_bytes() for p in files}
    assert any(before.values())
    for p in files:
        p.unlink()
    plog = make_log(plog.dir.name, clean=True, segment_bytes=2000, index_interval_bytes=300)
    assert plog.log_end_offset == 40
    plog.close()
    assert {p.name: p.read_bytes() for p in files} == before
    # Unclean recovery rebuilds the same indexes too.
    plog = make_log(plog.dir.name, clean=False, segment_bytes=2000, index_interval_bytes=300)
    plog.close()
    assert {p.name: p.read_bytes() for p in files} == before


def test_corrupt_index_is_rebuilt_on_use(make_log):
    plog = make_log(index_interval_bytes=100)
    batches = _fill(plog, 20)
    index_path = plog.active_segment.offset_index.path
    good = None
    plog.close()
    good = index_path.read_bytes()
    index_path.write_bytes(good[:-3])  # partial entry
    plog = make_log(plog.dir.name, index_interval_bytes=100)
    assert [plog.read(i, 1) for i in range(20)] == batches
    plog.close()
    assert index_path.read_bytes() == good
    index_path.write_bytes(good[8:] + good[:8])  # out of order
    plog = make_log(plog.dir.name, index_interval_bytes=100)
    assert [plog.read(i, 1) for i in range(20)] == batches


def test_index_files_are_trimmed_to_used_size(make_log):
    plog = make_log(index_interval_bytes=100, segment_index_bytes=10 * 1024 * 1024)
    _fill(plog, 20)
    n_off = plog.active_segment.offset_index.entries
    n_time = plog.active_segment.time_index.entries
    plog.close()
    seg_stem = plog.dir / "00000000000000000000"
    assert seg_stem.with_suffix(".index").stat().st_size == 8 * n_off
    # Closing may add Kafka's final (max timestamp) entry.
    assert seg_stem.with_suffix(".timeindex").stat().st_size in (12 * n_time, 12 * (n_time + 1))


def test_empty_segment_directory_and_orphan_files(make_log):
    plog = make_log()
    plog.close()
    (plog.dir / "00000000000000000050.index").write_bytes(b"")
    (plog.dir / "00000000000000000000.log.deleted").write_bytes(b"x")
    plog = make_log(plog.dir.name, clean=False)
    assert plog.log_end_offset == 0
    assert not (plog.dir / "00000000000000000050.index").exists()
    assert not (plog.dir / "00000000000000000000.log.deleted").exists()


def test_restart_then_rebuild_matches_appended_indexes(make_log):
    """Appends after a restart keep the index cadence a rebuild would produce."""
    plog = make_log(index_interval_bytes=250)
    _fill(plog, 10)
    plog = _reopen(make_log, plog, index_interval_bytes=250)
    _fill(plog, 10)
    seg = plog.active_segment
    plog.close()
    offsets = seg.offset_index.path.read_bytes()
    seg.offset_index.path.unlink()
    plog = make_log(plog.dir.name, index_interval_bytes=250)
    plog.close()
    assert seg.offset_index.path.read_bytes() == offsets
    assert batch_offsets(seg.log_path.read_bytes())[-1] == (19, 19)
