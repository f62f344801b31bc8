"""Internal topics belong to the broker: clients cannot create or grow them, and groups
hash over the ``__consumer_offsets`` partitions that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import InvalidRequestError

from kbroker.groups.storage import partition_for
from kbroker.testing import BrokerThread

INVALID_REQUEST = 42


@pytest.mark.parametrize("name", ["__consumer_offsets", "__transaction_state"])
def test_clients_cannot_create_internal_topics(kafka_broker: BrokerThread, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    assert err.value.args[0].code() == INVALID_REQUEST
    assert f"Creation of internal topic {name} is prohibited." in err.value.args[0].str()

    kp = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        with pytest.raises(InvalidRequestError):
            kp.create_topics([KpNewTopic(name, 1, 1)])
    finally:
        kp.close()
    # The broker still creates __consumer_offsets itself, with its configured partition count.
    assert kafka_broker.call(lambda: kafka_broker.broker.groups.ensure_offsets_topic())
    topic = kafka_broker.broker.metadata.topic("__consumer_offsets")
    assert topic is not None and len(topic.partitions) == 50


def test_clients_cannot_grow_internal_topics(kafka_broker: BrokerThread) -> None:
    assert kafka_broker.call(lambda: kafka_broker.broker.groups.ensure_offsets_topic())
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    with pytest.raises(KafkaException) as err:
        admin.create_partitions([NewPartitions("__consumer_offsets", 60)])["__consumer_offsets"].result(10)
    assert err.value.args[0].code() == INVALID_REQUEST


def _consumer(b: BrokerThread, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})


def _commit(b: BrokerThread, group: str, offset: int) -> None:
    c = _consumer(b, group)
    try:
        c.commit(offsets=[TopicPartition("t", 0, offset)], asynchronous=False)
    finally:
        c.close()


def _committed(b: BrokerThread, group: str) -> int:
    c = _consumer(b, group)
    try:
        return int(c.committed([TopicPartition("t", 0)], timeout=10)[0].offset)
    finally:
        c.close()


def test_groups_hash_over_existing_offsets_partitions(tmp_path: Path) -> None:
    """A changed offsets.topic.num.partitions must not lose or strand a group's offsets."""
    group = "g-a"
    assert partition_for(group, 3) == 2  # beyond the single partition of the second run
    data = tmp_path / "data"
    with BrokerThread(data, {"offsets.topic.num.partitions": "3", "num.partitions": "1"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
        _commit(b, group, 17)
        assert _committed(b, group) == 17
    with BrokerThread(data, {"offsets.topic.num.partitions": "1"}) as b:
        assert _committed(b, group) == 17
        _commit(b, group, 18)
        assert _committed(b, group) == 18
        topic = b.broker.metadata.topic("__consumer_offsets")
        assert topic is not None and len(topic.partitions) == 3


def test_group_on_a_one_partition_offsets_topic_settles(kafka_broker: BrokerThread) -> None:
    """A data dir whose __consumer_offsets has one partition (as a client could once create it):
    a group that would hash elsewhere over 50 partitions joins once and consumes, no rebalance storm."""
    group = "g-a"
    assert partition_for(group, 50) != 0
    md = kafka_broker.broker.metadata
    assert kafka_broker.call(md.ensure_internal_topic, "__consumer_offsets", 1) == (0, None)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i in range(3):
        p.produce("t", f"m-{i}".encode())
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe(["t"])
        got: list[bytes] = []
        while len(got) < 3:
            msg = c.poll(15)
            assert msg is not None, "no message within 15 s"
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        c.commit(asynchronous=False)
        assert c.committed([TopicPartition("t", 0)], timeout=10)[0].offset == 3
    finally:
        c.close()
    g = kafka_broker.broker.groups.manager.get(group)
    assert g is not None and g.generation_id <= 3  # joined, maybe left: never a loop
