"""The flight recorder when its writer falls behind or fails: memory stays bounded whatever
the clients send, and a writer that stops says so and lets go of what it held."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.handlers.api import Session
from kbroker.records.builder import build_batch
from kbroker.server import recorder as recorder_module
from kbroker.server.intercept import Exchange
from kbroker.server.recorder import Recorder


def produce_exchange(records: bytes) -> Exchange:
    session = Session(listener="PLAINTEXT", client_host="10.0.0.1", client_port=4242)
    request = {"acks": -1, "timeout_ms": 100,
               "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}]}
    return Exchange(session, 0, 9, 7, "unit", request, len(records), 0.0)


def serve(recorder: Recorder, ex: Exchange) -> None:
    async def handle() -> Any:
        return {"responses": []}

    async def main() -> None:
        await recorder(ex, handle)

    anyio.run(main)


def stuck_writer(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the writer thread wait (a slow disk) until the returned event is set."""
    gate = threading.Event()
    real = json.dumps

    class SlowJson:
        @staticmethod
        def dumps(*args: Any, **kwargs: Any) -> str:
            if threading.current_thread().name == "kbroker-recorder":
                gate.wait(10)
            return real(*args, **kwargs)

    monkeypatch.setattr(recorder_module, "json", SlowJson)
    return gate


def test_payloads_held_for_a_slow_writer_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "PAYLOAD_QUEUE_BYTES", 3 * 1024 * 1024, raising=False)
    gate = stuck_writer(monkeypatch)
    batch = build_batch([(None, b"v" * (1024 * 1024))], base_offset=0)
    rec = Recorder(tmp_path / "slow.jsonl", payloads=True)
    deadline = time.monotonic() + 5
    while rec._queue and time.monotonic() < deadline:  # the writer takes the start line and waits
        time.sleep(0.01)
    for _ in range(20):
        serve(rec, produce_exchange(batch))
    held = sum(len(r) for line in rec._queue if isinstance(line, dict)
               for r in _payloads(line))
    assert held <= 3 * 1024 * 1024  # not 20 copies of the batch
    gate.set()
    rec.close()
    assert rec._payload_bytes == 0
    got = [json.loads(t) for t in rec.path.read_text().splitlines()]
    kept = [r["request"]["topic_data"][0]["partition_data"][0]["records"] for r in got if r["event"] == "request"]
    assert len(kept) == 20
    assert sum(1 for k in kept if k.get("records") and isinstance(k["records"], list)) == 2
    left_out = [k for k in kept if k.get("payload_not_kept")]
    assert len(left_out) == 18 and left_out[0]["records"] == 1 and left_out[0]["bytes"] == len(batch)


def test_a_writer_that_fails_lets_go_of_the_queued_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = stuck_writer(monkeypatch)
    rec = Recorder(tmp_path / "fails.jsonl", payloads=True)
    deadline = time.monotonic() + 5
    while rec._queue and time.monotonic() < deadline:
        time.sleep(0.01)
    batch = build_batch([(None, b"v" * 1000)], base_offset=0)
    for _ in range(5):
        serve(rec, produce_exchange(batch))

    def broken_write(_: str) -> int:
        raise UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(rec._file, "write", broken_write)
    gate.set()
    deadline = time.monotonic() + 5
    while not rec._closing.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec._closing.is_set()  # the writer said it stopped: nothing more is queued
    rec._thread.join(5)
    assert not rec._queue
    serve(rec, produce_exchange(batch))
    assert not rec._queue
    rec.close()


def _payloads(value: Any) -> list[bytes]:
    """The record data a queued line holds for the writer."""
    if isinstance(value, recorder_module._Payload):
        return [value.data]
    if isinstance(value, dict):
        return [d for v in value.values() for d in _payloads(v)]
    if isinstance(value, list):
        return [d for v in value for d in _payloads(v)]
    return []


def test_every_config_kafka_hides_is_redacted() -> None:
    walk = recorder_module._Walk(False, None)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----"
    summary = walk.summary({"resources": [{"resource_type": 4, "resource_name": "1", "configs": [
        {"name": "ssl.keystore.key", "config_operation": 0, "value": pem},
        {"name": "listener.name.ssl.ssl.keystore.key", "config_operation": 0, "value": pem},
        {"name": "ssl.truststore.certificates", "config_operation": 0, "value": pem},
        {"name": "log.retention.ms", "config_operation": 0, "value": "1000"}]}]})
    values = [c["value"] for c in summary["resources"][0]["configs"]]
    assert values == ["[redacted]", "[redacted]", "[redacted]", "1000"]


def test_a_recording_cut_short_does_not_swallow_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text('{"event": "start"}\n{"event": "request", "api": "Prod')  # killed mid-write
    rec = Recorder(path)
    serve(rec, produce_exchange(b""))
    rec.close()
    texts = path.read_text().splitlines()
    assert texts[1] == '{"event": "request", "api": "Prod'
    parsed = [json.loads(t) for t in texts[2:]]
    assert [p["event"] for p in parsed] == ["start", "request", "stop"]
