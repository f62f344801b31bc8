"""librdkafka's own test suite (the tests in compat/librdkafka/tests.allow) against kbroker.

Opt-in: it needs librdkafka built (``bash tools/setup-compat-env.sh --librdkafka``) and
takes about 8 minutes of mostly waiting, so it runs only with ``LIBRDKAFKA_SUITE=1``
(``=all`` adds its four longest tests). Each test number is its own pytest item (one
``python -m compat.librdkafka --tests ...`` run), so a failure names the librdkafka test and pytest-xdist spreads the suite over its workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.cluster.marks import CLUSTER_FEATURES

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "compat" / "work" / "librdkafka-2.12.0" / "tests" / "test-runner"
ALLOW = REPO / "compat" / "librdkafka" / "tests.allow"


def _allowed_by_number() -> dict[str, list[str]]:
    """The names in tests.allow (``name [reason]`` lines, ``#`` comments) by test number."""
    by_number: dict[str, list[str]] = defaultdict(list)
    for line in ALLOW.read_text().splitlines():
        name = line.split("#", 1)[0].strip().split(" ", 1)[0]
        if name:
            by_number[name[:4]].append(name)
    return dict(by_number)


ALLOWED = _allowed_by_number()
#: Allowed tests that take over a minute each, mostly waiting (re-authentication periods,
#: max.poll.interval.ms, transaction timeouts, regex re-subscriptions): about 5 of CI's
#: worker-minutes. ``LIBRDKAFKA_SUITE=all`` runs them too; CI (``=1``) runs every other one.
LONG = {"0033", "0091", "0103", "0142"}
SUITE = os.environ.get("LIBRDKAFKA_SUITE")


def _selected() -> list[str]:
    return sorted(n for n in ALLOWED if SUITE == "all" or n not in LONG)


def test_long_tests_are_allowed_ones() -> None:
    assert set(ALLOWED) >= LONG, LONG - set(ALLOWED)


@pytest.mark.slow
@pytest.mark.skipif(SUITE not in ("1", "all"),
                    reason="opt-in: set LIBRDKAFKA_SUITE=1 (librdkafka's suite but its longest tests, ~8 min) "
                           "or LIBRDKAFKA_SUITE=all")
@pytest.mark.parametrize("number", _selected())
def test_librdkafka_allowed_tests_pass(number: str, tmp_path: Path) -> None:
    if not RUNNER.exists():
        pytest.fail(f"{RUNNER} not built: bash tools/setup-compat-env.sh --librdkafka")
    # Results go to tmp_path so that concurrent runs never write the same file; the logs
    # (one file per test number) stay in compat/work/librdkafka-logs/.
    proc = subprocess.run([sys.executable, "-m", "compat.librdkafka", "--tests", ",".join(ALLOWED[number]),
                           "--results", str(tmp_path / "results.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert f"{len(ALLOWED[number])} passed, 0 failed" in proc.stdout, tail


CLUSTER_ALLOW = REPO / "compat" / "librdkafka" / "tests.cluster.allow"


def _cluster_allowed() -> list[str]:
    from compat.librdkafka.__main__ import read_list

    return sorted(read_list(CLUSTER_ALLOW))


def _cluster_selected() -> list[str]:
    """What runs against a cluster: all of tests.cluster.allow with ``LIBRDKAFKA_CLUSTER_SUITE=1``;
    with ``LIBRDKAFKA_SUITE=1`` (CI) only its bounded part, CLUSTER_CI (compat/librdkafka/cluster.py)."""
    from compat.librdkafka.cluster import CLUSTER_CI

    if os.environ.get("LIBRDKAFKA_CLUSTER_SUITE") == "1":
        return _cluster_allowed()
    return [name for name in _cluster_allowed() if name in CLUSTER_CI]


@pytest.mark.slow
@pytest.mark.skipif(not (os.environ.get("LIBRDKAFKA_CLUSTER_SUITE") == "1"
                         or (CLUSTER_FEATURES and SUITE in ("1", "all"))),
                    reason="opt-in: set LIBRDKAFKA_CLUSTER_SUITE=1 (librdkafka's tests against a 3-broker local "
                           "cluster; with the cluster features, LIBRDKAFKA_SUITE=1 runs the CLUSTER_CI part)")
@pytest.mark.parametrize("name", _cluster_selected())
def test_librdkafka_cluster_allowed_tests_pass(name: str, tmp_path: Path) -> None:
    if not RUNNER.exists():
        pytest.fail(f"{RUNNER} not built: bash tools/setup-compat-env.sh --librdkafka")
    proc = subprocess.run([sys.executable, "-m", "compat.librdkafka", "--cluster", "--tests", name,
                           "--results", str(tmp_path / "results.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert "1 passed, 0 failed" in proc.stdout, tail


def test_cluster_ci_part_is_allowed_and_bounded() -> None:
    """CI's part of the cluster run names only tests seen passing, and stays small (CI's time budget)."""
    from compat.librdkafka.cluster import CLUSTER_CI

    assert set(CLUSTER_CI) <= set(_cluster_allowed()), set(CLUSTER_CI) - set(_cluster_allowed())
    assert len(CLUSTER_CI) <= 12


def test_cluster_runs_name_known_tests_and_a_cluster_of_racks(tmp_path: Path) -> None:
    from compat.librdkafka.__main__ import parse_tests
    from compat.librdkafka.cluster import CLUSTER_CANDIDATES, ClusterBroker

    test_c = RUNNER.parent / "test.c"
    if test_c.exists():
        known = {t.name for t in parse_tests(test_c)}
        assert set(CLUSTER_CANDIDATES) <= known and set(_cluster_allowed()) <= known
    broker = ClusterBroker({"group.initial.rebalance.delay.ms": "3000"}, tmp_path / "run.broker.log", brokers=2)
    broker.start()
    try:
        assert len(broker.bootstrap.split(",")) == 2 and broker.alive()
        cmd = " ".join(broker.cluster.command(1))
        assert "broker.rack=RACK1" in cmd and "RackAwareReplicaSelector" in cmd and "num.partitions=4" in cmd
        broker.cluster.kill(1)
        assert not broker.alive() and broker.tail(1)[0].startswith("broker 1: ")
    finally:
        broker.stop()
    log = (tmp_path / "run.broker.log").read_text()
    assert "===== broker 1 =====" in log and "kbroker 1 listening on" in log
    assert not broker.data_dir.exists()
