"""Plaintext connections served through their transport directly (the lean path), on
asyncio's and uvloop's event loops: pipelining, backpressure both ways, a client that
closes mid-frame or sends too large or malformed a frame, idleness, shutdown with a
request in flight, a muted (throttled) client, and TCP_NODELAY on accepted sockets."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from socket_helpers import read_frame as _read_frame
from wait_helpers import wait_until

from kbroker.broker import Broker
from kbroker.codec import decode_response, encode_request
from kbroker.handlers import registry
from kbroker.handlers.api import RequestContext
from kbroker.server import connection
from kbroker.server.connection import Connection
from kbroker.testing import make_config

#: Each test runs a broker in this process (not through BrokerThread, which tiers it itself).
pytestmark = pytest.mark.integration

LOOPS = ["asyncio", "uvloop"]
CONNECTION_LOG = "kbroker.server.connection"
HEARTBEAT = 12


def _backend_options(loop: str) -> dict[str, Any]:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
        return {"use_uvloop": True}
    return {}


def _serve(tmp_path: Path, loop: str, client: Callable[[Broker, int], Any],
           overrides: dict[str, str] | None = None) -> Any:
    """Run a broker in this process on ``loop``; ``client(broker, port)`` runs in a thread
    meanwhile (blocking sockets) and its result is returned once the broker stopped."""

    async def main() -> Any:
        broker = Broker(make_config(tmp_path / "d", overrides))
        async with broker.running():
            port = int(broker.bootstrap.rsplit(":", 1)[1])
            return await anyio.to_thread.run_sync(client, broker, port)

    return anyio.run(main, backend_options=_backend_options(loop))


def _api_versions(correlation_id: int, version: int = 3) -> bytes:
    body = {"client_software_name": "lean-test", "client_software_version": "1"} if version >= 3 else {}
    return encode_request(18, version, correlation_id, body, client_id="lean")


def _metadata(correlation_id: int) -> bytes:
    return encode_request(3, 12, correlation_id, {"topics": [], "allow_auto_topic_creation": False},
                          client_id="lean")




def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def _connections(broker: Broker) -> list[Connection]:
    return list(broker._connections)


def _serves(port: int) -> bool:
    with _connect(port) as s:
        s.sendall(_api_versions(77))
        cid, body = decode_response(18, 3, _read_frame(s))
        return cid == 77 and body.error_code == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_plain_connections_use_the_transport_and_set_tcp_nodelay(tmp_path: Path, loop: str) -> None:
    def client(broker: Broker, port: int) -> None:
        with _connect(port) as s:
            # Sent at once: it may arrive before the connection takes the transport over.
            s.sendall(_api_versions(1))
            assert decode_response(18, 3, _read_frame(s))[0] == 1
            (conn,) = _connections(broker)
            assert conn._lean is not None and conn._lean.reading
            raw = conn.stream.extra(anyio.abc.SocketAttribute.raw_socket)
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert conn.session.client_software_name == "lean-test"

    _serve(tmp_path, loop, client)


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelined_requests_are_answered_in_order_however_they_are_split(tmp_path: Path, loop: str) -> None:
    frames = [(_api_versions if i % 3 else _metadata)(i) for i in range(1, 61)]
    data = b"".join(frames)

    def client(broker: Broker, port: int) -> None:
        with _connect(port) as s:
            s.sendall(frames[0])
            _read_frame(s)
            (conn,) = _connections(broker)
            assert conn._lean is not None
            lean = conn._lean
            wait_until(lambda: lean.idle_timer is not None, 10)  # armed when it waits for a request
            timer = lean.idle_timer
            s.sendall(data)  # all at once
            got = [struct.unpack_from(">i", _read_frame(s))[0] for _ in frames]
            assert got == list(range(1, 61))
            assert lean.idle_timer is timer  # no timer armed per request
            # Byte by byte: a frame is served once whole, not before.
            for b in frames[0][:-1]:
                s.send(bytes([b]))
            time.sleep(0.2)
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
            s.sendall(frames[0][-1:] + frames[1])
            assert [struct.unpack_from(">i", _read_frame(s))[0] for _ in range(2)] == [1, 2]

    _serve(tmp_path, loop, client)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_does_not_read_is_waited_for_then_served_in_order(tmp_path: Path, loop: str) -> None:
    count = 25_000  # 8 MB of answers, more than the socket buffers hold
    data = b"".join(_api_versions(i) for i in range(count))

    def client(broker: Broker, port: int) -> None:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            s.settimeout(20)
            s.connect(("127.0.0.1", port))
            sender = threading.Thread(target=s.sendall, args=(data,), daemon=True)
            sender.start()
            wait_until(lambda: any(c._lean is not None and c._lean.write_paused for c in _connections(broker)), 20)
            (conn,) = _connections(broker)
            assert conn.busy  # waiting for the client to read, not taking requests
            # Meanwhile it stops reading once a socket read's worth waits to be served.
            wait_until(lambda: not conn._lean.reading, 20)  # type: ignore[union-attr]
            assert conn.reader.buffered < 2 * connection._READ_SIZE
            # What came in while a request was served is counted on top of what that held.
            assert broker.request_memory.used == conn._held >= conn.reader.buffered > 0
            got = [struct.unpack_from(">i", _read_frame(s))[0] for _ in range(count)]
            sender.join(20)
            assert got == list(range(count))

    _serve(tmp_path, loop, client)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_gone_while_its_answers_wait_closes_quietly(tmp_path: Path, loop: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=CONNECTION_LOG)
    data = b"".join(_api_versions(i) for i in range(25_000))

    def client(broker: Broker, port: int) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.connect(("127.0.0.1", port))
        threading.Thread(target=_send_quietly, args=(s, data), daemon=True).start()
        wait_until(lambda: any(c._lean is not None and c._lean.write_paused for c in _connections(broker)), 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
        s.close()
        wait_until(lambda: not _connections(broker), 20)
        assert broker.request_memory.used == 0
        assert _serves(port)

    _serve(tmp_path, loop, client)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _send_quietly(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # closed by the test
        s.sendall(data)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_closes_mid_frame_gives_its_bytes_back(tmp_path: Path, loop: str) -> None:
    def client(broker: Broker, port: int) -> None:
        s = _connect(port)
        s.sendall(struct.pack(">i", 100_000) + b"\0" * 50_000)
        wait_until(lambda: broker.request_memory.used >= 50_004, 20)
        s.close()
        wait_until(lambda: not _connections(broker) and broker.request_memory.used == 0, 20)
        assert broker.request_memory.admitted == 0
        assert _serves(port)

    _serve(tmp_path, loop, client, {"queued.max.request.bytes": str(1 << 20)})


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_half_closes_after_its_requests_gets_its_answers(tmp_path: Path, loop: str) -> None:
    def client(broker: Broker, port: int) -> None:
        with _connect(port) as s:
            s.sendall(_api_versions(1) + _api_versions(2))
            s.shutdown(socket.SHUT_WR)
            assert [struct.unpack_from(">i", _read_frame(s))[0] for _ in range(2)] == [1, 2]
            assert _closed(s)

    _serve(tmp_path, loop, client)


@pytest.mark.parametrize("loop", LOOPS)
def test_too_large_and_malformed_frames_close_only_their_connection(tmp_path: Path, loop: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=CONNECTION_LOG)

    def client(broker: Broker, port: int) -> None:
        with _connect(port) as bystander:
            bystander.sendall(_api_versions(1))
            _read_frame(bystander)
            with _connect(port) as s:
                s.sendall(struct.pack(">i", 5000) + b"\0" * 10)
                assert _closed(s)
            with _connect(port) as s:
                s.sendall(struct.pack(">i", 12) + struct.pack(">hhi", 3, 12, 9) + b"\xff\xff\xff\xff")
                assert _closed(s)
            bystander.sendall(_api_versions(2))
            assert decode_response(18, 3, _read_frame(bystander))[0] == 2
        wait_until(lambda: broker.request_memory.used == 0, 20)

    _serve(tmp_path, loop, client, {"socket.request.max.bytes": "1000"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("closing connection from 127.0.0.1:") and
               m.endswith("frame of 5000 bytes exceeds the limit of 1000 bytes") for m in warnings), warnings
    assert any("malformed request" in m for m in warnings), warnings
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("loop", LOOPS)
def test_idle_connections_close_and_busy_ones_stay(tmp_path: Path, loop: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=CONNECTION_LOG)

    def client(broker: Broker, port: int) -> None:
        with _connect(port) as idle, _connect(port) as active:
            idle.sendall(_api_versions(1))
            _read_frame(idle)
            served = time.monotonic()
            # A request every 0.1 s keeps a connection open well past the idle time.
            for i in range(12):
                active.sendall(_api_versions(i))
                _read_frame(active)
                time.sleep(0.1)
            assert _closed(idle)
            assert time.monotonic() - served >= 0.4
            active.sendall(_api_versions(99))
            assert struct.unpack_from(">i", _read_frame(active))[0] == 99
            # Once it stops sending, it idles out as well.
            started = time.monotonic()
            assert _closed(active)
            assert 0.35 <= time.monotonic() - started < 5

    _serve(tmp_path, loop, client, {"connections.max.idle.ms": "400"})
    assert any("idle for connections.max.idle.ms" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("loop", LOOPS)
def test_shutdown_answers_the_request_in_flight_then_closes(tmp_path: Path, loop: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    handler = registry()[HEARTBEAT]

    async def slow(ctx: RequestContext) -> Any:
        started.set()
        await anyio.sleep(0.5)
        return {"error_code": 0, "throttle_time_ms": 0}

    monkeypatch.setitem(registry(), HEARTBEAT, dataclasses.replace(handler, handle=slow))
    heartbeat = encode_request(HEARTBEAT, 4, 5, {"group_id": "g", "generation_id": 1, "member_id": "m",
                                                  "group_instance_id": None})
    results: dict[str, Any] = {}

    def busy_client(port: int) -> None:
        with _connect(port) as s, _connect(port) as idle:
            idle.sendall(_api_versions(1))
            _read_frame(idle)
            s.sendall(heartbeat)
            results["cid"] = struct.unpack_from(">i", _read_frame(s))[0]
            results["closed"] = _closed(s)
            results["idle closed"] = _closed(idle)

    async def main() -> None:
        broker = Broker(make_config(tmp_path / "d"))
        async with broker.running():
            port = int(broker.bootstrap.rsplit(":", 1)[1])
            thread = threading.Thread(target=busy_client, args=(port,))
            thread.start()
            await anyio.to_thread.run_sync(started.wait, 20)
            t0 = time.monotonic()
        # The block's exit stopped the broker: it waited for the heartbeat to be answered.
        results["stop took"] = time.monotonic() - t0
        await anyio.to_thread.run_sync(thread.join, 20)

    anyio.run(main, backend_options=_backend_options(loop))
    assert results["cid"] == 5 and results["closed"] and results["idle closed"]
    assert 0.3 <= results["stop took"] < 9


@pytest.mark.parametrize("loop", LOOPS)
def test_a_throttled_client_is_muted_and_others_are_not(tmp_path: Path, loop: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    handler = registry()[HEARTBEAT]

    async def throttling(ctx: RequestContext) -> Any:
        ctx.session.throttle_ms = 500  # as client quotas set it (KIP-219)
        return {"error_code": 0, "throttle_time_ms": 500}

    monkeypatch.setitem(registry(), HEARTBEAT, dataclasses.replace(handler, handle=throttling))
    heartbeat = encode_request(HEARTBEAT, 4, 5, {"group_id": "g", "generation_id": 1, "member_id": "m",
                                                  "group_instance_id": None})

    def client(broker: Broker, port: int) -> None:
        with _connect(port) as muted, _connect(port) as other:
            muted.sendall(heartbeat)
            _read_frame(muted)
            t0 = time.monotonic()
            muted.sendall(_api_versions(2))
            conn = next(c for c in _connections(broker) if c.session.throttle_ms > 0)
            lean = conn._lean
            assert lean is not None
            wait_until(lambda: not lean.reading, 0.3)  # muted: reads nothing
            other.sendall(_api_versions(3))
            assert struct.unpack_from(">i", _read_frame(other))[0] == 3
            assert time.monotonic() - t0 < 0.4
            assert struct.unpack_from(">i", _read_frame(muted))[0] == 2
            assert time.monotonic() - t0 >= 0.45
            assert lean.reading

    _serve(tmp_path, loop, client)


#: queued.max.request.bytes for the two tests below, and a request size it admits one of at a time.
_BUDGET = 1 << 20
_BIG = 900 * 1024


def _stall_two(broker: Broker, first: socket.socket, second: socket.socket) -> float:
    """Both connections send the start of a ``_BIG`` request and stall: the first is admitted
    whole, the second waits for room in the budget. Returns when the second's bytes went."""
    memory = broker.request_memory
    first.sendall(struct.pack(">i", _BIG) + b"\0" * 1000)
    wait_until(lambda: memory.admitted == 1, 20)
    second.sendall(struct.pack(">i", _BIG) + b"\0" * 1000)
    stalled = time.monotonic()
    wait_until(lambda: memory.waiting == 1, 20)
    return stalled


