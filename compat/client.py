"""A column of the compatibility matrix (kept apart from compat.runner so client modules can build them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NODE_MODULES = Path(__file__).resolve().parent / "work" / "node_modules"


@dataclass(frozen=True)
class Client:
    """One column of the matrix.

    ``kind`` is "python" (``python -m compat.cell``), "node" (kafkajs.js) or "program": a client
    built by the set-up scripts (Java, Go) and run as ``command() + [scenario, bootstrap]``,
    printing the same ``COMPAT-RESULT`` line; ``check()`` says why it cannot run ('' when it
    can) and ``version_of()`` names its version.
    """

    name: str
    kind: str
    version: str = ""
    command: Callable[[], list[str]] | None = None
    check: Callable[[], str] | None = None
    version_of: Callable[[], str] | None = None

    def missing(self) -> str:
        """Why this client cannot run here ('' when it can)."""
        if self.kind == "program":
            return self.check() if self.check is not None else ""
        if self.name == "kcat" and not shutil.which("kcat"):
            return "kcat not installed (apt-get install kcat; tools/setup-compat-env.sh)"
        if self.kind == "node":
            if not shutil.which("node"):
                return "node not installed"
            if not (NODE_MODULES / "kafkajs" / "package.json").exists():
                return "kafkajs not installed in compat/work/node_modules (tools/setup-compat-env.sh)"
        if self.kind == "python":
            mod = {"kafka-python": "kafka", "confluent-kafka": "confluent_kafka", "aiokafka": "aiokafka",
                   "kcat": "confluent_kafka"}[self.name]
            import importlib.util
            if importlib.util.find_spec(mod) is None:
                return f"python package for {self.name} not installed"
        return ""
