"""SCRAM credentials (RFC 5802): what the broker keeps of a user's password, and where.

A credential is the salt, the iteration count and two keys derived from the salted
password (``StoredKey = H(HMAC(SaltedPassword, "Client Key"))`` and ``ServerKey =
HMAC(SaltedPassword, "Server Key")``): enough to check a client's proof and to prove the
broker knows it, never enough to log in as the user. The password itself is never kept.

:class:`CredentialStore` holds every user's credentials per mechanism in memory, for the
SASL exchange to look up, and persists them as the state-store kind ``scram`` before a
change becomes visible.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kbroker.security.store import StateStore

#: The state-store kind the credentials are kept under.
KIND = "scram"


@dataclass(frozen=True)
class ScramMechanism:
    """One SCRAM mechanism: its SASL name, its type byte in the admin APIs and its hash."""

    name: str
    type: int
    hash_name: str
    min_iterations: int = 4096
    #: Kafka's upper bound on the iterations of a credential (ScramControlManager.MAX_ITERATIONS).
    max_iterations: int = 16384

    def hmac(self, key: bytes, message: bytes) -> bytes:
        """HMAC(key, message) with the mechanism's hash."""
        return hmac.new(key, message, self.hash_name).digest()

    def hash(self, data: bytes) -> bytes:
        """H(data) with the mechanism's hash."""
        return hashlib.new(self.hash_name, data).digest()

    def salted_password(self, password: str, salt: bytes, iterations: int) -> bytes:
        """Hi(Normalize(password), salt, i): PBKDF2 with the mechanism's HMAC, one block."""
        # Kafka does not SASLprep the password: it takes its UTF-8 bytes as they are.
        return hashlib.pbkdf2_hmac(self.hash_name, password.encode("utf-8"), salt, iterations)


SCRAM_SHA_256 = ScramMechanism("SCRAM-SHA-256", 1, "sha256")
SCRAM_SHA_512 = ScramMechanism("SCRAM-SHA-512", 2, "sha512")
#: The SCRAM mechanisms Kafka supports, by SASL name.
MECHANISMS: dict[str, ScramMechanism] = {m.name: m for m in (SCRAM_SHA_256, SCRAM_SHA_512)}
#: The same, by the type byte of DescribeUserScramCredentials/AlterUserScramCredentials.
MECHANISMS_BY_TYPE: dict[int, ScramMechanism] = {m.type: m for m in MECHANISMS.values()}


def mechanism(name: str) -> ScramMechanism:
    """The mechanism called ``name``; ValueError naming the supported ones otherwise."""
    found = MECHANISMS.get(name)
    if found is None:
        raise ValueError(f"unknown SCRAM mechanism {name!r}: use one of {', '.join(MECHANISMS)}")
    return found


