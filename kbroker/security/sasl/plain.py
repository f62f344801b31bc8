"""SASL/PLAIN (RFC 4616) on the broker, as Kafka's PlainSaslServer with the users of the
JAAS config (``user_<name>="<password>"`` options of PlainLoginModule)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from kbroker.security.sasl.base import SaslFailure

MECHANISM = "PLAIN"
LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
USER_PREFIX = "user_"


def users_from_options(options: Mapping[str, str]) -> dict[str, str]:
    """``{name: password}`` from a PlainLoginModule entry's ``user_<name>`` options."""
    return {k[len(USER_PREFIX):]: v for k, v in options.items() if k.startswith(USER_PREFIX)}


def parse_plain_token(token: bytes) -> tuple[str, str, str]:
    """(authorization id, user name, password) of a PLAIN message
    ``[authzid] NUL authcid NUL passwd``; :class:`SaslFailure` when it is malformed."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure("Invalid SASL/PLAIN response: not UTF-8", generic=True) from None
    # As Kafka splits it: the first three NUL-separated fields, missing ones empty, anything
    # after a third NUL ignored.
    parts = (text.split("\0", 3) + ["", ""])[:3]
    authzid, user, password = parts
    if not user:
        raise SaslFailure("Authentication failed: username not specified", generic=True)
    if not password:
        raise SaslFailure("Authentication failed: password not specified", user=user, generic=True)
    return authzid, user, password


class PlainSaslServer:
    """One PLAIN exchange: a single client message, checked against the configured users."""

    mechanism = MECHANISM

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = users
        self._complete = False
        self._authorization_id = ""

    def evaluate(self, token: bytes) -> bytes:
        if self._complete:
            raise SaslFailure("Authentication failed: PLAIN exchange already complete", generic=True)
        authzid, user, password = parse_plain_token(token)
        expected = self._users.get(user)
        # Compare in constant time, and compare even for an unknown user so the time taken
        # does not tell which users exist.
        ok = hmac.compare_digest(password.encode(), (expected if expected is not None else "\0" + password).encode())
        if expected is None or not ok:
            raise SaslFailure("Authentication failed: Invalid username or password", user=user)
        if authzid and authzid != user:
            raise SaslFailure("Authentication failed: Client requested an authorization id that is different "
                              "from username", user=user)
        self._authorization_id = user
        self._complete = True
        return b""

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def authorization_id(self) -> str:
        if not self._complete:
            raise RuntimeError("Authentication exchange has not completed")
        return self._authorization_id

    @property
    def credential_expires_ms(self) -> int | None:
        return None
