"""Start and stop a kbroker subprocess on an ephemeral 127.0.0.1 port.

The compatibility runners talk to the broker the way a user would: ``python -m kbroker
serve`` in its own process, data in a fresh temporary directory, port chosen by the OS
(``listeners=PLAINTEXT://127.0.0.1:0``) and read back from the broker's start-up line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Broker settings every compat run uses (on top of kbroker's defaults).
BASE_OVERRIDES: dict[str, str] = {
    # Group joins complete at once instead of waiting 3 s for more members.
    "group.initial.rebalance.delay.ms": "0",
}

_LISTENING = re.compile(r"listening on \S*?PLAINTEXT://([0-9.]+):(\d+)")


class BrokerError(RuntimeError):
    pass


class Broker:
    """A ``kbroker serve`` subprocess; ``start()`` returns once it listens."""

    def __init__(self, overrides: Mapping[str, str] | None = None, log_path: Path | None = None,
                 keep_data: bool = False) -> None:
        self.overrides = dict(BASE_OVERRIDES)
        self.overrides.update(overrides or {})
        self.data_dir = Path(tempfile.mkdtemp(prefix="kbroker-compat-"))
        self.log_path = log_path or (self.data_dir.parent / (self.data_dir.name + ".log"))
        self.keep_data = keep_data
        self.proc: subprocess.Popen[bytes] | None = None
        self.bootstrap = ""
        #: The broker's start-up line naming every listener (``listening on NAME://host:port, ...``).
        self.listening_line = ""
        self._log = None
        self._tail: list[str] = []

    def start(self, timeout: float = 30.0) -> Broker:
        args = [sys.executable, "-m", "kbroker", "serve",
                "--override", "listeners=PLAINTEXT://127.0.0.1:0",
                "--override", f"log.dirs={self.data_dir / 'data'}"]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None and self._log is not None
            for raw in self.proc.stdout:
                self._log.write(raw)
                self._log.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail = (self._tail + [line])[-40:]
                if not found.is_set():
                    m = _LISTENING.search(line)
                    if m:
                        self.bootstrap = f"{m.group(1)}:{m.group(2)}"
                        self.listening_line = line
                        found.set()

        threading.Thread(target=pump, name="kbroker-log", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerError("broker did not start: " + " | ".join(self._tail[-5:]))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 5) -> list[str]:
        return self._tail[-n:]

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
