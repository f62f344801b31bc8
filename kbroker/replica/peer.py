"""An async Kafka-protocol connection from this broker to another one (replica fetching).

:func:`inter_broker_connector` opens the stream as the inter-broker listener's security
protocol says: plain TCP, TLS (the listener's ``ssl.*`` keys), and for SASL_PLAINTEXT /
SASL_SSL a SaslHandshake and SaslAuthenticate exchange (PLAIN or SCRAM-SHA-256/512, with
``sasl.mechanism.inter.broker.protocol`` and the listener's JAAS ``username``/``password``).

One request at a time: the follower's fetch loop is sequential, as Kafka's fetcher thread
is. Every failure (refused connection, timeout, a closed socket, a frame that does not
decode, a wrong correlation id) closes the connection and raises :class:`PeerError`; the
next request reconnects, once ``backoff_s`` has passed since the failure.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import ssl
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from construct import Container

from kbroker.codec import CodecError, decode_response, encode_request
from kbroker.config import BrokerConfig, ConfigError

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


SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SaslLogin:
    """What this broker authenticates to other brokers with."""

    mechanism: str
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:  # never the password
        return f"SaslLogin({self.mechanism!r}, {self.username!r})"


class SaslStream(anyio.abc.ByteStream):
    """A stream authenticated with SASL, with the session lifetime the server granted (KIP-368:
    0 = unlimited); :class:`PeerConnection` opens a new connection before it runs out."""

    def __init__(self, inner: anyio.abc.ByteStream, session_lifetime_ms: int) -> None:
        self.inner = inner
        self.session_lifetime_ms = session_lifetime_ms

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


def inter_broker_listener(config: BrokerConfig) -> str:
    """The listener brokers reach each other on: ``inter.broker.listener.name``, else the one
    named after ``security.inter.broker.protocol`` (as Kafka)."""
    name = config.get("inter.broker.listener.name")
    return str(name or config.get("security.inter.broker.protocol")).upper()


def inter_broker_connector(config: BrokerConfig, listener: str | None = None) -> Connector:
    """The function opening streams to other brokers' ``listener`` (default: the inter-broker
    one) as its security protocol requires. Raises :class:`ConfigError` for a set-up that
    cannot work (unknown listener, unusable TLS stores, a SASL mechanism or login missing)."""
    listener = listener or inter_broker_listener(config)
    try:
        protocol = config.security_protocol(listener)
    except KeyError:
        raise ConfigError(f"inter-broker listener {listener} has no security protocol: add it to "
                          "listener.security.protocol.map", "inter.broker.listener.name") from None
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        from kbroker.security.tls import client_context  # TLS code only when a listener needs it

        context = client_context(config, listener)
    login = sasl_login(config, listener) if protocol.startswith("SASL_") else None

    async def connect(host: str, port: int) -> anyio.abc.ByteStream:
        stream: anyio.abc.ByteStream
        if context is not None:
            stream = await anyio.connect_tcp(host, port, ssl_context=context, tls_hostname=host)
        else:
            stream = await anyio.connect_tcp(host, port)
        if login is not None:
            try:
                lifetime = await sasl_authenticate(stream, login, client_id=f"kbroker-replica-{config.node_id}")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise
            return SaslStream(stream, lifetime)
        return stream

    return connect


def sasl_login(config: BrokerConfig, listener: str) -> SaslLogin:
    """``sasl.mechanism.inter.broker.protocol`` and the ``username``/``password`` of the
    listener's JAAS config for it (``listener.name.<l>.<mechanism>.sasl.jaas.config``)."""
    from kbroker.security.jaas import single_entry

    mechanism = str(config.get("sasl.mechanism.inter.broker.protocol")).upper()
    key = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
    if mechanism not in SASL_MECHANISMS:
        raise ConfigError(f"sasl.mechanism.inter.broker.protocol: {mechanism} cannot be used between brokers; "
                          f"use one of {', '.join(SASL_MECHANISMS)}", "sasl.mechanism.inter.broker.protocol")
    text = config.listener_get(listener, "sasl.jaas.config", mechanism)
    if not text:
        raise ConfigError(f"the inter-broker listener {listener} needs {key} with username and password "
                          f"for {mechanism}", key)
    entry = single_entry(str(text), key)
    username, password = entry.options.get("username"), entry.options.get("password")
    if not username or password is None:
        raise ConfigError(f"{key}: the inter-broker login needs username and password options", key)
    return SaslLogin(mechanism, username, password)


