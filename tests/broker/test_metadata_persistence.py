"""Topics survive restarts, auto-creation follows the config, big topics stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from kbroker.testing import BrokerThread

TIMEOUT = 15


def _admin(b: BrokerThread) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})


def test_topics_and_configs_survive_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerThread(data) as b:
        admin = _admin(b)
        for f in admin.create_topics([NewTopic("keep", 2, 1, config={"retention.ms": "12345"}),
                                      NewTopic("drop", 1, 1)]).values():
            f.result(TIMEOUT)
        admin.create_partitions([NewPartitions("keep", 5)])["keep"].result(TIMEOUT)
        admin.delete_topics(["drop"])["drop"].result(TIMEOUT)
        before = b.broker.metadata
        cluster_id, topic_id = before.cluster_id, before.topic("keep").topic_id
    props = (data / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in props and "node.id=1" in props and "version=1" in props

    with BrokerThread(data) as b:
        md = b.broker.metadata
        assert md.cluster_id == cluster_id
        assert set(md.topics) == {"keep"} and md.topic("keep").topic_id == topic_id
        assert all(b.broker.log_manager.get_log("keep", i) is not None for i in range(5))
        assert b.broker.log_manager.get_log("drop", 0) is None
        admin = _admin(b)
        topics = admin.list_topics(timeout=TIMEOUT).topics
        assert set(topics) == {"keep"} and len(topics["keep"].partitions) == 5
        res = ConfigResource(ConfigResource.Type.TOPIC, "keep")
        configs = admin.describe_configs([res])[res].result(TIMEOUT)
        assert configs["retention.ms"].value == "12345" and not configs["retention.ms"].is_default
        assert b.broker.log_manager.get_log("keep", 4).config.retention_ms == 12345


def test_configured_cluster_id_must_match_stored(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"cluster.id": "AAAAAAAAAAAAAAAAAAAAAA"}) as b:
        assert b.broker.metadata.cluster_id == "AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(RuntimeError):
        BrokerThread(tmp_path / "d", {"cluster.id": "BBBBBBBBBBBBBBBBBBBBBB"}).start()


def test_thousand_partitions(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    admin.create_topics([NewTopic("wide", 1000, 1)], operation_timeout=60)["wide"].result(120)
    md = admin.list_topics("wide", timeout=TIMEOUT)
    assert len(md.topics["wide"].partitions) == 1000
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert consumer.partitions_for_topic("wide") == set(range(1000))
    finally:
        consumer.close()


def test_auto_create_on_metadata(kafka_broker: BrokerThread) -> None:
    # The producer asks for metadata of exactly this topic, which is what auto-creates it.
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_block_ms=10_000)
    try:
        assert producer.partitions_for("auto-made") == {0}
    finally:
        producer.close()
    assert kafka_broker.broker.metadata.topic("auto-made") is not None
    admin = _admin(kafka_broker)
    assert "librdkafka-made" in admin.list_topics("librdkafka-made", timeout=TIMEOUT).topics
    assert kafka_broker.broker.metadata.topic("librdkafka-made") is not None


def test_no_auto_create_when_disabled(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"auto.create.topics.enable": "false"}) as b:
        producer = KafkaProducer(bootstrap_servers=b.bootstrap, max_block_ms=1000)
        try:
            with pytest.raises(KafkaTimeoutError):
                producer.partitions_for("not-made")
        finally:
            producer.close()
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            assert admin.list_topics() == []
            admin.create_topics({"explicit": {}})  # explicit creation still works
            assert admin.list_topics() == ["explicit"]
        finally:
            admin.close()
        assert b.broker.metadata.topic("not-made") is None
