"""The memory file store and partition logs kept in it (``log.dirs=:memory:``).

The log tests run one sequence of operations on a log on disk and on a log in memory and
compare every answer: the memory store must change where the bytes live, nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.fs import (
    DISK,
    MEMORY,
    MemoryFileStore,
    drop_memory_root,
    is_memory_path,
    new_memory_root,
    store_for,
)
from kbroker.log import LogConfig, PartitionLog
from kbroker.log.errors import OffsetOutOfRange
from kbroker.log.segment import LogSegment, MemoryLogSegment
from tests.log.log_helpers import batch_offsets, build_batch


@pytest.fixture
def mem() -> MemoryFileStore:
    store = MemoryFileStore()
    store.makedirs(Path("/:memory:/t/d"))
    return store


# -- the store ---------------------------------------------------------------------------------
def test_files_are_created_read_written_and_cut(mem: MemoryFileStore) -> None:
    f = Path("/:memory:/t/d/a")
    mem.create_new(f, b"hello")
    with pytest.raises(FileExistsError):
        mem.create_new(f, b"again")
    assert mem.read_bytes(f) == b"hello"
    mem.write_at(f, b"XY", 7)  # past the end: the gap reads as zeros, as a sparse file
    assert mem.read_bytes(f) == b"hello\0\0XY"
    mem.write_at(f, b"J", 0, truncate=3)
    assert mem.read_bytes(f) == b"Jel"
    mem.append(f, b"!!")
    assert (mem.read_bytes(f), mem.size(f)) == (b"Jel!!", 5)
    mem.write_atomic(f, b"new")
    assert mem.read_bytes(f) == b"new"
    assert mem.listdir(Path("/:memory:/t/d")) == ["a"]


def test_missing_files_and_parents_raise_as_the_os_does(mem: MemoryFileStore) -> None:
    missing = Path("/:memory:/t/d/none")
    for call in (mem.read_bytes, mem.size, mem.fsync, mem.mtime_ms, mem.unlink):
        with pytest.raises(FileNotFoundError):
            call(missing)
    mem.unlink(missing, missing_ok=True)
    with pytest.raises(FileNotFoundError):
        mem.listdir(Path("/:memory:/t/nodir"))
    with pytest.raises(FileNotFoundError):
        mem.create_new(Path("/:memory:/t/nodir/f"))
    with pytest.raises(FileNotFoundError):
        mem.rename(missing, Path("/:memory:/t/d/x"))
    mem.create_new(Path("/:memory:/t/d/file"))
    with pytest.raises(FileExistsError):
        mem.makedirs(Path("/:memory:/t/d/file"))
    with pytest.raises(IsADirectoryError):
        mem.write_atomic(Path("/:memory:/t/d"), b"x")


def test_a_directory_renamed_takes_its_files_and_rmtree_frees_them(mem: MemoryFileStore) -> None:
    src, dst = Path("/:memory:/t/d/p-0"), Path("/:memory:/t/d/p-0.x-delete")
    mem.create_dir(src)
    with pytest.raises(FileExistsError):
        mem.create_dir(src)
    mem.makedirs(src / "sub")
    mem.create_new(src / "f", b"1")
    mem.create_new(src / "sub" / "g", b"2")
    mem.rename(src, dst)
    assert not mem.exists(src) and mem.is_dir(dst)
    assert sorted(mem.listdir(dst)) == ["f", "sub"]
    assert mem.read_bytes(dst / "sub" / "g") == b"2"
    assert sorted(mem.listdir(Path("/:memory:/t/d"))) == ["p-0.x-delete"]
    mem.create_dir(src)
    with pytest.raises(FileExistsError):
        mem.rename(src, dst)
    mem.rmtree(dst)
    mem.rmtree(src)
    assert mem.listdir(Path("/:memory:/t/d")) == []
    assert mem.file_count == 0


def test_paths_choose_their_store() -> None:
    root = new_memory_root()
    try:
        assert is_memory_path(root) and store_for(root / "x") is MEMORY
        assert store_for(Path("/tmp/x")) is DISK and not is_memory_path("/tmp/:memory:/x")
        assert MEMORY.is_dir(root) and MEMORY.listdir(root) == []
        assert new_memory_root() != root  # one root per broker
    finally:
        drop_memory_root(root)
    assert not MEMORY.exists(root)
    with pytest.raises(ValueError):
        drop_memory_root(Path("/tmp"))


# -- partition logs: the same answers on disk and in memory -------------------------------------
_CONFIG = dataclasses.replace(LogConfig(), segment_bytes=2_000, index_interval_bytes=300)


@pytest.fixture
def memory_root() -> Iterator[Path]:
    root = new_memory_root()
    yield root
    drop_memory_root(root)


def _logs(tmp_path: Path, memory_root: Path, clock: ManualClock, *, clean: bool = True,
          log_start_offset: int | None = None) -> tuple[PartitionLog, PartitionLog]:
    return (PartitionLog(tmp_path / "t-0", _CONFIG, clock, had_clean_shutdown=clean, log_start_offset=log_start_offset),
            PartitionLog(memory_root / "t-0", _CONFIG, clock, had_clean_shutdown=clean,
                         log_start_offset=log_start_offset))


def _answers(plog: PartitionLog) -> list[object]:
    out: list[object] = [plog.log_start_offset, plog.log_end_offset, [s.base_offset for s in plog.segments]]
    for offset in range(plog.log_start_offset, plog.log_end_offset, 7):
        for max_bytes in (1, 250, 5_000):
            out.append(bytes(plog.read(offset, max_bytes)))
    for ts in (0, 1_030, 1_095, 99_999):
        out.append(plog.offset_for_timestamp(ts))
    return out


def _fill(plog: PartitionLog, first: int, count: int) -> None:
    for i in range(first, first + count):
        plog.append(build_batch([b"value-%03d" % i * 20, b"v"], base_timestamp=1_000 + i), leader_epoch=0)


def test_a_log_in_memory_answers_as_one_on_disk(tmp_path: Path, memory_root: Path) -> None:
    clock = ManualClock()
    disk, mem = _logs(tmp_path, memory_root, clock)
    for plog in (disk, mem):
        _fill(plog, 0, 60)
    assert len(mem.segments) > 3
    assert all(type(s) is MemoryLogSegment for s in mem.segments)
    assert all(type(s) is LogSegment for s in disk.segments)
    assert _answers(mem) == _answers(disk)
    assert batch_offsets(bytes(mem.read(10, 10_000)))[0] == (10, 11)

    for plog in (disk, mem):
        plog.truncate_to(75)
        _fill(plog, 200, 10)
        plog.delete_records_before(30)
        plog.roll()
        plog.flush()
    assert _answers(mem) == _answers(disk)
    with pytest.raises(OffsetOutOfRange):
        mem.read(mem.log_end_offset + 1, 100)
    segs = mem.segments
    assert segs[0].store is MEMORY and MEMORY.size(segs[0].log_path) == segs[0].size
    before = _answers(disk)
    for plog in (disk, mem):
        plog.close()

    # Opened again after an unclean shutdown (the log start offset comes from the log dir's
    # checkpoint): every segment is recovered from its bytes.
    disk, mem = _logs(tmp_path, memory_root, clock, clean=False, log_start_offset=30)
    try:
        assert _answers(mem) == _answers(disk) == before
    finally:
        disk.close()
        mem.close()


def test_a_torn_tail_in_memory_is_cut_by_recovery(memory_root: Path) -> None:
    clock = ManualClock()
    plog = PartitionLog(memory_root / "t-0", _CONFIG, clock)
    _fill(plog, 0, 3)
    end = plog.log_end_offset
    path = plog.segments[-1].log_path
    plog.close()
    MEMORY.append(path, b"\0\0\0\x40torn")  # a batch header cut short
    plog = PartitionLog(memory_root / "t-0", _CONFIG, clock, had_clean_shutdown=False)
    try:
        assert plog.log_end_offset == end
        assert MEMORY.size(path) == plog.segments[-1].size
    finally:
        plog.close()


def test_a_deleted_log_leaves_nothing_in_memory(memory_root: Path) -> None:
    plog = PartitionLog(memory_root / "t-0", _CONFIG, ManualClock())
    _fill(plog, 0, 30)
    plog.delete()
    assert MEMORY.listdir(memory_root) == []


def test_a_memory_root_has_no_volume_to_report(memory_root: Path) -> None:
    from kbroker.handlers.describe_log_dirs import volume_space

    assert volume_space(memory_root) == (-1, -1)  # DescribeLogDirs' "unknown"


def test_deleted_segments_are_freed_when_a_manual_clock_passes_the_delete_delay(memory_root: Path) -> None:
    # file.delete.delay.ms runs on the broker's clock, as Kafka's scheduler runs on its Time: a
    # test advancing a ManualClock sees the .deleted segments (and, in memory, their bytes) go.
    import time

    from kbroker.log.manager import LogManager

    clock = ManualClock()
    mgr = LogManager([memory_root], clock, LogConfig(segment_bytes=200, file_delete_delay_ms=60_000))
    try:
        plog = mgr.get_or_create_log("t", 0)
        for i in range(20):
            plog.append(build_batch([b"v%03d" % i * 10], base_timestamp=clock.time_ms()), leader_epoch=0)
        plog.delete_records_before(15)
        deleted = [n for n in MEMORY.listdir(memory_root / "t-0") if n.endswith(".deleted")]
        assert deleted
        clock.advance(59_000)
        time.sleep(0.2)
        assert [n for n in MEMORY.listdir(memory_root / "t-0") if n.endswith(".deleted")] == deleted
        clock.advance(1_000)
        deadline = time.monotonic() + 5
        while any(n.endswith(".deleted") for n in MEMORY.listdir(memory_root / "t-0")):
            assert time.monotonic() < deadline, "the deleted segments outlived file.delete.delay.ms on the clock"
            time.sleep(0.01)
    finally:
        mgr.shutdown()
