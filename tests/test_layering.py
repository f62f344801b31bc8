"""The layering contract: kbroker's packages sit on floors, and no import runs upward.

Every import is read from the source (module level, inside functions and under
``TYPE_CHECKING`` alike), so an upward dependency cannot hide from the interpreter.
docs/ARCHITECTURE.md describes the floors; :data:`FLOORS` is their single source of truth.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kbroker"

#: Floors from the ground up; a module may import its own floor's modules and those below.
FLOORS: list[set[str]] = [
    {"kbroker.clock", "kbroker.common", "kbroker.config", "kbroker.fs", "kbroker.heap"},
    {"kbroker.records"},
    {"kbroker.codec"},
    {"kbroker.log", "kbroker.client", "kbroker.security", "kbroker.etcd"},
    {"kbroker.metadata", "kbroker.txn"},
    {"kbroker.replica", "kbroker.groups", "kbroker.share"},
    {"kbroker.handlers"},
    {"kbroker.server", "kbroker.console"},
    {"kbroker.broker"},
    {"kbroker.cli", "kbroker.testing", "kbroker.localcluster", "kbroker.__main__", "kbroker"},
]

def unit_of(module: str) -> str:
    """The floor member (package or top-level module) that ``module`` belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    return ".".join(parts[:2])


def floor_of(unit: str) -> int:
    for i, members in enumerate(FLOORS):
        if unit in members:
            return i
    raise AssertionError(f"{unit} is on no floor: add it to FLOORS and docs/ARCHITECTURE.md")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every kbroker module that ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "kbroker")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kbroker":
                continue
            out.add(target)
            # ``from kbroker import broker`` imports the module kbroker.broker
            out.update(f"{target}.{a.name}" for a in node.names
                       if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(".py").exists())
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for importer, targets in graph().items():
        src = unit_of(importer)
        for target in targets:
            dst = unit_of(target)
            if dst != src and dst != "kbroker" and floor_of(dst) > floor_of(src):
                found.add((src, dst))
    return found


def test_every_unit_has_a_floor() -> None:
    for module in graph():
        floor_of(unit_of(module))


def test_no_import_runs_upward() -> None:
    found = sorted(upward_imports())
    assert not found, f"imports running upward (importer, imported): {found}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for importer, targets in graph().items():
        src = unit_of(importer)
        edges.setdefault(src, set()).update(
            unit_of(t) for t in targets if unit_of(t) not in (src, "kbroker"))
    assert _cycles(edges) == []


def test_no_import_circle_between_modules() -> None:
    modules = graph()
    # A package's __init__ re-exporting its submodules is not a circle of dependencies.
    edges = {m: {t for t in ts if t in modules and not m.startswith(t + ".")} for m, ts in modules.items()}
    assert _cycles(edges) == []


@pytest.mark.parametrize("importer, expected", [
    ("kbroker.log.segment", "kbroker.log"),
    ("kbroker", "kbroker"),
    ("kbroker.broker", "kbroker.broker"),
])
def test_unit_of(importer: str, expected: str) -> None:
    assert unit_of(importer) == expected
