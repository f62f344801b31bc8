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


class _FailingLog:
    """A log whose rolled segments cannot be flushed (an I/O error)."""

    topic = "t"
    partition = 0
    name = "t-0"
    closed = False
    config = None

    def __init__(self) -> None:
        self.calls = 0

    def flush_rolled(self) -> bool:
        self.calls += 1
        raise OSError(5, "Input/output error")

    def flush_if_due(self) -> bool:
        return False


def test_a_failing_flush_of_rolled_segments_does_not_lose_the_directories_to_remove(tmp_path: Path) -> None:
    doomed = tmp_path / "t-1.abc-delete"
    doomed.mkdir()
    failing = _FailingLog()
    bg = LogBackground(log_dirs=[tmp_path], checkpoint_interval_ms=60_000, logs=lambda: [],
                       log_dir_of=lambda t, p: None, checkpoint_dir=lambda d: None, closed=lambda: False)
    try:
        with bg._cond:  # both queued before the thread looks
            bg._rolled[id(failing)] = failing  # type: ignore[assignment]
            bg._doomed.append(doomed)
            bg._ensure()
            bg._cond.notify()
        wait_until(lambda: failing.calls > 0, timeout=10)
        wait_until(lambda: not doomed.exists(), timeout=10)
    finally:
        bg.stop()
