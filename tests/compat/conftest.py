"""Fixtures for tests that compare kbroker with a real Apache Kafka (tools/kafka_reference).

``kafka_reference`` is one Kafka broker per test session (per xdist worker), started from the
jars tools/kafka_reference resolves with Maven. In CI (``CI=true``) a missing Java, Maven or
jar resolution is a failure; elsewhere the tests that need it skip with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ci_helpers import reference_kafka


@pytest.fixture(scope="session")
def kafka_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running :class:`tools.kafka_reference.KafkaReference`, stopped at the end of the session."""
    with reference_kafka(tmp_path_factory.mktemp("kafka-reference")) as kafka:
        yield kafka
