"""The SASL exchange of one connection, as Kafka's SaslServerAuthenticator (sans-I/O).

A connection on a SASL listener starts unauthenticated. Before authentication, only
ApiVersions and SaslHandshake are served; after a SaslHandshake v1 naming an enabled
mechanism, only SaslAuthenticate, carrying the mechanism's tokens; after a v0 handshake the
next frames are raw tokens (no request header), answered as size-prefixed raw tokens.
Anything else closes the connection. Once the mechanism completes, the connection is
authenticated as ``User:<authorization id>`` and every API is served.

KIP-368: when ``connections.max.reauth.ms`` is set or the credential expires (an
OAUTHBEARER token's ``exp``), the session has a lifetime (told to the client in
SaslAuthenticate v1+). A SaslHandshake on an authenticated connection with a lifetime
starts a re-authentication, with the same mechanism, which must end with the same
principal. Once the lifetime is over, any request but SaslHandshake (and ApiVersions)
closes the connection.

A failed login answers SASL_AUTHENTICATION_FAILED (or UNSUPPORTED_SASL_MECHANISM, or
ILLEGAL_SASL_STATE) after ``connection.failed.authentication.delay.ms`` and then closes
the connection; the connection does the waiting, asynchronously.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.security.sasl.base import SaslFailure, SaslServer

log = logging.getLogger(__name__)

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
#: Kafka's sasl.server.max.receive.size default: the largest frame read before authentication.
DEFAULT_MAX_RECEIVE_SIZE = 524288
#: A client may not start re-authenticating more often than this (Kafka's KafkaChannel).
MIN_REAUTH_INTERVAL_S = 1.0


class SaslState(enum.Enum):
    """Kafka's SaslServerAuthenticator states."""

    INITIAL_REQUEST = "INITIAL_REQUEST"
    HANDSHAKE_OR_VERSIONS_REQUEST = "HANDSHAKE_OR_VERSIONS_REQUEST"
    HANDSHAKE_REQUEST = "HANDSHAKE_REQUEST"
    AUTHENTICATE = "AUTHENTICATE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    REAUTH_PROCESS_HANDSHAKE = "REAUTH_PROCESS_HANDSHAKE"
    REAUTH_BAD_MECHANISM = "REAUTH_BAD_MECHANISM"


_HANDSHAKE_STATES = frozenset({SaslState.INITIAL_REQUEST, SaslState.HANDSHAKE_OR_VERSIONS_REQUEST,
                               SaslState.HANDSHAKE_REQUEST, SaslState.REAUTH_PROCESS_HANDSHAKE})


class SaslMetrics:
    """Broker-wide authentication counts (Kafka's successful-/failed-(re)authentication-total)."""

    def __init__(self) -> None:
        self.successful_authentication = 0
        self.failed_authentication = 0
        self.successful_reauthentication = 0
        self.failed_reauthentication = 0


@dataclass(frozen=True)
class Refusal:
    """A request the authenticator's state does not allow. ``answer``: reply with the
    request's error response (ILLEGAL_SASL_STATE) after the failure delay, then close (the
    authenticator has failed); otherwise close at once."""

    reason: str
    answer: bool = False


@dataclass(frozen=True)
class HandshakeResult:
    """The SaslHandshake response's fields."""

    error_code: int
    mechanisms: list[str]


@dataclass(frozen=True)
class AuthenticateResult:
    """The SaslAuthenticate response's fields."""

    error_code: int
    error_message: str | None
    auth_bytes: bytes
    session_lifetime_ms: int


@dataclass(frozen=True)
class SaslSettings:
    """What every authenticator of one listener shares."""

    listener: str
    factories: Mapping[str, Callable[[], SaslServer]]
    #: connections.max.reauth.ms per mechanism (0: no limit).
    max_reauth_ms: Mapping[str, int]
    failure_delay_ms: int = 100
    max_receive_size: int = DEFAULT_MAX_RECEIVE_SIZE
    clock: Clock = SYSTEM_CLOCK
    metrics: SaslMetrics | None = None


