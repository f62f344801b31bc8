"""OffsetForLeaderEpoch (API 23): the replica manager's answer per partition, and the handler
over the raw wire of a real broker (versions, errors, authorization) and from a real client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from replica_wire import WireClient, batch, create_topic, produce_one

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode as E
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log import LogConfig, PartitionLog
from kbroker.metadata.model import PartitionInfo
from kbroker.replica.manager import ReplicaManager
from kbroker.testing import BrokerThread
from tests.security.authz_support import Op, Res, RuleAuthorizer, cluster, install, rule

OFFSET_FOR_LEADER_EPOCH = 23
NODE = 1


# -- ReplicaManager.offsets_for_leader_epoch ------------------------------------------------------
class Partitions:
    """The partitions a ReplicaManager sees, with their logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.infos: dict[tuple[str, int], PartitionInfo] = {}
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.rm = ReplicaManager(node_id=NODE, config=ConfigHolder(BrokerConfig({})), partitions=self,
                                 logs=lambda t, p: self.logs.get((t, p)), clock=ManualClock())

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        return self.infos.get((topic, index))

    def add(self, topic: str, *, leader: int = NODE, leader_epoch: int = 0, local: bool = True) -> PartitionLog | None:
        self.infos[(topic, 0)] = PartitionInfo(topic, 0, leader, leader_epoch, [NODE, 2], [NODE, 2])
        if not local:
            return None
        plog = self.logs[(topic, 0)] = PartitionLog(self.root / f"{topic}-0", LogConfig(), ManualClock())
        return plog


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Partitions]:
    p = Partitions(tmp_path)
    yield p
    for plog in p.logs.values():
        plog.close()


def fill(plog: PartitionLog, *epochs: int) -> None:
    for epoch in epochs:
        plog.append(batch([b"a", b"b"]), leader_epoch=epoch)


def test_leader_answers_the_end_offset_of_each_epoch(parts: Partitions) -> None:
    plog = parts.add("t", leader_epoch=5)
    assert plog is not None
    fill(plog, 1, 1, 3, 5)
    tp = TopicPartition("t", 0)
    assert parts.rm.offsets_for_leader_epoch(tp, -1, 1) == (E.NONE, 1, 4)
    assert parts.rm.offsets_for_leader_epoch(tp, -1, 2) == (E.NONE, 1, 4)
    assert parts.rm.offsets_for_leader_epoch(tp, 5, 3) == (E.NONE, 3, 6)
    assert parts.rm.offsets_for_leader_epoch(tp, 5, 5) == (E.NONE, 5, 8)
    assert parts.rm.offsets_for_leader_epoch(tp, 5, 0) == (E.NONE, 0, 0)  # below every epoch
    assert parts.rm.offsets_for_leader_epoch(tp, 5, 6) == (E.NONE, -1, -1)
    assert parts.rm.offsets_for_leader_epoch(tp, 5, -1) == (E.NONE, -1, -1)


def test_current_leader_epoch_fencing(parts: Partitions) -> None:
    plog = parts.add("t", leader_epoch=5)
    assert plog is not None
    fill(plog, 5)
    tp = TopicPartition("t", 0)
    assert parts.rm.offsets_for_leader_epoch(tp, 4, 5) == (E.FENCED_LEADER_EPOCH, -1, -1)
    assert parts.rm.offsets_for_leader_epoch(tp, 6, 5) == (E.UNKNOWN_LEADER_EPOCH, -1, -1)


def test_only_the_leader_answers(parts: Partitions) -> None:
    plog = parts.add("f", leader=2, leader_epoch=3)
    assert plog is not None
    fill(plog, 3)
    tp = TopicPartition("f", 0)
    assert parts.rm.offsets_for_leader_epoch(tp, -1, 3) == (E.NOT_LEADER_OR_FOLLOWER, -1, -1)
    # As Kafka, a stale epoch is reported before the leadership.
    assert parts.rm.offsets_for_leader_epoch(tp, 2, 3) == (E.FENCED_LEADER_EPOCH, -1, -1)
    parts.add("remote", leader=2, local=False)
    assert parts.rm.offsets_for_leader_epoch(TopicPartition("remote", 0), -1, 0) == (E.NOT_LEADER_OR_FOLLOWER, -1, -1)
    assert parts.rm.offsets_for_leader_epoch(TopicPartition("nope", 0), -1, 0) == (E.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)


