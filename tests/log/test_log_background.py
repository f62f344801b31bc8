"""The log manager's background thread: its work survives a failing step."""

from __future__ import annotations

from pathlib import Path

from wait_helpers import wait_until

from kbroker.log.background import LogBackground


def test_a_failing_checkpoint_does_not_lose_the_directories_to_remove(tmp_path: Path) -> None:
    # A checkpoint write failing (a full disk) must not drop the deleted partitions'
    # directories queued with it: removing them is what frees the space.
    doomed = tmp_path / "t-0.abc-delete"
    doomed.mkdir()
    (doomed / "00000000000000000000.log").write_bytes(b"x" * 100)
    calls: list[Path] = []

    def checkpoint_dir(d: Path) -> None:
        calls.append(d)
        raise OSError(28, "No space left on device")

    bg = LogBackground(log_dirs=[tmp_path], checkpoint_interval_ms=60_000, logs=lambda: [],
                       log_dir_of=lambda t, p: None, checkpoint_dir=checkpoint_dir, closed=lambda: False)
    try:
        bg.delete_dirs([doomed], [tmp_path])
        wait_until(lambda: bool(calls), timeout=10)
        wait_until(lambda: not doomed.exists(), timeout=10)
    finally:
        bg.stop()
