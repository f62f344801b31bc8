"""A local cluster behaves as one Kafka cluster: every broker in Metadata, replicated topics
(failover: tests/cluster/test_failover_checks.py)."""

from __future__ import annotations

import time

from kbroker.localcluster import LocalCluster
from tests.cluster.marks import requires_cluster_features

pytestmark = requires_cluster_features
QUIET = {"log_level": 0}


def _admin(c: LocalCluster):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": c.bootstrap_servers, **QUIET})


def _create(c: LocalCluster, topic: str, partitions: int, rf: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(c)  # kept alive until the result is in
    admin.create_topics([NewTopic(topic, partitions, rf, config={"min.insync.replicas": "2"})])[topic].result(30)


def _partition(c: LocalCluster, topic: str, p: int = 0, timeout: float = 30.0, want=lambda md: True):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = _admin(c).list_topics(topic, timeout=5).topics.get(topic)
        if t is not None and t.error is None and p in t.partitions and want(t.partitions[p]):
            return t.partitions[p]
        time.sleep(0.2)
    raise AssertionError(f"{topic}-{p}: not as wanted within {timeout} s")


def _produce(c: LocalCluster, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000, **QUIET})
    errors: list[object] = []
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(40) == 0 and not errors, errors


def _read_all(c: LocalCluster, topic: str, n: int) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    con = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": "check", "enable.auto.commit": False,
                    "isolation.level": "read_committed", **QUIET})
    con.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        m = con.poll(0.5)
        if m is not None and m.error() is None:
            out.append(m.value())
    con.close()
    return out


def test_every_broker_is_in_metadata_and_topics_are_replicated(kafka_cluster: LocalCluster) -> None:
    md = _admin(kafka_cluster).list_topics(timeout=10)
    assert sorted(md.brokers) == [0, 1, 2] and md.controller_id in (0, 1, 2)
    _create(kafka_cluster, "replicated", 3, 3)
    for p in range(3):
        info = _partition(kafka_cluster, "replicated", p, want=lambda m: len(m.isrs) == 3)
        assert sorted(info.replicas) == [0, 1, 2]
