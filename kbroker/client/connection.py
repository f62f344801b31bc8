"""One blocking socket to one broker, with ApiVersions negotiation.

On connect the client sends ApiVersions and keeps the broker's ranges; every later
request goes out at the highest version both the broker and :data:`CLIENT_VERSIONS`
allow. Request bodies are plain dicts: the codec fills fields a version lacks with
their defaults and ignores keys a version does not have, so one body fits them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Mapping
from typing import Any

from construct import Container

from kbroker.client.errors import UNSUPPORTED_VERSION, BrokerConnectionError, KafkaError, ProtocolError
from kbroker.codec import CodecError, api_table, decode_response, encode_request
from kbroker.codec.versions import VersionRange

API_VERSIONS = 18

#: The versions of each API this client knows how to fill in and read back.
#: Produce/Fetch/OffsetCommit/OffsetFetch stop before topic ids replaced names.
CLIENT_VERSIONS: dict[int, VersionRange] = {
    0: VersionRange(3, 12),  # Produce
    1: VersionRange(4, 12),  # Fetch
    2: VersionRange(1, 11),  # ListOffsets
    3: VersionRange(1, 13),  # Metadata
    8: VersionRange(2, 9),  # OffsetCommit
    9: VersionRange(1, 9),  # OffsetFetch
    10: VersionRange(0, 6),  # FindCoordinator
    15: VersionRange(0, 6),  # DescribeGroups
    16: VersionRange(0, 5),  # ListGroups
    18: VersionRange(0, 4),  # ApiVersions
    19: VersionRange(0, 7),  # CreateTopics
    20: VersionRange(0, 6),  # DeleteTopics
    21: VersionRange(0, 2),  # DeleteRecords
    32: VersionRange(0, 4),  # DescribeConfigs
    35: VersionRange(0, 5),  # DescribeLogDirs (v2+ carry kbroker's last cleaning)
    37: VersionRange(0, 3),  # CreatePartitions
    42: VersionRange(0, 2),  # DeleteGroups
    68: VersionRange(0, 1),  # ConsumerGroupHeartbeat
}

_SIZE = struct.Struct(">i")
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


def _api_name(api_key: int) -> str:
    api = api_table().get(api_key)
    return api.name if api else f"API {api_key}"


class BrokerConnection:
    """A connection to one broker; not thread-safe. Connects lazily on first use."""

    def __init__(self, host: str, port: int, *, client_id: str = "kbroker", timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._correlation_id = 0
        self.broker_versions: dict[int, VersionRange] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection lifecycle ------------------------------------------------

    def connect(self) -> None:
        """Open the socket and negotiate API versions (no-op when already connected)."""
        if self._sock is not None:
            return
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise BrokerConnectionError(
                f"Connection to {self.address} could not be established: {e.strerror or e}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.broker_versions = self._negotiate()
        except CodecError as e:
            self.close()
            raise ProtocolError(f"{self.address} does not answer like a Kafka broker: {e}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> BrokerConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- versions ------------------------------------------------------------

    def _negotiate(self) -> dict[int, VersionRange]:
        body = {"client_software_name": "kbroker-client", "client_software_version": "0.1"}
        resp: Container | None = None
        with contextlib.suppress(CodecError):  # a broker that does not know our version answers in v0
            resp = self._roundtrip(API_VERSIONS, CLIENT_VERSIONS[API_VERSIONS].high, body)
        if resp is None or resp.error_code == UNSUPPORTED_VERSION:
            resp = self._roundtrip(API_VERSIONS, 0, body)  # v0 lists every API too
        assert resp is not None
        if resp.error_code:
            raise KafkaError(resp.error_code)
        return {k.api_key: VersionRange(k.min_version, k.max_version) for k in resp.api_keys}

    def supports(self, api_key: int) -> bool:
        """True if the broker and this client share a version of ``api_key``."""
        self.connect()
        try:
            self.version_for(api_key)
        except KafkaError:
            return False
        return True

    def version_for(self, api_key: int) -> int:
        """The highest version of ``api_key`` both sides support; KafkaError if none."""
        api = api_table().get(api_key)
        ours = CLIENT_VERSIONS.get(api_key) or (api.versions if api else None)
        theirs = self.broker_versions.get(api_key)
        if theirs is None or ours is None:
            raise KafkaError(UNSUPPORTED_VERSION,
                             f"The broker at {self.address} does not support {_api_name(api_key)}.")
        high = min(ours.high, theirs.high)
        if high < max(ours.low, theirs.low):
            raise KafkaError(UNSUPPORTED_VERSION,
                             f"No common version of {_api_name(api_key)}: client {ours}, broker {theirs}.")
        return high

    # -- requests ------------------------------------------------------------

    def request(self, api_key: int, body: Mapping[str, Any], *, version: int | None = None,
                expect_response: bool = True) -> tuple[int, Container | None]:
        """Send one request; return ``(version used, response body)`` (None without a response)."""
        self.connect()
        if version is None:
            version = self.version_for(api_key)
        try:
            return version, self._roundtrip(api_key, version, body, expect_response)
        except CodecError as e:
            raise ProtocolError(f"{_api_name(api_key)} v{version} with {self.address}: {e}") from None

    def _roundtrip(self, api_key: int, version: int, body: Mapping[str, Any],
                   expect_response: bool = True) -> Container | None:
        sock = self._sock
        assert sock is not None
        self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
        cid = self._correlation_id
        frame = encode_request(api_key, version, cid, body, self.client_id)
        try:
            sock.sendall(frame)
            if not expect_response:
                return None
            (size,) = _SIZE.unpack(self._recv_exactly(4))
            if size < 0 or size > MAX_RESPONSE_BYTES:
                raise BrokerConnectionError(f"{self.address} sent a frame of {size} bytes")
            data = self._recv_exactly(size)
        except (OSError, BrokerConnectionError) as e:
            self.close()
            if isinstance(e, BrokerConnectionError):
                raise
            reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            raise BrokerConnectionError(f"Connection to {self.address} failed: {reason}") from None
        except BaseException:
            # Interrupted mid-exchange (Ctrl-C): the answer would meet the next request; start afresh.
            self.close()
            raise
        got, resp = decode_response(api_key, version, data)
        if got != cid:
            self.close()
            raise BrokerConnectionError(f"{self.address} answered correlation id {got}, expected {cid}")
        return resp

    def _recv_exactly(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise BrokerConnectionError(f"Connection to {self.address} was closed by the broker")
            buf += chunk
        return bytes(buf)
