"""Swapping cleaned segments in: crash safety at every rename, ``.swap`` recovery at load, aborts,
concurrent retention, worker processes and throttling."""

from __future__ import annotations

import dataclasses
import multiprocessing
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from cleaner_helpers import all_records, append, clean, expected_compaction, recovery_accepts

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, PartitionLog
from kbroker.log.cleaner import swap
from kbroker.log.cleaner.clean import CleaningAborted, CleanJob, CleanOutput, Throttler, run_clean_job
from kbroker.log.segment import LogSegment

MakeLog = Callable[..., PartitionLog]
CONFIG = dataclasses.replace(LogConfig(), segment_bytes=2_000, delete_retention_ms=0, index_interval_bytes=100)


class Crash(BaseException):
    """The process "dies" here (nothing may catch it)."""


def build_log(directory: Path, clock: ManualClock) -> list[tuple[int, bytes | None, bytes | None]]:
    """A closed log of about 15 small segments (rolled every 4 batches: several per cleaning
    group), with an aborted transaction; returns its records."""
    plog = PartitionLog(directory, CONFIG, clock)
    for i in range(60):
        if i == 30:
            append(plog, [(b"k1", b"aborted")], producer_id=5, producer_epoch=0, base_sequence=0, transactional=True)
            plog.append_marker(5, 0, 0, False, leader_epoch=0)
        # Unique keys first (the first cleaned group keeps them, with index entries), then repeats.
        append(plog, [(b"u%d" % i if i < 24 else b"k%d" % (i % 8), b"v%d" % i)])
        if i % 4 == 3:
            plog.roll()
    append(plog, [(b"last", b"1")])
    records = all_records(plog)
    plog.close()
    return records


def open_log(directory: Path, clock: ManualClock, *, crashed: bool = False, recovery_point: int = 0) -> PartitionLog:
    return PartitionLog(directory, CONFIG, clock, had_clean_shutdown=not crashed, recovery_point=recovery_point)


def aborted_txns(plog: PartitionLog) -> list[tuple[int, int, int, int]]:
    """Every ``.txnindex`` entry of the log, in order."""
    return [tuple(t) for seg in plog.segments for t in seg.txn_index.entries()]  # type: ignore[misc]


@pytest.fixture
def count_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int | None], list[str]]]:
    """Count (and optionally crash at) the renames of a swap: the ``.cleaned``/``.swap`` renames
    and the old segments' renames to ``.deleted``."""
    real_rename = swap.rename
    real_suffixes = LogSegment.change_file_suffixes
    steps: list[str] = []
    crash_at: list[int | None] = [None]

    def step(what: str) -> None:
        if crash_at[0] is not None and len(steps) == crash_at[0]:
            raise Crash(what)
        steps.append(what)

    def rename(src: Path, dst: Path) -> None:
        step(f"{src.name} -> {dst.name}")
        real_rename(src, dst)

    def change_file_suffixes(self: LogSegment, old: str, new: str) -> None:
        step(f"{self.base_offset} {old!r} -> {new!r}")
        real_suffixes(self, old, new)

    monkeypatch.setattr(swap, "rename", rename)
    monkeypatch.setattr(LogSegment, "change_file_suffixes", change_file_suffixes)

    def arm(at: int | None) -> list[str]:
        steps.clear()
        crash_at[0] = at
        return steps

    yield arm


def test_a_crash_at_any_step_of_the_swap_leaves_a_consistent_log(
        tmp_path: Path, clock: ManualClock, count_steps: Callable[[int | None], list[str]]) -> None:
    original = tmp_path / "orig" / "t-0"
    records = build_log(original, clock)
    # The uninterrupted pass: how many renames it makes and what it keeps.
    reference = tmp_path / "ref" / "t-0"
    shutil.copytree(original, reference)
    steps = count_steps(None)
    plog = open_log(reference, clock)
    end = plog.active_segment.base_offset
    clean(plog, clock)
    cleaned = all_records(plog)
    txns = aborted_txns(plog)
    plog.close()
    # The ABORT marker stays (its data went in this pass), so its transaction stays indexed.
    assert len(txns) == 1
    assert cleaned == expected_compaction([r for r in records if r[2] != b"aborted"], end)
    n = len(steps)
    assert n > 20 and any(".deleted" in s for s in steps) and any(".swap" in s for s in steps)
    for k in range(n):
        work = tmp_path / f"crash{k}" / "t-0"
        shutil.copytree(original, work)
        count_steps(k)
        plog = open_log(work, clock)
        with pytest.raises(Crash):
            clean(plog, clock)
        count_steps(None)
        del plog  # the process died: nothing is closed or flushed
        # The recovery point was checkpointed at the log end: only the active segment is
        # recovered, the (cleaned or not) segments must be right as the swap left them.
        again = open_log(work, clock, crashed=True, recovery_point=records[-1][0] + 1)
        got = all_records(again)
        assert aborted_txns(again) == txns, f"crash at step {k}"
        assert set(cleaned) <= set(got) <= set(records), f"crash at step {k}: {steps[k - 1] if k else 'start'}"
        assert again.log_end_offset == records[-1][0] + 1
        leftovers = [p.name for p in work.iterdir() if p.name.endswith((".swap", ".cleaned", ".deleted"))]
        assert not leftovers, f"crash at step {k}: {leftovers}"
        recovery_accepts(work)
        # A pass after the restart completes the cleaning.
        clean(again, clock)
        assert all_records(again) == cleaned
        again.close()


