"""librdkafka's own test suite (the tests in compat/librdkafka/tests.allow) against kbroker.

Opt-in: it needs librdkafka built (``bash tools/setup-compat-env.sh --librdkafka``) and
takes about 10 minutes of mostly waiting, so it runs only with ``LIBRDKAFKA_SUITE=1``. Each
test number is its own pytest item (one ``python -m compat.librdkafka --tests ...`` run), so
a failure names the librdkafka test and pytest-xdist spreads the suite over its workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

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


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LIBRDKAFKA_SUITE") != "1",
                    reason="opt-in: set LIBRDKAFKA_SUITE=1 (runs librdkafka's suite, ~10 min)")
@pytest.mark.parametrize("number", sorted(ALLOWED))
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
