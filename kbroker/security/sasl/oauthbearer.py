"""SASL/OAUTHBEARER (RFC 7628) on the broker with unsecured JWS tokens, as Kafka's
OAuthBearerSaslServer with its default OAuthBearerUnsecuredValidatorCallbackHandler.

Unsecured tokens (``alg: none``) carry no signature: this is for development and tests,
as in Kafka. The JAAS options of the OAuthBearerLoginModule entry tune validation:
``unsecuredValidatorPrincipalClaimName`` (default ``sub``), ``unsecuredValidatorScopeClaimName``
(default ``scope``), ``unsecuredValidatorRequiredScope`` (space-separated) and
``unsecuredValidatorAllowableClockSkewMs`` (default 0).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.config.errors import ConfigError
from kbroker.security.sasl.base import SaslFailure

MECHANISM = "OAUTHBEARER"
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_PRINCIPAL_CLAIM = "unsecuredValidatorPrincipalClaimName"
_SCOPE_CLAIM = "unsecuredValidatorScopeClaimName"
_REQUIRED_SCOPE = "unsecuredValidatorRequiredScope"
_CLOCK_SKEW = "unsecuredValidatorAllowableClockSkewMs"

# RFC 7628's client first message, as Kafka's OAuthBearerClientInitialResponse matches it.
_SEP = "\x01"
_SASLNAME = r"(?:[\x01-\x7F](?<![=,])|=2C|=3D)+"
_KEY = r"[A-Za-z]+"
_VALUE = r"[\x21-\x7E \t\r\n]+"
_CLIENT_FIRST = re.compile(rf"n,(a=(?P<authzid>{_SASLNAME}))?,{_SEP}(?P<kvpairs>(?:{_KEY}={_VALUE}{_SEP})*){_SEP}")
_AUTH = re.compile(r"(?P<scheme>\w+) +(?P<token>[-_.a-zA-Z0-9]+)")
_SCOPE_ITEM = re.compile(r"[\x23-\x5B\x5D-\x7E\x21]+")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class InvalidToken(Exception):
    """The token is not valid; ``scope`` is set when a required scope is missing."""

    def __init__(self, message: str, scope: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope


@dataclass(frozen=True)
class ValidatorOptions:
    """The unsecured validator's JAAS options."""

    principal_claim: str = "sub"
    scope_claim: str = "scope"
    required_scope: tuple[str, ...] = ()
    clock_skew_ms: int = 0

    @classmethod
    def from_jaas(cls, options: Mapping[str, str], key: str) -> ValidatorOptions:
        """From a login module's options; :class:`ConfigError` naming ``key`` when one is invalid."""
        principal = (options.get(_PRINCIPAL_CLAIM) or "").strip() or "sub"
        scope = (options.get(_SCOPE_CLAIM) or "").strip() or "scope"
        required: tuple[str, ...] = ()
        raw_scope = (options.get(_REQUIRED_SCOPE) or "").strip()
        if raw_scope:
            items = [s for s in raw_scope.split(" ") if s]
            for s in items:
                if not _SCOPE_ITEM.fullmatch(s):
                    raise ConfigError(f"{key}: {_REQUIRED_SCOPE} holds an invalid scope value", key=key)
            required = tuple(items)
        raw_skew = (options.get(_CLOCK_SKEW) or "").strip()
        skew = 0
        if raw_skew:
            try:
                skew = int(raw_skew)
            except ValueError:
                raise ConfigError(f"{key}: {_CLOCK_SKEW} is not an integer", key=key) from None
            if skew < 0:
                raise ConfigError(f"{key}: {_CLOCK_SKEW} must not be negative", key=key)
        return cls(principal, scope, required, skew)


