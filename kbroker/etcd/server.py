"""A local one-member etcd server as a subprocess (``kbroker cluster``, tests).

etcd comes from PATH (Debian's ``etcd-server``); it binds loopback ports only and keeps
its data in the directory given, so a cluster's folder holds everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["EtcdNotFound", "EtcdServer", "free_port"]


class EtcdNotFound(RuntimeError):
    """No ``etcd`` executable on PATH."""


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """One etcd member on loopback ports; ``start()`` returns when it answers."""

    def __init__(self, data_dir: Path, *, client_port: int = 0, peer_port: int = 0, name: str = "kbroker") -> None:
        self.data_dir = Path(data_dir)
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:port`` of its client API."""
        return f"http://127.0.0.1:{self.client_port}"

    @staticmethod
    def executable() -> str:
        """The etcd binary; :class:`EtcdNotFound` when it is not installed."""
        path = shutil.which("etcd") or next((p for p in ("/usr/bin/etcd", "/usr/sbin/etcd") if os.path.exists(p)), None)
        if path is None:
            raise EtcdNotFound("etcd is not installed (Debian: apt-get install etcd-server)")
        return path

    def command(self) -> list[str]:
        """The command line that runs this member."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [self.executable(), "--name", self.name, "--data-dir", str(self.data_dir / "etcd"),
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", "--log-level", "warn",
                # A local cluster's metadata is small; compaction keeps the history bounded.
                "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000"]

    def start(self, timeout: float = 15.0) -> None:
        """Start etcd and wait until it serves requests."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "etcd.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.data_dir / 'etcd.log'}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd did not answer within {timeout:.0f} s; see {self.data_dir / 'etcd.log'}")

    def healthy(self) -> bool:
        """Whether etcd answers on its client port."""
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=0.5) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
