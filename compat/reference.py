"""Reference mode: the same matrix against Apache Kafka, when a Docker engine is there.

``python -m compat --reference`` starts Apache Kafka through testcontainers' KafkaContainer
and runs the selected scenarios against it, writing compat/work/reference/REPORT.md and
compat/work/reference/COMPARISON.md (every cell where kbroker and Kafka differ). Without a
Docker engine, or without the testcontainers package, it says why and runs nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

#: Apache Kafka's own image, KRaft mode; the version kbroker speaks.
KAFKA_IMAGE = "apache/kafka:4.1.0"


def unavailable_reason() -> str | None:
    """Why reference mode cannot run here, or None when it can."""
    if _kafka_container_class() is None:
        return "the testcontainers package is not installed (pip install 'testcontainers[kafka]')"
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker client on PATH"
    try:
        probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the Docker engine did not answer: {e}"
    if probe.returncode != 0 or not probe.stdout.strip():
        first = (probe.stderr.strip().splitlines() or ["no server version"])[0]
        return f"no Docker engine is running ({first})"
    return None


def _kafka_container_class() -> Any:
    """testcontainers' KafkaContainer (moved to testcontainers.community in 4.x), or None."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            return None
    return KafkaContainer


class ReferenceKafka:
    """Apache Kafka in a container, with the interface of compat.broker.Broker."""

    def __init__(self, image: str = KAFKA_IMAGE) -> None:
        container_class = _kafka_container_class()
        assert container_class is not None
        self._container: Any = container_class(image).with_kraft()
        self.bootstrap = ""
        self.log_path = "docker logs"

    def start(self) -> ReferenceKafka:
        self._container.start()
        self.bootstrap = self._container.get_bootstrap_server()
        return self

    def alive(self) -> bool:
        return True

    def tail(self, n: int = 5) -> list[str]:
        out, err = self._container.get_logs()
        return (out + err).decode(errors="replace").splitlines()[-n:]

    def stop(self) -> None:
        self._container.stop()


def comparison(kbroker: dict[tuple[str, str], str], kafka: dict[tuple[str, str], Any]) -> list[str]:
    """Markdown rows for every cell where kbroker's status differs from Kafka's."""
    rows = ["| client | scenario | kbroker | Apache Kafka |", "|---|---|---|---|"]
    for key in sorted(kafka):
        ours = kbroker.get(key, "-")
        theirs = kafka[key].status
        if ours != theirs:
            rows.append(f"| {key[0]} | {key[1]} | {ours} | {theirs}: {kafka[key].detail[:120]} |")
    return rows
