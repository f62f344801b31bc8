"""Features the broker lacks are refused in a way clients report clearly, and logged once."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from kafka import KafkaProducer
from kafka.errors import KafkaError as KafkaPythonError

from kbroker.testing import BrokerThread


def test_confluent_init_transactions_fails_fatally_saying_why(kafka_broker: BrokerThread,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": "tx-1"})
    with caplog.at_level(logging.WARNING, logger="kbroker"), pytest.raises(KafkaException) as raised:
        producer.init_transactions(60)
    error = raised.value.args[0]
    assert error.fatal() and not error.retriable()
    assert "transactions are not supported" in error.str()
    lines = [r.getMessage() for r in caplog.records if "transactional id" in r.getMessage()]
    assert len(lines) == 1 and "'tx-1'" in lines[0] and "not supported" in lines[0], lines


def test_kafka_python_transactional_producer_fails(kafka_broker: BrokerThread) -> None:
    with pytest.raises(KafkaPythonError):
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id="tx-2",
                                 max_block_ms=60_000)
        try:
            producer.init_transactions()
        finally:
            producer.close(1)


def test_confluent_consumer_group_protocol_gets_a_fatal_error(kafka_broker: BrokerThread,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    errors: list[Any] = []
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g848",
                         "group.protocol": "consumer", "error_cb": errors.append})
    try:
        consumer.subscribe(["t"])
        with caplog.at_level(logging.WARNING, logger="kbroker"):
            fatal = None
            deadline = time.monotonic() + 30
            while fatal is None and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and message.error() is not None and (
                        message.error().fatal() or message.error().code() == KafkaError._FATAL):
                    fatal = message.error()
                fatal = fatal or next((e for e in errors if e.fatal()), None)
    finally:
        consumer.close()
    assert fatal is not None and "ConsumerGroupHeartbeat" in fatal.str()
    lines = [r.getMessage() for r in caplog.records if "ConsumerGroupHeartbeat" in r.getMessage()]
    assert lines and all("'g848'" in line and "group.protocol=classic" in line for line in lines), lines
