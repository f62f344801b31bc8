"""Records cross between kbroker's tools and confluent-kafka (librdkafka)."""

from __future__ import annotations

from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

Runner = Any  # the `cli` fixture from conftest.py


def test_confluent_producer_to_kbroker_consume(cli: Runner, kafka_bootstrap: str) -> None:
    assert cli("topics", "--create", "--topic", "from-rdkafka", "--partitions", "2").code == 0
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0,
                                         "compression.type": "lz4"})
    for i in range(6):
        producer.produce("from-rdkafka", key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    assert producer.flush(10) == 0
    r = cli("consume", "--topic", "from-rdkafka", "--from-beginning", "--max-messages", "6",
            "--property", "print.key=true")
    assert r.code == 0, r.err
    assert sorted(r.out.splitlines()) == [f"k{i}\tv{i}" for i in range(6)]


def test_kbroker_produce_to_confluent_consumer(cli: Runner, kafka_bootstrap: str) -> None:
    assert cli("topics", "--create", "--topic", "to-rdkafka", "--partitions", "1").code == 0
    r = cli("produce", "--topic", "to-rdkafka", "--compression", "gzip", "--property", "parse.key=true",
            stdin="a\t1\nb\t2\nc\t3\n")
    assert r.code == 0, r.err
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "unused",
                                         "enable.auto.commit": False})
    try:
        consumer.assign([confluent_kafka.TopicPartition("to-rdkafka", 0, confluent_kafka.OFFSET_BEGINNING)])
        got: list[tuple[bytes, bytes]] = []
        for _ in range(50):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key(), msg.value()))
            if len(got) == 3:
                break
    finally:
        consumer.close()
    assert got == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
