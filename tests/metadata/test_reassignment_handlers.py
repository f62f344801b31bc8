"""ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments: on a cluster (the
handler writes etcd; a real etcd with fake broker registrations) and on a single broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kbroker.codec import decode_request, encode_request
from kbroker.codec.error_codes import ErrorCode
from kbroker.config.broker import BrokerConfig
from kbroker.config.holder import ConfigHolder
from kbroker.etcd import EtcdClient
from kbroker.etcd.client import Compare, Put
from kbroker.etcd.server import EtcdNotFound, EtcdServer
from kbroker.handlers import alter_partition_reassignments, elect_leaders, list_partition_reassignments
from kbroker.handlers.api import RequestContext, Session
from kbroker.metadata.cluster_state import (
    NO_LEADER,
    BrokerRegistration,
    ClusterKeys,
    TopicRecord,
    decode_partition,
    encode_partition,
)
from kbroker.metadata.model import PartitionInfo, TopicInfo
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

pytestmark = pytest.mark.anyio

ELECT, ALTER, LIST = 43, 45, 46


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class DenyAll:
    """An authorizer refusing everything."""

    def authorize(self, *args: Any) -> bool:
        return False


def ctx(api_key: int, version: int, body: dict[str, Any], broker: Any) -> RequestContext:
    request = decode_request(encode_request(api_key, version, 1, body)[4:])
    return RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1), request)


def part(topic: str, index: int, replicas: list[int], leader: int, isr: list[int], **kw: Any) -> PartitionInfo:
    return PartitionInfo(topic, index, leader, 0, replicas, isr, **kw)


class Cluster:
    """Keys under a fresh prefix, registrations of brokers, topics; a broker object for handlers."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client
        self.keys = ClusterKeys(f"/test-{uuid.uuid4().hex[:8]}/")
        #: The revisions a handler waited for its own image to apply, with the timeout.
        self.waited: list[tuple[int, float]] = []
        handle = SimpleNamespace(client=client, keys=self.keys, wait_applied=self._wait_applied)
        self.broker = SimpleNamespace(authorizer=None, node_id=1, configs=ConfigHolder(BrokerConfig({})),
                                      metadata=SimpleNamespace(cluster=handle))

    async def _wait_applied(self, revision: int, timeout: float) -> bool:
        self.waited.append((revision, timeout))
        return True

    async def register(self, *ids: int, shutting_down: bool = False) -> None:
        for i in ids:
            reg = BrokerRegistration(i, {"PLAINTEXT": ("127.0.0.1", 9000 + i)}, shutting_down=shutting_down)
            await self.client.put(self.keys.broker(i), reg.encode())

    async def topic(self, name: str, parts: list[PartitionInfo], configs: dict[str, str] | None = None) -> None:
        ops = [Put(self.keys.topic(name), TopicRecord(name, uuid.uuid4(), len(parts), configs or {}).encode())]
        ops += [Put(self.keys.partition(name, p.index), encode_partition(p)) for p in parts]
        assert (await self.client.txn([Compare.absent(self.keys.topic(name))], ops)).succeeded

    async def state(self, name: str, index: int) -> PartitionInfo:
        kv = await self.client.get(self.keys.partition(name, index))
        assert kv is not None
        return decode_partition(name, index, kv.value)

    async def call(self, module: Any, api_key: int, version: int, body: dict[str, Any]) -> Any:
        return await module.handle(ctx(api_key, version, body, self.broker))


@pytest.fixture
async def cluster(etcd_server: EtcdServer) -> AsyncIterator[Cluster]:
    client = EtcdClient([etcd_server.endpoint])
    c = Cluster(client)
    try:
        yield c
    finally:
        await client.delete(c.keys.prefix, prefix=True)
        await client.aclose()


