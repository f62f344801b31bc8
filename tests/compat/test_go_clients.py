"""The Go clients' glue (compat/clients/golang.py) and their programs' result protocol.

The programs themselves are built by tools/setup-go-clients.sh; the tests that run them
skip when they are not built (in CI, where tools/setup-compat-env.sh builds them, they fail).
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from ci_helpers import need

from compat.clients import golang
from compat.runner import CLIENT_NAMES, CLIENTS

PREFIX = "COMPAT-RESULT "


def test_go_clients_are_in_the_matrix() -> None:
    assert [c.name for c in golang.GO_CLIENTS] == ["franz-go", "sarama", "kafka-go"]
    assert set(CLIENT_NAMES) >= {"franz-go", "sarama", "kafka-go"}
    assert all(c.kind == "program" for c in CLIENTS if c.name in ("franz-go", "sarama", "kafka-go"))


def test_versions_come_from_go_mod() -> None:
    versions = {c.name: c.version_of() for c in golang.GO_CLIENTS if c.version_of is not None}
    assert versions["sarama"] == golang.module_version("github.com/IBM/sarama")
    assert versions["sarama"].startswith("v1.")
    assert versions["franz-go"].startswith(golang.module_version("github.com/twmb/franz-go") + " (kadm v")
    assert versions["kafka-go"] == golang.module_version("github.com/segmentio/kafka-go")


def test_module_version_parses_both_require_forms(tmp_path: Path) -> None:
    go_mod = tmp_path / "go.mod"
    go_mod.write_text("module x\n\ngo 1.26.0\n\nrequire example.com/single v0.1.2\n\n"
                      "require (\n\texample.com/a v1.2.3\n\texample.com/a/sub v0.9.0 // indirect\n)\n")
    assert golang.module_version("example.com/single", go_mod) == "v0.1.2"
    assert golang.module_version("example.com/a", go_mod) == "v1.2.3"
    assert golang.module_version("example.com/a/sub", go_mod) == "v0.9.0"
    with pytest.raises(LookupError):
        golang.module_version("example.com/missing", go_mod)


def test_build_problem_names_missing_and_stale_binaries(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cmd").mkdir(parents=True)
    (src / "go.mod").write_text("module x\n")
    (src / "cmd" / "main.go").write_text("package main\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    assert golang.build_problem("franz", bin_dir, src) == golang.NOT_BUILT
    exe = bin_dir / "franz"
    exe.write_text("#!/bin/sh\n")
    assert golang.build_problem("franz", bin_dir, src) == golang.NOT_BUILT  # not executable
    exe.chmod(0o755)
    assert golang.build_problem("franz", bin_dir, src) == golang.OUT_OF_DATE  # no stamp
    (tmp_path / "stamp").write_text(golang.source_digest(src) + " go1.26.0\n")
    assert golang.build_problem("franz", bin_dir, src) == ""
    (src / "cmd" / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert golang.build_problem("franz", bin_dir, src) == golang.OUT_OF_DATE
    (src / "cmd" / "main.go").write_text("package main\n")
    (src / "go.sum").write_text("")
    assert golang.build_problem("franz", bin_dir, src) == golang.OUT_OF_DATE  # a new file counts


def _program(name: str) -> Path:
    why = golang.build_problem(name)
    if why:
        need(f"{name}: {why}")
    return golang.BIN / name


def _result(args: list[str]) -> dict[str, str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PREFIX)]
    assert len(lines) == 1, proc.stdout + proc.stderr
    result: dict[str, str] = json.loads(lines[0][len(PREFIX):])
    return result


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("program", ["franz", "sarama", "kafkago"])
def test_unknown_scenario_is_na_and_unreachable_broker_fails(program: str) -> None:
    exe = _program(program)
    r = _result([str(exe), "no_such_scenario", "127.0.0.1:9"])
    assert r["status"] == "na" and "no implementation" in r["detail"]
    r = _result([str(exe), "admin_topics", _closed_port()])
    assert r["status"] == "fail" and r["detail"], r
