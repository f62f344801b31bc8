"""Helpers shared by the Python-side scenario implementations."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class NotSupported(Exception):
    """The client does not offer this feature: the cell is n/a, not a failure."""


class CheckFailed(AssertionError):
    pass


def check(cond: object, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def topic_name(client: str, scenario: str) -> str:
    return f"compat-{client}-{scenario}-{uuid.uuid4().hex[:8]}".replace("_", "-")


def group_name(client: str, scenario: str) -> str:
    return f"compat-g-{client}-{scenario}-{uuid.uuid4().hex[:8]}"


def payloads(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}-{i:05d}".encode() for i in range(n)]


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``fn`` until it returns something truthy; raise CheckFailed on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out waiting for {what}")
        time.sleep(interval)


#: A value just under the default max.message.bytes (1048588) once batch overhead is added.
LARGE_SIZE = 1_000_000
#: A value over it: the broker must refuse the batch (MESSAGE_TOO_LARGE).
OVERSIZE = 1_100_000


def large_value(n: int) -> bytes:
    return os.urandom(n)


# ---------------------------------------------------------------- security scenarios

@dataclass(frozen=True)
class Login:
    """How one client connects in a security scenario: a listener, and SASL credentials or a
    client certificate (compat/security.py sets the ``COMPAT_SEC_*`` variables they come from)."""

    bootstrap: str
    protocol: str
    mechanism: str | None = None
    user: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    #: OAUTHBEARER: seconds the token is valid from now (negative: it expired that long ago).
    token_lifetime: int = 3600

    @property
    def tls(self) -> bool:
        """Whether the connection is TLS (SSL, SASL_SSL)."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """Whether the client logs in with SASL (SASL_PLAINTEXT, SASL_SSL)."""
        return self.protocol.startswith("SASL_")


def sec(name: str) -> str:
    """One ``COMPAT_SEC_<name>`` variable; a cell run outside a security broker fails clearly."""
    value = os.environ.get("COMPAT_SEC_" + name)
    if not value:
        raise CheckFailed(f"COMPAT_SEC_{name} not set: security scenarios run against compat/security.py's broker")
    return value


def login(listener: str, mechanism: str | None = None, *, password: str | None = None, user: str | None = None,
          cert: str | None = "client", token_lifetime: int = 3600) -> Login:
    """The Login for ``listener`` (PLAINTEXT, SASL_PLAINTEXT, SSL, MTLS, SASL_SSL): SASL listeners as
    ``user``/``password`` (alice and her password by default) with ``mechanism``; the MTLS listener
    with the client certificate ``cert`` ("client", "untrusted" or None for none)."""
    protocol = {"MTLS": "SSL"}.get(listener, listener)
    kw: dict[str, Any] = {"token_lifetime": token_lifetime}
    if protocol.startswith("SASL_"):
        kw.update(mechanism=mechanism, user=user or sec("USER"), password=password or sec("PASSWORD"))
    if protocol in ("SSL", "SASL_SSL"):
        kw["ca"] = sec("CA")
        if listener == "MTLS" and cert is not None:
            kw["cert"] = sec(cert.upper() + "_CERT")
            kw["key"] = sec(cert.upper() + "_KEY")
    return Login(sec(listener), protocol, **kw)


#: The security scenarios that produce and read back over one listener: scenario → (listener, mechanism).
SEC_ROUNDTRIPS: dict[str, tuple[str, str | None]] = {
    "sec_sasl_plain": ("SASL_PLAINTEXT", "PLAIN"),
    "sec_sasl_scram_sha256": ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    "sec_sasl_scram_sha512": ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    "sec_sasl_oauthbearer": ("SASL_PLAINTEXT", "OAUTHBEARER"),
    "sec_ssl": ("SSL", None),
    "sec_ssl_client_cert": ("MTLS", None),
    "sec_sasl_ssl_plain": ("SASL_SSL", "PLAIN"),
    "sec_sasl_ssl_scram": ("SASL_SSL", "SCRAM-SHA-512"),
}


def sec_refusals(scenario: str) -> tuple[list[tuple[str, Login]], Login]:
    """A negative security scenario's logins that must fail (label, login), and the one that must
    then work on the same listener (the broker keeps serving)."""
    if scenario == "sec_wrong_password":
        bad = [("PLAIN with a wrong password", login("SASL_PLAINTEXT", "PLAIN", password=sec("WRONG_PASSWORD"))),
               ("SCRAM-SHA-256 with a wrong password",
                login("SASL_PLAINTEXT", "SCRAM-SHA-256", password=sec("WRONG_PASSWORD")))]
        return bad, login("SASL_PLAINTEXT", "PLAIN")
    if scenario == "sec_unknown_user":
        bad = [("PLAIN as an unknown user", login("SASL_PLAINTEXT", "PLAIN", user=sec("UNKNOWN_USER"))),
               ("SCRAM-SHA-512 as an unknown user",
                login("SASL_PLAINTEXT", "SCRAM-SHA-512", user=sec("UNKNOWN_USER")))]
        return bad, login("SASL_PLAINTEXT", "SCRAM-SHA-512")
    if scenario == "sec_oauthbearer_expired":
        bad = [("an OAUTHBEARER token expired 10 minutes ago",
                login("SASL_PLAINTEXT", "OAUTHBEARER", token_lifetime=-600))]
        return bad, login("SASL_PLAINTEXT", "OAUTHBEARER")
    if scenario == "sec_untrusted_cert":
        bad = [("a certificate from an untrusted CA", login("MTLS", cert="untrusted")),
               ("no client certificate", login("MTLS", cert=None))]
        return bad, login("MTLS")
    raise KeyError(scenario)


def sec_check_refused(label: str, outcome: BaseException | None, accepted: tuple[type[BaseException], ...] = (),
                      words: tuple[str, ...] = ()) -> str:
    """Check that a refused login failed (``outcome`` is the error the client reported) as expected:
    an instance of ``accepted`` or an error whose text has one of ``words``; returns a note."""
    check(outcome is not None, f"{label}: the broker accepted it")
    assert outcome is not None
    text = f"{type(outcome).__name__}: {outcome}"
    ok = isinstance(outcome, accepted) if accepted else False
    ok = ok or any(w.lower() in text.lower() for w in words)
    check(ok, f"{label}: failed, but not with an authentication error: {text[:200]}")
    return f"{label}: {text[:80]}"


class LogCapture(logging.Handler):
    """The warnings a Python client logs. kafka-python and aiokafka log why a login failed and
    then raise a generic bootstrap error, so the log is where the reason is."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def find(self, *words: str) -> str | None:
        """The first line that has one of ``words``."""
        return next((ln for ln in self.lines if any(w in ln for w in words)), None)


def unsecured_jws(subject: str, lifetime_s: int = 3600) -> str:
    """An unsecured JWS (``alg: none``, empty signature) naming ``subject``, valid for
    ``lifetime_s``: the token Kafka's unsecured OAUTHBEARER validator accepts."""
    import base64
    import json

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    now = int(time.time())
    issued = min(now, now + lifetime_s - 60)
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': issued, 'exp': now + lifetime_s})}."