def results(out: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {(t["topic"], p["partition_id"]): (p["error_code"], p["error_message"])
            for t in out["replica_election_results"] for p in t["partition_result"]}


# ---------------------------------------------------------------------------------- ElectLeaders

async def test_elect_preferred_leaders(cluster: Cluster) -> None:
    await cluster.register(1, 2, 3)
    await cluster.topic("t", [part("t", 0, [1, 2], 2, [1, 2]), part("t", 1, [2, 1], 2, [2, 1]),
                              part("t", 2, [3, 1], 1, [1]), part("t", 3, [4, 1], 1, [1, 4])])
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 0, "topic_partitions": [
        {"topic": "t", "partitions": [0, 1, 2, 3, 9]}, {"topic": "nope", "partitions": [0]}], "timeout_ms": 1000})
    assert out["error_code"] == 0
    assert results(out) == {
        ("t", 0): (0, None),
        ("t", 1): (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        ("t", 2): (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, "The preferred leader was not available."),
        ("t", 3): (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, "The preferred leader was not available."),
        ("t", 9): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such partition as t-9"),
        ("nope", 0): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such topic as nope"),
    }
    p0 = await cluster.state("t", 0)
    assert (p0.leader, p0.leader_epoch, p0.partition_epoch, p0.isr) == (1, 1, 1, [1, 2])
    assert (await cluster.state("t", 2)).leader == 1
    # Answered once this broker's image has the write (t-0's: the only one).
    last = await cluster.client.get(cluster.keys.partition("t", 0))
    assert last is not None and cluster.waited == [(last.mod_revision, 1.0)]
    nothing = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 0, "topic_partitions": [
        {"topic": "t", "partitions": [0]}]})
    assert results(nothing)[("t", 0)][0] == ErrorCode.ELECTION_NOT_NEEDED and len(cluster.waited) == 1


async def test_elect_preferred_for_every_partition_leaves_out_those_not_needed(cluster: Cluster) -> None:
    await cluster.register(1, 2)
    await cluster.topic("a", [part("a", 0, [1, 2], 1, [1, 2]), part("a", 1, [1, 2], 2, [1, 2])])
    await cluster.topic("b", [part("b", 0, [2, 1], 2, [2, 1])])
    out = await cluster.call(elect_leaders, ELECT, 1, {"election_type": 0, "topic_partitions": None})
    assert out["replica_election_results"] == [
        {"topic": "a", "partition_result": [{"partition_id": 1, "error_code": 0, "error_message": None}]},
        {"topic": "b", "partition_result": []}]
    assert (await cluster.state("a", 1)).leader == 1


async def test_elect_unclean(cluster: Cluster) -> None:
    await cluster.register(2, 3)
    await cluster.topic("t", [part("t", 0, [1, 2], NO_LEADER, [1]), part("t", 1, [1, 2], 2, [2]),
                              part("t", 2, [1, 4], NO_LEADER, [1]), part("t", 3, [1, 3], NO_LEADER, [1, 3])])
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 1, "topic_partitions": [
        {"topic": "t", "partitions": [0, 1, 2, 3]}]})
    assert results(out) == {
        ("t", 0): (0, None),
        ("t", 1): (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        ("t", 2): (ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, "Eligible topic partition leaders are not available."),
        ("t", 3): (0, None),
    }
    p0 = await cluster.state("t", 0)
    assert (p0.leader, p0.isr, p0.leader_epoch) == (2, [2], 1)
    p3 = await cluster.state("t", 3)
    assert (p3.leader, p3.isr) == (3, [1, 3])  # an ISR member can lead: a clean election


async def test_elect_skips_a_shutting_down_broker(cluster: Cluster) -> None:
    await cluster.register(2)
    await cluster.register(1, shutting_down=True)
    await cluster.topic("t", [part("t", 0, [1, 2], 2, [1, 2])])
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 0, "topic_partitions": [
        {"topic": "t", "partitions": [0]}]})
    assert results(out) == {("t", 0): (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
                                       "The preferred leader was not available.")}


