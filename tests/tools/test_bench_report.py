"""The benchmark's report: ratios, and the figures repeated with many partitions present."""

from __future__ import annotations

import pytest

from tools.bench.cli import (
    FEW_KEY,
    MANY_KEY,
    QUICK,
    Results,
    scaling_changes,
    scaling_table,
    table,
    throughput_steps,
)
from tools.bench.worker import rate_of


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
