"""tools/kafka_reference's command line: ``serve`` stops its JVM when it is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ci_helpers import need, reference_unavailable

REPO = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_serve_stops_the_broker_on_sigterm(tmp_path: Path) -> None:
    why = reference_unavailable()
    if why is not None:
        need(why)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tools.kafka_reference", "serve", "--workdir", str(tmp_path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("127.0.0.1:"), line
        port = int(line.split()[0].rsplit(":", 1)[1])
        assert _port_open(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        # The JVM went with it: nothing listens on the broker's port any more.
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_open(port), "the Kafka JVM outlived `serve` after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
