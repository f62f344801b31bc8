"""Features the broker lacks are refused in a way clients report clearly, and logged once."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaException, Producer
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
