"""LeaderEpochCache: Kafka's LeaderEpochFileCache rules and its leader-epoch-checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.log.checkpoint import CheckpointError
from kbroker.log.leader_epoch import (
    LEADER_EPOCH_CHECKPOINT_FILE,
    EpochEntry,
    LeaderEpochCache,
    read_leader_epoch_checkpoint,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / LEADER_EPOCH_CHECKPOINT_FILE


def cache_of(path: Path, *pairs: tuple[int, int]) -> LeaderEpochCache:
    cache = LeaderEpochCache(path)
    for epoch, start in pairs:
        cache.assign(epoch, start)
    return cache


def pairs(cache: LeaderEpochCache) -> list[tuple[int, int]]:
    return [(e.epoch, e.start_offset) for e in cache.entries]


# -- assign -------------------------------------------------------------------------------
def test_empty_cache(path: Path) -> None:
    cache = LeaderEpochCache(path)
    assert cache.latest_epoch == -1 and cache.entries == [] and cache.latest_entry() is None
    assert not path.exists()  # nothing written until something changes


def test_assign_appends_newer_epochs_and_writes_the_file(path: Path) -> None:
    cache = cache_of(path, (2, 6))
    assert cache.latest_epoch == 2 and path.read_text() == "0\n1\n2 6\n"
    assert cache.assign(3, 10)
    assert pairs(cache) == [(2, 6), (3, 10)]
    assert path.read_text() == "0\n2\n2 6\n3 10\n"


def test_assign_same_epoch_at_a_later_offset_changes_nothing(path: Path) -> None:
    cache = cache_of(path, (2, 6))
    before = path.stat().st_mtime_ns
    assert not cache.assign(2, 9)
    assert pairs(cache) == [(2, 6)] and path.stat().st_mtime_ns == before


def test_assign_same_epoch_at_a_lower_offset_moves_its_start(path: Path) -> None:
    cache = cache_of(path, (1, 2), (2, 6))
    assert cache.assign(2, 4)
    assert pairs(cache) == [(1, 2), (2, 4)]


def test_assign_lower_epoch_truncates_the_newer_ones(path: Path) -> None:
    # Kafka: entries with an epoch >= the new one (or a start >= its start) contradict it.
    cache = cache_of(path, (1, 2), (3, 6), (5, 9))
    assert cache.assign(4, 12)
    assert pairs(cache) == [(1, 2), (3, 6), (4, 12)]
    assert cache.latest_epoch == 4


def test_assign_newer_epoch_at_a_lower_offset_drops_entries_starting_after_it(path: Path) -> None:
    cache = cache_of(path, (1, 2), (2, 6), (3, 9))
    assert cache.assign(4, 7)
    assert pairs(cache) == [(1, 2), (2, 6), (4, 7)]


def test_assign_at_the_same_offset_replaces_an_epoch_without_data(path: Path) -> None:
    cache = cache_of(path, (1, 0), (2, 5))
    assert cache.assign(3, 5)
    assert pairs(cache) == [(1, 0), (3, 5)]


@pytest.mark.parametrize("epoch,start", [(-1, 0), (0, -1)])
def test_assign_refuses_negative_values(path: Path, epoch: int, start: int) -> None:
    cache = LeaderEpochCache(path)
    with pytest.raises(ValueError):
        cache.assign(epoch, start)
    assert cache.entries == [] and not path.exists()


# -- end_offset_for -----------------------------------------------------------------------
def test_end_offset_for_undefined_or_unknown_epochs(path: Path) -> None:
    assert LeaderEpochCache(path).end_offset_for(0, 10) == (-1, -1)  # empty
    cache = cache_of(path, (1, 0), (3, 10), (6, 20))
    assert cache.end_offset_for(-1, 30) == (-1, -1)
    assert cache.end_offset_for(7, 30) == (-1, -1)  # above the latest


def test_end_offset_for_the_latest_epoch_is_the_log_end(path: Path) -> None:
    cache = cache_of(path, (1, 0), (3, 10), (6, 20))
    assert cache.end_offset_for(6, 30) == (6, 30)


def test_end_offset_for_with_gaps(path: Path) -> None:
    cache = cache_of(path, (1, 0), (3, 10), (6, 20))
    assert cache.end_offset_for(1, 30) == (1, 10)
    assert cache.end_offset_for(2, 30) == (1, 10)  # epoch 2 never wrote: epoch 1's end
    assert cache.end_offset_for(3, 30) == (3, 20)
    assert cache.end_offset_for(4, 30) == (3, 20)
    assert cache.end_offset_for(5, 30) == (3, 20)


def test_end_offset_for_an_epoch_below_every_entry(path: Path) -> None:
    # The requested epoch's data is gone: the first known epoch's start, with the requested epoch.
    cache = cache_of(path, (4, 15), (6, 20))
    assert cache.end_offset_for(2, 30) == (2, 15)


def test_epoch_for_offset(path: Path) -> None:
    cache = cache_of(path, (1, 5), (3, 10))
    assert [cache.epoch_for_offset(o) for o in (0, 5, 9, 10, 99)] == [-1, 1, 1, 3, 3]


# -- truncation ---------------------------------------------------------------------------
def test_truncate_from_end(path: Path) -> None:
    cache = cache_of(path, (1, 0), (3, 10), (6, 20))
    assert not cache.truncate_from_end(21)  # every entry starts before
    assert not cache.truncate_from_end(-1)
    assert cache.truncate_from_end(20)
    assert pairs(cache) == [(1, 0), (3, 10)] and cache.latest_epoch == 3
    assert cache.truncate_from_end(5)
    assert pairs(cache) == [(1, 0)]
    assert read_leader_epoch_checkpoint(path) == [EpochEntry(1, 0)]
    assert cache.truncate_from_end(0)
    assert cache.entries == [] and cache.latest_epoch == -1
    assert path.read_text() == "0\n0\n"


def test_truncate_from_start(path: Path) -> None:
    cache = cache_of(path, (1, 5), (3, 10), (6, 20))
    assert not cache.truncate_from_start(4)  # below the first entry
    assert not cache.truncate_from_start(5)  # at it: kept as it is
    assert cache.truncate_from_start(7)
    assert pairs(cache) == [(1, 7), (3, 10), (6, 20)]
    assert cache.truncate_from_start(10)  # exactly at an entry: the one before goes
    assert pairs(cache) == [(3, 10), (6, 20)]
    assert cache.truncate_from_start(25)  # past the last entry
    assert pairs(cache) == [(6, 25)] and cache.latest_epoch == 6
    assert read_leader_epoch_checkpoint(path) == [EpochEntry(6, 25)]
    assert cache.truncate_from_start(30, write=False)
    assert pairs(cache) == [(6, 30)] and read_leader_epoch_checkpoint(path) == [EpochEntry(6, 25)]


def test_clear(path: Path) -> None:
    cache = cache_of(path, (1, 5))
    cache.clear()
    assert cache.entries == [] and cache.latest_epoch == -1 and path.read_text() == "0\n0\n"


# -- the file ------------------------------------------------------------------------------
def test_file_round_trip(path: Path) -> None:
    cache_of(path, (0, 0), (2, 17), (5, 1234567890123))
    loaded = LeaderEpochCache.load(path)
    assert pairs(loaded) == [(0, 0), (2, 17), (5, 1234567890123)] and loaded.latest_epoch == 5
    assert not (path.parent / (path.name + ".tmp")).exists()


def test_load_of_a_missing_file_is_empty(path: Path) -> None:
    assert read_leader_epoch_checkpoint(path) is None
    assert LeaderEpochCache.load(path).entries == []


def test_kafka_written_file_is_read(path: Path) -> None:
    # Kafka splits lines on whitespace; blank trailing lines are tolerated.
    path.write_text("0\n2\n0  0\n1 42\n\n")
    assert read_leader_epoch_checkpoint(path) == [EpochEntry(0, 0), EpochEntry(1, 42)]


@pytest.mark.parametrize("text", [
    "",  # torn
    "1\n1\n0 0\n",  # unknown version
    "0\nx\n",  # bad count
    "0\n2\n0 0\n",  # count mismatch
    "0\n1\n0\n",  # one field
    "0\n1\n0 a\n",  # not a number
    "0\n1\n0 0 0\n",  # three fields
    "0\n2\n3 0\n2 5\n",  # epochs not increasing
    "0\n2\n1 5\n2 4\n",  # offsets going down
    "0\n1\n-1 0\n",  # negative epoch
])
def test_corrupt_file_is_refused(path: Path, text: str) -> None:
    path.write_text(text)
    with pytest.raises(CheckpointError):
        read_leader_epoch_checkpoint(path)
    with pytest.raises(CheckpointError):
        LeaderEpochCache.load(path)


def test_binary_garbage_is_refused(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError):
        read_leader_epoch_checkpoint(path)


def test_failed_write_leaves_the_old_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = cache_of(path, (1, 0))

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("kbroker.fs.atomic_write", fail)
    with pytest.raises(OSError):
        cache.assign(2, 5)
    assert path.read_text() == "0\n1\n1 0\n"
