"""Three in-process brokers sharing one etcd, seen by confluent-kafka's AdminClient over real sockets:
membership in Metadata, topics created with a replication factor, deleted, grown, a broker
restarting, a broker whose lease expires."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from wait_helpers import wait_until

from kbroker.config import generate_cluster_id
from kbroker.etcd.server import EtcdServer
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient
from tests.etcd.conftest import etcd_server  # noqa: F401

pytestmark = pytest.mark.integration


class Cluster:
    """Brokers 0..n-1 as threads of this process, on one etcd."""

    def __init__(self, root: Path, etcd: EtcdServer, n: int) -> None:
        self.root = root
        self.etcd = etcd
        self.cluster_id = generate_cluster_id()
        self.brokers: dict[int, BrokerThread] = {}
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> BrokerThread:
        overrides = {"node.id": str(i), "etcd.endpoints": self.etcd.endpoint, "cluster.id": self.cluster_id,
                     "broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "200",
                     "controlled.shutdown.max.wait.ms": "2000"}
        self.brokers[i] = BrokerThread(self.root / f"broker-{i}", overrides).start(timeout=30)
        return self.brokers[i]

    def stop(self, i: int) -> None:
        self.brokers.pop(i).stop()

    def admin(self, i: int = 0) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.brokers[i].bootstrap})

    def local_log(self, i: int, topic: str, p: int) -> bool:
        return self.brokers[i].broker.log_manager.get_log(topic, p) is not None

    def close(self) -> None:
        for i in list(self.brokers):
            self.stop(i)


@pytest.fixture
def cluster(tmp_path: Path, etcd_server: EtcdServer) -> Iterator[Cluster]:  # noqa: F811
    c = Cluster(tmp_path, etcd_server, 3)
    try:
        yield c
    finally:
        c.close()


def _broker_ids(admin: AdminClient) -> set[int]:
    return set(admin.list_topics(timeout=10).brokers)


def _create(admin: AdminClient, topic: NewTopic) -> None:
    admin.create_topics([topic], operation_timeout=10)[topic.topic].result(timeout=15)


def test_every_broker_lists_every_broker(cluster: Cluster) -> None:
    for i in range(3):
        admin = cluster.admin(i)
        wait_until(lambda admin=admin: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers in Metadata")
        nodes = admin.describe_cluster().result(timeout=10).nodes
        assert sorted(n.id for n in nodes) == [0, 1, 2]
        ports = {n.id: n.port for n in nodes}
        assert ports == {b: cluster.brokers[b].port for b in range(3)}


def test_replicated_topic_lives_on_its_replicas_and_deletion_removes_it(cluster: Cluster) -> None:
    admin = cluster.admin(1)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    _create(admin, NewTopic("rf2", num_partitions=6, replication_factor=2))
    _create(admin, NewTopic("rf3", num_partitions=2, replication_factor=3))
    for i in range(3):
        md = cluster.admin(i).list_topics(timeout=10)
        assert set(md.topics["rf2"].partitions) == set(range(6))
        for p in md.topics["rf2"].partitions.values():
            assert len(set(p.replicas)) == 2 and p.leader == p.replicas[0] and sorted(p.isrs) == sorted(p.replicas)
        for p in md.topics["rf3"].partitions.values():
            assert sorted(p.replicas) == [0, 1, 2]
    placement = {p.id: p.replicas for p in admin.list_topics(timeout=10).topics["rf2"].partitions.values()}
    # Kafka's placement: leaders spread evenly.
    assert sorted(r[0] for r in placement.values()) == [0, 0, 1, 1, 2, 2]
    for index, replicas in placement.items():
        for b in range(3):
            assert cluster.local_log(b, "rf2", index) == (b in replicas), (b, index, replicas)
    dirs = {b: cluster.root / f"broker-{b}" / f"rf2-{p}" for p, r in placement.items() for b in r}
    admin.delete_topics(["rf2"], operation_timeout=10)["rf2"].result(timeout=15)
    for b in range(3):
        wait_until(lambda b=b: all(not cluster.local_log(b, "rf2", p) for p in range(6)), interval=0.05, what="logs closed")
        assert "rf2" not in cluster.admin(b).list_topics(timeout=10).topics
    wait_until(lambda: not any(d.exists() for d in dirs.values()), interval=0.05, what="directories removed")
    assert all(cluster.local_log(b, "rf3", 0) for b in range(3))


def test_impossible_replication_factor_and_explicit_assignments(cluster: Cluster) -> None:
    admin = cluster.admin(0)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    with pytest.raises(KafkaException) as e:
        _create(admin, NewTopic("rf4", num_partitions=1, replication_factor=4))
    assert e.value.args[0].name() == "INVALID_REPLICATION_FACTOR"
    _create(admin, NewTopic("placed", 2, replica_assignment=[[2, 0], [1, 2]]))
    md = cluster.admin(2).list_topics(timeout=10).topics["placed"].partitions
    assert (md[0].replicas, md[0].leader, md[1].replicas) == ([2, 0], 2, [1, 2])
    assert cluster.local_log(0, "placed", 0) and not cluster.local_log(0, "placed", 1)
    with pytest.raises(KafkaException) as e:
        _create(admin, NewTopic("nowhere", 1, replica_assignment=[[7]]))
    assert e.value.args[0].name() == "INVALID_REPLICA_ASSIGNMENT"


def test_partitions_and_configs_change_on_every_broker(cluster: Cluster) -> None:
    admin = cluster.admin(0)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    _create(admin, NewTopic("grow", num_partitions=1, replication_factor=2))
    admin.create_partitions([NewPartitions("grow", 4)], operation_timeout=10)["grow"].result(timeout=15)
    for i in range(3):
        parts = cluster.admin(i).list_topics(timeout=10).topics["grow"].partitions
        assert set(parts) == {0, 1, 2, 3} and all(len(p.replicas) == 2 for p in parts.values())
        for index, p in parts.items():
            assert cluster.local_log(i, "grow", index) == (i in p.replicas)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "grow", set_config={"retention.ms": "123456"})
    admin.alter_configs([resource])[resource].result(timeout=10)
    other = cluster.admin(2)

    def retention() -> str:
        described = other.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "grow")])
        return next(iter(described.values())).result(timeout=10)["retention.ms"].value

    wait_until(lambda: retention() == "123456", interval=0.05, what="config change seen by another broker")
    plog = cluster.brokers[2].broker.log_manager.get_log("grow", next(iter(
        p.id for p in other.list_topics(timeout=10).topics["grow"].partitions.values() if 2 in p.replicas)))
    assert plog.config.retention_ms == 123456


def test_restarted_broker_rejoins_with_its_logs(cluster: Cluster) -> None:
    admin = cluster.admin(0)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    _create(admin, NewTopic("keep", num_partitions=3, replication_factor=3))
    cluster.stop(2)  # a clean stop revokes the lease: gone at once
    wait_until(lambda: _broker_ids(admin) == {0, 1}, timeout=5, interval=0.05, what="broker 2 gone")
    cluster.start(2)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="broker 2 back")
    assert all(cluster.local_log(2, "keep", p) for p in range(3))
    assert set(cluster.admin(2).list_topics(timeout=10).topics["keep"].partitions) == {0, 1, 2}


def _wire_metadata(cluster: Cluster, i: int) -> Any:
    """One Metadata (v12) answer of broker ``i`` itself (an admin client may ask any broker)."""
    wire = WireClient(cluster.brokers[i].bootstrap)
    try:
        return wire.call(3, 12, {"topics": None, "allow_auto_topic_creation": False,
                                 "include_topic_authorized_operations": False})
    finally:
        wire.close()


def test_expired_lease_removes_a_broker(cluster: Cluster) -> None:
    admin = cluster.admin(0)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    _create(admin, NewTopic("led", 2, replica_assignment=[[1, 0], [0, 1]]))
    victim = cluster.brokers[1]
    # Its keepalives stop (as in a long pause) while the process keeps serving.
    victim.call(lambda: victim.broker.metadata.cluster.stop(revoke=False))
    for i in (0, 2):
        wait_until(lambda i=i: {b.node_id for b in _wire_metadata(cluster, i).brokers} == {0, 2}, timeout=10,
                   interval=0.05, what=f"broker 1 gone from broker {i}'s Metadata")
    assert not victim.broker.metadata.lease_valid()
    md = _wire_metadata(cluster, 2)
    assert md.controller_id in (0, 2)

    def led() -> dict[int, Any]:
        return {p.partition_index: p for t in _wire_metadata(cluster, 2).topics if t.name == "led"
                for p in t.partitions}

    # The controller moves the lost broker's leadership to the other ISR member, dropping it from the ISR.
    wait_until(lambda: led()[0].leader_id == 0, timeout=10, interval=0.05, what="partition 0 led by broker 0")
    parts = led()
    assert (parts[0].error_code, parts[0].isr_nodes, parts[0].offline_replicas) == (0, [0], [1])
    assert (parts[1].error_code, parts[1].leader_id, parts[1].offline_replicas) == (0, 0, [1])
    wire = WireClient(cluster.brokers[0].bootstrap)
    try:
        described = wire.call(75, 0, {"topics": [{"name": "led"}], "response_partition_limit": 2000, "cursor": None})
    finally:
        wire.close()
    rows = {p.partition_index: p for p in described.topics[0].partitions}
    assert (rows[0].error_code, rows[0].leader_id, rows[0].replica_nodes) == (0, 0, [1, 0])
    assert (rows[1].error_code, rows[1].leader_id) == (0, 0)


def test_unreachable_etcd_stops_the_start(tmp_path: Path) -> None:
    from kbroker.broker import StartupError
    from kbroker.etcd.server import free_port

    overrides = {"etcd.endpoints": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(RuntimeError) as e:
        BrokerThread(tmp_path / "b", overrides).start(timeout=30)
    assert isinstance(e.value.__cause__, StartupError) and "cannot join the cluster" in str(e.value.__cause__)
    # The data directory is free again: a single broker starts on it.
    single = BrokerThread(tmp_path / "b").start()
    single.stop()


def test_clients_reach_each_partition_on_its_leader(cluster: Cluster) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    admin = cluster.admin(0)
    wait_until(lambda: _broker_ids(admin) == {0, 1, 2}, interval=0.05, what="all brokers")
    _create(admin, NewTopic("spread", 3, replica_assignment=[[0], [1], [2]]))
    producer = Producer({"bootstrap.servers": cluster.brokers[0].bootstrap, "acks": "1"})
    for i in range(30):
        producer.produce("spread", value=str(i).encode(), partition=i % 3)
    assert producer.flush(15) == 0
    # Each partition's records are in its leader's own log, nowhere else.
    for b in range(3):
        assert cluster.brokers[b].broker.log_manager.get_log("spread", b).log_end_offset == 10
    consumer = Consumer({"bootstrap.servers": cluster.brokers[2].bootstrap, "group.id": "g",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition("spread", p, 0) for p in range(3)])
        got: list[int] = []

        def poll() -> bool:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(int(message.value() or b"-1"))
            return len(got) >= 30

        wait_until(poll, timeout=30, interval=0, what="30 records")
        assert sorted(got) == list(range(30))
    finally:
        consumer.close()
