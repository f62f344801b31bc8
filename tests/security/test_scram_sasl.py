"""The SCRAM server side against a hand-written RFC 5802 client, and the credential store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from kbroker.security.sasl import scram as scram_sasl
from kbroker.security.sasl.base import SaslFailure, SaslServer
from kbroker.security.sasl.scram import ScramSaslServer, saslname, scram_factories, username
from kbroker.security.scram import CredentialStore, ScramCredential
from kbroker.security.store import FileStateStore

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def failure(mechanism: str) -> str:
    return ("Authentication failed during authentication due to invalid credentials with SASL "
            f"mechanism {mechanism}")


class Client:
    """The client side of RFC 5802, written from the RFC (no channel binding)."""

    def __init__(self, mechanism: str, user: str, password: str, nonce: str = "fyko+d2lbbFgONRv9qkxdawL",
                 authzid: str = "", extensions: str = "") -> None:
        self.hash = HASHES[mechanism]
        self.user = user
        self.password = password
        self.nonce = nonce
        self.gs2 = f"n,{'a=' + saslname(authzid) if authzid else ''},"
        self.bare = f"n={saslname(user)},r={nonce}{extensions}"
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2 + self.bare).encode()

    def final(self, server_first: bytes, nonce: str | None = None, password: str | None = None) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac(self.hash, (password or self.password).encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = f"c={base64.b64encode(self.gs2.encode()).decode()},r={nonce or attrs['r']}"
        auth = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth, self.hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        self.server_signature = hmac.new(server_key, auth, self.hash).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def server_for(mechanism: str, users: dict[str, ScramCredential]) -> ScramSaslServer:
    return ScramSaslServer(mechanism, users.get)


def login(server: SaslServer, client: Client, **final: Any) -> bytes:
    return server.evaluate(client.final(server.evaluate(client.first()), **final))


def test_rfc7677_test_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    # RFC 7677 section 3: user "user", password "pencil".
    monkeypatch.setattr(scram_sasl, "_nonce", lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    cred = ScramCredential.from_password("SCRAM-SHA-256", "pencil", 4096, salt=salt)
    server = server_for("SCRAM-SHA-256", {"user": cred})
    first = server.evaluate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert not server.complete
    final = server.evaluate(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.complete
    assert server.authorization_id == "user"
    assert server.credential_expires_ms is None


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_round_trip(mechanism: str) -> None:
    cred = ScramCredential.from_password(mechanism, "s3cret", 8192)
    server = server_for(mechanism, {"alice": cred})
    client = Client(mechanism, "alice", "s3cret")
    final = login(server, client)
    assert final == b"v=" + base64.b64encode(client.server_signature)
    assert server.complete and server.authorization_id == "alice"
    # The exchange is over: another token is a protocol error.
    with pytest.raises(SaslFailure, match="Unexpected challenge in Sasl server state COMPLETE"):
        server.evaluate(b"n,,n=alice,r=x")


def test_server_nonces_are_fresh() -> None:
    cred = ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)
    firsts = {server_for("SCRAM-SHA-256", {"u": cred}).evaluate(b"n,,n=u,r=abc") for _ in range(5)}
    assert len(firsts) == 5


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_fails(mechanism: str) -> None:
    server = server_for(mechanism, {"alice": ScramCredential.from_password(mechanism, "right", 4096)})
    with pytest.raises(SaslFailure) as e:
        login(server, Client(mechanism, "alice", "wrong"))
    assert str(e.value) == failure(mechanism)
    assert not server.complete
    with pytest.raises(SaslFailure, match="state FAILED"):
        server.evaluate(b"c=biws,r=x,p=AAAA")
    with pytest.raises(RuntimeError):
        server.authorization_id  # noqa: B018


def test_unknown_user_fails_like_a_wrong_password() -> None:
    users = {"alice": ScramCredential.from_password("SCRAM-SHA-256", "right", 4096)}
    # The first answer has the same shape for an unknown user, and the failure comes at the
    # same step with the same message.
    first = server_for("SCRAM-SHA-256", users).evaluate(Client("SCRAM-SHA-256", "mallory", "x").first())
    attrs = dict(kv.split("=", 1) for kv in first.decode().split(","))
    assert set(attrs) == {"r", "s", "i"} and attrs["i"] == "4096" and base64.b64decode(attrs["s"])
    messages = []
    for user in ("alice", "mallory"):
        with pytest.raises(SaslFailure) as e:
            login(server_for("SCRAM-SHA-256", users), Client("SCRAM-SHA-256", user, "wrong"))
        messages.append(str(e.value))
    assert messages == [failure("SCRAM-SHA-256")] * 2
    # An unknown user's salt does not change between attempts (a changing salt would tell).
    again = server_for("SCRAM-SHA-256", users).evaluate(Client("SCRAM-SHA-256", "mallory", "x").first())
    assert dict(kv.split("=", 1) for kv in again.decode().split(","))["s"] == attrs["s"]
    other = server_for("SCRAM-SHA-256", users).evaluate(Client("SCRAM-SHA-256", "trudy", "x").first())
    assert dict(kv.split("=", 1) for kv in other.decode().split(","))["s"] != attrs["s"]


def test_factories_look_credentials_up_per_mechanism() -> None:
    creds = CredentialStore(_MemoryStore())
    factories = scram_factories(creds)
    assert sorted(factories) == ["SCRAM-SHA-256", "SCRAM-SHA-512"]
    creds.upsert("alice", "SCRAM-SHA-512", ScramCredential.from_password("SCRAM-SHA-512", "pw", 4096))
    # A credential of the other mechanism does not log in.
    server = factories["SCRAM-SHA-256"]()
    assert server.mechanism == "SCRAM-SHA-256"
    with pytest.raises(SaslFailure, match="invalid credentials"):
        login(server, Client("SCRAM-SHA-256", "alice", "pw"))
    server = factories["SCRAM-SHA-512"]()
    login(server, Client("SCRAM-SHA-512", "alice", "pw"))
    assert server.authorization_id == "alice"
    # Each exchange gets its own server, which sees credentials changed since the start.
    assert factories["SCRAM-SHA-512"]() is not server
    creds.delete("alice", "SCRAM-SHA-512")
    with pytest.raises(SaslFailure):
        login(factories["SCRAM-SHA-512"](), Client("SCRAM-SHA-512", "alice", "pw"))


@pytest.mark.parametrize("first", [
    b"",
    b"n,,n=alice",  # no nonce
    b"y,,n=alice,r=abc",  # client supports channel binding: Kafka accepts only "n"
    b"p=tls-unique,,n=alice,r=abc",
    b"n,,n=al,ice,r=abc",  # a bare ',' in the name
    b"n,,n=al=ice,r=abc",  # '=' not escaped
    b"n,,n=al=2Dice,r=abc",  # an escape other than =2C/=3D
    "n,,n=alicé,r=abc".encode(),  # Kafka's grammar takes ASCII names only
    b"n,,n=alice,r=a\x7fc",  # a nonce character outside printable ASCII
    b"n,,n=alice,r=abc,tokenauth",  # an extension without a value
    b"\xff\xfe",
])
def test_malformed_client_first(first: bytes) -> None:
    server = server_for("SCRAM-SHA-256", {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)})
    with pytest.raises(SaslFailure) as e:
        server.evaluate(first)
    assert str(e.value) == failure("SCRAM-SHA-256")
    assert not server.complete


@pytest.mark.parametrize("final", [
    b"",
    b"c=biws,r={nonce}",  # no proof
    b"c=biws,r={nonce},p=not*base64",
    b"c=bi,r={nonce},p=AAAA",  # channel binding not base64
    b"r={nonce},c=biws,p=AAAA",  # attributes out of order
    b"c=biws,r={nonce},p=AAAA",  # a proof of the wrong length
])
def test_malformed_client_final(final: bytes) -> None:
    server = server_for("SCRAM-SHA-256", {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)})
    first = server.evaluate(b"n,,n=alice,r=abc")
    nonce = dict(kv.split("=", 1) for kv in first.decode().split(","))["r"]
    with pytest.raises(SaslFailure) as e:
        server.evaluate(final.replace(b"{nonce}", nonce.encode()))
    assert str(e.value) == failure("SCRAM-SHA-256")
    assert not server.complete


def test_nonce_mismatch_fails_even_with_a_matching_proof() -> None:
    server = server_for("SCRAM-SHA-256", {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)})
    client = Client("SCRAM-SHA-256", "alice", "pw")
    first = server.evaluate(client.first())
    # The proof is computed over the forged nonce, so only the nonce check can refuse it.
    with pytest.raises(SaslFailure, match="invalid credentials"):
        server.evaluate(client.final(first, nonce=client.nonce + "forged"))


def test_saslname_escapes() -> None:
    assert saslname("a,b=c") == "a=2Cb=3Dc"
    assert username("a=2Cb=3Dc") == "a,b=c"
    assert username("=3D2C") == "=2C"  # decoded in one pass, not twice
    cred = ScramCredential.from_password("SCRAM-SHA-512", "pw", 4096)
    server = server_for("SCRAM-SHA-512", {"a,b=c": cred})
    login(server, Client("SCRAM-SHA-512", "a,b=c", "pw"))
    assert server.authorization_id == "a,b=c"


def test_authorization_id() -> None:
    users = {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)}
    server = server_for("SCRAM-SHA-256", users)
    login(server, Client("SCRAM-SHA-256", "alice", "pw", authzid="alice"))
    assert server.authorization_id == "alice"
    # Asking to act as someone else is refused with Kafka's own message, whether or not the
    # user exists.
    for user in ("alice", "nobody"):
        server = server_for("SCRAM-SHA-256", users)
        with pytest.raises(SaslFailure) as e:
            server.evaluate(Client("SCRAM-SHA-256", user, "pw", authzid="admin").first())
        assert str(e.value) == ("Authentication failed: Client requested an authorization id that is "
                                "different from username")


def test_token_authentication_is_refused() -> None:
    users = {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)}
    for value in ("true", "TRUE"):
        server = server_for("SCRAM-SHA-256", users)
        with pytest.raises(SaslFailure) as e:
            server.evaluate(Client("SCRAM-SHA-256", "alice", "pw", extensions=f",tokenauth={value}").first())
        assert str(e.value) == failure("SCRAM-SHA-256")
    # tokenauth=false is an ordinary login; unknown extensions are ignored (as Kafka does).
    server = server_for("SCRAM-SHA-256", users)
    login(server, Client("SCRAM-SHA-256", "alice", "pw", extensions=",tokenauth=false,foo=bar"))
    assert server.complete
    assert server.extensions == {"tokenauth": "false", "foo": "bar"}


def test_credential_below_the_minimum_iterations_is_refused() -> None:
    weak = ScramCredential.from_password("SCRAM-SHA-256", "pw", 1024)
    server = server_for("SCRAM-SHA-256", {"alice": weak})
    with pytest.raises(SaslFailure, match="invalid credentials"):
        server.evaluate(Client("SCRAM-SHA-256", "alice", "pw").first())


def test_unknown_mechanism() -> None:
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        ScramSaslServer("SCRAM-SHA-1", lambda u: None)


def test_failure_messages_hold_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="kbroker.security.sasl.scram")
    server = server_for("SCRAM-SHA-256", {"alice": ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)})
    with pytest.raises(SaslFailure):
        login(server, Client("SCRAM-SHA-256", "alice", "hunter2"))
    assert "invalid client credentials" in caplog.text and "alice" in caplog.text
    assert "hunter2" not in caplog.text


# --- credentials and their store ---------------------------------------------------------

class _MemoryStore:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.saves = 0
        self.fail = False

    def load(self, kind: str) -> Any:
        return self.docs.get(kind)

    def save(self, kind: str, document: Any) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saves += 1
        self.docs[kind] = json.loads(json.dumps(document))


def test_credential_keys_follow_rfc5802() -> None:
    salt = b"salt" * 4
    cred = ScramCredential.from_password("SCRAM-SHA-512", "pw", 4096, salt=salt)
    salted = hashlib.pbkdf2_hmac("sha512", b"pw", salt, 4096)
    assert cred.stored_key == hashlib.sha512(hmac.new(salted, b"Client Key", "sha512").digest()).digest()
    assert cred.server_key == hmac.new(salted, b"Server Key", "sha512").digest()
    assert ScramCredential.from_salted("SCRAM-SHA-512", salt, salted, 4096) == cred
    assert "pw" not in repr(cred) and cred.stored_key.hex() not in repr(cred)
    with pytest.raises(ValueError):
        ScramCredential.from_salted("SCRAM-SHA-512", salt, b"", 4096)
    with pytest.raises(ValueError, match="SCRAM-SHA-256"):
        ScramCredential.from_password("SCRAM-SHA-1", "pw", 4096)


def test_store_persists_without_the_password(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    creds = CredentialStore(store)
    creds.upsert("alice", "SCRAM-SHA-256", ScramCredential.from_password("SCRAM-SHA-256", "correct horse", 4096))
    creds.upsert("alice", "SCRAM-SHA-512", ScramCredential.from_password("SCRAM-SHA-512", "correct horse", 8192))
    creds.upsert("bob", "SCRAM-SHA-256", ScramCredential.from_password("SCRAM-SHA-256", "battery", 4096))
    path = store.path("scram")
    text = path.read_text()
    assert "correct horse" not in text and "battery" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = CredentialStore(FileStateStore(tmp_path))
    assert again.users() == ["alice", "bob"]
    assert again.describe("alice") == {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 8192}
    assert again.lookup("alice", "SCRAM-SHA-512") == creds.lookup("alice", "SCRAM-SHA-512")
    # The reloaded credential still logs in.
    server = ScramSaslServer("SCRAM-SHA-512", lambda u: again.lookup(u, "SCRAM-SHA-512"))
    login(server, Client("SCRAM-SHA-512", "alice", "correct horse"))
    assert server.complete
    assert again.delete("bob", "SCRAM-SHA-256")
    assert not again.delete("bob", "SCRAM-SHA-256")
    assert CredentialStore(FileStateStore(tmp_path)).users() == ["alice"]
    assert again.lookup("bob", "SCRAM-SHA-256") is None and again.describe("bob") == {}


def test_store_refuses_a_damaged_file(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    store.save("scram", {"users": {"alice": {"SCRAM-SHA-256": {"salt": "!!", "iterations": 4096}}}})
    with pytest.raises(OSError, match="SCRAM credentials"):
        CredentialStore(store)
    store.save("scram", {"users": {"alice": {"SCRAM-SHA-1": ScramCredential.from_password(
        "SCRAM-SHA-256", "pw", 4096).to_json()}}})
    with pytest.raises(OSError, match="SCRAM credentials"):
        CredentialStore(store)


def test_store_changes_are_visible_only_once_saved() -> None:
    store = _MemoryStore()
    creds = CredentialStore(store)
    cred = ScramCredential.from_password("SCRAM-SHA-256", "pw", 4096)
    creds.upsert("alice", "SCRAM-SHA-256", cred)
    assert store.saves == 1
    store.fail = True
    with pytest.raises(OSError):
        creds.upsert("bob", "SCRAM-SHA-256", cred)
    assert creds.lookup("bob", "SCRAM-SHA-256") is None
    store.fail = False
    with creds.transaction() as draft:
        assert draft == {"alice": {"SCRAM-SHA-256": cred}}
    assert store.saves == 1  # nothing changed, nothing written


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_scram_client(mechanism: str) -> None:
    # kafka-python's own SCRAM client checks the server's signature in the last step.
    from kafka.net.sasl.scram import ScramClient

    server = server_for(mechanism, {"alice": ScramCredential.from_password(mechanism, "pw", 4096)})
    client = ScramClient("alice", "pw", mechanism)
    client.process_server_first_message(server.evaluate(client.first_message()))
    client.process_server_final_message(server.evaluate(client.final_message()))
    assert server.complete and server.authorization_id == "alice"

    server = server_for(mechanism, {"alice": ScramCredential.from_password(mechanism, "pw", 4096)})
    client = ScramClient("alice", "not-pw", mechanism)
    client.process_server_first_message(server.evaluate(client.first_message()))
    with pytest.raises(SaslFailure):
        server.evaluate(client.final_message())
