"""``kbroker cluster``: up leaves the processes running after the command returns, later
invocations act on them through the state file, down leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.etcd.server import EtcdNotFound, EtcdServer
from kbroker.localcluster import _cmdline
from tests.ci_helpers import need

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def kb(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kbroker", "cluster", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_up_status_kill_restart_pause_resume_stop_down(tmp_path: Path) -> None:
    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        need(str(e))
    d = str(tmp_path / "c")
    up = kb("up", "--dir", d, "--brokers", "2", "--override", "num.partitions=2")
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "c" / "cluster.json").read_text())
    pids = [b["pid"] for b in state["brokers"]] + [state["etcd"]["pid"]]
    try:
        # The command returned; its processes still run.
        assert up.stdout.strip() == ",".join(f"127.0.0.1:{b['port']}" for b in state["brokers"])
        assert all(_cmdline(p) for p in pids)
        assert "num.partitions=2" in (_cmdline(pids[0]) or "")

        st = kb("status", "--dir", d)
        assert st.returncode == 0
        assert f"broker 1 {up.stdout.strip().split(',')[1]} running pid {pids[1]}" in st.stdout
        assert "etcd     running" in st.stdout

        assert kb("kill", "--dir", d, "1").returncode == 0
        assert _cmdline(pids[1]) is None
        assert "broker 1 " in kb("status", "--dir", d).stdout and " stopped" in kb("status", "--dir", d).stdout
        again = kb("kill", "--dir", d, "1")
        assert again.returncode == 1 and "broker 1 is not running" in again.stderr

        assert kb("restart", "--dir", d, "1").returncode == 0
        new1 = json.loads((tmp_path / "c" / "cluster.json").read_text())["brokers"][1]["pid"]
        assert new1 != pids[1] and _cmdline(new1)
        pids.append(new1)

        assert kb("pause", "--dir", d, "0").returncode == 0
        assert "broker 0 " in (s := kb("status", "--dir", d).stdout) and " paused " in s
        assert kb("resume", "--dir", d, "0").returncode == 0
        assert kb("stop", "--dir", d, "0").returncode == 0
        assert _cmdline(pids[0]) is None

        bad = kb("pause", "--dir", d, "7")
        assert bad.returncode == 1 and "no broker 7" in bad.stderr
    finally:
        down = kb("down", "--dir", d)
    assert down.returncode == 0, down.stderr
    assert all(_cmdline(p) is None for p in pids)
    assert "etcd     stopped" in kb("status", "--dir", d).stdout


def test_errors_without_a_cluster_and_bad_arguments(tmp_path: Path) -> None:
    for action in (["status"], ["down"], ["kill", "0"]):
        r = kb(*action, "--dir", str(tmp_path / "none"))
        assert r.returncode == 1 and "no cluster in" in r.stderr
    assert kb("up", "--dir", str(tmp_path), "--brokers", "0").returncode == 2
    r = kb("up", "--dir", str(tmp_path / "x"), "--override", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    assert not (tmp_path / "x" / "cluster.json").exists()
    assert kb("kill", "--dir", str(tmp_path)).returncode == 2  # the broker number is required
