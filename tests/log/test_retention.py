"""Log retention (Kafka's ``deleteOldSegments``): time, size and log start offset rules,
the high watermark and active segment rules, producer state, checkpoints, the manager's check."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, LogManager, OffsetOutOfRange, PartitionLog
from kbroker.log.checkpoint import (
    LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
    OffsetCheckpointFile,
    TopicPartition,
)
from kbroker.log.producer_snapshot import list_snapshots
from kbroker.log.retention import RetentionScheduler, delete_old_segments, largest_timestamp
from kbroker.records.builder import NewRecord, build_batch

MakeLog = Callable[..., PartitionLog]
HOUR = 3_600_000


def batch(ts: int, n: int = 1, *, pid: int = -1, seq: int = -1, transactional: bool = False,
          size: int = 1) -> bytes:
    """``n`` records stamped ``ts`` (values of ``size`` bytes)."""
    return build_batch([NewRecord(None, b"v" * size, (), ts) for _ in range(n)], producer_id=pid,
                       producer_epoch=0 if pid >= 0 else -1, base_sequence=seq, transactional=transactional)


def segmented(plog: PartitionLog, timestamps: list[int], *, per_segment: int = 2, size: int = 1) -> PartitionLog:
    """One segment per timestamp (``per_segment`` one-record batches each), the last one active."""
    for i, ts in enumerate(timestamps):
        if i:
            plog.roll()
        for _ in range(per_segment):
            plog.append(batch(ts, size=size), leader_epoch=0)
    return plog


def bases(plog: PartitionLog) -> list[int]:
    return [s.base_offset for s in plog.segments]


def log_files(plog: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(plog.dir) if n.endswith(".log"))


# -- retention.ms --------------------------------------------------------------------------------
def test_time_retention_deletes_segments_older_than_retention_ms_strictly(make_log: MakeLog,
                                                                          clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_ms=HOUR), [now - 3 * HOUR, now - HOUR, now - HOUR + 1, now])
    assert bases(plog) == [0, 2, 4, 6]
    # Exactly retention.ms old is kept (Kafka: now - largest > retention.ms).
    assert delete_old_segments(plog, now) == 1
    assert bases(plog) == [2, 4, 6] and plog.log_start_offset == 2
    assert log_files(plog) == [f"{b:020d}.log" for b in (2, 4, 6)]
    assert delete_old_segments(plog, now + 1) == 1
    assert bases(plog) == [4, 6]
    assert delete_old_segments(plog, now + 1) == 0


def test_time_retention_uses_the_largest_timestamp_of_the_segment(make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = make_log(retention_ms=HOUR)
    plog.append(batch(now - 5 * HOUR), leader_epoch=0)
    plog.append(batch(now - 10), leader_epoch=0)  # a recent record keeps the whole segment
    plog.append(batch(now - 9 * HOUR), leader_epoch=0)  # out of order: not the largest
    plog.roll()
    plog.append(batch(now), leader_epoch=0)
    assert largest_timestamp(plog.segments[0]) == now - 10
    assert delete_old_segments(plog, now) == 0
    assert delete_old_segments(plog, now + HOUR - 10 + 1) == 1
    assert plog.log_start_offset == 3


def test_a_future_timestamp_holds_back_the_segments_after_it(make_log: MakeLog, clock: ManualClock,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_ms=HOUR), [now + HOUR, now - 5 * HOUR, now + 3 * HOUR])
    with caplog.at_level(logging.WARNING, logger="kbroker.log.retention"):
        assert delete_old_segments(plog, now) == 0
    assert "contains future timestamp(s), making it ineligible to be deleted" in caplog.text
    assert bases(plog) == [0, 2, 4]
    # Once the clock passes it by retention.ms both go; the next one is in the future again.
    assert delete_old_segments(plog, now + 2 * HOUR + 1) == 2
    assert bases(plog) == [4]


def test_segment_without_timestamps_ages_by_its_file_modification_time(make_log: MakeLog,
                                                                      clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_ms=HOUR), [-1, now])  # -1: no timestamp (NO_TIMESTAMP)
    first = plog.segments[0]
    assert first.max_timestamp == -1
    mtime_s = (now - 2 * HOUR) / 1000
    os.utime(first.log_path, (mtime_s, mtime_s))
    assert largest_timestamp(first) == now - 2 * HOUR
    assert delete_old_segments(plog, now) == 1
    assert bases(plog) == [2]


def test_minus_one_means_unlimited(make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    # LogConfig keeps -1 as None; the parser maps it.
    config = LogConfig().with_overrides({"retention.ms": "-1", "retention.bytes": "-1"})
    assert config.retention_ms is None and config.retention_bytes is None
    plog = segmented(make_log(retention_ms=None, retention_bytes=None), [1_000, 2_000, now])
    assert delete_old_segments(plog, now + 100 * 365 * 24 * HOUR) == 0
    assert bases(plog) == [0, 2, 4]


# -- retention.bytes -----------------------------------------------------------------------------
def test_size_retention_deletes_the_oldest_while_the_excess_allows(make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_bytes=None, retention_ms=None), [now] * 4)
    sizes = [s.size for s in plog.segments]
    assert len(set(sizes)) == 1
    seg = sizes[0]
    total = 4 * seg
    # An excess one byte short of a segment deletes nothing.
    plog.update_config(LogConfig(retention_bytes=total - seg + 1, retention_ms=None))
    assert delete_old_segments(plog, now) == 0
    # An excess of exactly one segment deletes one.
    plog.update_config(LogConfig(retention_bytes=total - seg, retention_ms=None))
    assert delete_old_segments(plog, now) == 1
    assert bases(plog) == [2, 4, 6] and plog.size_in_bytes == 3 * seg
    # Half a segment over the limit: a segment cannot go without going below it.
    plog.update_config(LogConfig(retention_bytes=2 * seg + seg // 2, retention_ms=None))
    assert delete_old_segments(plog, now) == 0
    # One byte more than a segment over: one goes, the partition stays a byte over its limit.
    plog.update_config(LogConfig(retention_bytes=2 * seg - 1, retention_ms=None))
    assert delete_old_segments(plog, now) == 1
    assert bases(plog) == [4, 6] and plog.size_in_bytes == 2 * seg
    assert delete_old_segments(plog, now) == 0


def test_size_retention_can_take_the_active_segment_when_the_high_watermark_is_at_the_end(
        make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_ms=None), [now, now])
    plog.update_config(LogConfig(retention_bytes=0, retention_ms=None))
    assert delete_old_segments(plog, now) == 2
    # Kafka rolls a new empty active segment at the log end first.
    assert bases(plog) == [4] and plog.log_start_offset == plog.log_end_offset == 4
    assert plog.size_in_bytes == 0
    assert plog.append(batch(now), leader_epoch=0).base_offset == 4
    # The new segment is not empty any more, and with retention.bytes=0 it goes at the next check.
    assert delete_old_segments(plog, now) == 1
    assert plog.log_start_offset == 5


# -- cleanup.policy ------------------------------------------------------------------------------
def test_compact_only_topics_keep_old_and_large_segments(make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(cleanup_policy="compact", retention_ms=1, retention_bytes=0), [1_000, 2_000, now])
    assert delete_old_segments(plog, now) == 0
    assert bases(plog) == [0, 2, 4]
    # compact,delete applies both.
    plog.update_config(LogConfig(cleanup_policy="compact,delete", retention_ms=1, retention_bytes=None))
    assert delete_old_segments(plog, now) == 2
    assert bases(plog) == [4]


def test_log_start_offset_breach_applies_to_compact_only_topics(tmp_path: Path, clock: ManualClock) -> None:
    config = LogConfig(cleanup_policy="compact", segment_bytes=1 << 20)
    plog = segmented(PartitionLog(tmp_path / "c-0", config, clock), [1_000, 1_000, 1_000])
    plog.close()
    # A log start offset checkpointed past the first segments (e.g. DeleteRecords before a crash).
    plog = PartitionLog(tmp_path / "c-0", config, clock, log_start_offset=3, had_clean_shutdown=True)
    try:
        assert plog.log_start_offset == 3 and bases(plog) == [0, 2, 4]
        assert delete_old_segments(plog, clock.time_ms()) == 1
        # Segment 2 holds offset 3 (the start): it stays.
        assert bases(plog) == [2, 4] and plog.log_start_offset == 3
        with pytest.raises(OffsetOutOfRange):
            plog.read(2, 1 << 20)
    finally:
        plog.close()


def test_empty_cleanup_policy_only_applies_the_log_start_offset(make_log: MakeLog, clock: ManualClock) -> None:
    plog = segmented(make_log(cleanup_policy="", retention_ms=1, retention_bytes=0), [1_000, 1_000])
    assert delete_old_segments(plog, clock.time_ms()) == 0


# -- the high watermark --------------------------------------------------------------------------
def test_nothing_at_or_above_the_high_watermark_is_deleted(make_log: MakeLog, clock: ManualClock) -> None:
    plog = segmented(make_log(retention_ms=1), [1_000, 1_000, 1_000, 1_000])
    plog.high_watermark_follows_leo = False
    plog.update_high_watermark(3)
    # Segment 0 ends below 3; segment 2 (offsets 2-3) reaches the high watermark and stays.
    assert delete_old_segments(plog, clock.time_ms()) == 1
    assert bases(plog) == [2, 4, 6] and plog.log_start_offset == 2
    plog.update_high_watermark(6)
    assert delete_old_segments(plog, clock.time_ms()) == 2
    # The active segment needs the high watermark at the log end.
    assert bases(plog) == [6]
    plog.update_high_watermark(7)
    assert delete_old_segments(plog, clock.time_ms()) == 0
    plog.update_high_watermark(8)
    assert delete_old_segments(plog, clock.time_ms()) == 1
    assert bases(plog) == [8] and plog.log_start_offset == 8 and plog.high_watermark == 8


def test_an_empty_active_segment_is_never_deleted(make_log: MakeLog, clock: ManualClock) -> None:
    plog = segmented(make_log(retention_ms=1, retention_bytes=0), [1_000])
    assert delete_old_segments(plog, clock.time_ms()) == 1
    files = log_files(plog)
    assert delete_old_segments(plog, clock.time_ms()) == 0
    assert log_files(plog) == files == [f"{2:020d}.log"]


# -- consumers -----------------------------------------------------------------------------------
def test_reads_below_the_new_start_are_out_of_range_and_earliest_moves(make_log: MakeLog,
                                                                       clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = segmented(make_log(retention_ms=HOUR), [now - 2 * HOUR, now - 2 * HOUR, now])
    assert plog.read(0, 1 << 20)
    assert delete_old_segments(plog, now) == 2
    for offset in (0, 3):
        with pytest.raises(OffsetOutOfRange):
            plog.read(offset, 1 << 20)
        with pytest.raises(OffsetOutOfRange):
            plog.fetch_position(offset)
    assert plog.offset_for_timestamp(-2) == (4, -1)
    assert plog.read(4, 1 << 20)
    # A timestamp lookup never answers a deleted offset.
    assert plog.offset_for_timestamp(0) == (4, now)


# -- producer state and transactions -------------------------------------------------------------
def test_producer_snapshots_of_deleted_segments_go(make_log: MakeLog, clock: ManualClock) -> None:
    now = clock.time_ms()
    plog = make_log(retention_ms=HOUR)
    for i, ts in enumerate([now - 2 * HOUR, now - 2 * HOUR, now]):
        if i:
            plog.roll()  # a producer snapshot at each new segment's base
        plog.append(batch(ts, pid=7, seq=2 * i), leader_epoch=0)
        plog.append(batch(ts, pid=7, seq=2 * i + 1), leader_epoch=0)
    assert list_snapshots(plog.dir) == [2, 4]
    assert delete_old_segments(plog, now) == 2
    assert plog.log_start_offset == 4
    # The snapshot at the new first segment stays; the one of the deleted segment 2 goes.
    assert list_snapshots(plog.dir) == [4]
    # The producer stays known (it expires by producer.id.expiration.ms, not by retention):
    # its next sequence continues and a retry of its last batch is still a duplicate.
    assert plog.active_producers()[0].producer_id == 7
    dup = plog.append(batch(now, pid=7, seq=5), leader_epoch=0)
    assert dup.base_offset == 5 and dup.record_count == 0
    assert plog.append(batch(now, pid=7, seq=6), leader_epoch=0).base_offset == 6


def test_deleting_everything_keeps_the_producer_snapshot_at_the_log_end(tmp_path: Path, clock: ManualClock) -> None:
    config = LogConfig(retention_ms=1)
    plog = PartitionLog(tmp_path / "p-0", config, clock)
    plog.append(batch(1_000, pid=3, seq=0), leader_epoch=0)
    plog.roll()
    plog.append(batch(1_000, pid=3, seq=1), leader_epoch=0)
    assert delete_old_segments(plog, clock.time_ms()) == 2
    assert list_snapshots(plog.dir) == [2]
    plog.close()
    reopened = PartitionLog(tmp_path / "p-0", config, clock, had_clean_shutdown=True)
    try:
        assert reopened.log_start_offset == reopened.log_end_offset == 2
        # Producer state survives the restart through the snapshot: sequence 2 follows.
        assert reopened.append(batch(2_000, pid=3, seq=2), leader_epoch=0).base_offset == 2
    finally:
        reopened.close()


def test_an_open_transaction_below_the_new_start_holds_the_lso_at_the_start(make_log: MakeLog,
                                                                             clock: ManualClock) -> None:
    plog = make_log(retention_ms=1)
    plog.append(batch(1_000, pid=1, seq=0, transactional=True), leader_epoch=0)  # 0: opens
    plog.append(batch(1_000), leader_epoch=0)  # 1
    plog.roll()
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 2
    plog.roll()
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 3
    assert plog.last_stable_offset == 0
    assert delete_old_segments(plog, clock.time_ms()) == 1
    assert plog.log_start_offset == 2
    assert plog.has_ongoing_transaction(1) and plog.last_stable_offset == 2
    plog.append_marker(1, 0, 0, True, leader_epoch=0)
    assert plog.last_stable_offset == plog.high_watermark == 5


def test_aborted_transactions_of_deleted_segments_are_forgotten(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(retention_ms=HOUR)
    plog.append(batch(1_000, pid=1, seq=0, transactional=True), leader_epoch=0)  # 0
    plog.append_marker(1, 0, 0, False, leader_epoch=0)  # 1: abort, in segment 0's .txnindex
    plog.roll()
    now = clock.time_ms()
    plog.append(batch(now, pid=2, seq=0, transactional=True), leader_epoch=0)  # 2
    plog.append_marker(2, 0, 0, False, leader_epoch=0)  # 3: abort, in segment 2's .txnindex
    assert plog.collect_aborted_transactions(0, 4) == [(1, 0), (2, 2)]
    clock.advance(2 * HOUR)  # markers carry the clock's time: both segments expire
    plog.roll()
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 4
    assert delete_old_segments(plog, clock.time_ms()) == 2
    assert plog.log_start_offset == 4
    assert not plog.has_aborted_transactions
    assert plog.collect_aborted_transactions(4, 5) == []
    assert sorted(n for n in os.listdir(plog.dir) if n.endswith(".txnindex")) == []


# -- the log manager -----------------------------------------------------------------------------
def _manager(root: Path, clock: ManualClock, **kw: object) -> LogManager:
    return LogManager([root / "data"], clock, LogConfig(file_delete_delay_ms=0), **kw)  # type: ignore[arg-type]


def test_run_retention_checks_every_log_and_checkpoints(tmp_path: Path, clock: ManualClock) -> None:
    lm = _manager(tmp_path, clock)
    old = LogConfig(retention_ms=HOUR, file_delete_delay_ms=0)
    moved: list[tuple[str, int]] = []
    lm.on_log_start_moved = lambda topic, partition: moved.append((topic, partition))
    now = clock.time_ms()
    a = segmented(lm.get_or_create_log("a", 0, old), [now - 2 * HOUR, now - 2 * HOUR, now])
    b = segmented(lm.get_or_create_log("b", 0, old), [now, now])
    keep = segmented(lm.get_or_create_log("c", 0, LogConfig(retention_ms=None, file_delete_delay_ms=0)),
                     [1_000, 1_000])
    assert lm.run_retention() == 2
    assert bases(a) == [4] and bases(b) == [0, 2] and bases(keep) == [0, 2]
    assert moved == [("a", 0)]
    # The checkpoints were rewritten: the recovery point follows the log start.
    points = OffsetCheckpointFile(tmp_path / "data" / RECOVERY_POINT_CHECKPOINT_FILE).read()
    assert points[TopicPartition("a", 0)] >= 4
    # As Kafka, the log start checkpoint lists only starts past the first segment's base.
    starts = OffsetCheckpointFile(tmp_path / "data" / LOG_START_OFFSET_CHECKPOINT_FILE).read()
    assert TopicPartition("a", 0) not in starts
    assert lm.run_retention() == 0
    # A crash (no clean shutdown) keeps the new start: the files are gone.
    lm._stop_background()  # the process is gone: its threads write nothing more
    for plog in (a, b, keep):
        plog.close(snapshot=False)
    lm.release_dir_locks()
    lm2 = _manager(tmp_path, clock)
    try:
        reloaded = lm2.get_log("a", 0)
        assert reloaded is not None and reloaded.log_start_offset == 4
        with pytest.raises(OffsetOutOfRange):
            reloaded.read(3, 1 << 20)
    finally:
        lm2.shutdown()


def test_log_start_checkpoint_after_delete_records_then_retention(tmp_path: Path, clock: ManualClock) -> None:
    lm = _manager(tmp_path, clock)
    plog = segmented(lm.get_or_create_log("d", 0, LogConfig(retention_ms=None, file_delete_delay_ms=0)),
                     [1_000, 1_000, 1_000])
    start, detached = plog.detach_records_before(3)  # DeleteRecords: start inside segment 2
    plog.delete_segments_async(detached)
    assert lm.run_retention() == 0
    lm.checkpoint()
    starts = OffsetCheckpointFile(tmp_path / "data" / LOG_START_OFFSET_CHECKPOINT_FILE).read()
    assert starts[TopicPartition("d", 0)] == 3
    lm.shutdown()


def test_closed_and_failing_logs_are_skipped(tmp_path: Path, clock: ManualClock,
                                             caplog: pytest.LogCaptureFixture) -> None:
    lm = _manager(tmp_path, clock)
    cfg = LogConfig(retention_ms=1, file_delete_delay_ms=0)
    gone = segmented(lm.get_or_create_log("gone", 0, cfg), [1_000, 1_000])
    bad = segmented(lm.get_or_create_log("bad", 0, cfg), [1_000, 1_000])
    fine = segmented(lm.get_or_create_log("fine", 0, cfg), [1_000, 1_000])
    gone.close()  # e.g. its partition is being deleted

    def broken() -> None:
        raise OSError("disk on fire")

    bad.detach_oldest_segments = lambda predicate: broken()  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        assert lm.run_retention() == 2
    assert "retention check of bad-0 failed" in caplog.text
    assert "gone-0" not in caplog.text
    assert bases(fine) == [4]
    lm.shutdown()


def test_the_partition_deleted_during_a_check_is_skipped(tmp_path: Path, clock: ManualClock) -> None:
    lm = _manager(tmp_path, clock)
    cfg = LogConfig(retention_ms=1, file_delete_delay_ms=0)
    first = segmented(lm.get_or_create_log("a", 0, cfg), [1_000, 1_000])
    second = segmented(lm.get_or_create_log("b", 0, cfg), [1_000, 1_000])
    original = first.detach_oldest_segments

    def delete_b_meanwhile(predicate):  # type: ignore[no-untyped-def]
        lm.delete_partition("b", 0)
        return original(predicate)

    first.detach_oldest_segments = delete_b_meanwhile  # type: ignore[method-assign]
    assert lm.run_retention() == 2
    assert second.closed and lm.get_log("b", 0) is None
    lm.shutdown()


def test_retention_thread_runs_every_interval_and_stops_at_shutdown(tmp_path: Path, clock: ManualClock) -> None:
    lm = _manager(tmp_path, clock, retention_check_interval_ms=50)
    cfg = LogConfig(retention_ms=HOUR, file_delete_delay_ms=0)
    now = clock.time_ms()
    stale = segmented(lm.get_or_create_log("stale", 0, cfg), [now - 2 * HOUR, now])
    fresh = segmented(lm.get_or_create_log("fresh", 0, cfg), [now] * 3)
    lm.start()
    try:
        deadline = time.monotonic() + 10
        while bases(stale) != [2] and time.monotonic() < deadline:
            time.sleep(0.01)
        # A check ran (the stale segment went): the fresh log kept everything.
        assert bases(stale) == [2] and bases(fresh) == [0, 2, 4]
        clock.advance(HOUR + 1)  # the rules read the broker's clock
        deadline = time.monotonic() + 10
        while bases(fresh) != [6] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bases(fresh) == [6]
        thread = lm._retention._thread
        assert thread is not None and thread.is_alive()
    finally:
        lm.shutdown()
    assert not thread.is_alive()


def test_scheduler_survives_a_failing_check() -> None:
    calls: list[int] = []
    done = threading.Event()

    def check() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first check fails")
        done.set()
        return 0

    sched = RetentionScheduler(check, 10, initial_delay_ms=0)
    sched.start()
    try:
        assert done.wait(10)
    finally:
        sched.stop()
    thread = sched._thread
    assert thread is not None and not thread.is_alive()
    sched.start()  # a stopped scheduler stays stopped
    assert sched._thread is thread


def test_scheduler_waits_the_initial_delay() -> None:
    calls: list[float] = []
    started = time.monotonic()
    sched = RetentionScheduler(lambda: calls.append(time.monotonic()) or 0, 10_000, initial_delay_ms=100)
    sched.start()
    try:
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sched.stop()
    assert len(calls) == 1 and calls[0] - started >= 0.09
    with pytest.raises(ValueError):
        RetentionScheduler(lambda: 0, 0)


# -- segment.ms and segment.jitter.ms --------------------------------------------------------------
def test_segment_ms_rolls_only_on_append_but_retention_takes_an_idle_active_segment(
        make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_ms=1_000, retention_ms=HOUR)
    plog.append(batch(clock.time_ms()), leader_epoch=0)
    clock.advance(2 * HOUR)
    assert bases(plog) == [0]  # idle past segment.ms: no roll without an append
    assert delete_old_segments(plog, clock.time_ms()) == 1
    assert bases(plog) == [1] and plog.log_start_offset == 1


def test_segment_jitter_is_taken_off_segment_ms(make_log: MakeLog, clock: ManualClock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    bounds: list[int] = []
    monkeypatch.setattr(random, "randrange", lambda n: bounds.append(n) or 300)
    plog = make_log(segment_ms=1_000, segment_jitter_ms=5_000)
    assert bounds == [1_000]  # min(segment.jitter.ms, segment.ms)
    plog.append(batch(1_000), leader_epoch=0)
    clock.advance(700)  # exactly segment.ms - jitter: not older yet
    plog.append(batch(1_000), leader_epoch=0)
    assert bases(plog) == [0]
    clock.advance(1)
    plog.append(batch(1_000), leader_epoch=0)
    assert bases(plog) == [0, 2]
    # Without jitter the full segment.ms applies.
    assert LogConfig(segment_ms=1_000).random_segment_jitter() == 0


# -- the replica layer's parked fetches --------------------------------------------------------------
def test_a_fetch_parked_below_the_new_start_answers_offset_out_of_range(tmp_path: Path, clock: ManualClock) -> None:
    import anyio

    from kbroker.codec.error_codes import ErrorCode
    from kbroker.common import TopicPartition as TP
    from kbroker.config import BrokerConfig, ConfigHolder
    from kbroker.metadata.model import PartitionInfo
    from kbroker.replica.manager import ReplicaManager
    from kbroker.replica.types import FetchParams, PartitionFetch

    lm = _manager(tmp_path, clock)
    plog = segmented(lm.get_or_create_log("t", 0, LogConfig(retention_ms=HOUR, file_delete_delay_ms=0)),
                     [clock.time_ms()] * 2)

    class Partitions:
        def partition(self, topic: str, index: int) -> PartitionInfo | None:
            return PartitionInfo(topic, index, 1, 0, [1], [1]) if (topic, index) == ("t", 0) else None

    rm = ReplicaManager(node_id=1, config=ConfigHolder(BrokerConfig({})), partitions=Partitions(),
                        logs=lm.get_log, clock=clock)
    lm.on_log_start_moved = lambda topic, partition: rm.notify_partition_changed(TP(topic, partition))
    tp = TP("t", 0)

    async def main() -> int:
        results: list[int] = []

        async def park() -> None:
            # Fewer bytes than min_bytes in one segment: it waits up to a minute.
            got = await rm.fetch([(tp, PartitionFetch(fetch_offset=3, max_bytes=1 << 20))],
                                 FetchParams(max_wait_ms=60_000, min_bytes=10_000_000))
            results.append(got[0][1].error_code)

        with anyio.fail_after(20):  # the minute's deadline is not what answers it
            async with anyio.create_task_group() as tg:
                tg.start_soon(park)
                while not len(rm._notifier):
                    await anyio.sleep(0.001)
                clock.advance(HOUR + 1)
                assert lm.run_retention() == 2  # everything, the active segment rolled first
        return results[0]

    try:
        assert anyio.run(main) == ErrorCode.OFFSET_OUT_OF_RANGE
        assert plog.log_start_offset == 4
    finally:
        lm.shutdown()


def test_delete_records_into_a_segment_keeps_that_segments_producer_snapshot(tmp_path: Path,
                                                                             clock: ManualClock) -> None:
    # As Kafka's deleteProducerSnapshots, only the snapshots of the deleted segments go: the one
    # at the new first segment's base stays when DeleteRecords put the start inside it, so after
    # a crash a producer last seen in the deleted segment is still known (a retry is a duplicate).
    config = LogConfig(file_delete_delay_ms=0)
    plog = PartitionLog(tmp_path / "t-0", config, clock)
    plog.append(batch(clock.time_ms(), pid=7, seq=0), leader_epoch=0)  # 0
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 1
    plog.roll()
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 2
    plog.append(batch(clock.time_ms()), leader_epoch=0)  # 3
    assert list_snapshots(plog.dir) == [2]
    assert plog.delete_records_before(3) == 3
    assert bases(plog) == [2]
    assert list_snapshots(plog.dir) == [2]
    plog.flush()
    # A crash: no close (and no snapshot at the log end).
    for seg in plog.segments:
        seg.close()
    again = PartitionLog(tmp_path / "t-0", config, clock, recovery_point=4, log_start_offset=3)
    try:
        dup = again.append(batch(clock.time_ms(), pid=7, seq=0), leader_epoch=0)
        assert dup.base_offset == 0 and dup.record_count == 0
    finally:
        again.close()
