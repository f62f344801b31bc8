"""KafkaAdmin and reset(): after a reset the broker has no topics and no groups, whatever
the clients left; a group with a live member is named, not silently kept."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from kbroker.client.errors import KafkaError
from kbroker.testing import BrokerThread, KafkaAdmin, ResetError, unique_topic_name

# Starts brokers (also through Broker and KafkaContainer, which tests/conftest.py does not see).
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("admin"), {"group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


@pytest.fixture
def admin(broker: BrokerThread) -> Iterator[KafkaAdmin]:
    with broker.admin() as a:
        yield a


def _joined(bootstrap: str, group: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"{group}-client",
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    deadline = time.monotonic() + 15
    while not c.assignment():
        assert time.monotonic() < deadline, "the consumer was never assigned"
        c.poll(0.1)
    return c


def test_reset_leaves_an_empty_broker(broker: BrokerThread, admin: KafkaAdmin) -> None:
    admin.create_topic("a", 3)
    admin.create_topic("b", 1, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("a", b"x", partition=2)
    assert p.flush(10) == 0
    c = _joined(broker.bootstrap, "g-closed", "a")
    m = c.poll(10)
    assert m is not None and m.error() is None and m.value() == b"x"
    c.commit(asynchronous=False)
    c.close()  # leaves the group; its committed offsets stay
    assert admin.committed("g-closed") == {("a", 2): 1}
    assert set(admin.groups()) >= {"g-closed"}
    assert admin.end_offsets("a") == {0: 0, 1: 0, 2: 1}

    broker.reset()

    assert admin.topics() == [] and admin.groups() == []
    assert "__consumer_offsets" in admin.topics(internal=True)  # the internal topics stay
    # names are free again: the same topic starts from offset 0
    admin.create_topic("a", 1)
    assert admin.end_offsets("a") == {0: 0}
    broker.reset()
    assert admin.topics() == []


def test_reset_names_a_group_that_still_has_members(broker: BrokerThread, admin: KafkaAdmin) -> None:
    admin.create_topic("busy", 1)
    c = _joined(broker.bootstrap, "g-live", "busy")
    try:
        with pytest.raises(ResetError, match=re.escape("'g-live' (members: g-live-client)")):
            admin.reset(timeout=0.5)
    finally:
        c.close()
    admin.reset()
    assert admin.topics() == [] and admin.groups() == []


def test_admin_errors_are_kafka_errors(admin: KafkaAdmin) -> None:
    admin.create_topic("once")
    with pytest.raises(KafkaError) as e:
        admin.create_topic("once")
    assert e.value.name == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaError) as e:
        admin.create_topic("bad-config", configs={"cleanup.policy": "sometimes"})
    assert e.value.name == "INVALID_CONFIG"
    admin.delete_topic("once")
    with pytest.raises(KafkaError) as e:
        admin.delete_topic("once")
    assert e.value.name == "UNKNOWN_TOPIC_OR_PARTITION"
    admin.delete_groups(["never-was"])  # a missing group is no error


def test_unique_topic_names_are_legal_and_distinct() -> None:
    names = {unique_topic_name("test_x[param.1/2]") for _ in range(50)}
    assert len(names) == 50
    for n in names:
        assert re.fullmatch(r"test_x-param-1-2-[0-9a-f]{10}", n), n
    assert len(unique_topic_name("t" * 400)) == 249
    assert unique_topic_name("...").startswith("topic-")
