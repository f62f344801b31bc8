"""tools/bench's replication phase: RF 3 against RF 1 on a 3-broker local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.marks import requires_cluster_features
from tools.bench.cli import FULL, PHASES, QUICK, RF_KEYS, replication_steps

ROOT = Path(__file__).resolve().parents[2]


def test_replication_steps_carry_the_replication_factor_and_their_own_topics() -> None:
    assert "replication" in PHASES
    rf1 = replication_steps(QUICK, ("confluent", "kafka-python"), "t", 1)
    rf3 = replication_steps(QUICK, ("confluent", "kafka-python"), "t", 3)
    # The quick run: one cell (produce + consume), librdkafka's, to keep the phase short.
    assert [s["id"] for s in rf3] == ["produce.confluent.1024B.acks=all-idem.p8",
                                      "consume.confluent.1024B.acks=all-idem.p8"]
    assert {s["replication"] for s in rf1} == {1} and {s["replication"] for s in rf3} == {3}
    assert {s["topic"] for s in rf1}.isdisjoint({s["topic"] for s in rf3})
    assert len(replication_steps(FULL, ("confluent",), "t", 3)) == 4  # acks=1 and acks=all
    assert replication_steps(QUICK, ("kafka-python",), "t", 3) == []


@pytest.mark.slow
@requires_cluster_features
def test_quick_replication_phase_measures_both_factors(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--brokers", "kbroker", "--clients",
                           "confluent", "--phases", "replication", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(out.read_text())["metrics"]
    for key in RF_KEYS.values():
        for kind in ("produce", "consume"):
            m = metrics[f"{key}{kind}.confluent.1024B.acks=all-idem.p8.msgs"]
            assert m["values"]["kbroker"], m
    ratio = metrics["replication.produce.confluent.1024B.acks=all-idem.p8.ratio"]["values"]["kbroker"]
    assert 0 < ratio < 2
