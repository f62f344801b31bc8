"""DeleteRecords through real clients' admin APIs (confluent-kafka, kafka-python): the answer's
low watermark, then ListOffsets earliest and a consumer reading from the earliest offset both
start there; and the per-partition errors as each client reports them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import OffsetOutOfRangeError, PolicyViolationError

from kbroker.testing import BrokerThread

TIMEOUT = 15


def _produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    for i in range(count):
        producer.send(topic, b"v%d" % i, partition=partition)
    producer.flush()
    producer.close()


@pytest.fixture
def confluent_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap, "broker.address.family": "v4"})


@pytest.fixture
def kp_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    yield client
    client.close()


def _first_offset_read(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The offset of the first record a consumer starting from the earliest offset reads."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "broker.address.family": "v4"})
    try:
        consumer.assign([TopicPartition(topic, partition)])
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                return int(msg.offset())
        raise AssertionError("no record consumed")
    finally:
        consumer.close()


def test_confluent_delete_records_moves_the_start(confluent_admin: AdminClient, kafka_bootstrap: str) -> None:
    confluent_admin.create_topics([NewTopic("cf", 2, 1)])["cf"].result(TIMEOUT)
    _produce(kafka_bootstrap, "cf", 10)
    _produce(kafka_bootstrap, "cf", 4, partition=1)
    futures = confluent_admin.delete_records([TopicPartition("cf", 0, 6), TopicPartition("cf", 1, OFFSET_END)])
    lows = {(tp.topic, tp.partition): f.result(TIMEOUT).low_watermark for tp, f in futures.items()}
    assert lows == {("cf", 0): 6, ("cf", 1): 4}  # -1: the high watermark
    offsets = confluent_admin.list_offsets({TopicPartition("cf", 0): OffsetSpec.earliest()})
    assert [r.result(TIMEOUT).offset for r in offsets.values()] == [6]
    assert _first_offset_read(kafka_bootstrap, "cf") == 6


def test_confluent_delete_records_errors(confluent_admin: AdminClient, kafka_bootstrap: str) -> None:
    futures = confluent_admin.create_topics([NewTopic("e", 1, 1), NewTopic("compact", 1, 1,
                                                                           config={"cleanup.policy": "compact"})])
    for f in futures.values():
        f.result(TIMEOUT)
    _produce(kafka_bootstrap, "e", 3)
    for tp, code in ((TopicPartition("e", 0, 4), KafkaError.OFFSET_OUT_OF_RANGE),
                     (TopicPartition("compact", 0, 0), KafkaError.POLICY_VIOLATION)):
        (future,) = confluent_admin.delete_records([tp]).values()
        with pytest.raises(KafkaException) as info:
            future.result(TIMEOUT)
        assert info.value.args[0].code() == code
    # Nothing moved.
    offsets = confluent_admin.list_offsets({TopicPartition("e", 0): OffsetSpec.earliest()})
    assert [r.result(TIMEOUT).offset for r in offsets.values()] == [0]


def test_kafka_python_delete_records_moves_the_start(kp_admin: KafkaAdminClient, kafka_bootstrap: str) -> None:
    kp_admin.create_topics({"kp": {"num_partitions": 1}})
    _produce(kafka_bootstrap, "kp", 8)
    tp = KpTopicPartition("kp", 0)
    result = kp_admin.delete_records({tp: 5})
    assert result[tp]["low_watermark"] == 5 and result[tp]["error_code"] == 0
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 5}
        consumer.assign([tp])
        first = next(iter(consumer))
        assert (first.offset, first.value) == (5, b"v5")
    finally:
        consumer.close()
    assert kp_admin.delete_records({tp: -1})[tp]["low_watermark"] == 8


def test_kafka_python_delete_records_errors(kp_admin: KafkaAdminClient, kafka_bootstrap: str,
                                            kafka_broker: BrokerThread) -> None:
    kp_admin.create_topics({"kpe": {"num_partitions": 1}, "kpc": {"configs": {"cleanup.policy": "compact"}}})
    _produce(kafka_bootstrap, "kpe", 2)
    with pytest.raises(OffsetOutOfRangeError):
        kp_admin.delete_records({KpTopicPartition("kpe", 0): 3})
    with pytest.raises(PolicyViolationError):
        kp_admin.delete_records({KpTopicPartition("kpc", 0): 0})
    plog = kafka_broker.broker.log_manager.get_log("kpe", 0)
    assert plog.log_start_offset == 0
