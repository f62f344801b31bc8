"""Bounded request memory (queued.max.request.bytes) and idle connections (connections.max.idle.ms)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer
from wait_helpers import wait_until

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread

BUDGET = 1024 * 1024
READ_SIZE = 256 * 1024  # one socket read: what a connection may buffer beyond the budget
FRAME = 900 * 1024
SENT = 800 * 1024


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def _still_serves(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(encode_request(18, 0, 5, {}))
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        cid, body = decode_response(18, 0, data[4:])
        assert cid == 5 and body.error_code == 0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "d", {"queued.max.request.bytes": str(BUDGET), "message.max.bytes": str(4 * BUDGET),
                                       "connections.max.idle.ms": "60000"}) as b:
        yield b


def _buffered(b: BrokerThread) -> int:
    return sum(c.reader.buffered for c in list(b.broker._connections) if hasattr(c, "reader"))


def test_partial_requests_are_buffered_within_the_budget(broker: BrokerThread) -> None:
    socks = [socket.create_connection(("127.0.0.1", broker.port), timeout=30) for _ in range(4)]
    senders: list[threading.Thread] = []
    try:
        payload = struct.pack(">i", FRAME) + b"\x00" * SENT
        socks[0].sendall(payload)
        wait_until(lambda: _buffered(broker) >= 4 + SENT, 20)
        # The others send theirs too; their sends block once the broker stops reading.
        for s in socks[1:]:
            t = threading.Thread(target=lambda s=s: _send_quietly(s, payload), daemon=True)
            t.start()
            senders.append(t)
        bound = BUDGET + 3 * READ_SIZE
        memory = broker.broker.request_memory if hasattr(broker.broker, "request_memory") else None
        wait_until(lambda: _buffered(broker) > bound or (memory is not None and memory.waiting == 3), 20)
        assert _buffered(broker) <= bound
        assert memory is not None and memory.used <= bound
    finally:
        for s in socks:
            s.close()
        for t in senders:
            t.join(10)
    # Closed connections return what they held.
    memory = broker.broker.request_memory
    wait_until(lambda: memory.used == 0, 20, lambda: f"request memory released: used {memory.used}, waiting "
               f"{memory.waiting}, {[(c.reader.buffered, c._held, c.reader.frame_size) for c in broker.broker._connections]}")
    _still_serves(broker.port)


def _send_quietly(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # closed by the test's end
        s.sendall(data)


def test_requests_larger_than_the_budget_are_served_one_at_a_time(broker: BrokerThread) -> None:
    # A record batch larger than the whole budget still gets through, alone.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, max_request_size=4 * BUDGET)
    try:
        value = b"v" * (2 * BUDGET)
        for _ in range(2):
            producer.send("big", value=value, partition=0).get(30)
    finally:
        producer.close(5)
    wait_until(lambda: broker.broker.request_memory.used == 0, 20)


@pytest.fixture
def idle_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "d", {"connections.max.idle.ms": "300"}) as b:
        yield b


def test_half_sent_request_is_closed_after_connections_max_idle_ms(idle_broker: BrokerThread) -> None:
    with socket.create_connection(("127.0.0.1", idle_broker.port), timeout=20) as s:
        s.sendall(b"\x00\x00")
        assert _closed(s)
    with socket.create_connection(("127.0.0.1", idle_broker.port), timeout=20) as s:
        assert _closed(s)  # an idle connection that never sent a byte, too
    _still_serves(idle_broker.port)
