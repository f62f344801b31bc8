"""tools/kafka_reference.write_kafka_path: a KAFKA_PATH whose scripts run Kafka's tool classes."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from tools.kafka_reference import reference


@pytest.fixture
def jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    monkeypatch.setattr(reference, "lib_dir", lambda: lib)
    monkeypatch.setattr(reference, "java_classpath", lambda: str(lib / "*"))
    return lib


def test_scripts_for_every_tool_and_run_class(tmp_path: Path, jars: Path) -> None:
    root = reference.write_kafka_path(tmp_path / "kp")
    names = {p.name for p in (root / "bin").iterdir()}
    assert names == {f"kafka-{n}.sh" for n in reference.TOOLS} | {"kafka-run-class.sh"}
    topics = (root / "bin" / "kafka-topics.sh").read_text()
    assert topics.startswith("#!/bin/sh\n")
    assert f'-cp "{jars}/*" org.apache.kafka.tools.TopicCommand "$@"' in topics
    assert os.access(root / "bin" / "kafka-topics.sh", os.X_OK)
    assert (root / "libs").resolve() == jars.resolve()


def test_run_class_puts_classpath_first(tmp_path: Path, jars: Path) -> None:
    root = reference.write_kafka_path(tmp_path / "kp")
    script = (root / "bin" / "kafka-run-class.sh").read_text().replace("exec java", "exec echo java")
    (root / "bin" / "kafka-run-class.sh").write_text(script)
    out = subprocess.run([str(root / "bin" / "kafka-run-class.sh"), "Cls", "a b"], capture_output=True, text=True,
                         env={**os.environ, "CLASSPATH": "/x/java"}, check=True).stdout
    assert f"-cp /x/java:{jars}/* Cls a b" in out


def test_concurrent_writers_leave_whole_files(tmp_path: Path, jars: Path) -> None:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            reference.write_kafka_path(tmp_path / "kp")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    left = sorted(p.name for p in (tmp_path / "kp").rglob("*") if p.name.endswith(".tmp"))
    assert left == []
    assert (tmp_path / "kp" / "libs").resolve() == jars.resolve()
