"""tools/chaos: the verdict (loss, duplication, unavailability) and short runs against a real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.localcluster import ClusterError
from tests.cluster.marks import requires_cluster_features
from tools.chaos.run import FAULTS, PartitionReport, Report, inject, longest_gap, main, tally

ROOT = Path(__file__).resolve().parents[2]


def test_tally_finds_lost_and_duplicated_messages_per_partition() -> None:
    acked = {0: [0, 2, 4], 1: [1, 3]}
    # Partition 0: 2 never read (lost), 4 read at two offsets (duplicated); partition 1 intact,
    # and 5 was written without an acknowledgement (allowed: its delivery failed or timed out).
    read = {(0, 0): 0, (0, 1): 4, (0, 2): 4, (1, 0): 1, (1, 1): 3, (1, 2): 5}
    times = {0: [1.0, 2.0, 6.0], 1: [1.5]}
    p0, p1 = tally(acked, read, times, 2, (0.0, 7.0))
    assert (p0.acknowledged, p0.lost, p0.duplicated, p0.lost_sample) == (3, 1, 1, [2])
    assert p0.longest_unavailable_s == 4.0
    assert (p1.acknowledged, p1.lost, p1.duplicated) == (2, 0, 0) and p1.longest_unavailable_s == 5.5


def test_longest_gap_counts_the_window_edges() -> None:
    assert longest_gap([], 0.0, 3.0) == 3.0
    assert longest_gap([0.5, 1.0, 9.0], 0.0, 2.0) == 1.0  # acks outside the window are ignored


def _report(**kw: object) -> Report:
    base = {"partitions": [PartitionReport(0, 10, 0, 0, 0.5)], "rounds": [], "failed_deliveries": {},
            "fatal_error": None, "unread_partitions": [], "seconds": 1.0}
    base.update(kw)
    return Report(**base)  # type: ignore[arg-type]


def test_report_verdicts() -> None:
    assert _report().ok and "OK: no loss" in _report().render()
    lost = _report(partitions=[PartitionReport(0, 10, 2, 0, 0.5)])
    assert not lost.ok and "2 acknowledged messages lost" in lost.render()
    dup = _report(partitions=[PartitionReport(0, 10, 0, 1, 0.5)])
    assert dup.problems() == ["1 messages duplicated"]
    assert not _report(fatal_error="OUT_OF_ORDER_SEQUENCE_NUMBER: x").ok
    assert not _report(unread_partitions=[1]).ok
    assert _report(partitions=[PartitionReport(0, 0, 0, 0, 9.0)]).problems() == ["nothing was acknowledged"]
    assert json.loads(json.dumps(lost.to_json()))["lost"] == 2


def test_bad_arguments_exit_2() -> None:
    assert main(["--faults", "explode"]) == 2
    assert main(["--brokers", "0"]) == 2
    assert main(["--override", "novalue"]) == 2


def _chaos(tmp_path: Path, *argv: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "tools.chaos", "--dir", str(tmp_path / "c"), "--json", str(out),
                           *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_single_broker_crashes_lose_nothing(tmp_path: Path) -> None:
    # One broker, RF 1: a SIGKILL keeps what was acknowledged (it is in the OS page cache).
    proc, report = _chaos(tmp_path, "--brokers", "1", "--rounds", "2", "--seconds-per-round", "3",
                          "--partitions", "2", "--faults", "kill,bounce", "--message-timeout", "20",
                          "--seed", "7", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert report["ok"] and report["acknowledged"] > 0 and report["lost"] == 0 and report["duplicated"] == 0
    assert [r["fault"] for r in report["rounds"]] and len(report["rounds"]) == 2
    assert json.loads((tmp_path / "c" / "cluster.json").read_text())["etcd"]["pid"] is None  # all stopped


@requires_cluster_features
def test_three_brokers_survive_faults_without_loss(tmp_path: Path) -> None:
    proc, report = _chaos(tmp_path, "--brokers", "3", "--rounds", "4", "--seconds-per-round", "5",
                          "--partitions", "3", "--message-timeout", "40", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert report["ok"] and report["acknowledged"] > 0
    # A partition is unavailable for about a session timeout (3 s) plus an election, and the
    # producer's request timeout (6 s) when its leader froze; 30 s leaves room for a slow machine.
    assert max(p["longest_unavailable_s"] for p in report["partitions"]) < 30


class FakeCluster:
    """Records the calls :func:`inject` makes; ``fail_restart`` makes restarts fail."""

    brokers = 3

    def __init__(self, fail_restart: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_restart = fail_restart

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def call(i: int) -> None:
            self.calls.append((name, i))
            if name == "restart" and self.fail_restart:
                raise ClusterError(f"broker {i} exited with 1")
        return call


def test_every_fault_is_healed_before_the_next_round() -> None:
    import random
    import time

    c = FakeCluster()
    done = inject(c, 8, 0.0, random.Random(3), time.monotonic() + 60, FAULTS, lambda _m: None)  # type: ignore[arg-type]
    assert len(done) == 8
    heal = {"kill": ["kill", "restart"], "pause": ["pause", "resume"], "terminate": ["terminate", "restart"],
            "bounce": ["kill", "restart"]}
    expected = [(op, r["broker"]) for r in done for op in heal[r["fault"]]]
    assert c.calls == expected


def test_rounds_stop_at_the_deadline_and_a_failed_restart_stops_them() -> None:
    import random
    import time

    c = FakeCluster()
    assert inject(c, 5, 10.0, random.Random(1), time.monotonic() + 1, FAULTS, lambda _m: None) == []  # type: ignore[arg-type]
    assert c.calls == []
    bad = FakeCluster(fail_restart=True)
    done: list[dict] = []
    with pytest.raises(ClusterError):
        inject(bad, 5, 0.0, random.Random(1), time.monotonic() + 60, ("kill",), lambda _m: None, done)  # type: ignore[arg-type]
    assert done == [] and bad.calls[-1][0] == "restart"
    assert "fault injection stopped: broker 0" in _report(aborted="broker 0 exited with 1").render()
