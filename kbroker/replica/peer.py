"""An async Kafka-protocol connection from this broker to another one (replica fetching).

One request at a time: the follower's fetch loop is sequential, as Kafka's fetcher thread
is. Every failure (refused connection, timeout, a closed socket, a frame that does not
decode, a wrong correlation id) closes the connection and raises :class:`PeerError`; the
next request reconnects, once ``backoff_s`` has passed since the failure.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from construct import Container

from kbroker.codec import CodecError, decode_response, encode_request

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
#: Larger answers are refused as corrupt (a follower asks for replica.fetch.response.max.bytes).
MAX_RESPONSE_BYTES = 256 * 1024 * 1024

Connector = Callable[[str, int], Awaitable[anyio.abc.ByteStream]]


class PeerError(Exception):
    """A request to another broker failed for a reason of the connection, not of the answer."""


async def connect_plaintext(host: str, port: int) -> anyio.abc.ByteStream:
    """A plain TCP connection (the PLAINTEXT inter-broker listener)."""
    return await anyio.connect_tcp(host, port)


class PeerConnection:
    """A lazily opened connection to one broker, reopened after failures.

    ``monotonic`` is the clock the back-off is measured with (``Clock.monotonic``).
    """

    def __init__(self, host: str, port: int, *, client_id: str, timeout_s: float, backoff_s: float,
                 connect: Connector | None = None, monotonic: Callable[[], float] | None = None) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._connect = connect or connect_plaintext
        self._monotonic = monotonic or anyio.current_time
        self._stream: anyio.abc.ByteStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._correlation_id = 0
        self._failed_at: float | None = None
        self._lock = anyio.Lock()
        self._closed = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def request(self, api_key: int, version: int, body: Mapping[str, Any],
                      timeout_s: float | None = None) -> Container:
        """Send one request and return the decoded response body.

        ``timeout_s`` (default: the connection's) bounds the connection set-up, the send
        and the wait for the answer together. Raises :class:`PeerError`.
        """
        async with self._lock:
            if self._closed:
                raise PeerError(f"connection to {self.address} is closed")
            await self._wait_backoff()
            limit = self.timeout_s if timeout_s is None else timeout_s
            try:
                with anyio.fail_after(limit):
                    return await self._roundtrip(api_key, version, body)
            except TimeoutError:
                await self._fail()
                raise PeerError(f"request to {self.address} timed out after {limit:.3f}s") from None
            except PeerError:
                await self._fail()
                raise
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    anyio.EndOfStream, anyio.IncompleteRead) as e:
                await self._fail()
                raise PeerError(f"connection to {self.address} failed: {e!r}") from None
            except CodecError as e:
                await self._fail()
                raise PeerError(f"{self.address} sent an undecodable answer: {e}") from None
            except BaseException:
                # Cancelled mid-request: the answer may still come, so the stream is unusable.
                await self._drop()
                raise

    async def _wait_backoff(self) -> None:
        if self._stream is None and self._failed_at is not None:
            delay = self._failed_at + self.backoff_s - self._monotonic()
            if delay > 0:
                await anyio.sleep(delay)

    async def _roundtrip(self, api_key: int, version: int, body: Mapping[str, Any]) -> Container:
        if self._stream is None:
            self._stream = await self._connect(self.host, self.port)
            self._reader = BufferedByteReceiveStream(self._stream)
            log.debug("connected to %s", self.address)
        stream, reader = self._stream, self._reader
        assert reader is not None
        self._correlation_id = (self._correlation_id + 1) & 0x7FFFFFFF
        cid = self._correlation_id
        await stream.send(encode_request(api_key, version, cid, body, client_id=self.client_id))
        (size,) = _SIZE.unpack(await reader.receive_exactly(4))
        if size < 4 or size > MAX_RESPONSE_BYTES:
            raise PeerError(f"{self.address} sent a frame of {size} bytes")
        frame = await reader.receive_exactly(size)
        got, resp = decode_response(api_key, version, frame)
        if got != cid:
            raise PeerError(f"{self.address} answered correlation id {got}, expected {cid}")
        self._failed_at = None
        return resp

    async def _fail(self) -> None:
        self._failed_at = self._monotonic()
        await self._drop()

    async def _drop(self) -> None:
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            with (anyio.CancelScope(shield=True), anyio.move_on_after(1),
                  contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
                await stream.aclose()

    def backoff_remaining(self) -> float:
        """Seconds until a reconnect is allowed (0 when connected or never failed)."""
        if self._stream is not None or self._failed_at is None:
            return 0.0
        return max(0.0, self._failed_at + self.backoff_s - self._monotonic())

    async def aclose(self) -> None:
        """Close the connection for good."""
        self._closed = True
        await self._drop()


__all__ = ["MAX_RESPONSE_BYTES", "Connector", "PeerConnection", "PeerError", "connect_plaintext"]
