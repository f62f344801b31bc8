"""The pytest plugin gives any test suite a running broker through the kafka_bootstrap fixture."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
# The broker runs inside a pytest subprocess, out of sight of tests/conftest.py's tiering.
pytestmark = pytest.mark.integration


def test_plugin_fixture_serves_real_clients(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from confluent_kafka import Consumer, Producer, TopicPartition

        def test_round_trip(kafka_bootstrap):
            p = Producer({"bootstrap.servers": kafka_bootstrap})
            p.produce("plugin-topic", b"hello")
            assert p.flush(10) == 0
            c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "g"})
            c.assign([TopicPartition("plugin-topic", 0, 0)])
            msg = c.poll(10)
            assert msg is not None and msg.value() == b"hello"
            c.close()
        """
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)
