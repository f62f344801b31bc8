"""The log cleaner's scheduling: choosing logs, checkpoints, pausing, threads, worker processes.

Most tests give the cleaner a recording pass (``Recorder``) so what is chosen, when, and what
happens around a pass can be checked exactly; the passes over real data are in
``test_manager_clean.py``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbroker.clock import ManualClock
from kbroker.common import CleaningSummary, TopicPartition
from kbroker.log import LogConfig, LogManager, OffsetCheckpointFile, PartitionLog
from kbroker.log.cleaner.manager import (
    CLEANER_CHECKPOINT_FILE,
    CleanerConfig,
    LogCleaner,
    cleanable_offsets,
    log_to_clean,
    max_compaction_delay,
)
from kbroker.records.builder import build_batch

T0 = 1_700_000_000_000
COMPACT = LogConfig(cleanup_policy="compact", segment_bytes=400, min_cleanable_dirty_ratio=0.5)


def put(plog: PartitionLog, key: bytes, value: bytes | None = b"v" * 40, ts: int = T0, **kw: Any) -> int:
    """Append one keyed record; returns its offset."""
    return plog.append(build_batch([(key, value, (), ts)], **kw), leader_epoch=0).base_offset


def fill(plog: PartitionLog, n: int, ts: int = T0) -> None:
    for i in range(n):
        put(plog, b"k%d" % (i % 5), ts=ts)


@dataclasses.dataclass
class Result:
    end_offset: int
    summary: CleaningSummary


class Recorder:
    """A pass that records its calls, runs ``job`` through the cleaner's ``run`` and "swaps"
    (records) only if ``run`` returned; its checkpoint is the first uncleanable offset."""

    def __init__(self, job: Any = None) -> None:
        self.job = job
        self.calls: list[tuple[str, int, int, dict[str, Any]]] = []
        self.swapped: list[str] = []

    def __call__(self, plog: PartitionLog, *, first_dirty_offset: int, first_uncleanable_offset: int,
                 now_ms: int, dedupe_buffer_bytes: int, io_buffer_bytes: int,
                 io_max_bytes_per_second: float | None = None, run: Callable[[Any], Any] | None = None,
                 aborted: Callable[[], bool] = lambda: False, load_factor: float = 0.9) -> Result:
        self.calls.append((plog.name, first_dirty_offset, first_uncleanable_offset,
                           {"dedupe": dedupe_buffer_bytes, "io": io_buffer_bytes, "rate": io_max_bytes_per_second,
                            "load_factor": load_factor}))
        assert run is not None
        run(self.job)
        self.swapped.append(plog.name)
        return Result(first_uncleanable_offset, CleaningSummary(
            ended_ms=now_ms, duration_ms=5, segments_before=3, segments_after=1, bytes_before=1000,
            bytes_after=100, records_read=20, records_retained=5, cleaned_up_to=first_uncleanable_offset))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


class Logs:
    """Partition logs in one log dir, as a LogManager would host them."""

    def __init__(self, root: Path, clock: ManualClock) -> None:
        self.root = root
        self.clock = clock
        self.logs: dict[TopicPartition, PartitionLog] = {}

    def open(self, topic: str, config: LogConfig = COMPACT, partition: int = 0) -> PartitionLog:
        plog = PartitionLog(self.root / f"{topic}-{partition}", config, self.clock)
        self.logs[TopicPartition(topic, partition)] = plog
        return plog

    def cleaner(self, **kw: Any) -> LogCleaner:
        kw.setdefault("run_in_process", False)
        kw.setdefault("job_fn", lambda job: job)
        return LogCleaner([self.root], logs=lambda: dict(self.logs), log_dir_of=lambda t, p: self.root,
                          clock=self.clock, **kw)

    def checkpoint(self) -> dict[TopicPartition, int]:
        return OffsetCheckpointFile(self.root / CLEANER_CHECKPOINT_FILE).read()


@pytest.fixture
def logs(tmp_path: Path, clock: ManualClock) -> Iterator[Logs]:
    lg = Logs(tmp_path, clock)
    yield lg
    for plog in lg.logs.values():
        plog.close()


# -- the cleanable range ----------------------------------------------------------------------

def test_range_ends_at_the_active_segment(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t")
    fill(plog, 20)
    active = plog.active_segment.base_offset
    assert 0 < active < plog.log_end_offset
    assert cleanable_offsets(plog, None, clock.time_ms()) == (0, active, False)
    assert cleanable_offsets(plog, 3, clock.time_ms()) == (3, active, False)


def test_invalid_checkpoints_reset_to_the_log_start(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t")
    fill(plog, 20)
    plog.delete_records_before(plog.segments[1].base_offset)
    start = plog.log_start_offset
    assert start > 0
    assert cleanable_offsets(plog, start - 1, clock.time_ms())[::2] == (start, True)
    assert cleanable_offsets(plog, plog.log_end_offset + 1, clock.time_ms())[::2] == (start, True)
    assert cleanable_offsets(plog, plog.log_end_offset, clock.time_ms())[::2] == (plog.log_end_offset, False)


def test_range_stops_at_an_open_transaction(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t")
    fill(plog, 5)
    txn_start = put(plog, b"t", producer_id=7, producer_epoch=0, base_sequence=0, transactional=True)
    fill(plog, 20)
    assert plog.last_stable_offset == txn_start
    assert cleanable_offsets(plog, None, clock.time_ms())[1] == txn_start


def test_min_compaction_lag_keeps_young_segments(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t", dataclasses.replace(COMPACT, min_compaction_lag_ms=60_000))
    fill(plog, 10, ts=T0 - 120_000)  # old enough
    young = plog.active_segment.base_offset
    fill(plog, 10, ts=T0 - 1_000)
    first_young = next(s.base_offset for s in plog.segments if s.max_timestamp > T0 - 60_000)
    assert young <= first_young < plog.active_segment.base_offset
    assert cleanable_offsets(plog, None, clock.time_ms())[1] == first_young
    clock.advance(120_000)
    assert cleanable_offsets(plog, None, clock.time_ms())[1] == plog.active_segment.base_offset


def test_ratio_counts_whole_segments(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    segs = plog.segments
    first_dirty = segs[2].base_offset
    ltc = log_to_clean(TopicPartition("t", 0), plog, first_dirty, segs[-1].base_offset, False)
    assert ltc.clean_bytes == segs[0].size + segs[1].size
    assert ltc.cleanable_bytes == sum(s.size for s in segs[2:-1])
    assert ltc.cleanable_ratio == pytest.approx(ltc.cleanable_bytes / (ltc.clean_bytes + ltc.cleanable_bytes))
    # An uncleanable offset inside a segment rounds down to that segment's start.
    inside = ltc.first_uncleanable_offset - 1
    assert log_to_clean(TopicPartition("t", 0), plog, first_dirty, inside, False).first_uncleanable_offset \
        == segs[-2].base_offset


def test_max_compaction_delay(logs: Logs, clock: ManualClock) -> None:
    plog = logs.open("t", dataclasses.replace(COMPACT, max_compaction_lag_ms=10_000))
    fill(plog, 20, ts=T0 - 15_000)
    assert max_compaction_delay(plog, 0, clock.time_ms()) == 5_000
    assert max_compaction_delay(plog, plog.active_segment.base_offset, clock.time_ms()) == 0  # nothing dirty
    never = logs.open("u")
    fill(never, 20, ts=T0 - 10**9)
    assert max_compaction_delay(never, 0, clock.time_ms()) == 0


# -- choosing the log --------------------------------------------------------------------------

def test_the_filthiest_log_goes_first(logs: Logs) -> None:
    a, b = logs.open("a"), logs.open("b")
    fill(a, 30)
    fill(b, 30)
    cleaner = logs.cleaner(clean=Recorder())
    # b's head is clean: a's ratio is higher.
    cleaner.update_checkpoints(logs.root, (TopicPartition("b", 0), b.segments[3].base_offset))
    first = cleaner.grab_filthiest()
    assert first is not None and first.tp == TopicPartition("a", 0)
    assert cleaner.state_of(first.tp) == "in-progress"
    # a is in progress, and b's ratio is above 0.5 too.
    second = cleaner.grab_filthiest()
    assert second is not None and second.tp == TopicPartition("b", 0)
    assert cleaner.grab_filthiest() is None
    cleaner.done_cleaning(first.tp, logs.root, 5)
    cleaner.done_cleaning(second.tp, logs.root, None)
    assert cleaner.state_of(first.tp) is None
    assert logs.checkpoint() == {TopicPartition("a", 0): 5, TopicPartition("b", 0): b.segments[3].base_offset}


def test_ratio_threshold_and_policy(logs: Logs) -> None:
    plog = logs.open("t", dataclasses.replace(COMPACT, min_cleanable_dirty_ratio=0.9))
    fill(plog, 30)
    logs.open("plain", LogConfig(segment_bytes=400))
    fill(logs.logs[TopicPartition("plain", 0)], 30)
    cleaner = logs.cleaner(clean=Recorder())
    cp = plog.segments[1].base_offset  # some of the log is clean: ratio < 0.9
    cleaner.update_checkpoints(logs.root, (TopicPartition("t", 0), cp))
    assert cleaner.grab_filthiest() is None
    plog.update_config(dataclasses.replace(plog.config, min_cleanable_dirty_ratio=0.01))
    ltc = cleaner.grab_filthiest()
    assert ltc is not None and ltc.tp == TopicPartition("t", 0) and ltc.first_dirty_offset == cp


def test_ratio_must_exceed_the_minimum(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    cleaner = logs.cleaner(clean=Recorder())
    segs = plog.segments
    # Choose a checkpoint, then set the minimum to exactly that ratio: Kafka needs more.
    cleaner.update_checkpoints(logs.root, (TopicPartition("t", 0), segs[2].base_offset))
    ratio = log_to_clean(TopicPartition("t", 0), plog, segs[2].base_offset, segs[-1].base_offset, False).cleanable_ratio
    plog.update_config(dataclasses.replace(plog.config, min_cleanable_dirty_ratio=ratio))
    assert cleaner.grab_filthiest() is None


def test_max_compaction_lag_forces_a_pass_below_the_ratio(logs: Logs, clock: ManualClock) -> None:
    lazy = logs.open("lazy", dataclasses.replace(COMPACT, min_cleanable_dirty_ratio=0.99,
                                                  max_compaction_lag_ms=60_000))
    fill(lazy, 30, ts=T0 - 1_000)
    cleaner = logs.cleaner(clean=Recorder())
    cleaner.update_checkpoints(logs.root, (TopicPartition("lazy", 0), lazy.segments[1].base_offset))
    assert cleaner.grab_filthiest() is None
    clock.advance(60_000)
    ltc = cleaner.grab_filthiest()
    assert ltc is not None and ltc.need_compaction_now and ltc.tp == TopicPartition("lazy", 0)


def test_paused_and_failed_logs_are_skipped(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    cleaner = logs.cleaner(clean=Recorder(), uncleanable_backoff_ms=50)
    tp = TopicPartition("t", 0)
    cleaner.abort_and_pause(tp)
    cleaner.abort_and_pause(tp)
    assert cleaner.state_of(tp) == "paused(2)"
    assert cleaner.grab_filthiest() is None
    cleaner.resume(tp)
    assert cleaner.grab_filthiest() is None
    cleaner.resume(tp)
    with pytest.raises(RuntimeError):
        cleaner.resume(tp)
    ltc = cleaner.grab_filthiest()
    assert ltc is not None
    with pytest.raises(RuntimeError):  # in progress: only the pass itself ends that
        cleaner.resume(tp)
    cleaner.done_cleaning(tp, logs.root, None)


def test_empty_logs_are_not_chosen(logs: Logs) -> None:
    logs.open("t")
    assert logs.cleaner(clean=Recorder()).grab_filthiest() is None


# -- passes and checkpoints --------------------------------------------------------------------

def test_a_pass_checkpoints_and_sets_last_cleaning(logs: Logs, caplog: pytest.LogCaptureFixture) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    rec = Recorder()
    cleaner = logs.cleaner(clean=rec, config=CleanerConfig(threads=2, dedupe_buffer_size=1000, io_buffer_size=400,
                                                           io_max_bytes_per_second=1e6))
    caplog.set_level("INFO", logger="kbroker.log.cleaner.manager")
    assert cleaner.run_now() == 1
    active = plog.active_segment.base_offset
    assert rec.calls == [("t-0", 0, active, {"dedupe": 500, "io": 100, "rate": 5e5, "load_factor": 0.9})]
    assert logs.checkpoint() == {TopicPartition("t", 0): active}
    assert plog.last_cleaning is not None and plog.last_cleaning.cleaned_up_to == active
    line = next(r.getMessage() for r in caplog.records if "cleaned t-0" in r.getMessage())
    assert "segments 3 -> 1" in line and "bytes 1000 -> 100" in line and "records read 20, retained 5" in line
    # Nothing new is dirty: no second pass.
    assert cleaner.run_now() == 0
    # A new cleaner reads the checkpoint at start-up.
    rec2 = Recorder()
    again = logs.cleaner(clean=rec2)
    assert again.all_checkpoints() == {TopicPartition("t", 0): active}
    fill(plog, 30)
    assert again.run_now() == 1
    assert rec2.calls[0][1] == active


def test_checkpoint_drops_deleted_partitions_and_fixes_bad_entries(logs: Logs) -> None:
    a, b = logs.open("a"), logs.open("b")
    fill(a, 30)
    fill(b, 30)
    OffsetCheckpointFile(logs.root / CLEANER_CHECKPOINT_FILE).write({
        TopicPartition("a", 0): 10**6, TopicPartition("b", 0): 2, TopicPartition("gone", 0): 5})
    cleaner = logs.cleaner(clean=Recorder())
    del logs.logs[TopicPartition("b", 0)]
    ltc = cleaner.grab_filthiest()
    assert ltc is not None and ltc.tp == TopicPartition("a", 0) and ltc.first_dirty_offset == 0
    # The reset was written at once, without the partitions no longer hosted.
    assert logs.checkpoint() == {TopicPartition("a", 0): 0}
    cleaner.done_cleaning(ltc.tp, logs.root, None)
    b.close()


def test_an_unreadable_checkpoint_means_a_full_clean(logs: Logs) -> None:
    (logs.root / CLEANER_CHECKPOINT_FILE).write_text("0\n3\nx 0 1\n")
    plog = logs.open("t")
    fill(plog, 30)
    rec = Recorder()
    assert logs.cleaner(clean=rec).run_now() == 1
    assert rec.calls[0][1] == 0


def test_a_failed_pass_leaves_the_log_alone_for_a_while(logs: Logs, caplog: pytest.LogCaptureFixture) -> None:
    plog = logs.open("t")
    fill(plog, 30)

    def broken(plog: PartitionLog, **kw: Any) -> Result:
        raise OSError("disk on fire")

    cleaner = logs.cleaner(clean=broken, uncleanable_backoff_ms=200)
    assert cleaner.run_now() == 1
    tp = TopicPartition("t", 0)
    assert cleaner.is_uncleanable(tp) and cleaner.state_of(tp) is None
    assert logs.checkpoint() == {}
    assert "disk on fire" in caplog.text
    assert cleaner.grab_filthiest() is None
    time.sleep(0.25)  # the back-off itself is what is tested
    ltc = cleaner.grab_filthiest()
    assert ltc is not None and ltc.tp == tp
    cleaner.done_cleaning(tp, logs.root, None)


# -- aborting ----------------------------------------------------------------------------------

class Gate:
    """A job that blocks until released (to hold a pass open)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, job: Any) -> Any:
        self.entered.set()
        assert self.release.wait(10)
        return job