@pytest.mark.parametrize("loop", LOOPS)
def test_backpressure_waits_for_the_budget_then_serves(tmp_path: Path, loop: str) -> None:
    def client(broker: Broker, port: int) -> None:
        memory = broker.request_memory
        with _connect(port) as first, _connect(port) as second:
            # The first connection's request is admitted whole; the second's waits for room.
            _stall_two(broker, first, second)
            waiting = next(c for c in _connections(broker) if not c._admitted)
            assert waiting._lean is not None and not waiting._lean.reading
            first.close()  # its bytes go back: the second is admitted and reads on
            wait_until(lambda: memory.waiting == 0 and memory.admitted == 1 and waiting._admitted, 20)
            wait_until(lambda: waiting._lean is not None and waiting._lean.reading, 5)
        wait_until(lambda: memory.used == 0 and memory.admitted == 0, 20)

    _serve(tmp_path, loop, client, {"queued.max.request.bytes": str(_BUDGET)})


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stalled_request_admitted_late_idles_out_on_time(tmp_path: Path, loop: str) -> None:
    """connections.max.idle.ms counts from the connection's last bytes: a request that waited
    for the memory budget and was then admitted gets no fresh idle period (slow clients would
    otherwise hold the budget in turns, each for the time it waited plus the idle time)."""
    def client(broker: Broker, port: int) -> None:
        memory = broker.request_memory
        with _connect(port) as first, _connect(port) as second:
            # Both stall mid-request: the first holds the budget, the second waits for room.
            stalled = _stall_two(broker, first, second)
            # The first idles out; the second is admitted then, 0.8 s after its last bytes.
            assert _closed(first)
            assert _closed(second)
            took = time.monotonic() - stalled
            assert 0.7 <= took < 1.35, took
        wait_until(lambda: memory.used == 0 and memory.admitted == 0 and memory.waiting == 0, 20)

    _serve(tmp_path, loop, client, {"queued.max.request.bytes": str(_BUDGET), "connections.max.idle.ms": "800"})


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_received_before_the_take_over_are_served(tmp_path: Path, loop: str) -> None:
    """The connection takes the transport over from anyio's stream with what it buffered."""

    async def main() -> tuple[int, bool]:
        broker = Broker(make_config(tmp_path / "d"))
        async with broker.running():
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            s = await anyio.to_thread.run_sync(_connect, port)
            s.sendall(_api_versions(1) + _api_versions(2))
            s.shutdown(socket.SHUT_WR)
            stream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            protocol = stream._protocol  # type: ignore[attr-defined]
            with anyio.fail_after(10):
                while not protocol.is_at_eof:  # anyio's protocol holds both requests and the EOF
                    await anyio.sleep(0.01)
            conn = Connection(broker, stream, broker.listener_security["PLAINTEXT"], memory=broker.request_memory,
                              stopping=lambda: False)
            await conn.run()
            assert conn._lean is not None
            cids = [struct.unpack_from(">i", await anyio.to_thread.run_sync(_read_frame, s))[0] for _ in range(2)]
            closed = await anyio.to_thread.run_sync(_closed, s)
            s.close()
            await listener.aclose()
            return cids[0] * 10 + cids[1], closed

    assert anyio.run(main, backend_options=_backend_options(loop)) == (12, True)


