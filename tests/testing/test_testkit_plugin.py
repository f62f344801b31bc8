"""The pytest plugin's session fixtures, as a user's suite sees them: one broker for the whole
session served to confluent-kafka, kafka-python and aiokafka, fresh topics per test, an empty
broker after ``kafka_clean``, and the same suite run against a Kafka given by
``--kafka-bootstrap``."""

from __future__ import annotations

import pytest

from kbroker.testing import BrokerThread
from kbroker.testing.plugin import BOOTSTRAP_ENV, external_bootstrap

pytest_plugins = ["pytester"]
# The session broker runs inside a pytest subprocess, out of sight of tests/conftest.py's tiering.
pytestmark = pytest.mark.integration

#: A user's suite: every test takes the session broker through a fixture.
SUITE = '''
import asyncio
import os

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

PORTS = set()


def test_confluent_kafka(kafka_session_bootstrap, kafka_topic, kafka_admin):
    PORTS.add(kafka_session_bootstrap)
    p = Producer({"bootstrap.servers": kafka_session_bootstrap})
    for i in range(3):
        p.produce(kafka_topic, b"confluent-%d" % i)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": kafka_session_bootstrap, "group.id": "g-confluent",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(kafka_topic, 0, 0)])
    got = []
    while len(got) < 3:
        m = c.poll(10)
        assert m is not None and m.error() is None
        got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert got == [b"confluent-0", b"confluent-1", b"confluent-2"]
    assert kafka_admin.end_offsets(kafka_topic) == {0: 3}
    assert kafka_admin.committed("g-confluent") == {(kafka_topic, 0): 3}


def test_kafka_python(kafka_session_bootstrap, kafka_topic_factory, kafka_admin):
    from kafka import KafkaConsumer, KafkaProducer
    PORTS.add(kafka_session_bootstrap)
    topic = kafka_topic_factory(partitions=2, configs={"cleanup.policy": "compact"})
    assert kafka_admin.partitions(topic) == 2
    assert kafka_admin.topic_configs(topic) == {"cleanup.policy": "compact"}
    p = KafkaProducer(bootstrap_servers=kafka_session_bootstrap)
    p.send(topic, key=b"k", value=b"kafka-python", partition=1).get(10)
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=kafka_session_bootstrap, auto_offset_reset="earliest",
                      consumer_timeout_ms=10000)
    assert next(c).value == b"kafka-python"
    c.close()


def test_aiokafka(kafka_session_bootstrap, kafka_topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    PORTS.add(kafka_session_bootstrap)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=kafka_session_bootstrap)
        await p.start()
        try:
            await p.send_and_wait(kafka_topic, b"aiokafka")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(kafka_topic, bootstrap_servers=kafka_session_bootstrap,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 10)
        finally:
            await c.stop()
        return m.value

    assert asyncio.run(run()) == b"aiokafka"


@pytest.mark.kafka_topic(partitions=3, configs={"retention.ms": "60000"})
def test_topic_marker(kafka_topic, kafka_admin, request):
    assert kafka_admin.partitions(kafka_topic) == 3
    assert kafka_admin.topic_configs(kafka_topic) == {"retention.ms": "60000"}
    assert kafka_topic.startswith("test_topic_marker-")


def test_clean_broker_is_empty(kafka_admin, kafka_topic_factory):
    kafka_topic_factory(name="left-behind")
    kafka_admin.create_topic("also-left")


def test_clean(kafka_clean, kafka_admin):
    # the topics and groups of the tests before are gone; only the internal topics stay
    assert kafka_admin.topics() == []
    assert kafka_admin.groups() == []
    assert len(PORTS) == 1  # one broker served every test


def test_where(kafka_session_broker, kafka_session_bootstrap):
    expected = os.environ.get("EXPECTED_BOOTSTRAP")
    if expected:
        assert kafka_session_broker.external and kafka_session_bootstrap == expected
    else:
        assert not kafka_session_broker.external
        assert kafka_session_bootstrap == kafka_session_broker.bootstrap
'''


def test_session_fixture_serves_three_clients_and_cleans(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=7)


def test_same_suite_runs_against_a_running_kafka(pytester: pytest.Pytester, tmp_path, monkeypatch) -> None:
    """--kafka-bootstrap sends the session fixtures to a Kafka the suite did not start; the
    topics it made are deleted again, and reset() emptied that broker."""
    with BrokerThread(tmp_path / "outside") as outside:
        with outside.admin() as admin:
            admin.create_topic("before-the-suite")
        monkeypatch.setenv("EXPECTED_BOOTSTRAP", outside.bootstrap)
        pytester.makepyfile(test_suite=SUITE)
        result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", f"--kafka-bootstrap={outside.bootstrap}")
        result.assert_outcomes(passed=7)
        with outside.admin() as admin:
            assert admin.topics() == [] and admin.groups() == []


def test_environment_variable_names_the_kafka(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert external_bootstrap(pytester.parseconfig()) is None
    assert external_bootstrap(pytester.parseconfig("--kafka-bootstrap", "h1:9092")) == "h1:9092"
    monkeypatch.setenv(BOOTSTRAP_ENV, " h2:9092 ")
    assert external_bootstrap(pytester.parseconfig()) == "h2:9092"
    # the option wins over the environment
    assert external_bootstrap(pytester.parseconfig("--kafka-bootstrap=h1:9092")) == "h1:9092"


def test_broker_marker_sets_the_per_test_broker_configs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.kafka_broker(overrides={"num.partitions": 5})
        def test_marked(kafka_broker):
            with kafka_broker.admin() as admin:
                admin.create_topic("t", partitions=-1)
                assert admin.partitions("t") == 5

        def test_unmarked(kafka_broker):
            with kafka_broker.admin() as admin:
                admin.create_topic("t", partitions=-1)
                assert admin.partitions("t") == 1

        @pytest.mark.kafka_topic(partitions=2, colour="red")
        def test_bad_topic_marker(kafka_topic):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=2, errors=1)
    assert "unknown argument(s) ['colour']" in result.stdout.str()
