"""tools/lifecycle_crash in CI: a few SIGKILLs of a real broker while its log cleaner and
retention check run all the time; every restart must keep what was acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import lifecycle_crash


@pytest.mark.integration  # starts brokers through tools.bench.brokers, which the tiering cannot see
def test_sigkill_while_cleaning_and_deleting_loses_nothing_acknowledged(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = lifecycle_crash.main(["--runs", "4", "--seed", "7", "--min-s", "0.8", "--max-s", "2.0",
                               "--workdir", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert out.out.count("restarted in") == 4