async def _exchange(stream: anyio.abc.ByteStream, reader: BufferedByteReceiveStream, api_key: int, version: int,
                    correlation_id: int, body: Mapping[str, Any], client_id: str) -> Container:
    await stream.send(encode_request(api_key, version, correlation_id, body, client_id=client_id))
    (size,) = _SIZE.unpack(await reader.receive_exactly(4))
    if size < 4 or size > 1 << 20:
        raise PeerError(f"SASL answer of {size} bytes")
    got, resp = decode_response(api_key, version, await reader.receive_exactly(size))
    if got != correlation_id:
        raise PeerError(f"SASL answer with correlation id {got}, expected {correlation_id}")
    return resp


async def sasl_authenticate(stream: anyio.abc.ByteStream, login: SaslLogin, *,
                            client_id: str = "kbroker-replica") -> int:
    """Authenticate ``stream`` (SaslHandshake v1, then SaslAuthenticate v2 exchanges); PeerError on
    refusal. Returns the session lifetime the server granted in ms (0: unlimited)."""
    reader = BufferedByteReceiveStream(stream)
    hello = await _exchange(stream, reader, SASL_HANDSHAKE, 1, 0, {"mechanism": login.mechanism},
                            client_id)
    if hello.error_code:
        raise PeerError(f"SASL handshake for {login.mechanism} refused (error {hello.error_code}; "
                        f"offered: {', '.join(hello.mechanisms)})")
    cid = 1
    lifetime_ms = 0

    async def step(data: bytes) -> bytes:
        nonlocal cid, lifetime_ms
        resp = await _exchange(stream, reader, SASL_AUTHENTICATE, 2, cid, {"auth_bytes": data}, client_id)
        cid += 1
        if resp.error_code:
            raise PeerError(f"SASL {login.mechanism} authentication as {login.username} failed: "
                            f"{resp.error_message or resp.error_code}")
        lifetime_ms = max(0, int(resp.session_lifetime_ms))
        return bytes(resp.auth_bytes or b"")

    if login.mechanism == "PLAIN":
        await step(b"\0" + login.username.encode() + b"\0" + login.password.encode())
        return lifetime_ms
    from kbroker.security.sasl.scram import saslname
    from kbroker.security.scram import mechanism as scram_mechanism

    mech = scram_mechanism(login.mechanism)
    nonce = secrets.token_urlsafe(24)
    first_bare = f"n={saslname(login.username)},r={nonce}"
    try:
        server_first = (await step(f"n,,{first_bare}".encode())).decode()
        fields = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
        server_nonce, iterations = fields.get("r", ""), int(fields.get("i", "0"))
        salt = base64.b64decode(fields.get("s", ""), validate=True)
    except ValueError:  # not UTF-8, an iteration count or base64
        raise PeerError(f"SASL {login.mechanism}: malformed server-first message") from None
    if (not server_nonce.startswith(nonce) or server_nonce == nonce or not salt
            or not mech.min_iterations <= iterations <= mech.max_iterations):
        raise PeerError(f"SASL {login.mechanism}: unacceptable server-first message")
    salted = mech.salted_password(login.password, salt, iterations)
    client_key = mech.hmac(salted, b"Client Key")
    without_proof = f"c={base64.b64encode(b'n,,').decode()},r={server_nonce}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = mech.hmac(mech.hash(client_key), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = (await step(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())).decode(
        errors="replace")
    expected = mech.hmac(mech.hmac(salted, b"Server Key"), auth_message)
    if server_final != f"v={base64.b64encode(expected).decode()}":
        raise PeerError(f"SASL {login.mechanism}: the other broker's signature does not verify")
    return lifetime_ms


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
        #: When a SASL session ends (KIP-368), the connection is replaced a little before.
        self._expires_at: float | None = None
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
        if self._expires_at is not None and self._monotonic() >= self._expires_at:
            log.debug("SASL session with %s about to end: reconnecting", self.address)
            await self._drop()
        if self._stream is None:
            stream = self._stream = await self._connect(self.host, self.port)
            self._reader = BufferedByteReceiveStream(stream)
            lifetime_ms = stream.session_lifetime_ms if isinstance(stream, SaslStream) else 0
            # As Kafka's clients, re-authenticate at 85% of the lifetime, before the server refuses.
            self._expires_at = self._monotonic() + lifetime_ms * 0.85 / 1000.0 if lifetime_ms > 0 else None
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
        stream, self._stream, self._reader, self._expires_at = self._stream, None, None, None
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


__all__ = [
    "MAX_RESPONSE_BYTES", "Connector", "PeerConnection", "PeerError", "SaslLogin", "SaslStream",
    "connect_plaintext",
    "inter_broker_connector", "inter_broker_listener", "sasl_authenticate", "sasl_login",
]
