"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 on the broker side (RFC 5802, RFC 7677).

The exchange, as Kafka's ScramSaslServer runs it::

    client-first  n,[a=<authzid>],n=<saslname>,r=<client nonce>[,<ext>=<value>...]
    server-first  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
    client-final  c=<base64 gs2 header>,r=<nonce>,p=<base64 proof>
    server-final  v=<base64 server signature>

Messages are matched against Kafka's grammar (ScramMessages): only the ``n`` gs2 flag
(no channel binding), ASCII user names with ``=2C``/``=3D`` for ``,``/``=``. The one
extension Kafka knows, ``tokenauth``, asks for delegation-token authentication; kbroker
has no delegation tokens, so such a login fails as one with an unknown token id does.

Failures raise :class:`SaslFailure` with Kafka's client message, which names only the
mechanism (the reason goes to the DEBUG log). Unlike Kafka, which fails an unknown user at
the first message, an unknown user gets a made-up salt and the default iteration count
and fails at the proof, exactly as a wrong password does: the exchange does not tell
whether a user exists.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from enum import Enum

from kbroker.security.sasl.base import SaslFailure, SaslServer
from kbroker.security.scram import MECHANISMS, CredentialStore, ScramCredential

log = logging.getLogger(__name__)

# Kafka's ScramMessages grammar, character classes spelled out for Python's re.
_VALUE_SAFE = r"[\x01-\x2b\x2d-\x3c\x3e-\x7f]"  # \x01-\x7F but ',' and '='
_VALUE = r"[\x01-\x2b\x2d-\x7f]+"  # \x01-\x7F but ','
_PRINTABLE = r"[\x21-\x2b\x2d-\x7e]+"  # \x21-\x7E but ','
_SASLNAME = rf"(?:{_VALUE_SAFE}|=2C|=3D)+"
_B64 = r"[a-zA-Z0-9/+]"
_BASE64 = rf"(?:{_B64}{{4}})*(?:{_B64}{{3}}=|{_B64}{{2}}==)?"
_RESERVED = rf"(?:m={_VALUE},)?"
_EXTENSIONS = rf"(?:,[A-Za-z]+={_VALUE})*"

_CLIENT_FIRST = re.compile(
    rf"n,(?:a=(?P<authzid>{_SASLNAME}))?,(?P<bare>{_RESERVED}n=(?P<saslname>{_SASLNAME}),"
    rf"r=(?P<nonce>{_PRINTABLE})(?P<extensions>{_EXTENSIONS}))")
_CLIENT_FINAL = re.compile(
    rf"(?P<without_proof>c=(?P<channel>{_BASE64}),r=(?P<nonce>{_PRINTABLE}){_EXTENSIONS}),"
    rf"p=(?P<proof>{_BASE64})")
_ESCAPE = re.compile("=2C|=3D")

#: The extension that asks for delegation-token authentication (ScramLoginModule.TOKEN_AUTH_CONFIG).
TOKEN_AUTH = "tokenauth"
#: Iterations offered to a user without a credential (Kafka's minimum, the usual count).
_DECOY_ITERATIONS = 4096
#: Keys the decoy salts of unknown users, so that one name always gets the same salt.
_DECOY_KEY = secrets.token_bytes(32)


def username(saslname: str) -> str:
    """The user name a ``saslname`` stands for (``=2C`` is ``,``, ``=3D`` is ``=``)."""
    return _ESCAPE.sub(lambda m: "," if m.group(0) == "=2C" else "=", saslname)


def saslname(user: str) -> str:
    """The ``saslname`` form of a user name, as a client writes it."""
    return user.replace("=", "=3D").replace(",", "=2C")


def _nonce() -> str:
    # As Kafka's ScramFormatter.secureRandomString: 130 random bits in base 36.
    n = secrets.randbits(130)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out or "0"


def _extensions(text: str) -> dict[str, str]:
    # ",k=v,k2=v2" (the grammar guarantees each item has a '=').
    return dict(item.split("=", 1) for item in text[1:].split(",")) if text else {}


