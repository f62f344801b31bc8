"""Fallbacks for systems other than Linux (macOS first), run here by taking Linux's way away:
process identity without /proc, and the open-file limit where RLIM_INFINITY is refused."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time

import pytest

from kbroker import broker as broker_module
from kbroker import localcluster


def _sleeper() -> subprocess.Popen[bytes]:
    # no spaces in the arguments: ps shows them joined
    return subprocess.Popen([sys.executable, "-c", "__import__('time').sleep(60)", "--marker", "m-1"])


def test_process_arguments_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _sleeper()
    try:
        deadline = time.monotonic() + 10
        while (from_proc := localcluster._argv(proc.pid)) is None or from_proc[-2:] != ["--marker", "m-1"]:
            assert time.monotonic() < deadline, from_proc  # until the child has exec'd
            time.sleep(0.02)
        monkeypatch.setattr(localcluster.os.path, "isdir", lambda p: False)  # no /proc
        assert localcluster._argv(proc.pid) == from_proc
        proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while localcluster._argv_from_ps(proc.pid) is not None:  # a zombie counts as gone
            assert time.monotonic() < deadline, "a killed, unreaped process still reads as alive"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert localcluster._argv(proc.pid) is None


def _limits(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, refuse_above: int | None) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        calls.append(limits)
        if refuse_above is not None and (limits[0] == resource.RLIM_INFINITY or limits[0] > refuse_above):
            raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return calls


def test_open_file_limit_as_macos_allows(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = _limits(monkeypatch, 256, resource.RLIM_INFINITY, refuse_above=broker_module.OPEN_MAX)
    broker_module.raise_fd_limit()
    assert calls == [(resource.RLIM_INFINITY, resource.RLIM_INFINITY),
                     (broker_module.OPEN_MAX, resource.RLIM_INFINITY)]
    assert "cannot raise" not in caplog.text


def test_open_file_limit_linux_and_refusal(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = _limits(monkeypatch, 1024, 524288, refuse_above=None)
    broker_module.raise_fd_limit()
    assert calls == [(524288, 524288)]
    calls = _limits(monkeypatch, 256, resource.RLIM_INFINITY, refuse_above=100)
    broker_module.raise_fd_limit()
    assert len(calls) == 2 and "cannot raise the open file limit from 256" in caplog.text
