"""Features the broker lacks are refused in a way clients report clearly, and logged once."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from kbroker.testing import BrokerThread


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
