"""A user's test suite on the plugin's session fixtures, run by pytester against the embedded
session broker (tests/testing) and against Apache Kafka (tests/compat)."""

from __future__ import annotations

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
    c = Consumer({"bootstrap.servers": kafka_session_bootstrap, "group.id": "g-" + kafka_topic,
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
    assert kafka_admin.committed("g-" + kafka_topic) == {(kafka_topic, 0): 3}


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
