"""What one listener's connections need to secure themselves: its protocol, its TLS
context and how a connection authenticates."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ListenerSecurity:
    """The security of one listener, built once at start-up from the broker config."""

    #: Listener name, upper case (``SASL_SSL``, ``INTERNAL``).
    name: str
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    protocol: str
    #: The server-side TLS context (SSL and SASL_SSL listeners).
    ssl_context: ssl.SSLContext | None = None
    #: The principal of a TLS client from its certificate (DER, None when it sent none);
    #: SSL listeners only (on SASL_SSL, SASL names the principal).
    ssl_principal: Callable[[bytes | None], str] | None = None
    #: A new SASL authenticator for a connection from (host, port); SASL listeners only.
    new_authenticator: Callable[[str, int], Any] | None = None

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL."""
        return self.protocol.startswith("SASL_")


PLAINTEXT_LISTENER = ListenerSecurity("PLAINTEXT", "PLAINTEXT")
