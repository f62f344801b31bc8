"""Fixtures for tests that compare kbroker with a real Apache Kafka (tools/kafka_reference).

``kafka_reference`` is one Kafka broker per test session (per xdist worker), started from the
jars tools/kafka_reference resolves with Maven. In CI (``CI=true``) a missing Java, Maven or
jar resolution is a failure; elsewhere the tests that need it skip with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def reference_unavailable() -> str | None:
    """Why a reference Kafka cannot run here, or None."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (the reference Kafka runs from Maven Central's jars)"
    return None


def _need(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"reference Kafka unavailable in CI: {reason}")
    pytest.skip(f"reference Kafka unavailable: {reason}")


@pytest.fixture(scope="session")
def kafka_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running :class:`tools.kafka_reference.KafkaReference`, stopped at the end of the session."""
    why = reference_unavailable()
    if why is not None:
        _need(why)
    from tools.kafka_reference import KafkaReference, resolve_jars

    try:
        resolve_jars()
    except Exception as e:  # Maven's failure text is the reason
        _need(f"resolving the Kafka jars failed: {str(e)[:500]}")
    workdir: Path = tmp_path_factory.mktemp("kafka-reference")
    kafka = KafkaReference(workdir, heap="384m")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