def test_tls_connections_keep_the_stream_and_set_tcp_nodelay(tmp_path: Path) -> None:
    import ssl

    from tools.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    overrides = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM",
                 "ssl.keystore.location": str(pki.server), "ssl.truststore.type": "PEM",
                 "ssl.truststore.location": str(pki.ca)}
    context = ssl.create_default_context(cafile=str(pki.ca))

    def client(broker: Broker, port: int) -> None:
        with context.wrap_socket(_connect(port), server_hostname="localhost") as s:
            s.sendall(_api_versions(1))
            assert decode_response(18, 3, _read_frame(s))[0] == 1
            (conn,) = _connections(broker)
            assert conn._lean is None
            raw = conn.stream.extra(anyio.abc.SocketAttribute.raw_socket)
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    _serve(tmp_path, "asyncio", client, overrides)


SASL = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN",
        "connection.failed.authentication.delay.ms": "100",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
            'password="admin-secret" user_alice="alice-secret";'}


@pytest.mark.parametrize("loop", LOOPS)
def test_a_failed_login_lingers_until_the_client_hangs_up_or_the_linger_ends(tmp_path: Path, loop: str) -> None:
    def failed_login(port: int) -> socket.socket:
        s = _connect(port)
        s.sendall(encode_request(17, 1, 1, {"mechanism": "PLAIN"}))
        assert decode_response(17, 1, _read_frame(s))[1].error_code == 0
        s.sendall(encode_request(36, 1, 2, {"auth_bytes": b"\0alice\0wrong"}))
        assert decode_response(36, 1, _read_frame(s))[1].error_code == 58
        return s

    def client(broker: Broker, port: int) -> None:
        # A client that hangs up after the answer: its connection goes at once.
        s = failed_login(port)
        (conn,) = _connections(broker)
        assert conn._lean is not None
        s.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        assert _closed(s)
        assert time.monotonic() - started < 0.8
        s.close()
        wait_until(lambda: not _connections(broker), 10)
        # One that keeps sending (requests it will not get answers to) is closed after the linger.
        s = failed_login(port)
        started = time.monotonic()
        s.sendall(_api_versions(3) * 1000)
        assert _closed(s)  # no answer came: the first byte read is the end of the stream
        assert 0.8 <= time.monotonic() - started < 5
        s.close()
        wait_until(lambda: not _connections(broker) and broker.request_memory.used == 0, 10)

    _serve(tmp_path, loop, client, SASL)
