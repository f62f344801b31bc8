"""The reference matrix's CI subset: fast scenarios, kbroker vs a real Apache Kafka 4.1.1.

``python -m compat --reference --check-differences --fast --clients kafka-python,confluent-kafka,aiokafka,kafkajs``
runs every fast scenario with those clients against a kbroker subprocess and against Kafka
(tools/kafka_reference, from Maven Central's jars; no Docker), and fails when the two differ in
a cell compat/DIFFERENCES.md does not list. In CI (``CI=true``) a missing Java, Maven, jar or
client is a failure; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ci_helpers import need, reference_unavailable

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ("kafka-python", "confluent-kafka", "aiokafka", "kafkajs")


@pytest.mark.slow
def test_fast_reference_matrix_has_no_unlisted_difference(tmp_path: Path) -> None:
    why = reference_unavailable()
    if why is not None:
        need(why)
    listing = subprocess.run([sys.executable, "-m", "compat", "--list"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    missing = [line for line in listing.splitlines()
               if line.split()[:2] in (["client", c] for c in CLIENTS) and not line.rstrip().endswith(" ok")]
    if missing:
        need("; ".join(missing))
    proc = subprocess.run([sys.executable, "-m", "compat", "--reference", "--check-differences", "--fast",
                           "--clients", ",".join(CLIENTS), "--require-clients", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert "reference mode skipped" not in proc.stdout, tail
    assert proc.returncode == 0, ("kbroker and Kafka 4.1.1 differ where compat/DIFFERENCES.md does not say so "
                                  f"(report: {tmp_path / 'REPORT.md'}):\n{tail}")
    report = (tmp_path / "REPORT.md").read_text()
    assert "## kafka-python" in report and "## confluent-kafka" in report
