"""Consume-transform-produce with real clients: offsets sent to the transaction count only if it commits."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import confluent_kafka as ck
import kafka
import pytest
from kafka.structs import OffsetAndMetadata as KOffsetAndMetadata
from kafka.structs import TopicPartition as KTopicPartition

from kbroker.groups import Errors, OffsetAndMetadata
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import create_topic

from .clients import wait_until


def _fill(bootstrap: str, topic: str, n: int) -> None:
    p = ck.Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, f"in{i}".encode(), partition=0)
    assert p.flush(10) == 0


def _committed_offset(broker: BrokerThread, group: str, topic: str) -> int | None:
    """The group's committed offset once no transaction holds it (markers are written after EndTxn answers)."""
    def stable() -> bool:
        got = broker.broker.groups.fetch_offsets(group, [(topic, 0)], require_stable=True)
        return got[(topic, 0)] != Errors.UNSTABLE_OFFSET_COMMIT

    wait_until(stable, 10, f"stable offsets of {group}")
    value = broker.broker.groups.fetch_offsets(group, [(topic, 0)])[(topic, 0)]
    return value.offset if isinstance(value, OffsetAndMetadata) else None


def _poll_confluent(consumer: ck.Consumer, n: int, timeout: float = 20.0) -> list[ck.Message]:
    out: list[ck.Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.append(msg)
    assert len(out) == n, f"consumed {len(out)} of {n}"
    return out


def test_confluent_send_offsets_to_transaction(kafka_broker: BrokerThread) -> None:
    bootstrap = kafka_broker.bootstrap
    create_topic(kafka_broker, "ct-in")
    create_topic(kafka_broker, "ct-out")
    _fill(bootstrap, "ct-in", 5)
    group = f"eos-c-{uuid.uuid4()}"
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                            "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    producer = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{group}", "linger.ms": 5})
    try:
        consumer.subscribe(["ct-in"])
        producer.init_transactions(30)
        # A committed transaction: its offsets become the group's.
        producer.begin_transaction()
        for msg in _poll_confluent(consumer, 3):
            producer.produce("ct-out", msg.value().upper(), partition=0)
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        assert kafka_broker.broker.groups.manager.has_open_transactions(group)
        # A read_committed consumer asks for stable offsets (OffsetFetch require_stable) and
        # retries UNSTABLE_OFFSET_COMMIT until the transaction ends.
        asked: list[int] = []
        reader = threading.Thread(target=lambda: asked.extend(
            tp.offset for tp in consumer.committed([ck.TopicPartition("ct-in", 0)], 20)))
        reader.start()
        time.sleep(0.5)
        assert reader.is_alive() and not asked
        producer.commit_transaction(30)
        reader.join(20)
        assert asked == [3]
        assert _committed_offset(kafka_broker, group, "ct-in") == 3
        # An aborted one: the group keeps the offsets of the last committed transaction.
        producer.begin_transaction()
        for msg in _poll_confluent(consumer, 2):
            producer.produce("ct-out", msg.value().upper(), partition=0)
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.abort_transaction(30)
        assert _committed_offset(kafka_broker, group, "ct-in") == 3
        assert not kafka_broker.broker.groups.manager.has_open_transactions(group)
        assert [tp.offset for tp in consumer.committed([ck.TopicPartition("ct-in", 0)], 10)] == [3]
    finally:
        consumer.close()
    # A restarted consumer of the group resumes after the committed transaction.
    again = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    try:
        again.subscribe(["ct-in"])
        assert [m.value() for m in _poll_confluent(again, 2)] == [b"in3", b"in4"]
    finally:
        again.close()


def _poll_kafka_python(consumer: Any, n: int, timeout: float = 20.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200, max_records=n - len(out)).values():
            out.extend(records)
    assert len(out) == n, f"consumed {len(out)} of {n}"
    return out


def test_kafka_python_send_offsets_to_transaction(kafka_broker: BrokerThread) -> None:
    bootstrap = kafka_broker.bootstrap
    create_topic(kafka_broker, "kt-in")
    create_topic(kafka_broker, "kt-out")
    _fill(bootstrap, "kt-in", 4)
    group = f"eos-k-{uuid.uuid4()}"
    consumer = kafka.KafkaConsumer("kt-in", bootstrap_servers=bootstrap, group_id=group,
                                   enable_auto_commit=False, auto_offset_reset="earliest",
                                   isolation_level="read_committed")
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{group}", max_block_ms=30_000)
    tp = KTopicPartition("kt-in", 0)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for record in _poll_kafka_python(consumer, 2):
            producer.send("kt-out", record.value, partition=0)
        # The consumer's group metadata carries its member id and generation (KIP-447 checks).
        producer.send_offsets_to_transaction({tp: KOffsetAndMetadata(consumer.position(tp), "", -1)},
                                             consumer.group_metadata())
        producer.commit_transaction()
        assert _committed_offset(kafka_broker, group, "kt-in") == 2
        assert consumer.committed(tp) == 2
        producer.begin_transaction()
        for record in _poll_kafka_python(consumer, 2):
            producer.send("kt-out", record.value, partition=0)
        producer.send_offsets_to_transaction({tp: KOffsetAndMetadata(consumer.position(tp), "", -1)},
                                             consumer.group_metadata())
        producer.abort_transaction()
        assert _committed_offset(kafka_broker, group, "kt-in") == 2
        # A stale generation is refused (KIP-447): the producer's transaction becomes abortable.
        producer.begin_transaction()
        stale = kafka.structs.ConsumerGroupMetadata(group, consumer.group_metadata().generation_id + 5,
                                                    consumer.group_metadata().member_id, None)
        with pytest.raises(kafka.errors.CommitFailedError, match="IllegalGeneration"):
            producer.send_offsets_to_transaction({tp: KOffsetAndMetadata(4, "", -1)}, stale)
            producer.commit_transaction()
        producer.abort_transaction()
        assert _committed_offset(kafka_broker, group, "kt-in") == 2
    finally:
        producer.close(5)
        consumer.close()