def test_swap_files_are_completed_at_load(tmp_path: Path, clock: ManualClock,
                                          count_steps: Callable[[int | None], list[str]]) -> None:
    directory = tmp_path / "t-0"
    records = build_log(directory, clock)
    plog = open_log(directory, clock)
    bases = [seg.base_offset for seg in plog.segments]
    # Stop right after the first group's files are all .swap: nothing old renamed yet.
    steps = count_steps(None)
    ref = tmp_path / "ref" / "t-0"
    shutil.copytree(directory, ref)
    reference = open_log(ref, clock)
    clean(reference, clock)
    first_deleted = next(i for i, s in enumerate(steps) if ".deleted" in s)
    new_bases = [seg.base_offset for seg in reference.segments]
    cleaned = all_records(reference)
    reference.close()
    count_steps(first_deleted)
    with pytest.raises(Crash):
        clean(plog, clock)
    count_steps(None)
    names = {p.name for p in directory.iterdir()}
    assert "00000000000000000000.log.swap" in names and "00000000000000000000.log" in names
    assert any(n.endswith(".index.swap") for n in names)
    again = open_log(directory, clock, crashed=True)
    segs = [seg.base_offset for seg in again.segments]
    # The first group's old segments are gone, the swap is in place, the rest untouched.
    first_group_end = next(b for b in new_bases if b > 0)
    assert segs[0] == 0 and segs[1] == first_group_end and set(segs[1:]) <= set(bases)
    got = all_records(again)
    assert [r for r in got if r[0] < first_group_end] == [r for r in cleaned if r[0] < first_group_end]
    assert [r for r in got if r[0] >= first_group_end] == [r for r in records if r[0] >= first_group_end]
    again.close()


def test_index_swap_files_of_an_unfinished_first_step_are_dropped(tmp_path: Path, clock: ManualClock) -> None:
    directory = tmp_path / "t-0"
    records = build_log(directory, clock)
    stem = "00000000000000000000"
    (directory / f"{stem}.log.cleaned").write_bytes(b"garbage")
    (directory / f"{stem}.index.swap").write_bytes(b"\0" * 8)
    (directory / f"{stem}.timeindex.swap").write_bytes(b"\0" * 12)
    again = open_log(directory, clock, crashed=True)
    assert all_records(again) == records
    assert not [p for p in directory.iterdir() if p.name.endswith((".swap", ".cleaned"))]
    again.close()


def test_index_swap_files_beside_a_final_log_are_dropped(tmp_path: Path, clock: ManualClock) -> None:
    directory = tmp_path / "t-0"
    records = build_log(directory, clock)
    stem = "00000000000000000000"
    index = (directory / f"{stem}.index").read_bytes()
    (directory / f"{stem}.index.swap").write_bytes(b"\0" * 80)
    (directory / f"{stem}.txnindex.swap").write_bytes(b"\0" * 34)
    again = open_log(directory, clock, crashed=True, recovery_point=records[-1][0] + 1)
    assert (directory / f"{stem}.index").read_bytes() == index
    assert not (directory / f"{stem}.txnindex").exists()
    assert not [p for p in directory.iterdir() if p.name.endswith(".swap")]
    assert all_records(again) == records
    again.close()


