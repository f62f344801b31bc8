"""KafkaContainer: a suite written for testcontainers runs with only its import changed.

The first three tests are testcontainers' own Kafka tests (modules/kafka/tests/test_kafka.py)
with ``from testcontainers.kafka import KafkaContainer`` replaced by kbroker's class."""

from __future__ import annotations

import socket

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kbroker.testing import KafkaContainer
from kbroker.testing.containers import config_key_of_env

# Starts brokers (also through Broker and KafkaContainer, which tests/conftest.py does not see).
pytestmark = pytest.mark.integration


def test_kafka_producer_consumer():
    with KafkaContainer() as container:
        produce_and_consume_kafka_message(container)


def test_kafka_with_kraft_producer_consumer():
    with KafkaContainer().with_kraft() as container:
        assert container.kraft_enabled
        produce_and_consume_kafka_message(container)


def test_kafka_producer_consumer_custom_port():
    with KafkaContainer(port=9888) as container:
        assert container.port == 9888
        produce_and_consume_kafka_message(container)


def produce_and_consume_kafka_message(container):
    topic = "test-topic"
    bootstrap_server = container.get_bootstrap_server()

    producer = KafkaProducer(bootstrap_servers=[bootstrap_server])
    producer.send(topic, b"verification message")
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap_server])
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning()
    assert consumer.end_offsets([tp])[tp] == 1, "Expected exactly one test message to be present on test topic !"


def test_environment_sets_broker_configs() -> None:
    container = (KafkaContainer("confluentinc/cp-kafka:7.6.0")
                 .with_env("KAFKA_NUM_PARTITIONS", "3")
                 .with_envs(KBROKER_AUTO_CREATE_TOPICS_ENABLE="false", KAFKA_BROKER_ID="7")
                 .with_name("ignored").with_command("ignored"))
    with container:
        admin = container.broker.admin()
        with admin:
            admin.create_topic("three", partitions=-1)
            assert admin.partitions("three") == 3
            assert container.broker.broker.config.get("auto.create.topics.enable") is False
    assert container.env["KAFKA_BROKER_ID"] == "7"


def test_env_names_map_as_the_confluent_image_reads_them() -> None:
    assert config_key_of_env("KAFKA_LOG_RETENTION_MS") == "log.retention.ms"
    assert config_key_of_env("KAFKA_LISTENER_NAME_INTERNAL_SSL_KEY__STORE_TYPE") == \
        "listener.name.internal.ssl.key_store.type"
    assert config_key_of_env("KAFKA_SOME___DASHED") == "some-dashed"
    assert config_key_of_env("KBROKER_LOG_DIRS") == "log.dirs"
    assert config_key_of_env("KAFKA_ADVERTISED_LISTENERS") is None  # container plumbing
    assert config_key_of_env("KAFKA_HEAP_OPTS") is None
    assert config_key_of_env("JAVA_HOME") is None


def test_bound_host_port_and_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    container = KafkaContainer().with_bind_ports(9093, free)
    with pytest.raises(RuntimeError, match="not started"):
        container.get_bootstrap_server()
    with container:
        assert container.get_bootstrap_server() == f"127.0.0.1:{free}"
        assert container.get_exposed_port(9093) == free
        with pytest.raises(ValueError, match="not served"):
            container.get_exposed_port(9092)
        with pytest.raises(RuntimeError, match="already started"):
            container.start()
    with pytest.raises(RuntimeError, match="not started"):
        container.get_exposed_port(9093)
    with pytest.raises(ValueError, match="PLAINTEXT"):
        KafkaContainer(security_protocol="SASL_PLAINTEXT")
