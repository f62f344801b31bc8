"""Topic administration through kafka-python against a live broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    yield client
    client.close()


def test_create_describe_delete(admin: KafkaAdminClient) -> None:
    resp = admin.create_topics({"t1": {"num_partitions": 3, "configs": {"retention.ms": "1000"}}, "t2": {}})
    by_name = {t["name"]: t for t in resp["topics"]}
    assert by_name["t1"]["num_partitions"] == 3 and by_name["t2"]["num_partitions"] == 1
    assert by_name["t1"]["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert sorted(admin.list_topics()) == ["t1", "t2"]
    (desc,) = admin.describe_topics(["t1"])
    assert [(p["partition_index"], p["leader_id"], p["isr_nodes"]) for p in desc["partitions"]] == [
        (0, 1, [1]), (1, 1, [1]), (2, 1, [1])]
    admin.delete_topics(["t2"])
    assert admin.list_topics() == ["t1"]
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics(["t2"])


@pytest.mark.parametrize(("name", "options", "error"), [
    ("bad topic", {}, InvalidTopicError),
    ("a" * 250, {}, InvalidTopicError),
    (".", {}, InvalidTopicError),
    ("..", {}, InvalidTopicError),
    ("zero", {"num_partitions": 0}, InvalidPartitionsError),
    ("minus-two", {"num_partitions": -2}, InvalidPartitionsError),
    ("rf3", {"replication_factor": 3}, InvalidReplicationFactorError),
])
def test_create_errors(admin: KafkaAdminClient, name: str, options: dict[str, int], error: type) -> None:
    with pytest.raises(error):
        admin.create_topics({name: options})
    assert admin.list_topics() == []


def test_already_exists(admin: KafkaAdminClient) -> None:
    admin.create_topics({"dup": {}})
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({"dup": {}})
    admin.create_topics({"dry": {"num_partitions": 2}}, validate_only=True)
    assert admin.list_topics() == ["dup"]


def test_create_partitions(admin: KafkaAdminClient) -> None:
    admin.create_topics({"grow": {"num_partitions": 1}})
    admin.create_partitions({"grow": 3})
    (desc,) = admin.describe_topics(["grow"])
    assert len(desc["partitions"]) == 3
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({"grow": 2})


def test_describe_configs_and_cluster(admin: KafkaAdminClient) -> None:
    admin.create_topics({"cfg": {"configs": {"cleanup.policy": "compact"}}})
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cfg"),
                                     ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
    topic = result["topic"]["cfg"]
    assert topic["cleanup.policy"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert topic["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert result["broker"]["1"]["log.dirs"]["config_source"] == "STATIC_BROKER_CONFIG"
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1 and len(cluster["cluster_id"]) == 22
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]


def test_consumer_topics_and_partitions(admin: KafkaAdminClient, kafka_bootstrap: str) -> None:
    admin.create_topics({"seen": {"num_partitions": 4}})
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.topics() == {"seen"}
        assert consumer.partitions_for_topic("seen") == {0, 1, 2, 3}
    finally:
        consumer.close()
