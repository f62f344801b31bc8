"""The benchmark's third broker, Apache Kafka: its columns, ratios and meta in the report,
the quick run's subset, and the reasons it is left out. No broker is started."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tools.bench import brokers, cli
from tools.bench.brokers import KAFKA_HEAP, Kafka, find_kafka
from tools.bench.cli import (
    PHASES,
    QUICK,
    Results,
    header,
    json_doc,
    kafka_meta,
    ratio,
    subset_note,
    table,
    throughput_steps,
)


def _rows(text: str) -> dict[str, list[str]]:
    """The table's rows by label (label -> [unit, cells...]); the header row under "metric"."""
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}


def _three() -> Results:
    r = Results()
    for broker, mbs, p99 in (("kbroker", 300.0, 0.4), ("tansu", 200.0, 0.5), ("kafka", 250.0, 1.6)):
        r.put(broker, "produce.x.mbs", "produce x", "MB/s", True, mbs)
        r.put(broker, "rtt.p99", "rtt p99", "ms", False, p99)
    return r


def _meta(**kw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"command": "python -m tools.bench --quick", "mode": "quick", "seconds": 140.0, "cpus": 2,
                            "python": "3.11.7", "confluent_kafka": "2.16.1", "librdkafka": "2.16.0",
                            "kafka_python": "3.0.12", "loadavg_start": (0.5, 0.4, 0.3),
                            "loadavg_end": (1.5, 1.0, 0.5)}
    meta.update(kw)
    return meta


def test_three_brokers_side_by_side_with_a_ratio_to_each_peer() -> None:
    rows = _rows(table(_three(), ["kbroker", "tansu", "kafka"]))
    assert rows["metric"] == ["unit", "kbroker", "tansu", "kafka", "kbroker/tansu", "kbroker/kafka"]
    assert rows["produce x"] == ["MB/s ↑", "300.0", "200.0", "250.0", "1.50×", "1.20×"]
    assert rows["rtt p99"] == ["ms ↓", "0.40", "0.50", "1.60", "0.80×", "0.25×"]


def test_a_missing_kafka_figure_has_no_kafka_ratio_and_its_note_is_numbered() -> None:
    r = _three()
    r.put("kafka", "many.create", "create a topic", "s", False, None, "FAILED: timed out")
    r.put("kbroker", "many.create", "create a topic", "s", False, 1.0)
    r.put("tansu", "many.create", "create a topic", "s", False, 0.5)
    text = table(r, ["kbroker", "tansu", "kafka"])
    assert _rows(text)["create a topic"] == ["s ↓", "1.000", "0.500", "— [1]", "2.00×", "—"]
    assert "[1] kafka, create a topic: FAILED: timed out" in text


def test_without_tansu_only_the_kafka_ratio_and_without_kbroker_no_ratio() -> None:
    rows = _rows(table(_three(), ["kbroker", "kafka"]))
    assert rows["metric"] == ["unit", "kbroker", "kafka", "kbroker/kafka"]
    assert rows["produce x"][-1] == "1.20×"
    assert _rows(table(_three(), ["tansu", "kafka"]))["metric"] == ["unit", "tansu", "kafka"]
    m = _three().metrics["produce.x.mbs"]
    assert ratio(m, "kafka") == pytest.approx(1.2) and ratio(m) == pytest.approx(1.5)
    m.values["kafka"] = 0.0
    assert ratio(m, "kafka") is None


def test_json_has_kafkas_values_and_both_ratios() -> None:
    doc = json_doc(_meta(kafka={"version": "4.1.1"}), _three(), ["kbroker", "tansu", "kafka"])
    m = doc["metrics"]["produce.x.mbs"]
    assert m["values"] == {"kbroker": 300.0, "tansu": 200.0, "kafka": 250.0}
    assert m["ratio_kbroker_tansu"] == pytest.approx(1.5)
    assert m["ratio_kbroker_kafka"] == pytest.approx(1.2)
    assert doc["meta"]["kafka"]["version"] == "4.1.1"


