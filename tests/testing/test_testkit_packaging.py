"""The single-file build (``make zipapp``) serves real clients from outside the source tree; it
names the compiled dependencies it needs when one is missing. The wheel (``make wheel``: pip
fetches setuptools, so it needs the network) is checked with KBROKER_PACKAGING_TESTS=1."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kbroker.testing import KafkaAdmin

pytestmark = pytest.mark.integration  # starts broker processes

ROOT = Path(__file__).resolve().parents[2]


def _build_pyz() -> object:
    spec = importlib.util.spec_from_file_location("build_pyz", ROOT / "tools" / "build_pyz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyz") / "kbroker.pyz"
    native = _build_pyz().build(out, "/usr/bin/env python3")  # type: ignore[attr-defined]
    assert native == ["cramjam", "crc32c", "cryptography", "lz4", "regex", "zstandard"]
    return out


@contextmanager
def _serve(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run ``kbroker serve``; yields its bootstrap, then stops it with SIGTERM (a clean exit)."""
    with open(cwd / "serve.log", "w") as log:  # a file, not a pipe: a full pipe would block the broker
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"listening on PLAINTEXT://(127\.0\.0\.1:\d+)", line)
        assert found, (line, (cwd / "serve.log").read_text()[-2000:])
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, (cwd / "serve.log").read_text()[-2000:]


def _round_trip(bootstrap: str) -> None:
    with KafkaAdmin(bootstrap) as admin:
        admin.create_topic("packaged", 2)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce("packaged", b"from the archive", partition=1)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g"})
    c.assign([TopicPartition("packaged", 1, 0)])
    m = c.poll(10)
    c.close()
    assert m is not None and m.value() == b"from the archive"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KBROKER_"))}
    env.update(extra)
    return env


def test_pyz_serves_from_outside_the_source_tree(pyz: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(pyz) as z:
        names = set(z.namelist())
    assert {"__main__.py", "kbroker/cli/__init__.py", "protocol/errors.json", "construct/__init__.py",
            "anyio/__init__.py"} <= names
    assert not any(n.endswith((".so", ".pyd", ".dylib")) for n in names)
    # -I: no PYTHONPATH, no current directory; kbroker can only come from the archive
    env = _clean_env(KBROKER_PYZ_ROOT=str(tmp_path / "cache"))
    command = [sys.executable, "-I", str(pyz), "serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0",
               "--override", f"log.dirs={tmp_path / 'data'}"]
    with _serve(command, tmp_path, env) as bootstrap:
        _round_trip(bootstrap)
    (extracted,) = (tmp_path / "cache").iterdir()
    assert (extracted / "kbroker" / "broker.py").is_file()


def test_pyz_names_a_missing_compiled_dependency(pyz: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "lz4.py").write_text("raise ImportError('not built for this Python')\n")
    env = _clean_env(KBROKER_PYZ_ROOT=str(tmp_path / "cache"), PYTHONPATH=str(shadow))
    out = subprocess.run([sys.executable, str(pyz), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "kbroker.pyz needs these installed" in out.stderr and "pip install lz4" in out.stderr


@pytest.mark.skipif(os.environ.get("KBROKER_PACKAGING_TESTS") != "1",
                    reason="builds a wheel with pip (network, ~15 s): set KBROKER_PACKAGING_TESTS=1")
def test_wheel_installs_and_serves(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: setuptools leaves build/ and an egg-info in the tree it builds
    for name in ("kbroker", "protocol"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(src)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("kbroker-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "protocol/messages/ProduceRequest.json" in names and "kbroker/testing/plugin.py" in names
    assert "kbroker = kbroker.cli:main" in entry_points and "kbroker = kbroker.testing" in entry_points
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(tmp_path / "site"), str(wheel)], check=True, timeout=300)
    env = _clean_env(PYTHONPATH=str(tmp_path / "site"))
    command = [sys.executable, "-m", "kbroker", "serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0",
               "--override", f"log.dirs={tmp_path / 'data'}"]
    with _serve(command, tmp_path, env) as bootstrap:
        _round_trip(bootstrap)
