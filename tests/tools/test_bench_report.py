"""The benchmark's report: ratios, and the figures repeated with many partitions present."""

from __future__ import annotations

import pytest

from tools.bench.cli import (
    FEW_KEY,
    MANY_KEY,
    QUICK,
    Results,
    record_many,
    scaling_changes,
    scaling_table,
    table,
    throughput_steps,
)
from tools.bench.worker import probe_stall, rate_of


def _results() -> Results:
    r = Results()
    for broker, before, after in (("kbroker", 100.0, 95.0), ("tansu", 80.0, 40.0)):
        r.put(broker, FEW_KEY + "produce.x.mbs", "produce x", "MB/s", True, before)
        r.put(broker, MANY_KEY + "produce.x.mbs", "produce x, 10 partitions present", "MB/s", True, after)
    for broker, before, after in (("kbroker", 1.0, 1.2), ("tansu", 2.0, 1.0)):
        r.put(broker, FEW_KEY + "rtt.p99", "rtt p99", "ms", False, before)
        r.put(broker, MANY_KEY + "rtt.p99", "rtt p99, 10 partitions present", "ms", False, after)
    return r


def test_changes_are_degradations_in_percent_whichever_way_is_better() -> None:
    changes = {m.key: c for m, _, c in scaling_changes(_results(), ["kbroker", "tansu"])}
    assert changes[MANY_KEY + "produce.x.mbs"]["kbroker"] == pytest.approx(5.0)
    assert changes[MANY_KEY + "produce.x.mbs"]["tansu"] == pytest.approx(50.0)
    assert changes[MANY_KEY + "rtt.p99"]["kbroker"] == pytest.approx(20.0)
    assert changes[MANY_KEY + "rtt.p99"]["tansu"] == pytest.approx(-50.0)


def test_paired_figures_leave_the_main_table_for_their_own() -> None:
    r = _results()
    r.put("kbroker", "produce.y.mbs", "produce y", "MB/s", True, 100.0)
    r.put("tansu", "produce.y.mbs", "produce y", "MB/s", True, 80.0)
    main = table(r, ["kbroker", "tansu"])
    assert "produce x" not in main and "rtt" not in main
    assert "1.25×" in main  # produce y: 100 / 80
    scaled = scaling_table(r, ["kbroker", "tansu"])
    assert "+5.0%" in scaled and "-50.0%" in scaled
    assert "largest degradation, kbroker: +20.0%" in scaled
    assert "largest degradation, tansu: +50.0%" in scaled


def test_a_missing_figure_has_no_change() -> None:
    r = _results()
    r.put("kbroker", MANY_KEY + "rtt.p99", "rtt p99, 10 partitions present", "ms", False, None)
    changes = {m.key: c for m, _, c in scaling_changes(r, ["kbroker"])}
    assert changes[MANY_KEY + "rtt.p99"]["kbroker"] is None


def test_cell_filter_and_message_counts() -> None:
    steps = throughput_steps(QUICK, ("confluent", "kafka-python"), "t", ("100B.acks=1.p8",))
    assert [s["id"] for s in steps] == [
        "produce.confluent.100B.acks=1.p8", "consume.confluent.100B.acks=1.p8",
        "produce.kafka-python.100B.acks=1.p8", "consume.kafka-python.100B.acks=1.p8",
    ]
    # 100-byte cells send three times the messages; kafka-python half of confluent's.
    assert steps[0]["count"] == 3 * QUICK.produce_count
    assert steps[2]["count"] == 3 * QUICK.produce_count // 2
    assert len(throughput_steps(QUICK, ("confluent",), "t")) == 16


def test_rate_of_a_consume_run() -> None:
    assert rate_of({"msgs": 100, "rate_msgs": 90, "seconds": 0.5}) == 180
    assert rate_of({"msgs": 0, "seconds": 0.0}) == 0


def test_put_best_keeps_the_better_value_whichever_way_is_better() -> None:
    r = Results()
    for v in (10.0, 12.0, 11.0):
        r.put("kbroker", "rate", "rate", "msg/s", True, v, best=True)
    for v in (2.0, 1.5, 1.8):
        r.put("kbroker", "lat", "lat", "ms", False, v, best=True)
    r.put("kbroker", "lat2", "lat2", "ms", False, 3.0, best=True)
    r.put("kbroker", "lat2", "lat2", "ms", False, None, "FAILED: x", best=True)  # a failed repeat keeps the good one
    assert r.metrics["rate"].values["kbroker"] == 12.0
    assert r.metrics["lat"].values["kbroker"] == 1.5
    assert r.metrics["lat2"].values["kbroker"] == 3.0 and "kbroker" not in r.metrics["lat2"].notes


def test_probe_stall_is_the_longest_gap_between_completions_across_the_window() -> None:
    # (sent, completed), back to back: a 500 ms round trip inside the window [10, 11], then
    # one of 1.5 s sent inside it and answered after it closed.
    marks = [(0.0, 0.001), (9.998, 9.999), (9.999, 10.5), (10.5, 10.501), (10.501, 12.001), (12.001, 12.002)]
    got = probe_stall(marks, 10.0, 11.0)
    assert got["stall_ms"] == pytest.approx(1500.0)  # ends after the window: still counted
    assert got["probes"] == 3  # the round trips overlapping [10, 11]
    assert got["max_ms"] == pytest.approx(1500.0)
    assert probe_stall(marks, 10.0, 10.5)["stall_ms"] == pytest.approx(501.0)  # 9.999 -> 10.5
    # The gap into the window starts at the last completion before it.
    assert probe_stall([(0.0, 1.0), (1.0, 3.0)], 2.0, 2.5)["stall_ms"] == pytest.approx(2000.0)
    assert probe_stall([], 0.0, 1.0) == {"stall_ms": None, "p99_ms": None, "max_ms": None, "probes": 0}


def test_deletion_rows_in_the_report_and_a_failed_delete_keeps_the_probe_figures() -> None:
    r = Results()
    many = {"create_s": 1.0, "metadata_s": 0.01, "produce_all_s": 0.5, "produce_one_s": 0.001}
    record_many(r, "kbroker", 10_000, many, {"delete_s": 0.25, "stall_ms": 12.3456, "p99_ms": 1.5,
                                            "baseline": {"stall_ms": 2.0}})
    record_many(r, "tansu", 10_000, many, {"delete_s": 9.0, "stall_ms": 6.0, "p99_ms": 0.5,
                                          "error": "delete: KafkaException: UNKNOWN"})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table(r, ["kbroker", "tansu"]).splitlines() if line.startswith("| ")}
    delete = rows["delete the 10,000-partition topic under load (until DeleteTopics returned)"]
    assert delete == ["s ↓", "0.250", "— [1]", "—"]
    stall = next(v for k, v in rows.items() if k.startswith("longest gap between back-to-back Metadata probes"))
    assert stall == ["ms ↓", "12.35", "6.00", "2.06×"]
    assert rows["Metadata probe round trip p99 while deleting"] == ["ms ↓", "1.50", "0.50", "3.00×"]
    assert rows["the same longest gap over 1s before deleting"] == ["ms ↓", "2.00", "—", "—"]
    assert "[1] tansu, delete the 10,000-partition topic under load (until DeleteTopics returned): " \
        "FAILED: delete: KafkaException: UNKNOWN" in table(r, ["kbroker", "tansu"])