def test_kafka_meta_carries_heap_start_up_and_rss(tmp_path: Path) -> None:
    k = Kafka(tmp_path / "kafka", heap="768m")
    r = Results()
    r.put("kafka", "startup.empty", "start-up", "s", False, 2.5)
    r.put("kbroker", "rss_peak", "peak RSS", "MB", False, 100.0)
    r.put("kafka", "rss_peak", "peak RSS", "MB", False, 700.0)
    meta = kafka_meta(k, r)
    assert meta["version"] == "4.1.1" and meta["heap"] == "768m" and "-Xmx768m" in meta["jvm"]
    assert meta["startup_s"] == 2.5 and meta["rss_peak_mb"] == 700.0
    assert meta["rss_peak_load_mb"] is None and meta["format_s"] == 0.0
    assert Kafka(tmp_path / "k2").heap == KAFKA_HEAP == "1g"


def test_header_names_kafka_its_heap_the_ratios_and_the_load() -> None:
    kafka = {"version": "4.1.1", "heap": "1g", "startup_s": 2.46, "rss_peak_mb": 723.5,
             "subset": "throughput cells 1024B only"}
    text = header(_meta(tansu={"version": "0.6.0"}, kafka=kafka), ["kbroker", "tansu", "kafka"])
    assert "Tansu 0.6.0, Kafka 4.1.1 (-Xmx1g, up in 2.5s, peak RSS 724 MB)" in text
    assert "load 0.5→1.5" in text
    assert "ratios = kbroker / tansu, kbroker / kafka" in text
    assert "kbroker on disk, Tansu in memory, Kafka on disk; neither disk broker fsyncs per message" in text
    assert "kafka ran a subset (quick): throughput cells 1024B only" in text
    assert "unrecorded" not in text
    assert "every broker had 20s of unrecorded end-to-end traffic" in header(
        _meta(profile={"warmup_s": 20.0}), ["kbroker"])


def test_header_says_why_a_broker_is_missing() -> None:
    text = header(_meta(kafka={"version": "4.1.1", "heap": "1g", "how": "no java on PATH"}), ["kbroker"])
    assert "kafka: unavailable (no java on PATH)" in text
    assert "Kafka 4.1.1" not in text and "ratios" not in text


def test_the_quick_run_gives_kafka_the_1024_byte_8_partition_cells_and_five_phases() -> None:
    steps = throughput_steps(QUICK, ("confluent", "kafka-python"), "t", QUICK.kafka_cells or ())
    assert [s["id"].split(".", 1)[1] for s in steps[::2]] == [
        "confluent.1024B.acks=1.p8", "confluent.1024B.acks=all-idem.p8",
        "kafka-python.1024B.acks=1.p8", "kafka-python.1024B.acks=all-idem.p8",
    ]
    kafka_phases = frozenset(PHASES) & set(QUICK.kafka_phases or ())
    assert kafka_phases == {"throughput", "latency", "cpu", "conns", "idle"}
    assert subset_note(QUICK, frozenset(PHASES), kafka_phases) == \
        "throughput cells 1024B.acks=1.p8, 1024B.acks=all-idem.p8 only; no many, startup phases"
    assert subset_note(cli.FULL, frozenset(PHASES), frozenset(PHASES)) == ""


