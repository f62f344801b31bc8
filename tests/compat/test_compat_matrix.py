"""The compatibility matrix's fast subset (``python -m compat --fast --check``) as a pytest test,
and the report's format (kbroker and Kafka columns, DIFFERENCES.md) without a broker.

Every fast scenario runs with every client against a kbroker subprocess; the test fails
when a cell that passes in the committed compat/REPORT.md does not pass now. In CI
(``CI=true``) the test first runs tools/setup-compat-env.sh (idempotent; kcat from apt,
kafkajs from npm into compat/work/) and a client still missing is a failure; elsewhere a
missing client skips the test with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from ci_helpers import IN_CI

REPO = Path(__file__).resolve().parents[2]


def _missing_clients() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "compat", "--list"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [line.split(None, 2)[1] + ": " + line.split(None, 2)[2]
            for line in out.splitlines() if line.startswith("client ") and not line.rstrip().endswith(" ok")]


@pytest.mark.slow
def test_fast_matrix_has_no_regressions() -> None:
    if IN_CI:
        setup = subprocess.run(["bash", str(REPO / "tools" / "setup-compat-env.sh")], cwd=REPO,
                               capture_output=True, text=True, timeout=900)
        assert setup.returncode == 0, "tools/setup-compat-env.sh failed:\n" + setup.stderr[-3000:]
    missing = _missing_clients()
    if missing and not IN_CI:
        pytest.skip("compat clients not installed (run tools/setup-compat-env.sh): " + "; ".join(missing))
    args = [sys.executable, "-m", "compat", "--fast", "--check"]
    if IN_CI:
        args.append("--require-clients")
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert not missing, "compat clients missing in CI: " + "; ".join(missing)
    assert proc.returncode == 0, "compat matrix regressed (python -m compat --fast --check):\n" + tail


def test_report_is_parseable() -> None:
    """The committed baseline parses, and names only known clients and scenarios."""
    sys.path.insert(0, str(REPO))
    try:
        from compat.report import parse_report
        from compat.runner import CLIENT_NAMES
        from compat.scenarios import BY_ID
    finally:
        sys.path.remove(str(REPO))
    cells = parse_report(REPO / "compat" / "REPORT.md")
    assert cells, "compat/REPORT.md has no cells"
    assert {c for c, _ in cells} <= set(CLIENT_NAMES)
    assert {s for _, s in cells} <= set(BY_ID)
    assert set(cells.values()) <= {"pass", "fail", "na", "missing"}


# --- the report format (no broker) ------------------------------------------------------------

def _compat() -> types.SimpleNamespace:
    sys.path.insert(0, str(REPO))
    try:
        from compat import reference, report, runner
        from compat.scenarios import BY_ID
    finally:
        sys.path.remove(str(REPO))
    return types.SimpleNamespace(reference=reference, report=report, runner=runner, BY_ID=BY_ID)


def _sample() -> tuple[Any, list[str], list[Any], dict[Any, Any], dict[Any, Any]]:
    m = _compat()
    Cell = m.report.Cell
    scenarios = [m.BY_ID["metadata"], m.BY_ID["group_range"], m.BY_ID["transactions"], m.BY_ID["admin_topics"]]
    clients = ["kafka-python", "kcat", "java"]
    ours = {
        ("kafka-python", "metadata"): Cell("pass", "", 1.0),
        ("kafka-python", "group_range"): Cell("pass", "assignment [0, 1] / [2, 3]", 1.0),
        ("kafka-python", "transactions"): Cell("fail", "Error 53 | pipe `code`\nsecond line", 1.0),
        ("kafka-python", "admin_topics"): Cell("pass", "", 1.0),
        ("kcat", "metadata"): Cell("pass", "", 1.0),
        ("kcat", "group_range"): Cell("pass", "assignment [0, 1] / [2, 3]", 1.0),
        ("kcat", "transactions"): Cell("fail", "boom", 1.0),
        ("kcat", "admin_topics"): Cell("na", "kcat has no admin commands", 0.1),
    }
    for s in scenarios:
        ours[("java", s.id)] = Cell("missing", "no jar", 0.0)
    theirs = dict(ours)
    theirs[("kafka-python", "transactions")] = Cell("pass", "", 2.0)
    theirs[("kcat", "transactions")] = Cell("pass", "", 2.0)
    theirs[("kcat", "group_range")] = Cell("pass", "assignment [2, 3] / [0, 1]", 1.0)  # same shares
    del theirs[("kafka-python", "admin_topics")]  # not run on Kafka
    return m, clients, scenarios, ours, theirs


def test_report_round_trips_both_columns(tmp_path: Path) -> None:
    m, clients, scenarios, ours, theirs = _sample()
    found = m.reference.differences(ours, theirs)
    assert [(d.client, d.scenario, d.kbroker, d.kafka) for d in found] == [
        ("kafka-python", "transactions", "fail", "pass"), ("kcat", "transactions", "fail", "pass")]
    marks = {("kafka-python", "transactions"): "listed", ("kcat", "transactions"): "unlisted"}
    meta = {"clients": {"kafka-python": "3.0", "kcat": "1.7", "java": "not installed"}, "elapsed": "9s",
            "reference": "Apache Kafka 4.1.1, test run on 2026-01-01", "subset": ""}
    path = tmp_path / "REPORT.md"
    m.report.write_markdown(path, clients, scenarios, ours, theirs, marks, meta)
    m.report.write_html(tmp_path / "report.html", clients, scenarios, ours, theirs, marks, meta)
    text = path.read_text()
    for c in clients:
        assert f"## {c}\n" in text
    assert "| kafka-python | 3 pass, 1 fail, 0 n/a | 3 pass, 0 fail, 0 n/a | 1: `transactions` |" in text
    assert "**yes, not in DIFFERENCES.md**" in text
    got_ours, got_theirs, note = m.report.parse_cells(path)
    assert note == meta["reference"]
    assert {k: v.status for k, v in got_ours.items()} == {k: v.status for k, v in ours.items()}
    assert {k: v.status for k, v in got_theirs.items()} == {k: v.status for k, v in theirs.items()}
    assert got_ours[("kafka-python", "group_range")].detail == "assignment [0, 1] / [2, 3]"
    assert got_ours[("kafka-python", "transactions")].detail == "Error 53 | pipe 'code' second line"
    assert got_theirs[("kcat", "admin_topics")].detail == "kcat has no admin commands"
    assert m.report.parse_report(path) == {k: v.status for k, v in ours.items()}
    html_text = (tmp_path / "report.html").read_text()
    assert html_text.count('class="fail differs"') == 2 and "Kafka 4.1.1" in html_text
    # Writing what was parsed gives the same file (a kbroker-only run carries the Kafka column over).
    again = tmp_path / "again.md"
    m.report.write_markdown(again, clients, scenarios, got_ours, got_theirs, marks, meta)
    assert again.read_text() == text


def test_old_single_table_report_still_parses(tmp_path: Path) -> None:
    m = _compat()
    path = tmp_path / "REPORT.md"
    path.write_text("# kbroker compatibility matrix\n\n| scenario | kafka-python | kcat |\n|---|---|---|\n"
                    "| `metadata` metadata | pass | pass |\n"
                    "| `transactions` txn | **fail**: x \\| y | n/a: none |\n")
    ours, theirs, note = m.report.parse_cells(path)
    assert theirs == {} and note == ""
    assert ours[("kafka-python", "transactions")] == m.report.Cell("fail", "x | y", 0.0)
    assert m.report.parse_report(path) == {("kafka-python", "metadata"): "pass", ("kcat", "metadata"): "pass",
                                           ("kafka-python", "transactions"): "fail", ("kcat", "transactions"): "na"}


def test_kbroker_only_run_carries_the_kafka_column(tmp_path: Path) -> None:
    m, clients, scenarios, ours, theirs = _sample()
    meta = {"clients": {}, "elapsed": "1s", "reference": "Apache Kafka 4.1.1, run on 2026-01-01", "subset": ""}
    path = tmp_path / "REPORT.md"
    m.report.write_markdown(path, clients, scenarios, ours, theirs, {}, meta)
    cells, note = m.runner.carried_kafka_cells(path, {("kcat", "transactions"), ("kcat", "new_scenario")})
    assert cells == {("kcat", "transactions"): m.report.Cell("pass", "", 0.0)}
    assert note == "Apache Kafka 4.1.1, run on 2026-01-01 (cells carried over by kbroker-only runs)"
    meta["reference"] = note
    m.report.write_markdown(path, clients, scenarios, ours, theirs, {}, meta)
    assert m.runner.carried_kafka_cells(path, set(ours))[1] == note  # said once, however often carried
    assert m.runner.carried_kafka_cells(tmp_path / "none.md", set(ours)) == ({}, "not run")


def test_differences_compare_status_and_assignment_shares() -> None:
    m = _compat()
    Cell = m.report.Cell
    differs = m.reference.differs
    assert not differs(Cell("pass", "assignment [0, 1] / [2, 3]", 0), Cell("pass", "assignment [2,3] / [0,1]", 0))
    assert differs(Cell("pass", "assignment [0, 2] / [1, 3]", 0), Cell("pass", "assignment [0, 1] / [2, 3]", 0))
    assert differs(Cell("fail", "x", 0), Cell("pass", "", 0))
    assert not differs(Cell("fail", "port 1", 0), Cell("fail", "port 2", 0))  # failure text is not compared
    # Nor is a passing cell's note other than its group assignment (run-to-run counts, timings).
    assert not differs(Cell("pass", "killed at 4000/6000; 2595 extra counts", 0), Cell("pass", "0 extra counts", 0))
    assert not differs(Cell("missing", "", 0), Cell("pass", "", 0))
    assert not differs(Cell("pass", "", 0), None)
    # A sticky assignor's shares depend on join timing: only the outcome is compared.
    assert not differs(Cell("pass", "assignment [0, 2] / [1, 3]", 0), Cell("pass", "assignment [0, 1] / [2, 3]", 0),
                       "group_cooperative_sticky")
    assert differs(Cell("pass", "assignment [0, 2] / [1, 3]", 0), Cell("fail", "x", 0), "group_sticky")


def test_check_differences_flags_unlisted_and_gone(tmp_path: Path) -> None:
    m = _compat()
    Diff = m.reference.Difference
    path = tmp_path / "DIFFERENCES.md"
    m.reference.write_differences(path, [Diff("kcat", "transactions", "fail", "pass"),
                                         Diff("kcat", "metadata", "pass", "fail")], {}, "note")
    text = path.read_text().replace("UNEXPLAINED: investigate, then fix kbroker or give the reason",
                                    "not implemented \\| yet")
    path.write_text(text)
    listed = m.reference.parse_differences(path)
    assert listed[("kcat", "transactions")].reason == "not implemented | yet"
    found = [Diff("kcat", "transactions", "fail", "pass"), Diff("kcat", "headers", "fail", "pass"),
             Diff("aiokafka", "transactions", "fail", "pass")]
    unlisted, gone = m.reference.check_differences(found, listed, {("kcat", "metadata"), ("kcat", "transactions")})
    assert [(d.client, d.scenario) for d in unlisted] == [("kcat", "headers"), ("aiokafka", "transactions")]
    assert [(d.client, d.scenario) for d in gone] == [("kcat", "metadata")]
    # An intermittent difference is not named when it does not show.
    flaky = dict(listed)
    flaky[("kcat", "metadata")] = Diff("kcat", "metadata", "pass", "fail", "Intermittent: a client's timing")
    assert m.reference.check_differences([], flaky, {("kcat", "metadata")}) == ([], [])
    # The same cell differing the other way round is not the listed difference.
    unlisted, _ = m.reference.check_differences([Diff("kcat", "transactions", "pass", "fail")], listed, set())
    assert len(unlisted) == 1
    path.write_text(text.replace("not implemented \\| yet", " "))
    with pytest.raises(ValueError, match="no reason"):
        m.reference.parse_differences(path)


def test_committed_differences_are_well_formed() -> None:
    m = _compat()
    listed = m.reference.parse_differences(REPO / "compat" / "DIFFERENCES.md")
    assert listed, "compat/DIFFERENCES.md lists no differences (transactions are not implemented yet)"
    assert {c for c, _ in listed} <= set(m.runner.CLIENT_NAMES)
    assert {s for _, s in listed} <= set(m.BY_ID)
    assert all(d.reason and "UNEXPLAINED" not in d.reason for d in listed.values())


def test_reference_mode_says_why_when_no_kafka_can_run(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    m = _compat()
    monkeypatch.setattr(m.runner, "backend", lambda: (None, "java is not on PATH; no Docker engine"))
    assert m.runner.main(["--reference", "--scenarios", "metadata"]) == 0
    assert "reference mode skipped: java is not on PATH; no Docker engine" in capsys.readouterr().out
    assert m.runner.main(["--check-differences", "--require-clients", "--scenarios", "metadata"]) == 1


def test_local_reference_kafka_start_failure_is_a_broker_error(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    m = _compat()
    import tools.kafka_reference as kref

    def no_maven(force: bool = False) -> Path:
        raise RuntimeError("resolving the Kafka jars failed: no network")

    monkeypatch.setattr(kref, "resolve_jars", no_maven)
    kafka = m.reference.LocalKafka(tmp_path / "logs")
    workdir = kafka.workdir
    assert workdir.exists()
    with pytest.raises(m.runner.BrokerError, match="reference Kafka did not start: resolving the Kafka jars failed"):
        kafka.start()
    assert not workdir.exists() and not kafka.alive() and kafka.tail() == []
    monkeypatch.setattr(m.reference, "backend", lambda: (None, "java is not on PATH"))
    with pytest.raises(m.runner.BrokerError, match="no reference Kafka can run here: java is not on PATH"):
        m.reference.make_reference(tmp_path)
    # Kafka gets kbroker's compat settings.
    assert m.reference.kafka_config()["group.initial.rebalance.delay.ms"] == "0"
