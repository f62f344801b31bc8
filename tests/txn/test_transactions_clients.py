"""Transactional producers of real clients (librdkafka via confluent-kafka, kafka-python) over a socket."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaProducer

from kbroker.testing import BrokerThread
from tests.broker.replica_wire import create_topic


def consume_all(bootstrap: str, topic: str, isolation: str, expect: int, timeout: float = 15.0) -> list[bytes]:
    """Values of partition 0 read with ``isolation``: stop at ``expect`` values or at the end of the partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4()}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191 and len(out) >= expect:  # _PARTITION_EOF
                    break
                continue
            out.append(msg.value())
    finally:
        consumer.close()
    return out


def confluent(bootstrap: str, txn_id: str, **extra: Any) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **extra})


def test_confluent_commit_and_abort(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")
    p = confluent(kafka_broker.bootstrap, "tx-c")
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce("t", f"c{i}".encode(), partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce("t", b"aborted", partition=0)
    p.flush(10)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce("t", b"c3", partition=0)
    p.commit_transaction(30)
    assert consume_all(kafka_broker.bootstrap, "t", "read_committed", 4) == [b"c0", b"c1", b"c2", b"c3"]
    assert consume_all(kafka_broker.bootstrap, "t", "read_uncommitted", 5) == [
        b"c0", b"c1", b"c2", b"aborted", b"c3"]
    state = kafka_broker.broker.transactions.transactions["tx-c"]
    assert state.state.kafka_name == "CompleteCommit" and not state.partitions


def test_confluent_second_producer_fences_the_first(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")
    first = confluent(kafka_broker.bootstrap, "tx-f")
    first.init_transactions(30)
    first.begin_transaction()
    first.produce("t", b"zombie", partition=0)
    first.flush(10)
    second = confluent(kafka_broker.bootstrap, "tx-f")
    second.init_transactions(30)  # aborts the first one's transaction, then bumps the epoch
    second.begin_transaction()
    second.produce("t", b"live", partition=0)
    second.commit_transaction(30)
    with pytest.raises(KafkaException) as raised:
        first.produce("t", b"late", partition=0)
        first.commit_transaction(10)
    assert raised.value.args[0].fatal() or "fenced" in raised.value.args[0].str().lower()
    assert consume_all(kafka_broker.bootstrap, "t", "read_committed", 1) == [b"live"]


def test_kafka_python_commit_abort_and_fencing(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "k")
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id="tx-k", max_block_ms=30_000)
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send("k", b"k0", partition=0)
        p.send("k", b"k1", partition=0)
        p.commit_transaction()
        p.begin_transaction()
        p.send("k", b"kx", partition=0).get(10)
        p.abort_transaction()
        p.begin_transaction()
        p.send("k", b"k2", partition=0).get(10)
        second = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id="tx-k",
                               max_block_ms=30_000)
        try:
            second.init_transactions()  # fences p and aborts its open transaction
            with pytest.raises(Exception):  # noqa: B017 - ProducerFencedError or a fatal KafkaError
                p.commit_transaction()
        finally:
            second.close(5)
    finally:
        p.close(5)
    assert consume_all(kafka_broker.bootstrap, "k", "read_committed", 2) == [b"k0", b"k1"]
