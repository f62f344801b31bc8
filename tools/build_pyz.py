"""Build ``kbroker.pyz``: kbroker and its pure-Python dependencies in one file (``make zipapp``).

The archive holds the ``kbroker`` and ``protocol`` packages and every pure-Python distribution
kbroker depends on, copied from the running interpreter's installation (no download). The
dependencies with compiled extensions (crc32c, lz4, zstandard, cramjam, regex, cryptography)
cannot load from a zip and are not bundled: the interpreter that runs the archive must have
them installed; the archive says which when one is missing.

On first run the archive extracts itself into ``$KBROKER_PYZ_ROOT`` (default
``~/.cache/kbroker/pyz``), one folder per build, and runs from there: kbroker reads its
protocol schemas from files and starts the log cleaner's worker as ``python -m``, neither of
which works from inside a zip.

    python tools/build_pyz.py [--output dist/kbroker.pyz] [--python "/usr/bin/env python3"]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import re
import shutil
import sys
import tempfile
import tomllib
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Suffixes of files a zip import cannot load.
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
#: Distributions whose compiled part is an optional speed-up over pure Python (MarkupSafe's
#: ``_speedups``): taken into the archive without it.
OPTIONAL_NATIVE = frozenset({"markupsafe"})
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

#: The archive's entry point: extract once per build, then run kbroker's command line.
BOOTSTRAP = '''\
"""kbroker.pyz: extract into a cache folder (once per build) and run ``kbroker``."""
import os
import sys
import zipfile
from pathlib import Path


def _root() -> Path:
    archive = Path(__file__).resolve().parent
    with zipfile.ZipFile(archive) as z:
        build = z.read("BUILD_ID").decode().strip()
        base = Path(os.environ.get("KBROKER_PYZ_ROOT") or Path.home() / ".cache" / "kbroker" / "pyz")
        root = base / build
        if not (root / "BUILD_ID").exists():
            base.mkdir(parents=True, exist_ok=True)
            tmp = base / f".{build}.{os.getpid()}"
            z.extractall(tmp)
            try:
                os.replace(tmp, root)  # atomic: a concurrent first run keeps its own copy's files
            except OSError:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def main() -> None:
    root = _root()
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(root)] + [p for p in sys.path if p != here]
    needed = (root / "NATIVE").read_text().split()
    missing = []
    for entry in needed:
        dist, _, module = entry.partition("=")
        try:
            __import__(module)
        except ImportError:
            missing.append(dist)
    if missing:
        sys.exit("kbroker.pyz needs these installed for this Python (" + sys.executable + "): "
                 "pip install " + " ".join(missing))
    from kbroker.cli import main as cli_main
    sys.exit(cli_main())


main()
'''


def _requirements(dist: md.Distribution) -> list[str]:
    """``dist``'s requirements that apply here (not extras), by distribution name."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging: every requirement that names no extra
        Requirement = None  # noqa: N806
    names = []
    for text in dist.requires or ():
        if Requirement is not None:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            names.append(req.name)
        elif "extra ==" not in text:
            m = _NAME.match(text)
            if m:
                names.append(m.group(1))
    return names


def _is_native(dist: md.Distribution) -> bool:
    return any(str(f).endswith(NATIVE_SUFFIXES) for f in dist.files or ())


def _module_of(dist: md.Distribution) -> str:
    """A module the distribution provides, to check it is importable."""
    top = (dist.read_text("top_level.txt") or "").split()
    if top:
        return top[0]
    for f in dist.files or ():
        parts = f.parts
        if len(parts) > 1 and not parts[0].endswith((".dist-info", ".data")) and parts[0] != "..":
            return parts[0]
        if len(parts) == 1 and parts[0].endswith(".py"):
            return parts[0][:-3]
    return dist.metadata["Name"].replace("-", "_").lower()


def resolve(requirements: list[str]) -> tuple[list[md.Distribution], list[md.Distribution]]:
    """The installed distributions ``requirements`` pull in: (pure ones, native ones). A native
    one's own requirements are left out (installing it brings them)."""
    pure: dict[str, md.Distribution] = {}
    native: dict[str, md.Distribution] = {}
    todo = list(requirements)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in pure or key in native:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: install kbroker's dependencies first") from None
        if _is_native(dist) and key not in OPTIONAL_NATIVE:
            native[key] = dist
        else:
            pure[key] = dist
            todo.extend(_requirements(dist))
    return list(pure.values()), list(native.values())


def _copy_dist(dist: md.Distribution, dest: Path) -> None:
    for f in dist.files or ():
        if f.parts[0] == ".." or "__pycache__" in f.parts or f.suffix == ".pyc" or str(f).endswith(NATIVE_SUFFIXES):
            continue  # scripts outside site-packages, byte code, optional compiled speed-ups
        src = Path(str(dist.locate_file(f)))
        if src.is_file():
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def build(output: Path, interpreter: str) -> list[str]:
    """Write the archive to ``output``; returns the distributions it needs installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [m.group(1) for r in project["dependencies"] if (m := _NAME.match(r))]
    pure, native = resolve(requirements)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "pyz"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for package in ("kbroker", "protocol"):
            shutil.copytree(ROOT / package, stage / package, ignore=ignore)
        for dist in pure:
            _copy_dist(dist, stage)
        (stage / "NATIVE").write_text("".join(f"{d.metadata['Name']}={_module_of(d)}\n" for d in native))
        (stage / "__main__.py").write_text(BOOTSTRAP)
        digest = hashlib.sha256()
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(stage)).encode() + b"\0" + path.read_bytes())
        (stage / "BUILD_ID").write_text(digest.hexdigest()[:16] + "\n")
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(stage, output, interpreter=interpreter, compressed=True)
    return sorted(d.metadata["Name"] for d in native)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "kbroker.pyz")
    parser.add_argument("--python", default="/usr/bin/env python3", help="the archive's #! interpreter")
    args = parser.parse_args(argv)
    native = build(args.output, args.python)
    print(f"{args.output}: needs Python {sys.version_info.major}.{sys.version_info.minor}+ with "
          f"these installed: pip install {' '.join(native)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
