"""Just enough of the Kafka wire protocol to probe a broker without a client library.

ApiVersions v0 and Metadata v1 requests, framed, over plain sockets: used to tell when a
broker is ready, to hold idle connections, and to time a metadata round trip.
"""

from __future__ import annotations

import socket
import struct
import time

API_VERSIONS = 18
METADATA = 3
CLIENT_ID = b"kbroker-bench"
HOST_DEFAULT = "127.0.0.1"


def request_frame(api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    """A size-prefixed request with a v1 header (api key, version, correlation id, client id)."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def api_versions_frame(correlation_id: int = 1) -> bytes:
    return request_frame(API_VERSIONS, 0, correlation_id)


def metadata_frame(correlation_id: int = 1, topics: list[str] | None = None) -> bytes:
    """Metadata v1: ``topics=None`` asks for every topic."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(
            struct.pack(">h", len(t.encode())) + t.encode() for t in topics
        )
    return request_frame(METADATA, 1, correlation_id, body)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(correlation id, body) of the next response frame."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    data = recv_exact(sock, size)
    (correlation_id,) = struct.unpack(">i", data[:4])
    return correlation_id, data[4:]


def round_trip(sock: socket.socket, frame: bytes) -> tuple[float, bytes]:
    """Send ``frame``, wait for its response: (seconds taken, response body)."""
    started = time.perf_counter()
    sock.sendall(frame)
    _, body = read_response(sock)
    return time.perf_counter() - started, body


def api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the broker at ``host:port`` answers ApiVersions with error code 0."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            _, body = round_trip(sock, api_versions_frame())
            return len(body) >= 2 and struct.unpack(">h", body[:2])[0] == 0
    except OSError:
        return False
