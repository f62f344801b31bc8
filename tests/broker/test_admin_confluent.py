"""Topic administration through confluent-kafka (librdkafka) against a live broker."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

TIMEOUT = 15


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap, "broker.address.family": "v4"})


def _error(future: Any) -> KafkaError | None:
    try:
        future.result(TIMEOUT)
    except KafkaException as e:
        err: KafkaError = e.args[0]
        return err
    return None


def test_create_list_delete(admin: AdminClient) -> None:
    futures = admin.create_topics([NewTopic("orders", 3, 1, config={"retention.ms": "60000"}),
                                   NewTopic("events", -1, -1)])
    assert {name: _error(f) for name, f in futures.items()} == {"orders": None, "events": None}
    md = admin.list_topics(timeout=TIMEOUT)
    assert {t: len(m.partitions) for t, m in md.topics.items()} == {"orders": 3, "events": 1}
    assert md.controller_id == 1 and list(md.brokers) == [1]
    assert all(p.leader == 1 and p.replicas == [1] and p.isrs == [1] for p in md.topics["orders"].partitions.values())
    assert _error(admin.delete_topics(["orders"])["orders"]) is None
    assert set(admin.list_topics(timeout=TIMEOUT).topics) == {"events"}
    err = _error(admin.delete_topics(["orders"])["orders"])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize(("topic", "code"), [
    (NewTopic("bad topic", 1, 1), KafkaError.TOPIC_EXCEPTION),
    (NewTopic("a" * 250, 1, 1), KafkaError.TOPIC_EXCEPTION),
    (NewTopic(".", 1, 1), KafkaError.TOPIC_EXCEPTION),
    (NewTopic("..", 1, 1), KafkaError.TOPIC_EXCEPTION),
    (NewTopic("rf3", 1, 3), KafkaError.INVALID_REPLICATION_FACTOR),
    (NewTopic("badcfg", 1, 1, config={"cleanup.policy": "shred"}), KafkaError.INVALID_CONFIG),
])
def test_create_errors(admin: AdminClient, topic: NewTopic, code: int) -> None:
    err = _error(admin.create_topics([topic])[topic.topic])
    assert err is not None and err.code() == code, err


def test_invalid_partition_counts(admin: AdminClient) -> None:
    err = _error(admin.create_topics([NewTopic("p", 0, 1)])["p"])
    assert err is not None and err.code() == KafkaError.INVALID_PARTITIONS
    # librdkafka rejects -2 before sending; the raw-wire tests cover the broker's answer.
    with pytest.raises(ValueError):
        admin.create_topics([NewTopic("p", -2, 1)])


def test_already_exists_and_validate_only(admin: AdminClient) -> None:
    assert _error(admin.create_topics([NewTopic("dry", 2, 1)], validate_only=True)["dry"]) is None
    assert "dry" not in admin.list_topics(timeout=TIMEOUT).topics
    assert _error(admin.create_topics([NewTopic("dry", 2, 1)])["dry"]) is None
    err = _error(admin.create_topics([NewTopic("dry", 2, 1)])["dry"])
    assert err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_partitions(admin: AdminClient) -> None:
    admin.create_topics([NewTopic("grow", 1, 1)])["grow"].result(TIMEOUT)
    assert _error(admin.create_partitions([NewPartitions("grow", 4)])["grow"]) is None
    assert len(admin.list_topics("grow", timeout=TIMEOUT).topics["grow"].partitions) == 4
    err = _error(admin.create_partitions([NewPartitions("grow", 2)])["grow"])
    assert err is not None and err.code() == KafkaError.INVALID_PARTITIONS
    err = _error(admin.create_partitions([NewPartitions("ghost", 2)])["ghost"])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    dry = admin.create_partitions([NewPartitions("grow", 8)], validate_only=True)
    assert _error(dry["grow"]) is None
    assert len(admin.list_topics("grow", timeout=TIMEOUT).topics["grow"].partitions) == 4


def test_describe_configs(admin: AdminClient) -> None:
    admin.create_topics([NewTopic("cfg", 1, 1, config={"cleanup.policy": "compact"})])["cfg"].result(TIMEOUT)
    topic_res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    broker_res = ConfigResource(ConfigResource.Type.BROKER, "1")
    result = admin.describe_configs([topic_res, broker_res])
    topic_cfg = result[topic_res].result(TIMEOUT)
    assert topic_cfg["cleanup.policy"].value == "compact"
    assert not topic_cfg["cleanup.policy"].is_default
    # Defaults are part of the answer, not only overrides.
    assert topic_cfg["retention.ms"].value == "604800000" and topic_cfg["retention.ms"].is_default
    assert topic_cfg["segment.bytes"].source == 5  # DEFAULT_CONFIG
    broker_cfg = result[broker_res].result(TIMEOUT)
    assert broker_cfg["num.partitions"].value == "1" and broker_cfg["log.dirs"].source == 4  # STATIC
    ghost = ConfigResource(ConfigResource.Type.TOPIC, "ghost")
    err = _error(admin.describe_configs([ghost])[ghost])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_cluster(admin: AdminClient) -> None:
    cluster = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
    assert len(cluster.cluster_id) == 22
    assert cluster.controller.id == 1
    assert [(n.id, n.host) for n in cluster.nodes] == [(1, "127.0.0.1")]


def test_describe_topics(admin: AdminClient) -> None:
    from confluent_kafka import TopicCollection

    admin.create_topics([NewTopic("desc", 2, 1)])["desc"].result(TIMEOUT)
    (future,) = admin.describe_topics(TopicCollection(["desc"])).values()
    desc = future.result(TIMEOUT)
    assert desc.name == "desc" and [p.id for p in desc.partitions] == [0, 1]
    assert desc.partitions[0].leader.id == 1
