"""Bad frames get a Kafka error or a closed connection, and the broker stays up."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

import pytest
from socket_helpers import read_frame

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread


def _connect(b: BrokerThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", b.port), timeout=5)




def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def _still_serves(b: BrokerThread) -> None:
    with _connect(b) as s:
        s.sendall(encode_request(18, 3, 9, {"client_software_name": "t", "client_software_version": "1"}))
        cid, body = decode_response(18, 3, read_frame(s))
        assert cid == 9 and body.error_code == 0 and body.api_keys


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    with BrokerThread(tmp_path / "d", {"socket.request.max.bytes": "4096"}) as b:
        yield b


def test_oversized_frame_closes_connection_with_log_line(broker: BrokerThread,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), _connect(broker) as s:
        s.sendall(struct.pack(">i", 5000) + b"\0" * 100)
        assert _closed(s)
    assert any("exceeds the limit" in r.getMessage() for r in caplog.records)
    _still_serves(broker)


@pytest.mark.parametrize("frame", [
    b"\x00\x01",  # shorter than a header
    struct.pack(">hhi", 3, 12, 1) + b"\xff\xff\xff",  # truncated Metadata body
    struct.pack(">hhi", 999, 0, 1) + b"\x00\x00",  # unknown API key
    struct.pack(">hhi", 3, 99, 1) + b"\x00\x00",  # unsupported Metadata version
])
def test_malformed_frames_close_only_that_connection(broker: BrokerThread, frame: bytes) -> None:
    with _connect(broker) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        assert _closed(s)
    _still_serves(broker)


def test_unknown_api_versions_version_gets_unsupported_version_in_v0(broker: BrokerThread) -> None:
    # KIP-511: the broker answers ApiVersions at a version it does not know in v0,
    # with UNSUPPORTED_VERSION and its own version ranges so the client can retry.
    frame = struct.pack(">hhi", 18, 77, 42) + struct.pack(">h", 1) + b"c" + b"\x00\x00\x00"
    with _connect(broker) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        cid, body = decode_response(18, 0, read_frame(s))
    assert cid == 42 and body.error_code == 35
    assert any(k.api_key == 18 and k.max_version >= 3 for k in body.api_keys)


def test_api_versions_advertises_only_implemented_apis(broker: BrokerThread) -> None:
    from kbroker.handlers import registry

    with _connect(broker) as s:
        s.sendall(encode_request(18, 0, 1, {}))
        _, body = decode_response(18, 0, read_frame(s))
    assert {k.api_key for k in body.api_keys} == set(registry())
    produce = next(k for k in body.api_keys if k.api_key == 0)
    assert produce.min_version == 0  # advertised from v0 like Kafka 4 (KAFKA-18659), served from v3