def test_closed_log_is_not_led(parts: Partitions) -> None:
    plog = parts.add("t")
    assert plog is not None
    plog.close()
    assert parts.rm.offsets_for_leader_epoch(TopicPartition("t", 0), -1, 0) == (E.NOT_LEADER_OR_FOLLOWER, -1, -1)


# -- over the wire -------------------------------------------------------------------------------
def request(wire: WireClient, version: int, topics: dict[str, list[tuple[int, int, int]]],
            replica_id: int = -1) -> dict[tuple[str, int], Any]:
    """``{(topic, partition): answer}`` for ``topics``: name -> [(partition, current epoch, epoch)]."""
    body = {"replica_id": replica_id, "topics": [
        {"topic": t, "partitions": [{"partition": p, "current_leader_epoch": c, "leader_epoch": e} for p, c, e in ps]}
        for t, ps in topics.items()]}
    resp = wire.call(OFFSET_FOR_LEADER_EPOCH, version, body)
    return {(t.topic, p.partition): p for t in resp.topics for p in t.partitions}


def answer(p: Any) -> tuple[int, int, int]:
    return p.error_code, p.get("leader_epoch", -1), p.end_offset


@pytest.fixture
def filled(kafka_broker: BrokerThread, wire: WireClient) -> str:
    create_topic(kafka_broker, "oe", partitions=2)
    for _ in range(3):
        assert produce_one(wire, "oe", 0, batch([b"x", b"y"])).error_code == 0
    return "oe"


