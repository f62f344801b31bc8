"""Admin clients list, describe and delete groups and read committed offsets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, TopicPartition

from kbroker.testing import BrokerThread

from .clients import BROKER_OVERRIDES, ConfluentWorker, produce, wait_until


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("admin") / "data", BROKER_OVERRIDES) as b:
        yield b


@pytest.fixture(scope="module")
def groups(broker: BrokerThread) -> Iterator[ConfluentWorker]:
    """An active group ``live`` (one member) and an Empty group ``idle`` with offsets."""
    produce(broker.bootstrap, "adm", 0, 12)
    idle = ConfluentWorker("idle-member", broker.bootstrap, "idle", "adm")
    idle.start()
    wait_until(lambda: len(idle.consumed) == 12, what="idle group to consume")
    idle.stop()
    live = ConfluentWorker("live-member", broker.bootstrap, "live", "adm")
    live.start()
    wait_until(lambda: len(live.assignment) == 6, what="live group to settle")
    yield live
    live.stop()


def test_kafka_python_admin(broker: BrokerThread, groups: ConfluentWorker) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="kp-admin")
    try:
        listed = {g["group_id"]: g["group_state"] for g in admin.list_groups()}
        assert listed["live"] == "Stable" and listed["idle"] == "Empty"
        assert [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])] == ["live"]
        described = admin.describe_groups(["live", "missing"])
        live = described["live"]
        assert live["group_state"] == "Stable" and live["protocol_type"] == "consumer"
        assert live["protocol_data"] == "range"
        (member,) = live["members"]
        assert member["client_id"] == "live-member" and member["client_host"] == "/127.0.0.1"
        assert member["member_metadata"]["topics"] == ["adm"]
        assert member["member_assignment"]["assigned_partitions"] == [{"topic": "adm", "partitions": list(range(6))}]
        assert "GroupIdNotFound" in described["missing"]["error"]
        offsets = admin.list_group_offsets({"idle": None})["idle"]
        assert sorted((tp.partition, om.offset) for tp, om in offsets.items()) == [(p, 2) for p in range(6)]
        removed = admin.delete_group_offsets("live", [TopicPartition("adm", 0)])
        assert removed[TopicPartition("adm", 0)].__name__ == "GroupSubscribedToTopicError"
        results = admin.delete_groups(["idle", "live", "missing"])
        assert results == {"idle": "OK", "live": "NonEmptyGroupError", "missing": "GroupIdNotFoundError"}
        assert "idle" not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()


def test_confluent_admin(broker: BrokerThread, groups: ConfluentWorker) -> None:
    produce(broker.bootstrap, "adm2", 0, 6)
    w = ConfluentWorker("other", broker.bootstrap, "idle2", "adm2")
    w.start()
    wait_until(lambda: len(w.consumed) == 6, what="idle2 to consume")
    w.stop()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listing = admin.list_consumer_groups().result(10)
    states = {g.group_id: g.state.name for g in listing.valid}
    assert states["live"] == "STABLE" and states["idle2"] == "EMPTY"
    desc = admin.describe_consumer_groups(["live", "idle2"])["live"].result(10)
    assert desc.state.name == "STABLE" and desc.partition_assignor == "range"
    (member,) = desc.members
    assert member.client_id == "live-member"
    assert sorted(tp.partition for tp in member.assignment.topic_partitions) == list(range(6))
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("idle2")])["idle2"].result(10)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(p, 1) for p in range(6)]
    futures = admin.delete_consumer_groups(["idle2"])
    futures["idle2"].result(10)
    remaining = {g.group_id for g in admin.list_consumer_groups().result(10).valid}
    assert "idle2" not in remaining and "live" in remaining
