"""librdkafka's own test suite (the tests in compat/librdkafka/tests.allow) against kbroker.

Opt-in: it needs librdkafka built (``bash tools/setup-compat-env.sh --librdkafka``) and
takes about 10 minutes, so it runs only with ``LIBRDKAFKA_SUITE=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "compat" / "work" / "librdkafka-2.12.0" / "tests" / "test-runner"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LIBRDKAFKA_SUITE") != "1",
                    reason="opt-in: set LIBRDKAFKA_SUITE=1 (runs librdkafka's suite, ~10 min)")
def test_librdkafka_allowed_tests_pass() -> None:
    if not RUNNER.exists():
        pytest.fail(f"{RUNNER} not built: bash tools/setup-compat-env.sh --librdkafka")
    proc = subprocess.run([sys.executable, "-m", "compat.librdkafka"], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, tail