def leader_epoch_of(broker: BrokerThread, topic: str) -> int:
    info = broker.broker.metadata.partition(topic, 0)
    assert info is not None
    return info.leader_epoch


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_every_version_answers(kafka_broker: BrokerThread, wire: WireClient, filled: str, version: int) -> None:
    epoch = leader_epoch_of(kafka_broker, filled)
    got = request(wire, version, {filled: [(0, epoch, epoch), (1, epoch, epoch)], "missing": [(0, -1, 0)]})
    # v0 has no leader epoch in its answer.
    shown = epoch if version >= 1 else -1
    assert answer(got[(filled, 0)]) == (E.NONE, shown, 6)
    assert answer(got[(filled, 1)]) == (E.NONE, -1, -1)  # nothing written in any epoch
    assert answer(got[("missing", 0)]) == (E.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
    if version >= 2:
        assert wire.call(OFFSET_FOR_LEADER_EPOCH, version, {"replica_id": -1, "topics": []}).throttle_time_ms == 0


def test_errors_over_the_wire(kafka_broker: BrokerThread, wire: WireClient, filled: str) -> None:
    epoch = leader_epoch_of(kafka_broker, filled)
    got = request(wire, 4, {filled: [(0, epoch + 1, epoch), (7, -1, epoch)]})
    assert answer(got[(filled, 0)]) == (E.UNKNOWN_LEADER_EPOCH, -1, -1)
    assert answer(got[(filled, 7)]) == (E.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
    assert answer(request(wire, 4, {filled: [(0, -1, epoch + 1)]})[(filled, 0)]) == (E.NONE, -1, -1)


def test_a_leader_change_shows_in_the_answers(kafka_broker: BrokerThread, wire: WireClient, filled: str) -> None:
    # The log's epochs as after two leader changes: the first epoch ends where the next began.
    epoch = leader_epoch_of(kafka_broker, filled)
    plog = kafka_broker.broker.log_manager.get_log(filled, 0)
    assert plog is not None
    kafka_broker.call(plog.assign_leader_epoch, epoch + 2)
    assert produce_one(wire, filled, 0, batch([b"z"])).error_code == 0
    for asked, expected in ((epoch, (E.NONE, epoch, 6)), (epoch + 1, (E.NONE, epoch, 6)),
                            (epoch + 2, (E.NONE, epoch + 2, 7)), (epoch + 3, (E.NONE, -1, -1))):
        assert answer(request(wire, 4, {filled: [(0, -1, asked)]})[(filled, 0)]) == expected


def test_a_replica_is_answered_too(kafka_broker: BrokerThread, wire: WireClient, filled: str) -> None:
    epoch = leader_epoch_of(kafka_broker, filled)
    got = request(wire, 3, {filled: [(0, epoch, epoch)]}, replica_id=2)
    assert answer(got[(filled, 0)]) == (E.NONE, epoch, 6)


def test_authorization(kafka_broker: BrokerThread, wire: WireClient, filled: str) -> None:
    auth = RuleAuthorizer()
    install(kafka_broker, auth)
    try:
        create_topic(kafka_broker, "hidden")
        epoch = leader_epoch_of(kafka_broker, filled)
        ask = {filled: [(0, -1, epoch)], "hidden": [(0, -1, 0)], "ghost": [(0, -1, 0)]}
        # Without CLUSTER_ACTION each topic needs DESCRIBE; an unknown topic too.
        auth.deny(cluster(Op.CLUSTER_ACTION), rule(Op.DESCRIBE, Res.TOPIC, "hidden"), rule(Op.DESCRIBE, Res.TOPIC, "ghost"))
        got = request(wire, 4, ask)
        assert answer(got[(filled, 0)]) == (E.NONE, epoch, 6)
        assert answer(got[("hidden", 0)]) == (E.TOPIC_AUTHORIZATION_FAILED, -1, -1)
        assert answer(got[("ghost", 0)]) == (E.TOPIC_AUTHORIZATION_FAILED, -1, -1)
        # CLUSTER_ACTION (a broker's principal) covers every topic.
        auth.deny(rule(Op.DESCRIBE, Res.TOPIC, "hidden"), rule(Op.DESCRIBE, Res.TOPIC, "ghost"))
        got = request(wire, 4, ask)
        assert answer(got[("hidden", 0)]) == (E.NONE, -1, -1)
        assert answer(got[("ghost", 0)]) == (E.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
        assert auth.asked(Op.DESCRIBE, Res.TOPIC) == [filled, "hidden", "ghost"]  # only when cluster failed
    finally:
        kafka_broker.broker.authorizer = None


def test_is_advertised(wire: WireClient) -> None:
    resp = wire.call(18, 3, {"client_software_name": "t", "client_software_version": "1"})
    keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert keys[OFFSET_FOR_LEADER_EPOCH] == (0, 4)


# -- a real client --------------------------------------------------------------------------------
def test_confluent_consumer_validates_a_position_with_a_leader_epoch(kafka_broker: BrokerThread,
                                                                     kafka_bootstrap: str, filled: str) -> None:
    """librdkafka validates a position carrying a leader epoch (KIP-320) with OffsetForLeaderEpoch
    before fetching from it; a valid position is kept and consumed from."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    rm = kafka_broker.broker.replica_manager
    asked: list[tuple[TopicPartition, int, int]] = []
    real = rm.offsets_for_leader_epoch

    def spy(tp: TopicPartition, current: int, epoch: int) -> tuple[int, int, int]:
        asked.append((tp, current, epoch))
        return real(tp, current, epoch)

    rm.offsets_for_leader_epoch = spy  # type: ignore[method-assign]
    epoch = leader_epoch_of(kafka_broker, filled)
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{uuid.uuid4()}",
                                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([confluent_kafka.TopicPartition(filled, 0, 4, leader_epoch=epoch)])
        got = []
        for _ in range(100):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                got.append(msg.offset())
                if len(got) == 2:
                    break
        assert got == [4, 5]
        assert (TopicPartition(filled, 0), epoch, epoch) in asked
    finally:
        consumer.close()
        del rm.offsets_for_leader_epoch