def test_kafka_unavailable_without_java_old_java_or_jars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(brokers, "java_version", lambda: None)
    assert find_kafka() == (False, "no java on PATH")
    monkeypatch.setattr(brokers, "java_version", lambda: "11.0.2")
    assert find_kafka() == (False, "java 11.0.2; Kafka 4.1.1 needs 17 or later")
    monkeypatch.setattr(brokers, "java_version", lambda: "1.8.0_392")
    assert not find_kafka()[0]
    monkeypatch.setattr(brokers, "java_version", lambda: "17.0.15")
    monkeypatch.setattr(brokers, "lib_dir", lambda: tmp_path)
    ok, why = find_kafka(allow_download=False)
    assert not ok and why == f"no jars in {tmp_path} (download disabled)"
    (tmp_path / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    assert find_kafka(allow_download=False) == (True, f"java 17.0.15, jars in {tmp_path}")

    def failing() -> None:
        raise RuntimeError("resolving the Kafka jars failed:\nno network")

    (tmp_path / "kafka_2.13-4.1.1.jar").unlink()
    monkeypatch.setattr(brokers, "resolve_jars", failing)
    monkeypatch.setattr(brokers.shutil, "which", lambda _name: "/usr/bin/mvn")
    assert find_kafka() == (False, "resolving the Kafka jars failed:")


def test_an_unstarted_kafka_stops_as_a_no_op_and_counts_only_segment_files(tmp_path: Path) -> None:
    k = Kafka(tmp_path)
    assert k.stop() is None and k.stop(kill=True) is None
    part = k.data_dir / "t-0"
    part.mkdir(parents=True)
    (part / "00000000000000000000.log").write_bytes(b"x" * 1000)
    (part / "00000000000000000000.index").write_bytes(b"x" * 5000)
    assert k.data_bytes() == 1000


def test_unknown_broker_is_refused() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["--brokers", "kbroker,redpanda"]) == 2
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_kafka_that_fails_to_start_is_a_failed_figure_not_a_crash(tmp_path: Path) -> None:
    k = Kafka(tmp_path)

    def not_ready() -> None:
        raise TimeoutError("kafka not ready after 600s")

    k.ref.start = not_ready  # type: ignore[method-assign]
    r = Results()
    lines: list[str] = []
    cli.bench_broker(k, QUICK, ("confluent",), r, lines.append)
    m = r.metrics["startup.empty"]
    assert m.values["kafka"] is None
    assert m.notes["kafka"] == "failed: kafka: kafka not ready after 600s"
    assert list(r.metrics) == ["startup.empty"] and "failed to start" in lines[0]
    assert k not in brokers.LIVE


class _FakeBroker(brokers.BrokerProcess):
    """Starts nothing: enough for bench_broker's bookkeeping around the workers."""

    name = "kafka"

    def start(self, timeout: float = 600.0) -> float:
        self.port = 9
        return 2.0

    def stats(self) -> None:
        return None

    def stop(self, kill: bool = False, timeout: float = 60.0) -> float | None:
        return 0.5

    @property
    def pid(self) -> int:
        return 0


def test_warm_up_traffic_goes_first_and_is_not_a_figure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[dict[str, Any]]] = []

    def fake_worker(_broker: Any, steps: list[dict[str, Any]], _timeout: float, *_a: Any) -> dict[str, Any]:
        calls.append(steps)
        return {s["id"]: {"id": s["id"], "p99_ms": 150.0} for s in steps}

    monkeypatch.setattr(cli, "run_worker", fake_worker)
    r = Results()
    profile = cli.Profile(**{**QUICK.__dict__, "warmup_s": 20.0})
    cli.bench_broker(_FakeBroker(tmp_path), profile, ("confluent",), r, lambda _m: None, phases=frozenset({"idle"}))
    assert [s["id"] for s in calls[0]] == ["warmup"]
    assert calls[0][0]["kind"] == "e2e" and calls[0][0]["seconds"] == 20.0 and calls[0][0]["rate"] == 1000
    assert [s["id"] for s in calls[1]] == ["idle"]
    assert r.raw["kafka"]["warmup"]["p99_ms"] == 150.0
    assert not any("warm" in k for k in r.metrics)
    calls.clear()
    cli.bench_broker(_FakeBroker(tmp_path), QUICK, ("confluent",), Results(), lambda _m: None,
                     phases=frozenset({"idle"}))
    assert [[s["id"] for s in c] for c in calls] == [["idle"]]  # no warm-up by default
