"""Run ``kbroker serve`` as a real subprocess for restart, signal and crash tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

_LINE = re.compile(r"listening on PLAINTEXT://([0-9.]+):(\d+)")


class BrokerProcess:
    """``python -m kbroker serve`` on an ephemeral port; ended only by this object, by PID."""

    def __init__(self, data_dir: Path, *overrides: str, preexec_fn: Callable[[], None] | None = None) -> None:
        self.data_dir = data_dir
        self.preexec_fn = preexec_fn
        self.overrides = ["listeners=PLAINTEXT://127.0.0.1:0", f"log.dirs={data_dir}", *overrides]
        self.proc: subprocess.Popen[str] | None = None
        self.bootstrap = ""
        self.first_line = ""
        self.output: list[str] = []
        self.startup_seconds = 0.0

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        args = [sys.executable, "-m", "kbroker", "serve"]
        for o in self.overrides:
            args += ["--override", o]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     preexec_fn=self.preexec_fn)
        assert self.proc.stdout is not None
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = _LINE.search(line)
            if m:
                self.first_line = line.strip()
                self.bootstrap = f"{m.group(1)}:{m.group(2)}"
                self.startup_seconds = time.monotonic() - t0
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("broker did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no flush, no clean-shutdown marker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
