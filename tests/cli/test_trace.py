"""``kbroker trace``: a recorded kafka-python session shown through the real entry point,
its filters, bad input, and ``--follow`` on a live ``kbroker serve --record``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from kbroker.cli import main
from kbroker.testing import BrokerThread

ROOT = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")},
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file recording a kafka-python producer and consumer group."""
    tmp = tmp_path_factory.mktemp("trace")
    path = tmp / "session.jsonl"
    with BrokerThread(tmp / "d", {"group.initial.rebalance.delay.ms": "0"}) as broker:
        broker.start_recording(path)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="shop-producer")
        for i in range(3):
            p.send("orders", value=b"o%d" % i)
        p.send("audit", value=b"a")
        p.flush()
        p.close()
        c = KafkaConsumer("orders", bootstrap_servers=broker.bootstrap, group_id="g", client_id="shop-consumer",
                          auto_offset_reset="earliest", consumer_timeout_ms=1000)
        assert len(list(c)) == 3
        c.close()
        broker.stop_recording()
    return path


def trace(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["trace", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_python_m_kbroker_trace_shows_the_session(recorded: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kbroker", "trace", str(recorded)], capture_output=True,
                          text=True, timeout=60, env=ENV, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "recording started" in out[0] and "recording stopped" in out[-1]
    assert re.search(r"conn \d+  127\.0\.0\.1:\d+  'shop-producer'  ApiVersions v\d+  corr 1  ", out[1])
    produce = [ln for ln in out if " Produce v" in ln]
    assert produce and all(ln.endswith("ok") for ln in produce)
    assert sum(int(m.group(1)) for ln in produce for m in [re.search(r"(\d+) records", ln)] if m) == 4
    assert any("'shop-consumer'" in ln and "JoinGroup" in ln and "ERROR MEMBER_ID_REQUIRED" in ln for ln in out)
    assert any(" Fetch v" in ln and "3 records" in ln and "topics orders" in ln for ln in out)


def test_filters(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = trace(capsys, str(recorded), "--api", "produce")
    assert code == 0 and out and all(" Produce v" in ln for ln in out)
    _, by_key, _ = trace(capsys, str(recorded), "--api", "0,FETCH")
    assert {re.search(r"  (\w+) v\d+", ln).group(1) for ln in by_key} == {"Produce", "Fetch"}  # type: ignore[union-attr]
    _, consumer, _ = trace(capsys, str(recorded), "--client", "shop-cons")
    assert consumer and all("'shop-consumer'" in ln for ln in consumer)
    port = re.search(r"127\.0\.0\.1:(\d+)", consumer[0]).group(1)  # type: ignore[union-attr]
    _, by_address, _ = trace(capsys, str(recorded), "--client", f"127.0.0.1:{port}")
    assert by_address and all(f":{port} " in ln for ln in by_address)
    _, audit, _ = trace(capsys, str(recorded), "--topic", "audit")
    assert audit and all("audit" in ln for ln in audit) and not any(" Fetch v" in ln for ln in audit)
    _, errors, _ = trace(capsys, str(recorded), "--errors")
    assert errors and all("ERROR" in ln for ln in errors)
    _, combined, _ = trace(capsys, str(recorded), "--errors", "--api", "Produce")
    assert combined == []
    _, as_json, _ = trace(capsys, str(recorded), "--json", "--api", "Produce")
    parsed = [json.loads(ln) for ln in as_json]
    assert parsed and {p["api"] for p in parsed} == {"Produce"} and parsed[0]["client_id"] == "shop-producer"


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = trace(capsys, str(tmp_path / "missing.jsonl"))
    assert (code, out) == (1, []) and "no such file" in err
    path = tmp_path / "mixed.jsonl"
    good = {"event": "request", "time": "2026-01-01T10:00:00.000Z", "conn": 1, "client": "h:1", "client_id": "c",
            "api": "Metadata", "api_key": 3, "version": 12, "correlation_id": 1, "latency_ms": 0.5,
            "request_size": 10, "response_size": None, "outcome": "closed", "reason": "fault", "errors": []}
    path.write_text("not json\n[1]\n" + json.dumps(good) + "\n" + json.dumps({"event": "dropped", "count": 3,
                                                                             "total": 3, "time": ""}))
    code, out, err = trace(capsys, str(path))
    assert code == 1 and err.count("is not a recorded line") == 2
    assert out[0].startswith("10:00:00.000  conn 1  h:1  'c'  Metadata v12  corr 1  0.5ms  10B>-  CLOSED (fault)")
    assert "3 lines dropped" in out[1]
    _, only_errors, _ = trace(capsys, str(path), "--errors")
    assert len(only_errors) == 1  # a closed connection counts; the drop notice does not pass a filter


def _read_until(stream: Any, pattern: str, timeout: float, seen: list[str]) -> bool:
    """Read lines from ``stream`` (in a thread: readline blocks) until one contains ``pattern``."""
    found = threading.Event()

    def reader() -> None:
        for line in stream:
            seen.append(line)
            if pattern in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    return found.wait(timeout)


def test_follow_a_live_broker(tmp_path: Path) -> None:
    record = tmp_path / "live.jsonl"
    serve = subprocess.Popen(
        [sys.executable, "-m", "kbroker", "serve", "--record", str(record), "--override",
         "listeners=PLAINTEXT://127.0.0.1:0", "--override", f"log.dirs={tmp_path / 'd'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    follow = subprocess.Popen([sys.executable, "-m", "kbroker", "trace", str(record), "--follow", "--api", "Produce"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert serve.stdout is not None and follow.stdout is not None
        started: list[str] = []
        assert _read_until(serve.stdout, "listening on PLAINTEXT://", 30, started), "".join(started)
        bootstrap = re.search(r"PLAINTEXT://([0-9.]+:\d+)", started[-1]).group(1)  # type: ignore[union-attr]
        p = KafkaProducer(bootstrap_servers=bootstrap, client_id="live-producer")
        p.send("live", b"x").get(10)
        t0 = time.monotonic()
        shown: list[str] = []
        assert _read_until(follow.stdout, "Produce", 10, shown), shown
        assert time.monotonic() - t0 < 5  # flushed by the recorder within its interval
        assert "'live-producer'" in shown[-1] and "topics live" in shown[-1] and shown[-1].endswith("ok\n")
        p.close()
    finally:
        for proc in (follow, serve):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
    assert serve.returncode == 0
    assert json.loads(record.read_text().splitlines()[-1])["event"] == "stop"