@dataclass(frozen=True)
class ScramCredential:
    """What the broker keeps to authenticate one user with one mechanism."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def __repr__(self) -> str:
        # The keys stand in for the password (a stolen ServerKey lets one pose as the broker).
        return f"ScramCredential(iterations={self.iterations}, keys=[hidden])"

    @classmethod
    def from_salted(cls, mech: ScramMechanism | str, salt: bytes, salted_password: bytes,
                    iterations: int) -> ScramCredential:
        """The credential of a salted password (AlterUserScramCredentials' upsertion carries
        the salted password, never the password). ValueError for an empty salted password,
        which no HMAC key can be (Kafka's formatter refuses it too)."""
        m = mechanism(mech) if isinstance(mech, str) else mech
        if not salted_password:
            raise ValueError("Empty key")
        client_key = m.hmac(salted_password, b"Client Key")
        return cls(bytes(salt), m.hash(client_key), m.hmac(salted_password, b"Server Key"), iterations)

    @classmethod
    def from_password(cls, mech: ScramMechanism | str, password: str, iterations: int,
                      salt: bytes | None = None) -> ScramCredential:
        """The credential of ``password``, salted with ``salt`` (24 random bytes if None)."""
        m = mechanism(mech) if isinstance(mech, str) else mech
        salt = secrets.token_bytes(24) if salt is None else salt
        return cls.from_salted(m, salt, m.salted_password(password, salt, iterations), iterations)

    def to_json(self) -> dict[str, Any]:
        """The credential as stored: base64 salt and keys, and the iteration count."""
        return {"salt": _b64(self.salt), "stored_key": _b64(self.stored_key),
                "server_key": _b64(self.server_key), "iterations": self.iterations}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ScramCredential:
        """The credential :meth:`to_json` wrote; ValueError/KeyError/TypeError when malformed."""
        iterations = doc["iterations"]
        if not isinstance(iterations, int) or isinstance(iterations, bool):
            raise ValueError("iterations is not an integer")
        return cls(_unb64(doc["salt"]), _unb64(doc["stored_key"]), _unb64(doc["server_key"]), iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


#: One user's credentials by mechanism name.
UserCredentials = dict[str, ScramCredential]


class CredentialStore:
    """Every user's SCRAM credentials, durable through a :class:`StateStore` (kind ``scram``).

    Reads (:meth:`lookup`, :meth:`describe`) take no lock: they see the last committed
    state, which a change replaces whole once it is saved. Changes are serialised by a lock
    and save to disk, so call them from a worker thread when on the event loop.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._users: dict[str, UserCredentials] = self._load()

    def _load(self) -> dict[str, UserCredentials]:
        doc = self._store.load(KIND)
        if doc is None:
            return {}
        users: dict[str, UserCredentials] = {}
        try:
            for user, by_mech in doc["users"].items():
                creds: UserCredentials = {}
                for name, cred in by_mech.items():
                    mechanism(name)
                    creds[name] = ScramCredential.from_json(cred)
                if creds:
                    users[str(user)] = creds
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # Losing credentials silently would lock users out: refuse to start instead.
            where = getattr(self._store, "path", lambda kind: f"the {kind!r} state")(KIND)
            raise OSError(f"cannot read the SCRAM credentials in {where}: malformed document ({e})") from e
        return users

    def reload(self) -> None:
        """Take the stored credentials again (another broker of the cluster changed them)."""
        with self._lock:
            self._users = self._load()

    def lookup(self, user: str, mech: str) -> ScramCredential | None:
        """The credential of ``user`` for mechanism ``mech`` (None when it has none)."""
        creds = self._users.get(user)
        return None if creds is None else creds.get(mech)

    def users(self) -> list[str]:
        """Every user with at least one credential, sorted."""
        return sorted(self._users)

    def describe(self, user: str) -> dict[str, int]:
        """The mechanisms ``user`` has a credential for, with their iteration counts."""
        return {name: cred.iterations for name, cred in self._users.get(user, {}).items()}

    @contextmanager
    def transaction(self) -> Iterator[dict[str, UserCredentials]]:
        """A copy of every user's credentials to change; saved and made visible when the
        block exits normally (discarded if it raises, or if the save fails)."""
        with self._lock:
            draft = {user: dict(creds) for user, creds in self._users.items()}
            yield draft
            committed = {user: dict(creds) for user, creds in draft.items() if creds}
            if committed == self._users:
                return  # nothing changed: no write
            self._store.save(KIND, {"users": {
                user: {name: cred.to_json() for name, cred in sorted(creds.items())}
                for user, creds in sorted(committed.items())}})
            self._users = committed

    def upsert(self, user: str, mech: str, credential: ScramCredential) -> None:
        """Set ``user``'s credential for ``mech`` (durable when this returns)."""
        mechanism(mech)
        with self.transaction() as draft:
            draft.setdefault(user, {})[mech] = credential

    def delete(self, user: str, mech: str) -> bool:
        """Remove ``user``'s credential for ``mech``; False when there was none."""
        with self.transaction() as draft:
            found = draft.get(user, {}).pop(mech, None) is not None
        return found
