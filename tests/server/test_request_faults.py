"""A fault while serving one request closes that connection only: the broker serves on."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from kbroker.codec import encode_request
from kbroker.handlers import registry
from kbroker.handlers.api import RequestContext
from kbroker.server import dispatch as dispatch_module
from kbroker.testing import BrokerThread

EVIL = "evil-client"
METADATA = 3


class HandlerBug(BaseException):
    """Not an ``Exception``: a fault that slips past ``except Exception``."""


def _fault(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Metadata requests from ``EVIL`` fail in the way ``kind`` names."""
    original = registry()[METADATA]

    async def handle(ctx: RequestContext) -> Any:
        if ctx.client_id != EVIL:
            return await original.handle(ctx)
        if kind == "exception":
            raise RuntimeError("deliberate handler fault")
        if kind == "base-exception":
            raise HandlerBug("deliberate handler fault")
        return {"evil": True}

    monkeypatch.setitem(registry(), METADATA, dataclasses.replace(original, handle=handle))
    if kind == "encode":
        encode = dispatch_module.encode_response_parts

        def failing_encode(api_key: int, version: int, correlation_id: int, body: Any) -> Any:
            if isinstance(body, dict) and body.get("evil"):
                raise ValueError("deliberate encoder fault")
            return encode(api_key, version, correlation_id, body)

        monkeypatch.setattr(dispatch_module, "encode_response_parts", failing_encode)


def _evil_request(port: int) -> None:
    """Send a Metadata v12 request as ``EVIL`` and check that the connection is closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        body = encode_request(METADATA, 12, 7, {"topics": None, "allow_auto_topic_creation": False,
                                                "include_topic_authorized_operations": False},
                              client_id=EVIL)
        s.sendall(body)
        assert s.recv(1) == b""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "d") as b:
        yield b


@pytest.mark.parametrize("kind", ["exception", "base-exception", "encode"])
def test_request_fault_closes_only_its_connection(broker: BrokerThread, kind: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    _fault(kind, monkeypatch)
    bootstrap = broker.bootstrap
    kp = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    cp = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    cc = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False})
    try:
        # Connections are open and in use when the fault happens on another one.
        kp.send("t", value=b"k0", partition=0).get(10)
        cp.produce("t", value=b"c0", partition=0)
        assert cp.flush(10) == 0
        with caplog.at_level(logging.ERROR, logger="kbroker"):
            _evil_request(broker.port)
            _evil_request(broker.port)
        kp.send("t", value=b"k1", partition=0).get(10)
        cp.produce("t", value=b"c1", partition=0)
        assert cp.flush(10) == 0

        kc.assign([KTopicPartition("t", 0)])
        kc.seek_to_beginning()
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            for recs in kc.poll(timeout_ms=200).values():
                got.extend(r.value for r in recs)
        assert sorted(got) == [b"c0", b"c1", b"k0", b"k1"]

        cc.assign([TopicPartition("t", 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(values) < 4 and time.monotonic() < deadline:
            m = cc.poll(0.2)
            if m is not None and m.error() is None:
                values.append(m.value())
        assert sorted(values) == [b"c0", b"c1", b"k0", b"k1"]
    finally:
        kp.close(5)
        cp.flush(5)
        kc.close()
        cc.close()
    # One line per failed request, naming the request, the client and its address.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2, lines
    for line in lines:
        assert "Metadata v12" in line and EVIL in line and "127.0.0.1:" in line, line
