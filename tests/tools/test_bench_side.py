"""The benchmark's side-by-side phases (latency, CPU per request, connections) and the stage
breakdown's report: round order, the better round, error codes, the stage table. No broker."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from tools.bench import cli, rawapi, stages
from tools.bench.brokers import BrokerProcess
from tools.bench.cli import QUICK, Results, better_round, pick, round_order, side_figures, table


def test_round_order_rotates_so_each_broker_goes_first_in_turn() -> None:
    three = ["kbroker", "tansu", "kafka"]
    assert round_order(three, 0, 0) == ["kbroker", "tansu", "kafka"]
    assert round_order(three, 1, 0) == ["tansu", "kafka", "kbroker"]
    assert round_order(three, 0, 1) == ["tansu", "kafka", "kbroker"]
    assert round_order(three, 2, 1) == ["kbroker", "tansu", "kafka"]
    firsts = [round_order(three, f, r)[0] for r in range(2) for f in range(3)]
    assert sorted(firsts) == sorted(three * 2)  # each first equally often
    assert [round_order(["a", "b"], f, r)[0] for r in range(2) for f in range(2)] == ["a", "b", "b", "a"]
    assert round_order([], 3, 1) == []


def test_better_round_is_the_lowest_that_did_not_fail() -> None:
    rounds: list[dict[str, Any] | None] = [{"p99_ms": 3.0}, {"p99_ms": 1.0, "error": "boom"}, {"p99_ms": 2.0}, None]
    assert better_round(rounds, "p99_ms") == 2
    assert better_round(rounds, "p99_ms", higher=True) == 0
    assert better_round([{"error": "x"}, None], "p99_ms") is None
    assert better_round([{"p50_ms": 1.0}], "p99_ms") is None  # the figure is missing: no round has it
    assert better_round([{"p99_ms": 2.0}, {"p99_ms": 2.0}], "p99_ms") == 0  # a tie keeps the first


def test_pick_follows_the_path_and_falls_back_to_the_step_error() -> None:
    step = {"apis": {"produce": {"p50_ms": 0.1}}}
    assert pick(step, ("apis", "produce")) == {"p50_ms": 0.1}
    assert pick({"error": "set-up: refused"}, ("apis", "produce")) == {"error": "set-up: refused"}
    assert pick({"apis": {}}, ("apis", "fetch")) == {"error": "no apis.fetch in the result"}
    assert pick(None, ()) is None


def test_side_figures_per_phase_and_the_quick_counts() -> None:
    groups = side_figures(QUICK, ("confluent", "kafka-python"), frozenset({"latency", "cpu", "conns"}), "t", 42)
    ids = [[f.id for f in g] for g in groups]
    assert ids[:5] == [["e2e.confluent"], ["rtt.confluent"], ["e2e.kafka-python"], ["rtt.kafka-python"],
                       ["poll.confluent"]]
    assert ids[5] == [f"cpu.{a}" for a in rawapi.HOT_APIS]
    assert ids[6] == ["conns.none", "conns.idle", "conns.longpoll"]
    cpu = groups[5][0].step
    assert cpu["pid"] == 42 and cpu["count"] == 2000 and cpu["warmup"] == 200
    poll = groups[4][0].step
    assert poll["count"] == 500 and poll["partitions"] == 4 and "partition" not in poll
    conns = groups[6][0].step
    assert conns["idle"] == 1000 and conns["fetchers"] == 100 and conns["max_wait_ms"] == 500
    assert side_figures(QUICK, ("kafka-python",), frozenset({"latency"}), "t", 1)[-1][0].id == "rtt.kafka-python"
    assert side_figures(QUICK, ("confluent",), frozenset({"idle"}), "t", 1) == []


class _Fake(BrokerProcess):
    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        super().__init__(tmp / name)
        self.port = 9

    @property
    def pid(self) -> int:
        return 7


def test_side_by_side_alternates_keeps_both_rounds_and_reports_the_better(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    order: list[tuple[str, str]] = []
    p99 = {("kbroker", 0): 5.0, ("kbroker", 1): 2.0, ("tansu", 0): 1.0, ("tansu", 1): 3.0}
    count = {"kbroker": 0, "tansu": 0}

    def fake_worker(broker: BrokerProcess, steps: list[dict[str, Any]], _t: float, *_a: Any) -> dict[str, Any]:
        (step,) = steps
        order.append((broker.name, step["id"]))
        if step["kind"] == "cpu":
            rnd = count[broker.name]
            count[broker.name] += 1
            apis: dict[str, dict[str, Any]] = {a: {"cpu_us_per_req": 100.0 + rnd, "p50_ms": 0.1, "p99_ms": 0.2}
                                               for a in step["apis"]}
            if broker.name == "tansu":
                apis["heartbeat"] = {"error": "JoinGroup/SyncGroup: BrokerError: SyncGroup: error_code 27"}
            return {"cpu": {"id": "cpu", "apis": apis}}
        rnd = sum(1 for b, s in order if b == broker.name and s == step["id"]) - 1
        return {step["id"]: {"id": step["id"], "p50_ms": 0.1, "p99_ms": p99[(broker.name, rnd)], "p999_ms": 9.0}}

    monkeypatch.setattr(cli, "run_worker", fake_worker)
    profile = cli.Profile(**{**QUICK.__dict__, "side_rounds": 2, "side_once": ("e2e",)})
    r = Results()
    live: list[tuple[BrokerProcess, frozenset[str]]] = [(_Fake("kbroker", tmp_path), frozenset({"latency", "cpu"})),
                                                        (_Fake("tansu", tmp_path), frozenset({"cpu"}))]
    cli.bench_side_by_side(live, profile, ("kafka-python",), r, lambda _m: None)
    # rtt.kafka-python is kbroker's alone (e2e too, first round only in the quick profile);
    # cpu, the third figure, alternates who goes first from round to round.
    assert "cpu" in QUICK.side_once
    assert [s for b, s in order if b == "kbroker"] == ["e2e.kafka-python", "rtt.kafka-python", "cpu",
                                                      "rtt.kafka-python", "cpu"]
    cpu_order = [b for b, s in order if s == "cpu"]
    assert cpu_order == ["kbroker", "tansu", "tansu", "kbroker"]
    assert r.metrics["rtt.kafka-python.p99"].values == {"kbroker": 2.0}  # round 1 was better
    assert r.raw["kbroker"]["side_kept"]["rtt.kafka-python"] == 1
    assert [x["rtt.kafka-python"]["p99_ms"] for x in r.raw["kbroker"]["side"]] == [5.0, 2.0]  # both kept
    assert r.metrics["cpu.produce.us"].values == {"kbroker": 100.0, "tansu": 100.0}
    hb = r.metrics["cpu.heartbeat.us"]
    assert hb.values["tansu"] is None and hb.notes["tansu"].startswith("FAILED: JoinGroup/SyncGroup")
    assert "µs" in table(r, ["kbroker", "tansu"])


def test_error_codes_are_found_anywhere_and_fail_the_check() -> None:
    body = {"throttle_time_ms": 0, "error_code": 0,
            "topics": [{"name": "t", "partitions": [{"index": 0, "error_code": 0}, {"index": 1, "error_code": 6}]}]}
    assert rawapi.error_codes(body) == [("topics[0].partitions[1]", 6)]
    assert rawapi.error_codes({"error_code": 0, "x": [1, 2]}) == []
    with pytest.raises(rawapi.BrokerError, match=r"produce: error_code 6 at topics\[0\]\.partitions\[1\]"):
        rawapi.check("produce", body)
    with pytest.raises(rawapi.BrokerError, match=r"JoinGroup: error_code 25 at response \(who\?\)"):
        rawapi.check("JoinGroup", {"error_code": 25, "error_message": "who?"})
    rawapi.check("fine", {"error_code": 0})


def test_consumer_protocol_subscription_and_assignment_bytes() -> None:
    sub = rawapi.consumer_subscription("ab")
    assert sub == struct.pack(">hi", 0, 1) + b"\x00\x02ab" + struct.pack(">i", -1)
    a = rawapi.consumer_assignment("ab", 3)
    assert a == struct.pack(">hi", 0, 1) + b"\x00\x02ab" + struct.pack(">iii", 1, 3, -1)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert rawapi.percentile(values, 0.5) == 501.0
    assert rawapi.percentile(values, 0.999) == 999.0
    assert rawapi.percentile([], 0.5) is None
    assert rawapi.percentile([4.0], 0.99) == 4.0


def test_request_for_needs_a_member_for_group_apis() -> None:
    with pytest.raises(ValueError, match="needs a group member"):
        rawapi.request_for("heartbeat", "t")
    key, version, body = rawapi.request_for("produce", "t")
    assert (key, version) == (0, 9) and body["topic_data"][0]["name"] == rawapi.produce_topic("t")
    assert rawapi.request_for("fetch", "t")[2]["max_wait_ms"] == 0


# -- the stage breakdown ---------------------------------------------------------------------------


def test_recorder_attributes_reads_to_the_frame_they_made_and_nothing_outside_a_loop() -> None:
    rec = stages.Recorder()
    rec.add("decode", 5, 5)  # not recording: dropped
    rec.begin("produce")
    rec.add("read", 10_000, 50_000)
    rec.add("read", 2_000, 3_000)
    b = rec.buckets["produce"]
    assert b.cpu["read"] == []  # not yet known to be a request's
    rec.framed()
    rec.add("decode", 7_000, 7_000)
    assert b.cpu["read"] == [10_000, 2_000] and b.wall["read"] == [50_000, 3_000] and b.cpu["decode"] == [7_000]
    rec.on_gc("start", {"generation": 1})
    rec.on_gc("stop", {"generation": 1})
    assert b.gc_count == [0, 1, 0] and b.gc_pause_ns[1] > 0 and b.gc_max_ns == b.gc_pause_ns[1]
    rec.end(0)
    rec.add("encode", 1, 1)
    assert b.cpu["encode"] == [] and b.process_cpu_ns >= 0


def test_stage_table_per_request_p50_rest_and_gc() -> None:
    b = stages.Bucket(requests=2, process_cpu_ns=300_000)
    b.cpu["read"] = [20_000, 20_000]
    b.cpu["frame"] = [1_000, 1_000, 1_000, 1_000]  # twice per request: per request 2 µs, p50 per call 1 µs
    b.cpu["decode"] = [10_000, 30_000]
    b.cpu["handler"] = [50_000, 50_000]
    b.cpu["append"] = [20_000, 20_000]  # inside handler: not summed again
    b.cpu["encode"] = [10_000, 10_000]
    b.cpu["write"] = [15_000, 15_000]
    b.gc_count = [3, 1, 0]
    b.gc_pause_ns = [600_000, 400_000, 0]
    b.gc_max_ns = 400_000
    where: dict[str, str | None] = {s: "somewhere" for s in stages.STAGES}
    where["write"] = None
    rows = {r[0]: r[1:] for r in stages.stage_rows({"produce": b}, where)}
    assert rows["stage"] == ["produce"]
    assert rows["read"] == ["20.0 / 20.0"]
    assert rows["frame"] == ["2.0 / 1.0"]
    assert rows["decode"] == ["20.0 / 30.0"]  # p50 of two: the upper one
    assert rows["append (in handler)"] == ["20.0 / 20.0"]
    assert rows["write (not wrapped)"] == ["—"]
    # read 20 + frame 2 + decode 20 + handler 50 + encode 10 (write not wrapped, append nested).
    assert rows["sum of stages"] == ["102.0"] and rows["process CPU"] == ["150.0"]
    assert rows["unattributed (loop)"] == ["48.0"]
    assert rows["gen0 GCs /1000 req (pause ms)"] == ["1500.0 (300.00)"]
    assert rows["gen1 GCs /1000 req (pause ms)"] == ["500.0 (200.00)"]
    assert rows["GC max pause ms"] == ["0.40"] and rows["requests"] == ["2"]
    assert stages.render(stages.stage_rows({"produce": b}, where)).splitlines()[1].startswith("|---")


def test_a_stage_that_cannot_be_found_is_left_out_by_name() -> None:
    assert stages._resolve("kbroker.no_such_module", "f") is None
    assert stages._resolve("kbroker.codec.framing", "FrameReader.no_such_method") is None
    assert stages._resolve("kbroker.codec.framing", "NoSuchClass.next_frame") is None
    found = stages._resolve("kbroker.codec.framing", "FrameReader.next_frame")
    assert found is not None and found[1] == "next_frame"


def test_the_stage_tool_refuses_an_unknown_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert stages.main(["--api", "produce,nope"]) == 2
    assert "unknown APIs ['nope']" in capsys.readouterr().err


# -- against a real kbroker (integration: the broker fixture marks them) ---------------------------


def test_cpu_per_request_against_kbroker(kafka_bootstrap: str) -> None:
    host, _, port = kafka_bootstrap.rpartition(":")
    # The broker is in this process: its CPU is this process's (the client's included).
    import os

    out = rawapi.cpu_per_request(host, int(port), os.getpid(), list(rawapi.HOT_APIS), 30, 5, 20.0, "itest")
    assert "error" not in out and "failed" not in out, out
    assert list(out["apis"]) == list(rawapi.HOT_APIS)
    for api, r in out["apis"].items():
        assert r["count"] == 30 and r["cpu_us_per_req"] is not None and r["cpu_us_per_req"] >= 0, api
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], api
    assert out["group_setup_s"] >= 0


def test_a_broker_answering_an_error_fails_that_api_with_it(kafka_bootstrap: str) -> None:
    host, _, port = kafka_bootstrap.rpartition(":")
    with rawapi.RawClient(host, int(port)) as c:
        topic = rawapi.prepare(c, "err")
        stranger = rawapi.Member("no-such-group", "nobody", 1)
        key, version, body = rawapi.request_for("heartbeat", topic, stranger)
        with pytest.raises(rawapi.BrokerError, match="heartbeat: error_code"):
            rawapi.timed_round_trips(c, "heartbeat", key, version, body, 10, 0, 5.0, None)
        with pytest.raises(rawapi.BrokerError, match="CreateTopics: error_code 36"):
            rawapi.prepare(c, "err")  # the topic exists already


def test_cpu_per_request_reports_an_unreachable_broker() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        out = rawapi.cpu_per_request("127.0.0.1", port, None, ["produce"], 10, 0, 5.0, "x")
    assert out["apis"] == {} and out["error"].startswith("ConnectionRefusedError")


def test_poll_loop_and_connection_modes_against_kbroker(kafka_bootstrap: str) -> None:
    import os

    from tools.bench import worker

    worker.create_topic(kafka_bootstrap, "poll-t", 4)
    worker.wait_partitions(kafka_bootstrap, "poll-t", 4)
    r = worker.poll_loop(kafka_bootstrap, "poll-t", 30, 100, 20.0)
    assert r["error"] is None and r["count"] == 30 and r["polls_per_round_trip"] >= 1
    assert r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
    host, _, port = kafka_bootstrap.rpartition(":")
    out = worker.produce_with_connections(host, int(port), os.getpid(), ["none", "idle", "longpoll", "bogus"],
                                          20, 5, 10.0, 20, 5, 200, "itest")
    modes = out["modes"]
    assert modes["none"]["count"] == 20 and modes["idle"]["opened"] == 20
    lp = modes["longpoll"]
    # Measured for at least two long-poll periods: every fetcher came back at least once, held.
    assert not lp.get("error") and lp["count"] >= 20 and lp["fetch_responses"] >= 5 and lp["fetch_early"] == 0, lp
    assert out["failed"] == ["bogus"] and "unknown mode" in modes["bogus"]["error"]


@pytest.mark.integration  # starts kbroker in a subprocess, which the tiering cannot see
def test_stage_tool_runs_against_an_in_process_kbroker(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "tools.bench.stages", "--api", "produce,heartbeat", "-n", "50",
                           "--warmup", "5", "--json", str(tmp_path / "s.json")], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT FOUND" not in proc.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert rows["stage"] == ["produce", "heartbeat"] and rows["requests"] == ["50", "50"]
    assert rows["append (in handler)"][1] == "0"  # a heartbeat appends nothing
    assert float(rows["append (in handler)"][0].split(" / ")[0]) > 0
    import json

    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["apis"]["produce"]["requests"] == 50 and doc["where"]["decode"]