def test_abort_waits_for_the_pass_and_discards_it(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    gate, rec = Gate(), Recorder()
    cleaner = logs.cleaner(clean=rec, job_fn=gate)
    worker = threading.Thread(target=cleaner.run_now)
    worker.start()
    assert gate.entered.wait(5)
    tp = TopicPartition("t", 0)
    aborter = threading.Thread(target=cleaner.abort_and_pause, args=(tp,))
    aborter.start()
    time.sleep(0.2)
    assert aborter.is_alive() and cleaner.state_of(tp) == "aborted"
    gate.release.set()
    aborter.join(5)
    worker.join(5)
    assert not aborter.is_alive() and not worker.is_alive()
    assert cleaner.state_of(tp) == "paused(1)"
    assert rec.swapped == [] and logs.checkpoint() == {} and plog.last_cleaning is None
    cleaner.resume(tp)
    assert cleaner.state_of(tp) is None


@pytest.fixture
def manager(tmp_path: Path, clock: ManualClock) -> Iterator[LogManager]:
    lm = LogManager([tmp_path / "d"], clock, COMPACT, cleaner_in_process=False)
    yield lm
    lm.shutdown()


def test_deleting_a_partition_aborts_its_pass(manager: LogManager) -> None:
    plog = manager.get_or_create_log("t", 0)
    fill(plog, 30)
    gate, rec = Gate(), Recorder()
    manager.cleaner._clean = rec
    manager.cleaner._job_fn = gate
    worker = threading.Thread(target=manager.run_cleaner)
    worker.start()
    assert gate.entered.wait(5)
    deleter = threading.Thread(target=manager.delete_partition, args=("t", 0))
    deleter.start()
    time.sleep(0.2)
    assert deleter.is_alive()  # waits for the pass, as Kafka's abortCleaning
    assert manager.get_log("t", 0) is plog
    gate.release.set()
    deleter.join(5)
    worker.join(5)
    assert manager.get_log("t", 0) is None and rec.swapped == []
    assert manager.cleaner.state_of(TopicPartition("t", 0)) is None
    assert manager.cleaner.all_checkpoints() == {}


def test_deleting_a_cleaned_partition_drops_its_checkpoint(manager: LogManager) -> None:
    for p in (0, 1):
        fill(manager.get_or_create_log("t", p), 30)
    manager.cleaner._clean = Recorder()
    manager.cleaner._job_fn = lambda job: job
    assert manager.run_cleaner() == 2
    d = manager.log_dirs[0]
    assert set(OffsetCheckpointFile(d / CLEANER_CHECKPOINT_FILE).read()) == {TopicPartition("t", 0), TopicPartition("t", 1)}
    manager.delete_partition("t", 0)
    assert set(OffsetCheckpointFile(d / CLEANER_CHECKPOINT_FILE).read()) == {TopicPartition("t", 1)}


def test_truncation_lowers_the_checkpoint(manager: LogManager) -> None:
    plog = manager.get_or_create_log("t", 0)
    fill(plog, 30)
    manager.cleaner._clean = Recorder()
    manager.cleaner._job_fn = lambda job: job
    assert manager.run_cleaner() == 1
    tp = TopicPartition("t", 0)
    assert manager.cleaner.all_checkpoints()[tp] == plog.active_segment.base_offset
    manager.truncate_to("t", 0, 7)
    assert plog.log_end_offset == 7
    assert manager.cleaner.all_checkpoints()[tp] == plog.active_segment.base_offset <= 7
    assert manager.cleaner.state_of(tp) is None


# -- threads and worker processes --------------------------------------------------------------

def _alive(pid: int) -> bool:
    """Whether a worker process (a child of the forkserver, which reaps it) still runs."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for(cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_threads_clean_when_woken_and_follow_reconfiguration(logs: Logs) -> None:
    plog = logs.open("t")
    rec = Recorder()
    cleaner = logs.cleaner(clean=rec, config=CleanerConfig(threads=1, backoff_ms=600_000))
    cleaner.start()
    try:
        wait_for(lambda: len(cleaner._threads) == 1)
        fill(plog, 30)
        cleaner.wakeup()  # ends the ten-minute back-off
        wait_for(lambda: rec.swapped == ["t-0"])
        cleaner.reconfigure(CleanerConfig(threads=3, backoff_ms=600_000))
        assert len([t for t in cleaner._threads if t.is_alive()]) == 3
        old = list(cleaner._threads)
        cleaner.reconfigure(CleanerConfig(threads=0, backoff_ms=600_000))
        wait_for(lambda: not any(t.is_alive() for t in old))
        fill(plog, 30)
        cleaner.wakeup()
        time.sleep(0.2)
        assert rec.swapped == ["t-0"]  # no thread left to clean
        cleaner.reconfigure(CleanerConfig(threads=1, backoff_ms=600_000, dedupe_buffer_size=4096))
        cleaner.wakeup()
        wait_for(lambda: len(rec.swapped) == 2)
        assert rec.calls[-1][3]["dedupe"] == 4096
    finally:
        cleaner.shutdown()
    assert not any(t.is_alive() for t in cleaner._threads)


def test_disabled_cleaner_starts_no_threads(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    rec = Recorder()
    cleaner = logs.cleaner(clean=rec, config=CleanerConfig(enabled=False, backoff_ms=10))
    cleaner.start()
    time.sleep(0.1)
    assert cleaner._threads == [] and rec.calls == []
    cleaner.shutdown()


def test_shutdown_discards_a_long_pass_in_a_worker(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    rec = Recorder(job=60)  # the worker sleeps a minute
    cleaner = logs.cleaner(clean=rec, run_in_process=True, job_fn=time.sleep,
                           config=CleanerConfig(threads=1, backoff_ms=10))
    cleaner.start()
    wait_for(lambda: cleaner.worker_pids(), timeout=30)
    workers = cleaner.worker_pids()
    wait_for(lambda: cleaner.state_of(TopicPartition("t", 0)) == "in-progress")
    started = time.monotonic()
    cleaner.shutdown()
    assert time.monotonic() - started < 3
    assert rec.swapped == [] and logs.checkpoint() == {} and plog.last_cleaning is None
    wait_for(lambda: not any(_alive(pid) for pid in workers))


def test_a_dead_worker_fails_only_its_pass(logs: Logs, caplog: pytest.LogCaptureFixture) -> None:
    a = logs.open("a")
    fill(a, 30)
    rec = Recorder(job=3)  # os._exit(3): the worker process dies mid-pass
    cleaner = logs.cleaner(clean=rec, run_in_process=True, job_fn=os._exit, uncleanable_backoff_ms=60_000)
    try:
        assert cleaner.run_now() == 1
        assert cleaner.is_uncleanable(TopicPartition("a", 0))
        assert rec.swapped == [] and logs.checkpoint() == {}
        assert "cleaning of a-0 failed (WorkerDied" in caplog.text
        # The next pass gets a new pool.
        b = logs.open("b")
        fill(b, 30)
        rec.job = 0.01
        cleaner._job_fn = time.sleep
        assert cleaner.run_now() == 1
        assert rec.swapped == ["b-0"]
    finally:
        cleaner.shutdown()


def test_abort_reaches_a_pass_running_in_a_worker(logs: Logs) -> None:
    plog = logs.open("t")
    fill(plog, 30)
    rec = Recorder(job=60)
    cleaner = logs.cleaner(clean=rec, run_in_process=True, job_fn=time.sleep)
    worker = threading.Thread(target=cleaner.run_now)
    worker.start()
    try:
        tp = TopicPartition("t", 0)
        wait_for(lambda: cleaner.worker_pids(), timeout=30)
        workers = cleaner.worker_pids()
        started = time.monotonic()
        cleaner.abort_and_pause(tp)
        assert time.monotonic() - started < 2
        # The worker running the aborted job was ended with it.
        wait_for(lambda: not any(_alive(pid) for pid in workers))
        assert cleaner.state_of(tp) == "paused(1)" and rec.swapped == []
        worker.join(5)
        assert not worker.is_alive()
    finally:
        cleaner.shutdown()


def test_retention_of_compacted_logs_runs_between_passes_while_they_are_marked(logs: Logs) -> None:
    compacted = logs.open("c", dataclasses.replace(COMPACT, cleanup_policy="compact,delete"))
    logs.open("plain", LogConfig(segment_bytes=400))
    seen: list[tuple[str, str | None]] = []
    cleaner = logs.cleaner(clean=Recorder())

    def retention(plog: PartitionLog) -> int:
        seen.append((plog.name, cleaner.state_of(TopicPartition(plog.topic, plog.partition))))
        if plog.name == "c-0":
            raise OSError("retention failed")  # logged; the others still get theirs
        return 0

    cleaner.delete_old_segments = retention
    other = logs.open("d")
    fill(compacted, 30)
    ltc, cleaned = cleaner.clean_filthiest()  # c is cleaned, then retention runs for c and d (not plain)
    assert ltc is not None and ltc.tp == TopicPartition("c", 0) and cleaned
    assert sorted(seen) == [("c-0", "in-progress"), ("d-0", "in-progress")]
    assert cleaner.state_of(TopicPartition("c", 0)) is None and cleaner.state_of(TopicPartition("d", 0)) is None
    cleaner.abort_and_pause(TopicPartition("d", 0))
    seen.clear()
    cleaner.clean_filthiest()
    assert seen == [("c-0", "in-progress")]  # a paused log is left alone
    cleaner.resume(TopicPartition("d", 0))
    assert other.log_end_offset == 0


def test_a_pass_aborted_once_its_job_is_done_leaves_no_cleaned_files(logs: Logs) -> None:
    # The job wrote its .cleaned files; an abort (a truncation) arriving before the swap voids
    # them, and they must not stay beside the log (a whole cleaned copy, until a restart).
    from kbroker.log.cleaner.clean import run_clean_job

    plog = logs.open("t")
    fill(plog, 30)
    entered, release = threading.Event(), threading.Event()

    def job_fn(job: Any) -> Any:
        out = run_clean_job(job)
        entered.set()
        release.wait(5)
        return out

    cleaner = logs.cleaner(clean=None, job_fn=job_fn)
    worker = threading.Thread(target=cleaner.run_now)
    worker.start()
    assert entered.wait(10)
    assert list(plog.dir.glob("*.cleaned"))
    tp = TopicPartition("t", 0)
    aborter = threading.Thread(target=cleaner.abort_and_pause, args=(tp,))
    aborter.start()
    while cleaner.state_of(tp) != "aborted":
        time.sleep(0.01)
    release.set()
    aborter.join(5)
    worker.join(5)
    assert cleaner.state_of(tp) == "paused(1)"
    assert not list(plog.dir.glob("*.cleaned"))


def test_a_workers_exception_reaches_the_broker_even_when_it_cannot_be_rebuilt_as_is() -> None:
    """BatchError (a corrupt segment) pickles but cannot be unpickled (its ``__init__`` needs
    the error code): the pass used to fail as "WorkerDied ... no outcome", hiding the cause."""
    import functools

    from kbroker.log.cleaner.worker import WorkerDied, WorkerProcess
    from kbroker.records.recompress import record_prefixes

    worker = WorkerProcess(functools.partial(record_prefixes, count=1), b"\x00")  # a record of length 0
    wait_for(lambda: worker.poll(0.1))
    with pytest.raises(Exception) as err:
        worker.result()
    assert not isinstance(err.value, WorkerDied)
    assert "BatchError: Invalid record 0 in the batch: bad record size 0" in str(err.value)
