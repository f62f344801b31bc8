"""librdkafka 2.15.1's KIP-848 consumer-group and share-consumer tests (the ones listed in
compat/librdkafka/tests.v2.15.allow) against kbroker.

Opt-in like librdkafka 2.12.0's suite (tests/compat/test_compat_librdkafka.py): it needs the
2.15.1 build (``bash tools/setup-compat-env.sh --librdkafka``) and runs with
``LIBRDKAFKA_SUITE=1``; each test number is one ``python -m compat.librdkafka --suite 2.15
--tests ...`` run. Only the listed tests run (CI's time budget); a listed test that does not pass
fails. An empty list is reported as a skip that says so, never as a pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from compat.librdkafka.__main__ import SUITES, parse_tests, read_list
from compat.librdkafka.v215 import V215_CANDIDATES

REPO = Path(__file__).resolve().parents[2]
SUITE = SUITES["2.15"]
RUNNER = SUITE.build / "tests" / "test-runner"


def _allowed_by_number() -> dict[str, list[str]]:
    by_number: dict[str, list[str]] = defaultdict(list)
    for name in read_list(SUITE.allow):
        by_number[name[:4]].append(name)
    return dict(by_number)


ALLOWED = _allowed_by_number()
#: Listed tests that take over a minute each (the share-consumer tests wait out acquisition
#: locks, sessions and max.poll.interval.ms): ``LIBRDKAFKA_SUITE=all`` runs them, CI (``=1``)
#: every other listed test.
LONG = {"0170", "0172", "0173", "0174", "0176", "0177", "0178", "0180", "0181", "0184", "0185"}
SELECTED = sorted(n for n in ALLOWED if os.environ.get("LIBRDKAFKA_SUITE") == "all" or n not in LONG)
#: One item per listed test number; a single "empty" item when the list is empty.
NUMBERS = SELECTED or ["empty"]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LIBRDKAFKA_SUITE") not in ("1", "all"),
                    reason="opt-in: set LIBRDKAFKA_SUITE=1 (runs librdkafka 2.15.1's listed tests)")
@pytest.mark.parametrize("number", NUMBERS)
def test_librdkafka_v215_allowed_tests_pass(number: str, tmp_path: Path) -> None:
    if number == "empty":
        pytest.skip(f"{SUITE.allow.name} lists no test yet: nothing of librdkafka 2.15.1's suite is checked "
                    "(run python -m compat.librdkafka --suite 2.15 --all to see where they stand)")
    if not RUNNER.exists():
        pytest.fail(f"{RUNNER} not built: bash tools/setup-compat-env.sh --librdkafka")
    proc = subprocess.run([sys.executable, "-m", "compat.librdkafka", "--suite", "2.15",
                           "--tests", ",".join(ALLOWED[number]), "--results", str(tmp_path / "results.json"),
                           "--logs", str(tmp_path / "logs")],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert f"{len(ALLOWED[number])} passed, 0 failed" in proc.stdout, tail


def test_v215_long_tests_are_listed_ones() -> None:
    assert set(ALLOWED) >= LONG, LONG - set(ALLOWED)


def test_v215_lists_name_candidates() -> None:
    """Every candidate test is in exactly one of the allow and exclude lists, and the candidates
    are tests of the 2.15.1 suite that need a broker (when it is built)."""
    allow, exclude = set(read_list(SUITE.allow)), set(read_list(SUITE.exclude))
    assert allow <= set(V215_CANDIDATES), allow - set(V215_CANDIDATES)
    assert exclude <= set(V215_CANDIDATES), exclude - set(V215_CANDIDATES)
    assert not allow & exclude, allow & exclude
    assert allow | exclude == set(V215_CANDIDATES), set(V215_CANDIDATES) - allow - exclude  # each has a status
    test_c = SUITE.build / "tests" / "test.c"
    if test_c.exists():
        known = {t.name: t for t in parse_tests(test_c)}
        assert set(V215_CANDIDATES) <= set(known), set(V215_CANDIDATES) - set(known)
        assert not any("TEST_F_LOCAL" in known[n].flags for n in V215_CANDIDATES)


def test_runner_refuses_what_the_v215_suite_cannot_run() -> None:
    from compat.librdkafka.__main__ import main

    assert main(["--suite", "2.15", "--cluster"]) == 2
    if RUNNER.exists():
        assert main(["--suite", "2.15", "--tests", "0012_produce_consume@SASL_SSL/PLAIN"]) == 2
