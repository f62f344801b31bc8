"""Raw request/response exchanges over a socket, with kbroker's codec (no client library)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from kbroker.codec import CodecError, api_table, decode_response, encode_request
from tools.kafka_reference.reference import recv_exact

API_VERSIONS = 18


@dataclass
class Outcome:
    """What a broker did with one request.

    ``kind`` is ``response`` (decoded into ``body``), ``closed`` (the connection ended without
    an answer), ``timeout`` (no answer in time, connection still open), ``none`` (no answer
    expected and none came) or ``undecodable`` (an answer kbroker's codec cannot read).
    """

    kind: str
    body: Any = None
    detail: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        if self.kind == "response":
            code = None
            with contextlib.suppress(AttributeError):
                code = self.body.get("error_code")
            return "response" + (f"(error_code={code})" if code is not None else "")
        return self.kind + (f"({self.detail})" if self.detail and self.kind != "closed" else "")


def frame(api_key: int, version: int, correlation_id: int, body: Any, client_id: str = "wirediff") -> bytes:
    """A size-prefixed request frame built by kbroker's codec."""
    return encode_request(api_key, version, correlation_id, body, client_id=client_id)


def reframe(payload: bytes) -> bytes:
    """``payload`` (a frame without its size prefix) behind a fresh size prefix."""
    return struct.pack(">i", len(payload)) + payload


class Connection:
    """One blocking connection; reconnects on demand after the broker closes it."""

    def __init__(self, bootstrap: str, timeout: float = 10.0) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.addr = (host, int(port))
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.cid = 1000

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def next_cid(self) -> int:
        self.cid += 1
        return self.cid

    def exchange(self, api_key: int, version: int, data: bytes, cid: int, *, expect_response: bool = True,
                 wait: float | None = None, quiet_wait: float = 0.3) -> Outcome:
        """Send ``data`` (a whole framed request) and read the answer to ``cid``.

        With ``expect_response`` false the connection is watched for ``quiet_wait`` seconds:
        an answer or a close there is reported, silence is ``none``.
        """
        t0 = time.monotonic()
        sock = self._connect()
        try:
            sock.sendall(data)
        except OSError as e:
            self.close()
            return Outcome("closed", detail=f"send: {e}", seconds=time.monotonic() - t0)
        sock.settimeout(wait if expect_response and wait is not None else
                        (self.timeout if expect_response else quiet_wait))
        try:
            head = recv_exact(sock, 4)
            (size,) = struct.unpack(">i", head)
            sock.settimeout(self.timeout)
            payload = recv_exact(sock, size)
        except TimeoutError:
            if not expect_response:
                return Outcome("none", seconds=time.monotonic() - t0)
            self.close()  # a late answer must not be read as the next request's
            return Outcome("timeout", seconds=time.monotonic() - t0)
        except (ConnectionError, OSError) as e:
            self.close()
            return Outcome("closed", detail=str(e), seconds=time.monotonic() - t0)
        seconds = time.monotonic() - t0
        return decode(api_key, version, cid, payload, seconds)


def decode(api_key: int, version: int, cid: int, payload: bytes, seconds: float = 0.0) -> Outcome:
    """Decode a response payload; ApiVersions answers to unknown versions are read as v0 (KIP-511)."""
    api = api_table()[api_key]
    versions = [version] if version in api.versions else []
    if api_key == API_VERSIONS:
        versions.append(0)
    last = ""
    for v in versions:
        try:
            got, body = decode_response(api_key, v, payload)
        except CodecError as e:
            last = str(e)
            continue
        if got != cid:
            return Outcome("undecodable", detail=f"correlation id {got} != {cid}", seconds=seconds)
        return Outcome("response", body=body, seconds=seconds, detail="" if v == version else f"read as v{v}")
    return Outcome("undecodable", detail=last or f"v{version} not in the codec ({len(payload)} bytes)",
                   seconds=seconds)
