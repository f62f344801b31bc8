"""The flight recorder: one JSON line per request from real clients, bounded summaries, error
codes with their place, payloads on request, drops counted, and serving never disturbed."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from kbroker.handlers.api import CloseConnection, EncodedBody, Session
from kbroker.server import recorder as recorder_module
from kbroker.server.intercept import Exchange
from kbroker.server.recorder import ARRAY_CAP, SCAN_BUDGET, Recorder, _Walk, plan
from kbroker.testing import BrokerThread


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(t) for t in path.read_text().splitlines()]


def requests(path: Path, api: str | None = None) -> list[dict[str, Any]]:
    return [r for r in lines(path) if r["event"] == "request" and (api is None or r["api"] == api)]


def test_a_kafka_python_session_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with BrokerThread(tmp_path / "d", {"group.initial.rebalance.delay.ms": "0"}) as broker:
        broker.start_recording(path)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="rec-producer", linger_ms=50)
        for i in range(5):
            p.send("orders", key=b"k", value=b"value-%d" % i)
        p.flush()
        p.close()
        c = KafkaConsumer("orders", bootstrap_servers=broker.bootstrap, group_id="rec-group",
                          client_id="rec-consumer", auto_offset_reset="earliest", consumer_timeout_ms=1500)
        assert len(list(c)) == 5
        c.close()
        broker.stop_recording()
        assert broker.broker.recorder is None and not broker.broker.interceptors
    all_lines = lines(path)
    assert all_lines[0]["event"] == "start" and all_lines[-1] == {**all_lines[-1], "event": "stop", "dropped": 0}
    first = all_lines[1]
    assert (first["api"], first["api_key"], first["client_id"], first["principal"], first["listener"]) == (
        "ApiVersions", 18, "rec-producer", "User:ANONYMOUS", "PLAINTEXT")
    assert first["client"].startswith("127.0.0.1:") and first["outcome"] == "response"
    assert first["response_size"] > 100  # ApiVersions' pre-encoded body: sized without encoding again

    produced = requests(path, "Produce")
    assert produced and all(r["client_id"] == "rec-producer" and r["topics"] == ["orders"] for r in produced)
    assert sum(r["request"]["topic_data"][0]["partition_data"][0]["records"]["records"] for r in produced) == 5
    for r in produced:
        assert r["errors"] == [] and r["latency_ms"] >= 0 and r["request_size"] > 70
        assert r["response_size"] > 0 and r["time"].endswith("Z")
    fetched = [r for r in requests(path, "Fetch") if r["client_id"] == "rec-consumer"]
    data = [p["records"] for r in fetched for t in r["response"]["responses"] for p in t["partitions"]
            if p["records"]["bytes"]]
    assert sum(d["records"] for d in data) == 5 and data[0]["base_offset"] == 0
    # The consumer's first JoinGroup is answered MEMBER_ID_REQUIRED (top level, with its group).
    joins = requests(path, "JoinGroup")
    assert joins[0]["errors"] == [{"code": 79, "error": "MEMBER_ID_REQUIRED"}]
    assert {r["api"] for r in requests(path)} >= {"Metadata", "FindCoordinator", "SyncGroup", "OffsetCommit"}
    # One connection id per connection, correlation ids rising on each.
    by_conn: dict[int, list[int]] = {}
    for r in requests(path):
        by_conn.setdefault(r["conn"], []).append(r["correlation_id"])
    assert all(ids == sorted(ids) for ids in by_conn.values()) and len(by_conn) >= 3


def test_nested_errors_name_their_topic_and_partition(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with BrokerThread(tmp_path / "d", {"auto.create.topics.enable": "false"}) as broker:
        broker.start_recording(path)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="describer")
        with contextlib.suppress(Exception):  # kafka-python versions differ on raising here
            admin.describe_topics(["missing-topic"])
        admin.close()
        broker.stop_recording()
    errors = [e for r in requests(path, "Metadata") for e in r["errors"]]
    assert {"code": 3, "error": "UNKNOWN_TOPIC_OR_PARTITION", "topic": "missing-topic"} in errors


def test_payloads_are_written_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with BrokerThread(tmp_path / "d") as broker:
        broker.start_recording(path, payloads=True)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap)
        p.send("t", key=b"key-1", value=b"hello", headers=[("h", b"v")]).get(10)
        p.send("t", value=b"\xff\xfe").get(10)
        p.close()
        broker.stop_recording()
    records = [rec for r in requests(path, "Produce")
               for rec in r["request"]["topic_data"][0]["partition_data"][0]["records"]["records"]]
    assert records[0] == {"offset": 0, "timestamp": records[0]["timestamp"], "key": "key-1", "value": "hello",
                          "headers": [["h", "v"]]}
    assert records[1]["key"] is None and records[1]["value"] == {"base64": "//4="}


def test_record_file_from_config_and_a_bad_path(tmp_path: Path) -> None:
    path = tmp_path / "from-config.jsonl"
    with BrokerThread(tmp_path / "d", {"record.file": str(path)}) as broker:
        KafkaAdminClient(bootstrap_servers=broker.bootstrap).close()
        with pytest.raises(OSError):
            broker.start_recording(tmp_path)  # a directory: the recording under way goes on
        assert broker.broker.recorder is not None
    assert lines(path)[-1]["event"] == "stop" and requests(path, "ApiVersions")
    bad = BrokerThread(tmp_path / "d2", {"record.file": str(tmp_path / "no" / "such" / "dir.jsonl")})
    with pytest.raises(RuntimeError) as info:
        bad.start()
    assert "cannot open the record file" in str(info.value.__cause__)


# -- the interceptor on its own ----------------------------------------------------------------------
def exchange(api_key: int = 0, request: Any = None) -> Exchange:
    session = Session(listener="PLAINTEXT", client_host="10.0.0.1", client_port=4242)
    return Exchange(session, api_key, 9, 7, "unit", request if request is not None else {"topic_data": []},
                    33, 0.0)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    r = Recorder(tmp_path / "unit.jsonl")
    yield r
    r.close()


def serve(recorder: Recorder, ex: Exchange, handle: Any) -> Any:
    async def main() -> Any:
        return await recorder(ex, handle)

    return anyio.run(main)


def test_outcomes_closed_failed_and_no_response_are_recorded_and_passed_on(recorder: Recorder) -> None:
    async def closes() -> Any:
        raise CloseConnection("injected close")

    async def fails() -> Any:
        raise RuntimeError("handler bug")

    async def silent() -> Any:
        return None

    with pytest.raises(CloseConnection):
        serve(recorder, exchange(), closes)
    with pytest.raises(RuntimeError):
        serve(recorder, exchange(), fails)
    assert serve(recorder, exchange(), silent) is None
    recorder.close()
    got = requests(recorder.path)
    assert [(r["outcome"], r.get("reason")) for r in got] == [
        ("closed", "injected close"), ("failed", "RuntimeError: handler bug"), ("no_response", None)]
    assert got[1]["errors"] == [{"code": -1, "error": "UNKNOWN_SERVER_ERROR"}]
    assert got[0]["client"] == "10.0.0.1:4242" and "response_size" not in got[0]


def test_a_body_the_recorder_cannot_read_is_served_all_the_same(recorder: Recorder) -> None:
    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("no")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no")

        def __len__(self) -> int:
            return 1

    body = Hostile()

    async def handle() -> Any:
        return body

    assert serve(recorder, exchange(), handle) is body
    assert recorder.failures == 1


def test_a_full_queue_drops_lines_counts_them_and_never_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real = json.dumps

    class SlowJson:
        @staticmethod
        def dumps(*args: Any, **kwargs: Any) -> str:
            if threading.current_thread().name == "kbroker-recorder":
                gate.wait(10)  # the writer is stuck (a slow disk, say); the loop is not
            return real(*args, **kwargs)

    monkeypatch.setattr(recorder_module, "json", SlowJson)
    rec = Recorder(tmp_path / "slow.jsonl", queue_size=2)
    deadline = time.monotonic() + 5
    while rec._queue and time.monotonic() < deadline:  # the writer takes the start line, waits in dumps
        time.sleep(0.01)

    async def handle() -> Any:
        return {"responses": []}

    t0 = time.perf_counter()
    for _ in range(10):
        serve(rec, exchange(), handle)
    assert time.perf_counter() - t0 < 2  # nothing waited for the writer
    assert rec.dropped == 8  # 2 queued
    gate.set()
    rec.close()
    got = lines(rec.path)
    dropped = [r for r in got if r["event"] == "dropped"]
    assert sum(d["count"] for d in dropped) == rec.dropped and got[-1]["dropped"] == rec.dropped
    assert len(requests(rec.path)) == 10 - rec.dropped


def test_summaries_are_capped_and_errors_found_in_every_item() -> None:
    topic_id = uuid.uuid4()
    body = {"brokers": [{"node_id": 1, "host": "h", "port": 1, "rack": None}],
            "topics": [{"topic_id": topic_id, "name": None, "error_code": 0,
                        "partitions": [{"partition_index": i, "error_code": 6 if i == 500 else 0}
                                       for i in range(1000)]}]}
    walk = _Walk(False, lambda tid: "named" if tid == topic_id else None)
    walk.scan(body, plan(3, "response"))  # Metadata
    summary = walk.summary(body)
    partitions = summary["topics"][0]["partitions"]
    assert len(partitions) == ARRAY_CAP + 1 and partitions[-1] == f"+{1000 - ARRAY_CAP} more"
    assert summary["topics"][0]["topic_id"] == str(topic_id)
    assert walk.errors == [{"code": 6, "error": "NOT_LEADER_OR_FOLLOWER", "topic": "named", "partition": 500}]
    assert walk.scan_left == SCAN_BUDGET - 1002 and not walk.truncated  # the brokers were not read
    walk.scan({"topics": [{"topic_id": topic_id, "name": None}]}, plan(3, "request"))
    assert list(walk.topics) == ["named"]

    huge = {"topics": [{"name": f"t{i}", "partitions": [{"partition_index": 0, "error_code": 3}]}
                       for i in range(20000)]}
    walk = _Walk(False, None)
    t0 = time.perf_counter()
    walk.scan(huge, plan(3, "response"))
    walk.summary(huge)
    request_walk = _Walk(False, None)
    request_walk.scan(huge, plan(3, "request"))
    assert time.perf_counter() - t0 < 0.5
    assert walk.truncated and len(walk.errors) == 50 and walk.errors[0]["topic"] == "t0"
    assert walk.error_count == SCAN_BUDGET // 2 - 1  # the root, then a topic and its partition each
    assert len(request_walk.topics) == 50 and request_walk.truncated


def test_scan_plans_follow_the_schema() -> None:
    produce = plan(0, "response")
    assert dict(produce.children)["responses"].children[0][0] == "partition_responses"
    assert plan(18, "response").children == ()  # ApiVersions: only its top-level error code
    assert plan(18, "response").errors == ("error_code",)
    assert plan(0, "request").children[0][1].topic_keys == ("name", "topic_id")  # Produce: topic_data


def test_secrets_and_bytes_are_not_written() -> None:
    walk = _Walk(True, None)
    summary = walk.summary({"auth_bytes": b"\0user\0pass", "configs": [
        {"name": "ssl.keystore.password", "value": "hunter2"}, {"name": "retention.ms", "value": "1000"}],
        "long": "x" * 1000})
    assert summary["auth_bytes"] == {"bytes": 10}
    assert summary["configs"] == [{"name": "ssl.keystore.password", "value": "[redacted]"},
                                  {"name": "retention.ms", "value": "1000"}]
    assert len(summary["long"]) == 201


def test_an_encoded_body_is_sized_without_encoding(recorder: Recorder) -> None:
    body = EncodedBody({"error_code": 0, "api_keys": [{"api_key": 0}] * 80}, b"\0" * 40)

    async def handle() -> Any:
        return body

    assert serve(recorder, exchange(api_key=18, request={}), handle) is body
    recorder.close()
    line = requests(recorder.path)[0]
    assert line["response_size"] == 44  # ApiVersions answers with header v0
    assert line["response"] == {"error_code": 0, "api_keys": {"items": 80}}


def test_a_big_response_is_not_encoded_again_for_its_size(recorder: Recorder) -> None:
    body = {"brokers": [], "topics": [{"name": f"t{i}", "error_code": 0, "partitions": [
        {"partition_index": 0, "error_code": 0, "leader_id": 1, "leader_epoch": 0, "replica_nodes": [1],
         "isr_nodes": [1], "offline_replicas": []}]} for i in range(1500)]}

    async def handle() -> Any:
        return body

    ex = exchange(api_key=3, request={"topics": None})
    ex.api_version = 12
    serve(recorder, ex, handle)
    recorder.close()
    line = requests(recorder.path)[0]
    assert line["response_size"] is None and not line.get("truncated") and line["errors"] == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fail writes")
def test_a_file_that_cannot_be_written_stops_recording_not_serving(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder("/dev/full")

    async def handle() -> Any:
        return {"responses": []}

    serve(rec, exchange(), handle)
    deadline = time.monotonic() + 5
    while not rec._closing.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec._closing.is_set() and "cannot write to /dev/full" in caplog.text
    assert serve(rec, exchange(), handle) == {"responses": []}  # served; nothing queued
    assert not rec._queue
    rec.close()


def test_injected_faults_are_recorded_as_clients_got_them(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with BrokerThread(tmp_path / "d") as broker:
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=5, retry_backoff_ms=10)
        p.send("t", b"first").get(10)  # the topic exists
        broker.start_recording(path)
        rule = broker.faults.add("Produce", error="NOT_LEADER_OR_FOLLOWER", topic="t", count=2)
        p.send("t", b"second").get(10)
        p.close()
        assert broker.faults.fired(rule) == 2
        broker.stop_recording()
    produced = requests(path, "Produce")
    assert [r["errors"] for r in produced] == [
        [{"code": 6, "error": "NOT_LEADER_OR_FOLLOWER", "topic": "t", "partition": 0}]] * 2 + [[]]
    assert produced[0]["notes"]  # the injector's note of the rule it applied
