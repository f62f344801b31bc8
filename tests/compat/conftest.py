"""Fixtures for tests that compare kbroker with a real Apache Kafka (tools/kafka_reference).

``kafka_reference`` is one Kafka broker per test session (per xdist worker), started from the
jars tools/kafka_reference resolves with Maven. In CI (``CI=true``) a missing Java, Maven or
jar resolution is a failure; elsewhere the tests that need it skip with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import need, reference_unavailable


@pytest.fixture(scope="session")
def kafka_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running :class:`tools.kafka_reference.KafkaReference`, stopped at the end of the session."""
    why = reference_unavailable()
    if why is not None:
        need(f"reference Kafka: {why}")
    from tools.kafka_reference import KafkaReference, resolve_jars

    try:
        resolve_jars()
    except Exception as e:  # Maven's failure text is the reason
        need(f"reference Kafka: resolving the jars failed: {str(e)[:500]}")
    workdir: Path = tmp_path_factory.mktemp("kafka-reference")
    kafka = KafkaReference(workdir, heap="384m")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
