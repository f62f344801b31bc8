"""The Go clients of the matrix: franz-go, sarama and kafka-go.

Their scenarios live in the Go module compat/clients/go (one program per client under cmd/,
versions pinned in go.mod/go.sum); tools/setup-go-clients.sh (run by
tools/setup-compat-env.sh) builds them into compat/work/go-clients/bin. Each program runs as
``PROGRAM SCENARIO BOOTSTRAP`` and prints one ``COMPAT-RESULT`` line.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from compat.client import Client

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE / "go"
BIN = HERE.parent / "work" / "go-clients" / "bin"
NOT_BUILT = "go client not built: run tools/setup-compat-env.sh"
OUT_OF_DATE = "go client out of date (built from other sources): run tools/setup-compat-env.sh"


def module_version(module: str, go_mod: Path = MODULE_DIR / "go.mod") -> str:
    """The version go.mod requires of ``module`` (e.g. ``v1.22.3``)."""
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if m is None:
        raise LookupError(f"{module} not required in {go_mod}")
    return m.group(1)


def _sources(module_dir: Path = MODULE_DIR) -> list[Path]:
    return sorted(p for p in module_dir.rglob("*") if p.suffix == ".go" or p.name in ("go.mod", "go.sum"))


def source_digest(module_dir: Path = MODULE_DIR) -> str:
    """A digest of the module's sources, go.mod and go.sum: what the binaries are built from.

    tools/setup-go-clients.sh records it (with the Go version) in ``work/go-clients/stamp``.
    """
    h = hashlib.sha256()
    for p in _sources(module_dir):
        h.update(p.relative_to(module_dir).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def build_problem(program: str, bin_dir: Path = BIN, module_dir: Path = MODULE_DIR) -> str:
    """Why ``program`` cannot run ('' when it is built from the current sources)."""
    exe = bin_dir / program
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        return NOT_BUILT
    try:
        recorded = (bin_dir.parent / "stamp").read_text().split()
    except OSError:
        return OUT_OF_DATE
    if not recorded or recorded[0] != source_digest(module_dir):
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