def parse_client_first(message: bytes) -> tuple[str, str, dict[str, str]]:
    """(authorization id, token, extensions) of the client's first message
    (``n,[a=authzid],^Aauth=Bearer <token>^A[key=value^A]*^A``)."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure("Invalid OAUTHBEARER client first message", generic=True) from None
    m = _CLIENT_FIRST.fullmatch(text)
    if m is None:
        raise SaslFailure("Invalid OAUTHBEARER client first message", generic=True)
    pairs: dict[str, str] = {}
    for item in m.group("kvpairs").split(_SEP):
        if item:
            k, _, v = item.partition("=")
            pairs[k] = v
    auth = pairs.pop("auth", None)
    if auth is None:
        raise SaslFailure("Invalid OAUTHBEARER client first message: 'auth' not specified", generic=True)
    am = _AUTH.fullmatch(auth)
    if am is None:
        raise SaslFailure("Invalid OAUTHBEARER client first message: invalid 'auth' format", generic=True)
    if am.group("scheme").lower() != "bearer":
        raise SaslFailure("Invalid scheme in OAUTHBEARER client first message", generic=True)
    authzid = (m.group("authzid") or "").replace("=2C", ",").replace("=3D", "=")
    return authzid, am.group("token"), pairs


def _b64_json(part: str) -> dict[str, Any]:
    if not _B64URL.fullmatch(part):
        raise InvalidToken("malformed Base64 URL encoded value")
    try:
        raw = base64.urlsafe_b64decode(part.rstrip("=") + "=" * (-len(part.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed Base64 URL encoded value") from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidToken("malformed JSON") from None
    if not isinstance(doc, dict):
        raise InvalidToken("malformed JSON")
    return {k: _convert(v) for k, v in doc.items()}


def _as_text(v: Any) -> str:
    # Jackson's asText: strings as they are, numbers and booleans printed, null "null",
    # containers "".
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    return ""


def _convert(v: Any) -> Any:
    """A claim as Kafka keeps it: a number, a list of strings, or a string."""
    if isinstance(v, list):
        return [_as_text(e) for e in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    return _as_text(v)


def _type_name(v: Any) -> str:
    return "List" if isinstance(v, list) else "Number" if isinstance(v, (int, float)) else "String"


def _claim(claims: Mapping[str, Any], name: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
    value = claims.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidToken(f"The '{name}' claim was not of type {kind_name}: {_type_name(value)}")
    return value


@dataclass(frozen=True)
class UnsecuredJws:
    """A parsed unsecured JWS (OAuthBearerUnsecuredJws)."""

    claims: dict[str, Any]
    principal_name: str
    scope: frozenset[str]
    lifetime_ms: int
    start_time_ms: int | None

    @classmethod
    def parse(cls, compact: str, principal_claim: str = "sub", scope_claim: str = "scope") -> UnsecuredJws:
        """Parse ``header.claims.`` (empty signature); :class:`InvalidToken` when malformed."""
        if ".." in compact:
            raise InvalidToken("Malformed compact serialization contains '..'")
        splits = compact.split(".")
        if len(splits) != 3:
            raise InvalidToken("Unsecured JWS compact serializations must have 3 dot-separated "
                               "Base64URL-encoded values")
        header = _b64_json(splits[0])
        claims = _b64_json(splits[1])
        alg = header.get("alg")
        if alg is None:
            raise InvalidToken("JWS header must have an Algorithm value")
        if _as_text(alg) != "none":
            raise InvalidToken("Unsecured JWS must have 'none' for an algorithm")
        if splits[2]:
            raise InvalidToken("Unsecured JWS must not contain a digital signature")
        raw_scope = claims.get(scope_claim)
        if isinstance(raw_scope, str):
            scope = frozenset([raw_scope.strip()]) if raw_scope.strip() else frozenset()
        else:
            items = _claim(claims, scope_claim, list, "List") or []
            scope = frozenset(s.strip() for s in items if s.strip())
        exp = _claim(claims, "exp", (int, float), "Number")
        if exp is None:
            raise InvalidToken("No expiration time in JWT")
        principal = _claim(claims, principal_claim, str, "String")
        if principal is None or not principal.strip():
            raise InvalidToken(f"No principal name in JWT claim: {principal_claim}")
        iat = _claim(claims, "iat", (int, float), "Number")
        return cls(claims, principal, scope, _seconds_to_ms(exp),
                   None if iat is None else _seconds_to_ms(iat))


def _seconds_to_ms(seconds: float) -> int:
    return int(_java_round(seconds * 1000))


def _java_round(x: float) -> float:
    return math.floor(x + 0.5)  # Java's Math.round: half up


def validate(token: str, options: ValidatorOptions, now_ms: int) -> UnsecuredJws:
    """The token if valid at ``now_ms`` under ``options``, else :class:`InvalidToken` (as
    OAuthBearerUnsecuredValidatorCallbackHandler with OAuthBearerValidationUtils)."""
    jws = UnsecuredJws.parse(token, options.principal_claim, options.scope_claim)
    claims = jws.claims
    skew = options.clock_skew_ms
    iat = claims.get("iat")
    if iat is not None and 1000 * float(iat) > now_ms + skew:
        raise InvalidToken(f"The Issued At value ({float(iat):f} seconds) was after the indicated time ({now_ms} ms) "
                           f"plus allowable clock skew ({skew} ms)")
    exp = float(claims["exp"])
    if now_ms - skew >= 1000 * exp:
        raise InvalidToken(f"The indicated time ({now_ms} ms) minus allowable clock skew ({skew} ms) was on or "
                           f"after the Expiration Time value ({exp:f} seconds)")
    if iat is not None and exp <= float(iat):
        raise InvalidToken(f"The Expiration Time time ({exp:f} seconds) was not after the Issued At time "
                           f"({float(iat):f} seconds)")
    for required in options.required_scope:
        if required not in jws.scope:
            listed = "[" + ", ".join(options.required_scope) + "]"
            raise InvalidToken(f"The provided scope ([{', '.join(sorted(jws.scope))}]) was missing a required scope ({required}).  "
                               f"All required scope elements: {listed}", scope=listed)
    return jws


def error_challenge(e: InvalidToken) -> str:
    """The RFC 7628 error the server answers a rejected token with (Kafka's JSON format)."""
    if e.scope is not None:
        return f'{{"status":"insufficient_scope", "scope":"{e.scope}"}}'
    return '{"status":"invalid_token"}'


class OAuthBearerSaslServer:
    """One OAUTHBEARER exchange: the client's first message, and after a rejected token the
    client's ``%x01`` acknowledgement of the error challenge, which fails the exchange."""

    mechanism = MECHANISM

    def __init__(self, options: ValidatorOptions, now_ms: Callable[[], int]) -> None:
        self._options = options
        self._now_ms = now_ms
        self._error: str | None = None
        self._reason: str | None = None
        self._user: str | None = None
        self._token: UnsecuredJws | None = None

    def evaluate(self, token: bytes) -> bytes:
        if self._token is not None:
            raise SaslFailure("Authentication failed: OAUTHBEARER exchange already complete", generic=True)
        if token == b"\x01" and self._error is not None:
            raise SaslFailure(self._error, user=self._user, detail=self._reason)
        self._error = None
        authzid, value, _extensions = parse_client_first(token)  # the unsecured validator accepts every extension
        try:
            jws = validate(value, self._options, self._now_ms())
        except InvalidToken as e:
            self._error, self._reason = error_challenge(e), str(e)
            self._user = _principal_if_any(value, self._options)
            return self._error.encode()
        if authzid and authzid != jws.principal_name:
            raise SaslFailure(f"Authentication failed: Client requested an authorization id ({authzid}) that is "
                              f"different from the token's principal name ({jws.principal_name})",
                              user=jws.principal_name)
        self._token = jws
        return b""

    @property
    def complete(self) -> bool:
        return self._token is not None

    @property
    def authorization_id(self) -> str:
        if self._token is None:
            raise RuntimeError("Authentication exchange has not completed")
        return self._token.principal_name

    @property
    def credential_expires_ms(self) -> int | None:
        return None if self._token is None else self._token.lifetime_ms


def _principal_if_any(token: str, options: ValidatorOptions) -> str | None:
    """The principal a rejected token names, if it can be read, for the log."""
    try:
        claims = _b64_json(token.split(".")[1])
    except (InvalidToken, IndexError):
        return None
    value = claims.get(options.principal_claim)
    return value if isinstance(value, str) else None