class _State(Enum):
    RECEIVE_CLIENT_FIRST_MESSAGE = "RECEIVE_CLIENT_FIRST_MESSAGE"
    RECEIVE_CLIENT_FINAL_MESSAGE = "RECEIVE_CLIENT_FINAL_MESSAGE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class ScramSaslServer:
    """One SCRAM exchange (a :class:`~kbroker.security.sasl.base.SaslServer`).

    ``lookup`` gives a user's credential for this mechanism, or None when the user has none.
    """

    def __init__(self, mechanism: str, lookup: Callable[[str], ScramCredential | None]) -> None:
        found = MECHANISMS.get(mechanism)
        if found is None:
            raise ValueError(f"Requested mechanism '{mechanism}' is not supported. "
                             f"Supported mechanisms are '{', '.join(MECHANISMS)}'.")
        self.mechanism = mechanism
        self._mech = found
        self._lookup = lookup
        self._state = _State.RECEIVE_CLIENT_FIRST_MESSAGE
        self._user = ""
        self._credential: ScramCredential | None = None
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._extensions: dict[str, str] = {}

    @property
    def complete(self) -> bool:
        """True once the client's proof has been checked."""
        return self._state is _State.COMPLETE

    @property
    def authorization_id(self) -> str:
        """The authenticated user name."""
        if not self.complete:
            raise RuntimeError("Authentication exchange has not completed")
        return self._user

    @property
    def credential_expires_ms(self) -> int | None:
        """None: SCRAM credentials do not expire (there are no delegation tokens)."""
        return None

    @property
    def extensions(self) -> dict[str, str]:
        """The SASL extensions the client sent in its first message."""
        return dict(self._extensions)

    def _fail(self, reason: str) -> SaslFailure:
        """Fail the exchange with Kafka's message, which says nothing of ``reason``."""
        log.debug("SASL/%s authentication of %r failed: %s", self.mechanism, self._user, reason)
        self._state = _State.FAILED
        self._credential = None
        return SaslFailure("Authentication failed during authentication due to invalid credentials "
                           f"with SASL mechanism {self.mechanism}")

    def evaluate(self, token: bytes) -> bytes:
        """Take the client's next message; return the server's answer."""
        if self._state is _State.RECEIVE_CLIENT_FIRST_MESSAGE:
            return self._client_first(token.decode("utf-8", errors="replace"))
        if self._state is _State.RECEIVE_CLIENT_FINAL_MESSAGE:
            return self._client_final(token.decode("utf-8", errors="replace"))
        state = self._state.value
        self._state = _State.FAILED
        raise SaslFailure(f"Unexpected challenge in Sasl server state {state}")

    def _client_first(self, message: str) -> bytes:
        m = _CLIENT_FIRST.fullmatch(message)
        if m is None:
            raise self._fail("invalid SCRAM client first message format")
        self._user = username(m["saslname"])
        self._extensions = _extensions(m["extensions"])
        if self._extensions.get(TOKEN_AUTH, "").lower() == "true":
            # Kafka looks the name up as a delegation token id; there are none here.
            raise self._fail(f"Token Authentication failed: Invalid tokenId : {self._user}")
        authzid = m["authzid"]
        if authzid is not None and username(authzid) != self._user:
            # Kafka's one specific message, sent as is. Checked before the lookup, so that
            # it is given for unknown and known users alike.
            self._state = _State.FAILED
            raise SaslFailure("Authentication failed: Client requested an authorization id that is "
                              "different from username")
        credential = self._lookup(self._user)
        if credential is None:
            credential = self._decoy(self._user)
        elif credential.iterations < self._mech.min_iterations:
            raise self._fail(f"Iterations {credential.iterations} is less than the minimum "
                             f"{self._mech.min_iterations} for {self.mechanism}")
        self._credential = credential
        self._client_first_bare = m["bare"]
        self._nonce = m["nonce"] + _nonce()
        salt = base64.b64encode(credential.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        self._state = _State.RECEIVE_CLIENT_FINAL_MESSAGE
        return self._server_first.encode("ascii")

    def _decoy(self, user: str) -> ScramCredential:
        """A credential nobody can prove, with a salt that stays the same for ``user``."""
        salt = hmac.new(_DECOY_KEY, f"{self.mechanism}\0{user}".encode(), "sha256").digest()[:24]
        return ScramCredential(salt, secrets.token_bytes(len(self._mech.hash(b""))),
                               secrets.token_bytes(len(self._mech.hash(b""))), _DECOY_ITERATIONS)

    def _client_final(self, message: str) -> bytes:
        m = _CLIENT_FINAL.fullmatch(message)
        if m is None:
            raise self._fail("invalid SCRAM client final message format")
        if m["nonce"] != self._nonce:
            raise self._fail("invalid client nonce in the final client message")
        credential = self._credential
        assert credential is not None
        auth_message = ",".join((self._client_first_bare, self._server_first, m["without_proof"])).encode()
        proof = base64.b64decode(m["proof"])
        client_signature = self._mech.hmac(credential.stored_key, auth_message)
        if len(proof) != len(client_signature):
            raise self._fail("invalid client proof length")
        client_key = bytes(a ^ b for a, b in zip(client_signature, proof, strict=True))
        if not hmac.compare_digest(self._mech.hash(client_key), credential.stored_key):
            raise self._fail("invalid client credentials")
        signature = self._mech.hmac(credential.server_key, auth_message)
        self._credential = None
        self._state = _State.COMPLETE
        return b"v=" + base64.b64encode(signature)


def scram_factories(credentials: CredentialStore) -> dict[str, Callable[[], SaslServer]]:
    """A new :class:`ScramSaslServer` per exchange for each SCRAM mechanism, looking users up
    in ``credentials`` (the ``extra`` mechanisms of the SASL set-up)."""

    def factory(mechanism: str) -> Callable[[], SaslServer]:
        return lambda: ScramSaslServer(mechanism, lambda user: credentials.lookup(user, mechanism))

    return {name: factory(name) for name in MECHANISMS}