class SaslAuthenticator:
    """The SASL state of one connection from ``host:port``."""

    def __init__(self, settings: SaslSettings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.metrics = settings.metrics or SaslMetrics()
        self._state = SaslState.INITIAL_REQUEST
        #: Whether tokens come in SaslAuthenticate requests (handshake v1+) or raw (v0).
        self._headers = False
        self._server: SaslServer | None = None
        self.mechanism: str | None = None
        #: ``User:<name>`` once authenticated (kept through a re-authentication).
        self.principal: str | None = None
        self._previous_mechanism: str | None = None
        self._bad_mechanism_message = ""
        self._expires_at: float | None = None  # monotonic seconds
        self._last_reauth_start: float | None = None
        self._client_supports_reauth = False
        #: Whether the connection is to be closed once the failure response is sent.
        self.failed = False

    # --- what the connection asks -------------------------------------------------------
    @property
    def state(self) -> SaslState:
        """The current state."""
        return self._state

    @property
    def authenticating(self) -> bool:
        """True until the first authentication completes, and during a re-authentication:
        frames are then bounded by sasl.server.max.receive.size."""
        return self._state is not SaslState.COMPLETE

    @property
    def raw_tokens(self) -> bool:
        """The next frame is a raw token (after a SaslHandshake v0), not a request."""
        return self._state is SaslState.AUTHENTICATE and not self._headers

    @property
    def reauthenticating(self) -> bool:
        """True while a re-authentication is in progress."""
        return self._previous_mechanism is not None

    @property
    def max_receive_size(self) -> int:
        """The largest frame accepted while authenticating."""
        return self.settings.max_receive_size

    @property
    def failure_delay_s(self) -> float:
        """How long the connection waits before answering a failed login and closing."""
        return self.settings.failure_delay_ms / 1000

    def expired(self) -> bool:
        """Whether the authenticated session's lifetime is over."""
        return self._expires_at is not None and self.settings.clock.monotonic() > self._expires_at

    def refuse(self, api_key: int) -> Refusal | None:
        """None when a request of ``api_key`` may be served now; else how to refuse it."""
        state = self._state
        if state is SaslState.COMPLETE:
            if api_key == SASL_HANDSHAKE and self._maybe_begin_reauth():
                return None
            if self._expires_at is not None and self.expired() and api_key != API_VERSIONS:
                return Refusal("the SASL session expired (connections.max.reauth.ms or the credential's lifetime) and "
                               "the client did not re-authenticate")
            return None
        if state in _HANDSHAKE_STATES:
            if api_key == SASL_HANDSHAKE:
                return None
            if api_key == API_VERSIONS:
                if state in (SaslState.INITIAL_REQUEST, SaslState.HANDSHAKE_OR_VERSIONS_REQUEST):
                    self._state = SaslState.HANDSHAKE_REQUEST
                    return None
                self._state = SaslState.FAILED
                return Refusal(f"Unexpected ApiVersions request received during SASL authentication state {state.name}")
            if state is SaslState.INITIAL_REQUEST:
                self._state = SaslState.FAILED
                return Refusal("Invalid request, potential reasons: kafka client configured with the wrong security "
                               "protocol, it does not support KIP-43 or it is not a kafka client.")
            self._state = SaslState.FAILED
            return Refusal(f"Unexpected Kafka request of API key {api_key} during SASL handshake.")
        if state in (SaslState.AUTHENTICATE, SaslState.REAUTH_BAD_MECHANISM):
            if api_key == SASL_AUTHENTICATE and self._headers:
                return None
            message = f"Unexpected Kafka request of API key {api_key} during SASL authentication."
            self._fail(message, None)
            return Refusal(message, answer=True)
        return Refusal("SASL authentication failed")  # FAILED: nothing more is served

    # --- the SASL requests ------------------------------------------------------------
    def handshake(self, mechanism: str, version: int) -> HandshakeResult:
        """Serve SaslHandshake (any state: on an authenticated connection it answers
        ILLEGAL_SASL_STATE, as Kafka's request handler does)."""
        enabled = list(self.settings.factories)
        state = self._state
        if state not in _HANDSHAKE_STATES:
            return HandshakeResult(ErrorCode.ILLEGAL_SASL_STATE, [])
        self._headers = version >= 1
        if mechanism not in self.settings.factories:
            self._fail(f"Unsupported SASL mechanism {mechanism}", None)
            return HandshakeResult(ErrorCode.UNSUPPORTED_SASL_MECHANISM, enabled)
        if self._previous_mechanism is not None and mechanism != self._previous_mechanism:
            self._bad_mechanism_message = (f"SASL mechanism '{mechanism}' requested by client is not supported for "
                                           f"re-authentication of mechanism '{self._previous_mechanism}'")
            self._state = SaslState.REAUTH_BAD_MECHANISM
            return HandshakeResult(ErrorCode.NONE, enabled)
        self.mechanism = mechanism
        self._server = self.settings.factories[mechanism]()
        self._state = SaslState.AUTHENTICATE
        return HandshakeResult(ErrorCode.NONE, enabled)

    def authenticate(self, token: bytes, version: int) -> AuthenticateResult:
        """Serve SaslAuthenticate."""
        state = self._state
        if state is SaslState.COMPLETE:
            return AuthenticateResult(ErrorCode.ILLEGAL_SASL_STATE,
                                      "SaslAuthenticate request received after successful authentication", b"", 0)
        if state is SaslState.REAUTH_BAD_MECHANISM:
            self._fail(self._bad_mechanism_message, None)
            return AuthenticateResult(ErrorCode.SASL_AUTHENTICATION_FAILED, self._bad_mechanism_message, b"", 0)
        if state is not SaslState.AUTHENTICATE or self._server is None or not self._headers:
            message = f"Unexpected SaslAuthenticate request in SASL state {state.name}"
            self._fail(message, None)
            return AuthenticateResult(ErrorCode.ILLEGAL_SASL_STATE, message, b"", 0)
        if version > 0:
            self._client_supports_reauth = True
        try:
            challenge = self._evaluate(token)
        except SaslFailure as e:
            message = self._failure_message(e)
            return AuthenticateResult(ErrorCode.SASL_AUTHENTICATION_FAILED, message, b"", 0)
        lifetime = self._session_lifetime_ms if self._state is SaslState.COMPLETE else 0
        return AuthenticateResult(ErrorCode.NONE, None, challenge, lifetime)

    def raw_token(self, token: bytes) -> bytes | None:
        """Take a raw token (after SaslHandshake v0); the challenge to send back size-prefixed,
        or None when authentication failed (the connection then closes, answering nothing)."""
        try:
            return self._evaluate(token)
        except SaslFailure as e:
            self._failure_message(e)
            return None

    # --- inside ------------------------------------------------------------------------
    _session_lifetime_ms = 0

    def _evaluate(self, token: bytes) -> bytes:
        server = self._server
        assert server is not None
        challenge = server.evaluate(token)
        if server.complete:
            principal = f"User:{server.authorization_id}"
            if self._previous_mechanism is not None and principal != self.principal:
                old = (self.principal or "").replace(":", ".", 1)
                raise SaslFailure(f"Cannot change principals during re-authentication from {old}: "
                                  f"{principal.replace(':', '.', 1)}", user=server.authorization_id)
            self._complete(server, principal)
        return challenge

    def _complete(self, server: SaslServer, principal: str) -> None:
        clock = self.settings.clock
        now_ms = clock.time_ms()
        expires_ms = server.credential_expires_ms
        max_reauth = int(self.settings.max_reauth_ms.get(server.mechanism, 0) or 0)
        lifetime = 0
        self._expires_at = None
        if expires_ms is not None or max_reauth > 0:
            if expires_ms is None:
                lifetime = max(0, max_reauth)
            elif max_reauth <= 0:
                lifetime = max(0, expires_ms - now_ms)
            else:
                lifetime = max(0, min(expires_ms - now_ms, max_reauth))
            self._expires_at = clock.monotonic() + lifetime / 1000
        self._session_lifetime_ms = lifetime
        reauth = self._previous_mechanism is not None
        self.principal = principal
        self._previous_mechanism = None
        self._state = SaslState.COMPLETE
        if reauth:
            self.metrics.successful_reauthentication += 1
        else:
            self.metrics.successful_authentication += 1
        log.debug("%s of %s:%d as %s with SASL mechanism %s complete; session lifetime %d ms",
                  "re-authentication" if reauth else "authentication", self.host, self.port, principal,
                  server.mechanism, lifetime)

    def _failure_message(self, e: SaslFailure) -> str:
        """Fail the exchange; the message for the client."""
        what = "re-authentication" if self._previous_mechanism is not None else "authentication"
        detail: str | None
        if e.generic:
            message = (f"Authentication failed during {what} due to invalid credentials with SASL mechanism "
                       f"{self.mechanism}")
            detail = str(e) if e.detail is None else f"{e}; {e.detail}"
        else:
            message, detail = str(e), e.detail
        self._fail(message if detail is None else f"{message} ({detail})", e.user)
        return message

    def _fail(self, reason: str, user: str | None) -> None:
        """Enter FAILED and log it, once, with the peer and the user name tried."""
        if self._state is SaslState.FAILED:
            return
        reauth = self._previous_mechanism is not None
        self._state = SaslState.FAILED
        self.failed = True
        if reauth:
            self.metrics.failed_reauthentication += 1
        else:
            self.metrics.failed_authentication += 1
        who = f"user {user!r}" if user is not None else "no user name"
        log.info("Failed %sauthentication with %s:%d (%s, SASL mechanism %s): %s", "re-" if reauth else "",
                 self.host, self.port, who, self.mechanism or "none", reason)

    def _maybe_begin_reauth(self) -> bool:
        """On a SaslHandshake after authentication: start re-authenticating, as Kafka's
        KafkaChannel.maybeBeginServerReauthentication (sessions with a lifetime only, at
        most once a second)."""
        if self._expires_at is None:
            return False
        now = self.settings.clock.monotonic()
        if self._last_reauth_start is not None and now - self._last_reauth_start < MIN_REAUTH_INTERVAL_S:
            return False
        self._last_reauth_start = now
        self._previous_mechanism = self.mechanism
        self._server = None
        self._state = SaslState.REAUTH_PROCESS_HANDSHAKE
        log.debug("beginning re-authentication of %s:%d", self.host, self.port)
        return True
