"""Reference mode (the matrix against Apache Kafka in Docker) says why when it cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_reference_mode_runs_or_explains() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from compat.reference import unavailable_reason
    finally:
        sys.path.remove(str(REPO))
    why = unavailable_reason()
    if why is None:
        pytest.skip("a Docker engine is available: run `python -m compat --reference` for the comparison")
    proc = subprocess.run([sys.executable, "-m", "compat", "--reference", "--scenarios", "metadata"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert f"reference mode skipped: {why}" in proc.stdout
