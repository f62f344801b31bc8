"""Transactions in a cluster: a transactional produce to a partition whose leader is not the
transaction coordinator is verified with the coordinator (KIP-890), as Kafka's partition leaders do."""

from __future__ import annotations

import time

from kbroker.localcluster import LocalCluster
from tests.cluster.marks import requires_cluster_features

pytestmark = requires_cluster_features
QUIET = {"log_level": 0}
PARTITIONS = 6


def _leaders(c: LocalCluster, topic: str) -> dict[int, int]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": c.bootstrap_servers, **QUIET})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=5).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == PARTITIONS:
            leaders = {p: md.leader for p, md in t.partitions.items()}
            if all(leader >= 0 for leader in leaders.values()):
                return leaders
        time.sleep(0.2)
    raise AssertionError(f"{topic}: no leader for every partition within 30 s")


def test_transactional_produce_to_partitions_led_by_other_brokers_commits(kafka_cluster: LocalCluster) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "txn-spread"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers, **QUIET})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    # One replica per partition, spread over the three brokers: whichever broker coordinates the
    # transaction, some partitions are led by the two others.
    assert len(set(_leaders(kafka_cluster, topic).values())) == 3

    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "transactional.id": "spread",
                         "message.timeout.ms": 20000, "transaction.timeout.ms": 30000, **QUIET})
    producer.init_transactions(30)
    producer.begin_transaction()
    errors: list[object] = []
    for i in range(PARTITIONS * 5):
        producer.produce(topic, b"v%d" % i, partition=i % PARTITIONS,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors, errors
    producer.commit_transaction(30)

    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "group.id": "spread-check",
                         "enable.auto.commit": False, "isolation.level": "read_committed", **QUIET})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 30
    while len(seen) < PARTITIONS * 5 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value())
    consumer.close()
    assert seen == {b"v%d" % i for i in range(PARTITIONS * 5)}


def test_offsets_sent_to_a_transaction_whose_coordinator_is_another_broker(kafka_cluster: LocalCluster) -> None:
    """TxnOffsetCommit on the group coordinator verifies the offsets partition with the transaction
    coordinator; when that is another broker it is asked, as Kafka (was: NOT_COORDINATOR forever)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from kbroker.common import partition_for

    topic, txn_id = "txn-offsets", "offsets-spread"
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers, **QUIET})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "transactional.id": txn_id, **QUIET})
    producer.init_transactions(30)  # creates __transaction_state
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "group.id": "probe", **QUIET})
    consumer.list_topics("__consumer_offsets", timeout=10)  # FindCoordinator creates __consumer_offsets
    consumer.close()

    def leaders(name: str) -> dict[int, int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            t = admin.list_topics(name, timeout=5).topics.get(name)
            if t is not None and t.error is None and t.partitions and all(
                    md.leader >= 0 for md in t.partitions.values()):
                return {p: md.leader for p, md in t.partitions.items()}
            time.sleep(0.2)
        raise AssertionError(f"{name}: no leader for every partition within 30 s")

    states = leaders("__transaction_state")
    txn_coordinator = states[partition_for(txn_id, len(states))]
    offsets_leaders = leaders("__consumer_offsets")
    group = next(g for g in (f"group-{i}" for i in range(200))
                 if offsets_leaders[partition_for(g, len(offsets_leaders))] != txn_coordinator)

    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, **QUIET})
    producer.begin_transaction()
    producer.produce(topic, b"v", partition=0)
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 1)], consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    assert committed[0].offset == 1