async def test_elect_leaders_needs_alter_on_the_cluster(cluster: Cluster) -> None:
    await cluster.register(1, 2)
    await cluster.topic("t", [part("t", 0, [1, 2], 2, [1, 2])])
    cluster.broker.authorizer = DenyAll()
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 0, "topic_partitions": [
        {"topic": "t", "partitions": [0]}]})
    assert out["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert results(out)[("t", 0)][0] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert (await cluster.state("t", 0)).leader == 2


async def test_elect_leaders_invalid_election_type(cluster: Cluster) -> None:
    # As Kafka 4.1: the error at the top and on every partition named.
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 5, "topic_partitions": [
        {"topic": "t", "partitions": [0]}]})
    assert out["error_code"] == ErrorCode.INVALID_REQUEST
    assert results(out) == {("t", 0): (ErrorCode.INVALID_REQUEST, "Unknown election type 5")}
    out = await cluster.call(elect_leaders, ELECT, 2, {"election_type": 5, "topic_partitions": None})
    assert out["error_code"] == ErrorCode.INVALID_REQUEST and out["replica_election_results"] == []


# ---------------------------------------------------------------------- AlterPartitionReassignments

def alter_results(out: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {(t["name"], p["partition_index"]): (p["error_code"], p["error_message"])
            for t in out["responses"] for p in t["partitions"]}


async def test_alter_reassignments_start_cancel_and_errors(cluster: Cluster) -> None:
    await cluster.register(1, 2, 3, 4)
    await cluster.topic("t", [part("t", i, [1, 2, 3], 1, [1, 2, 3]) for i in range(6)])
    out = await cluster.call(alter_partition_reassignments, ALTER, 0, {"topics": [
        {"name": "t", "partitions": [
            {"partition_index": 0, "replicas": [2, 3, 4]},     # add 4, remove 1
            {"partition_index": 1, "replicas": [3, 2, 1]},     # a reorder completes at once
            {"partition_index": 2, "replicas": [2, 3]},        # a removal completes at once
            {"partition_index": 3, "replicas": [1, 5]},
            {"partition_index": 4, "replicas": []},
            {"partition_index": 5, "replicas": [1, 1, 2]},
            {"partition_index": 9, "replicas": [1]},
            {"partition_index": 4, "replicas": None},
        ]}, {"name": "nope", "partitions": [{"partition_index": 0, "replicas": [1]}]}]})
    assert out["error_code"] == 0 and out["error_message"] is None
    bad = ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert alter_results(out) == {
        ("t", 0): (0, None), ("t", 1): (0, None), ("t", 2): (0, None),
        ("t", 3): (bad, "The manual partition assignment includes broker 5, but no such broker is registered."),
        ("t", 4): (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None),
        ("t", 5): (bad, "The manual partition assignment includes the broker 1 more than once."),
        ("t", 9): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "Unable to find partition t:9."),
        ("nope", 0): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "Unable to find a topic named nope."),
    }
    p0 = await cluster.state("t", 0)
    assert (p0.replicas, p0.adding_replicas, p0.removing_replicas, p0.isr, p0.leader) == (
        [2, 3, 4, 1], [4], [1], [1, 2, 3], 1)
    p1 = await cluster.state("t", 1)
    assert (p1.replicas, p1.adding_replicas, p1.leader, p1.leader_epoch) == ([3, 2, 1], [], 1, 0)
    p2 = await cluster.state("t", 2)
    last = await cluster.client.get(cluster.keys.partition("t", 2))
    assert last is not None and cluster.waited == [(last.mod_revision, 60.0)]
    # Broker 1 removed at once: it led, so the next ISR member leads under a new epoch.
    assert (p2.replicas, p2.isr, p2.leader, p2.leader_epoch, p2.removing_replicas) == ([2, 3], [2, 3], 2, 1, [])

    listed = await cluster.call(list_partition_reassignments, LIST, 0, {"topics": None})
    assert listed["error_code"] == 0 and listed["topics"] == [{"name": "t", "partitions": [
        {"partition_index": 0, "replicas": [2, 3, 4, 1], "adding_replicas": [4], "removing_replicas": [1]}]}]
    named = await cluster.call(list_partition_reassignments, LIST, 0, {"topics": [
        {"name": "t", "partition_indexes": [1, 0, 7]}, {"name": "nope", "partition_indexes": [0]}]})
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in named["topics"]] == [("t", [0])]

    cancel = await cluster.call(alter_partition_reassignments, ALTER, 0, {"topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "replicas": None}]}]})
    assert alter_results(cancel) == {("t", 0): (0, None)}
    p0 = await cluster.state("t", 0)
    # As Kafka's revert: the adding replicas leave, the others keep the reassignment's order.
    assert (p0.replicas, p0.adding_replicas, p0.removing_replicas, p0.isr, p0.leader) == (
        [2, 3, 1], [], [], [1, 2, 3], 1)
    assert (await cluster.call(list_partition_reassignments, LIST, 0, {"topics": None}))["topics"] == []


async def test_alter_reassignments_replication_factor_change_refused_in_v1(cluster: Cluster) -> None:
    await cluster.register(1, 2, 3)
    await cluster.topic("t", [part("t", 0, [1, 2], 1, [1, 2])])
    out = await cluster.call(alter_partition_reassignments, ALTER, 1, {
        "allow_replication_factor_change": False, "topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "replicas": [1, 2, 3]}]}]})
    assert out["allow_replication_factor_change"] is False
    assert alter_results(out) == {("t", 0): (ErrorCode.INVALID_REPLICATION_FACTOR,
                                             "The replication factor is changed from 2 to 3")}
    same = await cluster.call(alter_partition_reassignments, ALTER, 1, {
        "allow_replication_factor_change": False, "topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "replicas": [2, 3]}]}]})
    assert alter_results(same) == {("t", 0): (0, None)}
    p = await cluster.state("t", 0)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ([2, 3, 1], [3], [1])


async def test_cancel_that_needs_an_unclean_election(cluster: Cluster) -> None:
    await cluster.register(1, 2, 3)
    # Only the adding replica is in sync (the others fell out): reverting would leave no ISR.
    state = part("t", 0, [3, 1, 2], 3, [3], adding_replicas=[3], removing_replicas=[1, 2])
    await cluster.topic("t", [state])
    await cluster.topic("u", [dataclasses_replace(state, topic="u")], {"unclean.leader.election.enable": "true"})
    body = {"topics": [{"name": "t", "partitions": [{"partition_index": 0, "replicas": None}]},
                       {"name": "u", "partitions": [{"partition_index": 0, "replicas": None}]}]}
    out = await cluster.call(alter_partition_reassignments, ALTER, 0, body)
    assert alter_results(out) == {
        ("t", 0): (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                   "Unable to revert partition assignment for t:0 because it would require an unclean leader election."),
        ("u", 0): (0, None)}
    u = await cluster.state("u", 0)
    assert (u.replicas, u.leader, u.isr, u.adding_replicas) == ([1, 2], 1, [1], [])


def dataclasses_replace(info: PartitionInfo, **changes: Any) -> PartitionInfo:
    import dataclasses
    return dataclasses.replace(info, **changes)


async def test_reassignment_handlers_need_cluster_permissions(cluster: Cluster) -> None:
    await cluster.register(1, 2)
    await cluster.topic("t", [part("t", 0, [1], 1, [1])])
    cluster.broker.authorizer = DenyAll()
    out = await cluster.call(alter_partition_reassignments, ALTER, 0, {"topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "replicas": [2]}]}]})
    assert out["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert alter_results(out)[("t", 0)][0] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert (await cluster.state("t", 0)).replicas == [1]
    listed = await cluster.call(list_partition_reassignments, LIST, 0, {"topics": None})
    assert listed["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED and listed["topics"] == []


async def test_handlers_answer_when_etcd_is_gone(tmp_path: Path) -> None:
    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        pytest.skip(str(e))
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    client = EtcdClient([server.endpoint], timeout=1.0)
    c = Cluster(client)
    server.stop()
    try:
        out = await c.call(elect_leaders, ELECT, 2, {"election_type": 0, "topic_partitions": [
            {"topic": "t", "partitions": [0]}]})
        assert results(out)[("t", 0)][0] == ErrorCode.REQUEST_TIMED_OUT
        out = await c.call(alter_partition_reassignments, ALTER, 0, {"topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "replicas": [1]}]}]})
        assert alter_results(out)[("t", 0)][0] == ErrorCode.REQUEST_TIMED_OUT
        listed = await c.call(list_partition_reassignments, LIST, 0, {"topics": None})
        assert listed["error_code"] == ErrorCode.REQUEST_TIMED_OUT
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------- single broker

def single_broker() -> Any:
    topics = {"t": TopicInfo("t", uuid.uuid4(), {0: part("t", 0, [0], 0, [0]), 1: part("t", 1, [0], 0, [0])})}
    md = SimpleNamespace(cluster=None, topics=topics, topic=topics.get,
                         partition=lambda name, i: topics[name].partitions.get(i) if name in topics else None)
    return SimpleNamespace(authorizer=None, node_id=0, configs=ConfigHolder(BrokerConfig({})), metadata=md)


async def test_single_broker_answers() -> None:
    broker = single_broker()
    out = await elect_leaders.handle(ctx(ELECT, 2, {"election_type": 0, "topic_partitions": [
        {"topic": "t", "partitions": [0, 5]}, {"topic": "x", "partitions": [0]}]}, broker))
    assert results(out) == {
        ("t", 0): (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."),
        ("t", 5): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such partition as t-5"),
        ("x", 0): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such topic as x")}
    every = await elect_leaders.handle(ctx(ELECT, 2, {"election_type": 1, "topic_partitions": None}, broker))
    assert every["replica_election_results"] == [{"topic": "t", "partition_result": []}]

    out = await alter_partition_reassignments.handle(ctx(ALTER, 0, {"topics": [{"name": "t", "partitions": [
        {"partition_index": 0, "replicas": [0]}, {"partition_index": 1, "replicas": [1]},
        {"partition_index": 1, "replicas": None}]}]}, broker))
    assert [(p["error_code"], p["error_message"]) for p in out["responses"][0]["partitions"]] == [
        (0, None),
        (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
         "The manual partition assignment includes broker 1, but no such broker is registered."),
        (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None)]
    listed = await list_partition_reassignments.handle(ctx(LIST, 0, {"topics": None}, broker))
    assert listed["error_code"] == 0 and listed["topics"] == []


def test_single_broker_over_the_wire(kafka_broker: BrokerThread, wire: WireClient) -> None:
    from tests.broker.replica_wire import create_topic
    create_topic(kafka_broker, "elect-me", 2)
    node = kafka_broker.broker.node_id
    out = wire.call(ELECT, 2, {"election_type": 0, "topic_partitions": [{"topic": "elect-me", "partitions": [0, 1]}],
                               "timeout_ms": 5000})
    assert out.error_code == 0
    assert [(p.partition_id, p.error_code) for p in out.replica_election_results[0].partition_result] == [
        (0, ErrorCode.ELECTION_NOT_NEEDED), (1, ErrorCode.ELECTION_NOT_NEEDED)]
    out = wire.call(ALTER, 0, {"timeout_ms": 5000, "topics": [{"name": "elect-me", "partitions": [
        {"partition_index": 0, "replicas": [node + 1]}]}]})
    assert out.responses[0].partitions[0].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    out = wire.call(LIST, 0, {"timeout_ms": 5000, "topics": None})
    assert out.error_code == 0 and out.topics == []


async def test_foreign_partition_documents_are_skipped(cluster: Cluster) -> None:
    await cluster.register(1, 2)
    await cluster.topic("a", [part("a", 0, [1, 2], 2, [1, 2]), part("a", 1, [1, 2], 1, [1, 2])])
    await cluster.client.put(cluster.keys.partition("a", 1), b'{"leader": "x"}')
    out = await cluster.call(elect_leaders, ELECT, 1, {"election_type": 0, "topic_partitions": None})
    assert out["replica_election_results"] == [
        {"topic": "a", "partition_result": [{"partition_id": 0, "error_code": 0, "error_message": None}]}]
    listed = await cluster.call(list_partition_reassignments, LIST, 0, {"timeout_ms": 1000, "topics": None})
    assert listed["error_code"] == 0 and listed["topics"] == []
    # A change of the undecodable partition itself fails as etcd trouble, the request is answered.
    moved = await cluster.call(alter_partition_reassignments, ALTER, 0, {"timeout_ms": 1000, "topics": [
        {"name": "a", "partitions": [{"partition_index": 1, "replicas": [2, 1]}]}]})
    assert moved["responses"][0]["partitions"][0]["error_code"] == ErrorCode.REQUEST_TIMED_OUT
