"""kafkajs sets fault rules over the HTTP endpoint (``faults.port``) and meets them: it retries
through retriable errors, reports the others, and a lost answer creates no duplicate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from kbroker.testing import BrokerThread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ci_helpers import IN_CI  # noqa: E402

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parents[1] / "compat" / "work" / "node_modules"


def _missing() -> str:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_MODULES / "kafkajs" / "package.json").exists():
        return "kafkajs is not installed in compat/work/node_modules (tools/setup-compat-env.sh)"
    return ""


def test_kafkajs_uses_the_http_endpoint(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    with BrokerThread(tmp_path / "d", {"faults.port": "0"}) as broker:
        url = f"http://127.0.0.1:{broker.faults.http_port}/faults"
        env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
        proc = subprocess.run(["node", str(HERE / "faults_kafkajs.js"), broker.bootstrap, url, "js"],
                              env=env, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
        out = json.loads(lines[-1][len("RESULT "):])
        assert "failed" not in out, out["failed"]
        assert (out["retried"]["fired"], out["retried"]["state"]) == (2, "exhausted")
        assert out["refused_error"] == "TOPIC_AUTHORIZATION_FAILED" and out["refused"]["fired"] == 1
        assert out["dropped"]["fired"] == 1
        assert out["removed_status"] == 200 and out["cleared"] == {"removed": 2} and out["left"] == []
        assert broker.faults.rules() == []

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "check"})
        c.assign([TopicPartition("js", 0, 0)])
        got = []
        while (m := c.poll(1.0)) is not None:
            if m.error() is None:
                got.append(m.value())
        c.close()
        assert got == [b"a", b"b", b"c"]  # each once; the refused one never written
