"""Brokers reach each other on ``inter.broker.listener.name``: a cluster whose only listener is
SASL_PLAINTEXT replicates (followers log in with ``sasl.mechanism.inter.broker.protocol``), and a
wrong inter-broker password keeps followers out of the ISR instead of acknowledging anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from wait_helpers import wait_until

from kbroker.config import generate_cluster_id
from kbroker.etcd.server import EtcdServer
from kbroker.testing import BrokerThread
from tests.etcd.conftest import etcd_server  # noqa: F401

pytestmark = pytest.mark.integration

LISTENER = "listener.name.sasl_plaintext."


def _jaas(password: str) -> str:
    return ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
            f'password="{password}" user_broker="broker-secret" user_alice="alice-secret";')


CLIENT = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "alice",
          "sasl.password": "alice-secret", "log_level": 0}


def _brokers(root: Path, etcd: EtcdServer, passwords: list[str]) -> list[BrokerThread]:
    cluster_id = generate_cluster_id()
    started: list[BrokerThread] = []
    try:
        for i, password in enumerate(passwords):
            started.append(BrokerThread(root / f"b{i}", {
                "node.id": str(i), "etcd.endpoints": etcd.endpoint, "cluster.id": cluster_id,
                "broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "200",
                "controlled.shutdown.max.wait.ms": "1000", "replica.fetch.backoff.ms": "200",
                "replica.lag.time.max.ms": "2000",
                "listeners": "SASL_PLAINTEXT://127.0.0.1:0", "inter.broker.listener.name": "SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                LISTENER + "plain.sasl.jaas.config": _jaas(password)}).start(timeout=30))
    except BaseException:
        for b in started:
            b.stop()
        raise
    return started


@pytest.fixture
def stop_all() -> Iterator[list[BrokerThread]]:
    brokers: list[BrokerThread] = []
    yield brokers
    for b in brokers:
        b.stop()


def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **CLIENT})
    admin.create_topics([NewTopic(topic, 1, replica_assignment=[[0, 1]], config={"min.insync.replicas": "2"})],
                        operation_timeout=10)[topic].result(timeout=15)


def _isr(bootstrap: str, topic: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **CLIENT})
    md = admin.list_topics(topic, timeout=10).topics[topic]
    return sorted(md.partitions[0].isrs) if md.error is None and 0 in md.partitions else []


def test_replication_over_a_sasl_inter_broker_listener(tmp_path: Path, etcd_server: EtcdServer,  # noqa: F811
                                                       stop_all: list[BrokerThread]) -> None:
    stop_all += _brokers(tmp_path, etcd_server, ["broker-secret", "broker-secret"])
    bootstrap = ",".join(b.bootstrap for b in stop_all)
    _create(bootstrap, "secured")
    outcomes: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 20000, **CLIENT})
    for i in range(20):
        producer.produce("secured", b"%d" % i, partition=0, on_delivery=lambda err, _m: outcomes.append(err))
    producer.flush(30)
    # acks=all with min.insync 2: acknowledged only once the follower, logged in over SASL, has them.
    assert outcomes == [None] * 20
    follower = stop_all[1].broker.log_manager.get_log("secured", 0)
    leader = stop_all[0].broker.log_manager.get_log("secured", 0)
    assert follower is not None and leader is not None
    wait_until(lambda: follower.log_end_offset == 20, timeout=10, what="follower caught up")
    assert bytes(follower.read(0, 1 << 20)) == bytes(leader.read(0, 1 << 20))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False, **CLIENT})
    consumer.assign([TopicPartition("secured", 0, 0)])
    got = []
    for _ in range(100):
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            got.append(int(m.value()))
        if len(got) == 20:
            break
    consumer.close()
    assert got == list(range(20))


def test_a_follower_that_cannot_log_in_stays_out_of_the_isr(tmp_path: Path, etcd_server: EtcdServer,  # noqa: F811
                                                             stop_all: list[BrokerThread]) -> None:
    # Broker 1 logs in to others with a wrong password: it can never fetch from broker 0.
    stop_all += _brokers(tmp_path, etcd_server, ["broker-secret", "wrong"])
    bootstrap = stop_all[0].bootstrap
    _create(bootstrap, "locked")
    wait_until(lambda: _isr(bootstrap, "locked") == [0], timeout=30, interval=0.2,
               what="the follower dropped from the ISR")
    outcomes: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 5000, "retries": 0,
                         **CLIENT})
    producer.produce("locked", b"x", partition=0, on_delivery=lambda err, _m: outcomes.append(err))
    producer.flush(20)
    assert len(outcomes) == 1 and outcomes[0] is not None
    assert outcomes[0].code() == KafkaError.NOT_ENOUGH_REPLICAS
