"""LogManager(replicated=True): high watermarks owned by replication and checkpointed in
``replication-offset-checkpoint``; replicated=False stays as a single broker."""

from __future__ import annotations

import uuid
from pathlib import Path

from log_helpers import build_batch
from wait_helpers import wait_until

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, LogManager
from kbroker.log.checkpoint import REPLICATION_OFFSET_CHECKPOINT_FILE

HW_FILE = REPLICATION_OFFSET_CHECKPOINT_FILE


def fill(mgr: LogManager, topic: str, partition: int, n: int) -> None:
    plog = mgr.get_or_create_log(topic, partition)
    for _ in range(n):
        plog.append(build_batch([b"x"]), leader_epoch=0)


def test_replicated_high_watermark_does_not_follow_the_log_end(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    fill(mgr, "t", 0, 5)
    plog = mgr.get_or_create_log("t", 0)
    assert (plog.log_end_offset, plog.high_watermark) == (5, 0)
    assert not plog.high_watermark_follows_leo
    assert plog.update_high_watermark(3) == 3
    mgr.shutdown()


def test_high_watermark_checkpoint_across_restart(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    fill(mgr, "t", 0, 5)
    fill(mgr, "t", 1, 2)
    mgr.get_or_create_log("t", 0).update_high_watermark(3)
    mgr.get_or_create_log("t", 1).update_high_watermark(2)
    mgr.shutdown()
    assert (tmp_path / HW_FILE).read_text() == "0\n2\nt 0 3\nt 1 2\n"
    again = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    assert again.get_log("t", 0).high_watermark == 3  # type: ignore[union-attr]
    assert again.get_log("t", 1).high_watermark == 2  # type: ignore[union-attr]
    assert not again.get_log("t", 0).high_watermark_follows_leo  # type: ignore[union-attr]
    again.shutdown()


def test_checkpointed_high_watermark_is_clamped_to_the_log(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    fill(mgr, "t", 0, 4)
    fill(mgr, "t", 1, 4)
    plog1 = mgr.get_or_create_log("t", 1)
    plog1.update_high_watermark(4)
    plog1.delete_records_before(2)
    mgr.shutdown()
    # Above the log end (data lost in a crash), below the log start.
    (tmp_path / HW_FILE).write_text("0\n2\nt 0 99\nt 1 1\n")
    again = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    assert again.get_log("t", 0).high_watermark == 4  # type: ignore[union-attr]
    assert again.get_log("t", 1).high_watermark == 2  # type: ignore[union-attr]
    again.shutdown()


def test_absent_or_unreadable_checkpoint_starts_at_the_log_start(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig())  # written by a single broker: no HW file
    fill(mgr, "t", 0, 4)
    mgr.shutdown()
    assert not (tmp_path / HW_FILE).exists()
    again = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    assert again.get_log("t", 0).high_watermark == 0  # type: ignore[union-attr]
    again.shutdown()
    (tmp_path / HW_FILE).write_text("0\n5\ngarbage\n")
    third = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    assert third.get_log("t", 0).high_watermark == 0  # type: ignore[union-attr]
    third.shutdown()


def test_new_and_prepared_logs_of_a_replicated_manager(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig(), replicated=True)
    mgr.create_logs("bulk", [0, 1], topic_id=uuid.uuid4())
    for p in (0, 1):
        plog = mgr.get_log("bulk", p)
        assert plog is not None and not plog.high_watermark_follows_leo
        plog.append(build_batch([b"x"]), leader_epoch=0)
        assert plog.high_watermark == 0
    mgr.shutdown()


def test_high_watermarks_are_checkpointed_periodically(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig(), replicated=True, high_watermark_checkpoint_interval_ms=20)
    try:
        mgr.start()
        fill(mgr, "t", 0, 3)
        mgr.get_or_create_log("t", 0).update_high_watermark(2)
        wait_until(lambda: (tmp_path / HW_FILE).exists() and (tmp_path / HW_FILE).read_text() == "0\n1\nt 0 2\n",
                   what="the high watermark checkpoint")
    finally:
        mgr.shutdown()


def test_periodic_checkpoint_survives_a_failing_dir(tmp_path: Path, clock: ManualClock) -> None:
    good, bad = tmp_path / "a", tmp_path / "b"
    mgr = LogManager([good, bad], clock, LogConfig(), replicated=True)
    fill(mgr, "t", 0, 1)
    fill(mgr, "t", 1, 1)
    (bad / (HW_FILE + ".tmp")).mkdir()  # the atomic write's temporary file cannot be created
    mgr.checkpoint_high_watermarks()
    assert (good / HW_FILE).exists() and not (bad / HW_FILE).exists()
    (bad / (HW_FILE + ".tmp")).rmdir()
    mgr.shutdown()


def test_single_broker_is_unchanged(tmp_path: Path, clock: ManualClock) -> None:
    mgr = LogManager([tmp_path], clock, LogConfig())
    fill(mgr, "t", 0, 3)
    plog = mgr.get_or_create_log("t", 0)
    assert plog.high_watermark_follows_leo and plog.high_watermark == 3
    mgr.checkpoint_high_watermarks()  # nothing to do
    mgr.shutdown()
    assert not (tmp_path / HW_FILE).exists()
    (tmp_path / HW_FILE).write_text("0\n1\nt 0 1\n")  # ignored without replication
    again = LogManager([tmp_path], clock, LogConfig())
    assert again.get_log("t", 0).high_watermark == 3  # type: ignore[union-attr]
    again.shutdown()
