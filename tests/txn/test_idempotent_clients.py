"""Real clients with idempotence on: every message is stored and read exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer

from kbroker.testing import BrokerThread
from tests.broker.replica_wire import create_topic

N = 300


def _read_all(bootstrap: str, topic: str, n: int, timeout: float = 10.0) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(r.value for r in recs)
        # Anything past n would be a duplicate: give it a moment to show up.
        for recs in consumer.poll(timeout_ms=300).values():
            out.extend(r.value for r in recs)
    finally:
        consumer.close()
    return out


def _expect(topic_values: list[bytes], prefix: str) -> None:
    assert sorted(topic_values) == sorted(f"{prefix}{i}".encode() for i in range(N))


def _producer_ids(broker: BrokerThread, topic: str, partitions: int) -> set[int]:
    ids: set[int] = set()
    for p in range(partitions):
        ids |= set(broker.broker.log_manager.get_log(topic, p).producer_state.producers)
    return ids


def test_kafka_python_default_producer_is_idempotent(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "kp", partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)  # idempotent by default
    futures = [producer.send("kp", f"kp{i}".encode()) for i in range(N)]
    producer.flush(10)
    assert all(f.get(5) for f in futures)
    producer.close(5)
    _expect(_read_all(kafka_broker.bootstrap, "kp", N), "kp")
    assert len(_producer_ids(kafka_broker, "kp", 3)) == 1


def test_confluent_idempotent_acks_all(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "ck", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5})
    errors: list[Any] = []
    for i in range(N):
        producer.produce("ck", f"ck{i}".encode(), on_delivery=lambda err, _msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(10) == 0 and not errors
    _expect(_read_all(kafka_broker.bootstrap, "ck", N), "ck")
    assert len(_producer_ids(kafka_broker, "ck", 3)) == 1


def test_aiokafka_enable_idempotence(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "ak", partitions=3)

    async def main() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send("ak", f"ak{i}".encode()) for i in range(N)])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("ak", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        try:
            while len(out) < N and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                out += [r.value for recs in batches.values() for r in recs]
            batches = await consumer.getmany(timeout_ms=300)  # duplicates would show up here
            out += [r.value for recs in batches.values() for r in recs]
        finally:
            await consumer.stop()
        return out

    _expect(asyncio.run(asyncio.wait_for(main(), 20)), "ak")
    assert len(_producer_ids(kafka_broker, "ak", 3)) == 1
