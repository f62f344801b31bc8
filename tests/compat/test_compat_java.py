"""The Java columns of the matrix (compat/clients/java.py): availability, versions and n/a cells.

The JVM tests need tools/setup-java-clients.sh's build; without it they skip (in CI they fail,
as the other compat clients do).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ci_helpers import need

from compat.clients import java
from compat.runner import CLIENT_NAMES, run_cell
from compat.scenarios import BY_ID


def test_columns_are_in_the_matrix() -> None:
    assert {"java", "kafka-streams"} <= set(CLIENT_NAMES)
    assert {"streams_wordcount_alos", "streams_wordcount_eos"} <= set(BY_ID)
    assert all(BY_ID[s].timeout <= 150 for s in ("streams_wordcount_alos", "streams_wordcount_eos"))


def test_missing_java_or_build_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(java.shutil, "which", lambda name: None)
    assert java.JAVA_CLIENTS[0].missing() == "java not installed"
    monkeypatch.setattr(java.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(java, "CLASSES", tmp_path / "classes")
    monkeypatch.setattr(java, "LIB", tmp_path / "lib")
    for client in java.JAVA_CLIENTS:
        assert client.missing() == "not built: run tools/setup-compat-env.sh"
    assert java.JAVA_CLIENTS[0].version_of is not None
    assert java.JAVA_CLIENTS[0].version_of() == "not installed"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "kafka-streams-4.1.1.jar").write_bytes(b"")
    assert java.JAVA_CLIENTS[1].version_of is not None
    assert java.JAVA_CLIENTS[1].version_of() == "kafka-streams 4.1.1"


def _built() -> None:
    why = java.JAVA_CLIENTS[1].missing()
    if why:
        need(f"Java compat clients: {why}")


def _result(args: list[str]) -> dict[str, str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("COMPAT-RESULT ")]
    assert lines, out
    result: dict[str, str] = json.loads(lines[-1].removeprefix("COMPAT-RESULT "))
    return result


def test_cells_outside_a_columns_scope_are_na() -> None:
    """Neither JVM touches the broker for these, so an unreachable bootstrap is fine."""
    _built()
    assert java.JAVA_CLIENTS[0].command is not None and java.JAVA_CLIENTS[1].command is not None
    r = _result([*java.JAVA_CLIENTS[0].command(), "streams_wordcount_eos", "127.0.0.1:1"])
    assert r == {"status": "na", "detail": "a Kafka Streams scenario (Java library): it runs in the kafka-streams column"}
    r = _result([*java.JAVA_CLIENTS[0].command(), "no_such_scenario", "127.0.0.1:1"])
    assert r["status"] == "na"
    cell = run_cell(java.JAVA_CLIENTS[1], BY_ID["metadata"], "127.0.0.1:1")
    assert (cell.status, cell.detail) == (
        "na", "Kafka Streams is a stream-processing library; this scenario is for producer/consumer clients")
