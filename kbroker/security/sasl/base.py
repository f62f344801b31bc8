"""What every server-side SASL mechanism provides, and how it fails."""

from __future__ import annotations

from typing import Protocol


class SaslFailure(Exception):
    """Authentication failed. The message goes to the client (in SaslAuthenticate's
    error_message) and to the broker log: it never holds a secret.

    ``user`` is the user name the client tried, when known, for the broker log.
    ``generic``: the client gets Kafka's standard "invalid credentials" message instead
    of this one (as for a javax ``SaslException``), which then goes to the log only.
    ``detail`` says more, for the broker log only (never a secret either).
    """

    def __init__(self, message: str, *, user: str | None = None, generic: bool = False,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.user = user
        self.generic = generic
        self.detail = detail


class SaslServer(Protocol):
    """One SASL exchange on one connection, for one mechanism (javax.security.sasl.SaslServer)."""

    #: The mechanism's name as clients ask for it (``PLAIN``, ``SCRAM-SHA-256``, ...).
    mechanism: str

    def evaluate(self, token: bytes) -> bytes:
        """Take the client's next token; return the challenge to send back (``b""`` when
        there is none). Raises :class:`SaslFailure` when authentication fails."""
        ...

    @property
    def complete(self) -> bool:
        """True once the client is authenticated."""
        ...

    @property
    def authorization_id(self) -> str:
        """The authenticated user name (the principal is ``User:<name>``); valid once complete."""
        ...

    @property
    def credential_expires_ms(self) -> int | None:
        """When the credential presented stops being valid (epoch ms; an OAUTHBEARER token's
        ``exp``), which bounds the session's lifetime; None when it does not expire."""
        ...