def test_abort_removes_everything_written(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(50):
        append(plog, [(b"k%d" % (i % 5), b"v")])
    before = all_records(plog)
    calls = [0]

    def aborted() -> bool:
        calls[0] += 1
        return calls[0] > 3  # after the map was built, while the segments are rewritten

    with pytest.raises(CleaningAborted):
        clean(plog, clock, aborted=aborted)
    assert all_records(plog) == before
    assert not [p for p in plog.dir.iterdir() if p.name.endswith((".cleaned", ".swap"))]
    assert plog.last_cleaning is None


def test_a_truncation_during_the_pass_aborts_it(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(50):
        append(plog, [(b"k%d" % (i % 5), b"v")])
    end = plog.active_segment.base_offset

    def run(job: CleanJob) -> CleanOutput:
        out = run_clean_job(job)
        plog.truncate_to(end - 1)  # a replica truncation while the worker ran
        return out

    before = all_records(plog)
    with pytest.raises(CleaningAborted):
        clean(plog, clock, end=end, run=run)
    assert all_records(plog) == [r for r in before if r[0] < end - 1]
    assert not [p for p in plog.dir.iterdir() if p.name.endswith((".cleaned", ".swap"))]


def test_a_closed_log_aborts_the_pass(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(30):
        append(plog, [(b"k%d" % (i % 5), b"v")])
    end = plog.active_segment.base_offset

    def run(job: CleanJob) -> CleanOutput:
        out = run_clean_job(job)
        plog.close()
        return out

    with pytest.raises(CleaningAborted):
        clean(plog, clock, end=end, run=run)
    assert not [p for p in plog.dir.iterdir() if p.name.endswith((".cleaned", ".swap"))]


def test_a_log_deleted_during_the_pass_aborts_it(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(30):
        append(plog, [(b"k%d" % (i % 5), b"v")])

    def run(job: CleanJob) -> CleanOutput:
        plog.delete()  # the partition is deleted before the worker starts
        return run_clean_job(job)

    with pytest.raises(CleaningAborted):
        clean(plog, clock, run=run)
    assert not plog.dir.exists()


def test_segments_deleted_by_retention_during_the_pass_are_tolerated(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=600, file_delete_delay_ms=60_000)
    handed: list[LogSegment] = []
    plog.on_delete_segments = lambda _log, segs, _delay: handed.extend(segs)
    for i in range(40):
        append(plog, [(b"k%d" % (i % 4), b"v%d" % i)])
    end = plog.active_segment.base_offset
    before = all_records(plog)
    cut = plog.segments[2].base_offset

    def run(job: CleanJob) -> CleanOutput:
        out = run_clean_job(job)
        plog.delete_records_before(cut)  # DeleteRecords while the worker ran
        return out

    clean(plog, clock, end=end, run=run)
    assert plog.log_start_offset == cut
    # DeleteRecords' two segments, then the ones the cleaner replaced, all through the delay.
    assert [seg.base_offset for seg in handed[:2]] == [0, 8]
    assert all(seg.log_path.name.endswith(".deleted") for seg in handed)
    # The groups of the deleted segments were dropped, not resurrected below the log start.
    assert plog.segments[0].base_offset == cut
    assert all_records(plog) == expected_compaction([r for r in before if r[0] >= cut], end)


def _run_in(pool: ProcessPoolExecutor) -> Callable[[CleanJob], CleanOutput]:
    def run(job: CleanJob) -> CleanOutput:
        return pool.submit(run_clean_job, job).result()

    return run


def test_the_job_runs_in_a_worker_process(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(60):
        append(plog, [(b"k%d" % (i % 7), b"v%d" % i)], compression=i % 5)
    before = all_records(plog)
    end = plog.active_segment.base_offset
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = clean(plog, clock, run=_run_in(pool))
    assert result.end_offset == end
    assert all_records(plog) == expected_compaction(before, end)


def test_io_is_throttled_and_reported(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1_000)
    for i in range(60):
        append(plog, [(b"k%d" % (i % 7), b"v" * 50)])
    seen: list[int] = []
    clean(plog, clock, throttle=seen.append)
    # Reads of the map pass and the cleaning pass, and the writes.
    assert sum(seen) > plog.size_in_bytes

    slept: list[float] = []
    now = [0.0]
    throttler = Throttler(1_000.0, check_interval_s=0.1, sleep=slept.append, monotonic=lambda: now[0])
    throttler.maybe_throttle(50)  # less than an interval's worth, no time passed: not checked
    assert slept == []
    now[0] = 0.2
    throttler.maybe_throttle(950)  # 1000 bytes in 0.2 s at 1000 B/s: 0.8 s more
    assert slept == [pytest.approx(0.8)]
    # A burst larger than an interval's worth is held to the rate at once (a short pass too).
    throttler.maybe_throttle(500)
    assert slept[1] == pytest.approx(0.5)
    unlimited = Throttler(None, sleep=slept.append)
    unlimited.maybe_throttle(10**12)
    assert len(slept) == 2
