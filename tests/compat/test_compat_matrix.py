"""The compatibility matrix's fast subset (``python -m compat --fast --check``) as a pytest test.

Every fast scenario runs with every client against a kbroker subprocess; the test fails
when a cell that passes in the committed compat/REPORT.md does not pass now. In CI
(``CI=true``) the test first runs tools/setup-compat-env.sh (idempotent; kcat from apt,
kafkajs from npm into compat/work/) and a client still missing is a failure; elsewhere a
missing client skips the test with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
