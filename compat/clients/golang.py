"""The Go clients of the matrix: franz-go, sarama and kafka-go.

Their scenarios live in the Go module compat/clients/go (one program per client under cmd/,
versions pinned in go.mod/go.sum); tools/setup-go-clients.sh (run by
tools/setup-compat-env.sh) builds them into compat/work/go-clients/bin. Each program runs as
``PROGRAM SCENARIO BOOTSTRAP`` and prints one ``COMPAT-RESULT`` line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from compat.client import Client

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE / "go"
BIN = HERE.parent / "work" / "go-clients" / "bin"
NOT_BUILT = "go client not built: run tools/setup-compat-env.sh"
OUT_OF_DATE = "go client out of date (sources newer than the binary): run tools/setup-compat-env.sh"


def module_version(module: str, go_mod: Path = MODULE_DIR / "go.mod") -> str:
    """The version go.mod requires of ``module`` (e.g. ``v1.22.3``)."""
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if m is None:
        raise LookupError(f"{module} not required in {go_mod}")
    return m.group(1)


def _sources() -> list[Path]:
    return [p for p in MODULE_DIR.rglob("*") if p.suffix == ".go" or p.name in ("go.mod", "go.sum")]


def build_problem(program: str, bin_dir: Path = BIN) -> str:
    """Why ``program`` cannot run ('' when it is built and newer than every source)."""
    exe = bin_dir / program
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        return NOT_BUILT
    built = exe.stat().st_mtime
    if any(p.stat().st_mtime > built for p in _sources()):
        return OUT_OF_DATE
    return ""


def _client(name: str, program: str, modules: list[str]) -> Client:
    def version() -> str:
        first, *rest = modules
        extra = ", ".join(f"{m.rsplit('/', 1)[-1]} {module_version(m)}" for m in rest)
        return module_version(first) + (f" ({extra})" if extra else "")

    return Client(name, "program", command=lambda: [str(BIN / program)],
                  check=lambda: build_problem(program), version_of=version)


GO_CLIENTS: list[Client] = [
    _client("franz-go", "franz", ["github.com/twmb/franz-go", "github.com/twmb/franz-go/pkg/kadm"]),
    _client("sarama", "sarama", ["github.com/IBM/sarama"]),
    _client("kafka-go", "kafkago", ["github.com/segmentio/kafka-go"]),
]
