"""DescribeUserScramCredentials and AlterUserScramCredentials over real sockets: kafka-python's,
confluent-kafka's and kbroker's own admin clients against a real broker."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient as ConfluentAdmin
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka.admin import KafkaAdminClient
from kafka.admin._users import UserScramCredentialDeletion as KpDeletion
from kafka.admin._users import UserScramCredentialUpsertion as KpUpsertion

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.codec.error_codes import ErrorCode
from kbroker.security.model import AclOperation, ResourceType
from kbroker.security.sasl.base import SaslFailure
from kbroker.security.sasl.scram import scram_factories
from kbroker.security.scram import CredentialStore
from kbroker.security.store import FileStateStore
from kbroker.testing import BrokerThread
from tests.security.test_scram_sasl import Client, login

DESCRIBE, ALTER = 50, 51


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kbroker-data"


@pytest.fixture
def broker(data_dir: Path) -> Iterator[BrokerThread]:
    with BrokerThread(data_dir) as b:
        yield b


@pytest.fixture
def client(broker: BrokerThread) -> Iterator[KafkaClient]:
    with KafkaClient(broker.bootstrap, timeout=30) as c:
        yield c


def logs_in(broker: BrokerThread, mechanism: str, user: str, password: str) -> bool:
    """Whether the broker's credentials let ``user`` log in with ``password`` (RFC 5802 exchange)."""
    server = scram_factories(broker.broker.credentials)[mechanism]()
    try:
        login(server, Client(mechanism, user, password))
    except SaslFailure:
        return False
    return server.complete and server.authorization_id == user


def test_kafka_python_upsert_describe_delete(broker: BrokerThread) -> None:
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert a.describe_user_scram_credentials() == {}
        assert a.alter_user_scram_credentials([
            KpUpsertion("alice", "SCRAM-SHA-256", "alice-secret"),
            KpUpsertion("bob", "SCRAM-SHA-512", "bob-secret", iterations=8192),
        ]) == {"alice": None, "bob": None}
        assert a.alter_user_scram_credentials([KpUpsertion("alice", "SCRAM-SHA-512", "alice-512", iterations=5000)]) \
            == {"alice": None}
        described = a.describe_user_scram_credentials()
        assert {u: sorted((int(c["mechanism"]), c["iterations"]) for c in d["credential_infos"])
                for u, d in described.items()} == {"alice": [(1, 4096), (2, 5000)], "bob": [(2, 8192)]}
        assert logs_in(broker, "SCRAM-SHA-256", "alice", "alice-secret")
        assert logs_in(broker, "SCRAM-SHA-512", "alice", "alice-512")
        assert not logs_in(broker, "SCRAM-SHA-512", "alice", "alice-secret")
        assert logs_in(broker, "SCRAM-SHA-512", "bob", "bob-secret")

        # Upsert replaces: the old password stops working.
        assert a.alter_user_scram_credentials([KpUpsertion("bob", "SCRAM-SHA-512", "new")]) == {"bob": None}
        assert not logs_in(broker, "SCRAM-SHA-512", "bob", "bob-secret")
        assert logs_in(broker, "SCRAM-SHA-512", "bob", "new")

        assert a.alter_user_scram_credentials([KpDeletion("alice", "SCRAM-SHA-256")]) == {"alice": None}
        assert not logs_in(broker, "SCRAM-SHA-256", "alice", "alice-secret")
        one = a.describe_user_scram_credentials(["alice", "nobody"])
        assert [(int(c["mechanism"]), c["iterations"]) for c in one["alice"]["credential_infos"]] == [(2, 5000)]
        assert one["nobody"] == {"error": "Attempt to describe a user credential that does not exist: nobody",
                                 "credential_infos": []}

        # Errors, with Kafka's messages.
        assert a.alter_user_scram_credentials([KpDeletion("alice", "SCRAM-SHA-256")]) == {
            "alice": "Attempt to delete a user credential that does not exist"}
        assert a.alter_user_scram_credentials([
            KpUpsertion("carol", "SCRAM-SHA-256", "x", iterations=4095),
            KpUpsertion("dave", "SCRAM-SHA-512", "x", iterations=16385),
            KpUpsertion("", "SCRAM-SHA-256", "x"),
        ]) == {"carol": "Too few iterations", "dave": "Too many iterations", "": "Username must not be empty"}
        # A user named twice, whatever the mechanisms, changes nothing.
        assert a.alter_user_scram_credentials([
            KpUpsertion("bob", "SCRAM-SHA-256", "x"), KpDeletion("bob", "SCRAM-SHA-512"),
        ]) == {"bob": "A user credential cannot be altered twice in the same request"}
        assert logs_in(broker, "SCRAM-SHA-512", "bob", "new")
        assert not logs_in(broker, "SCRAM-SHA-256", "bob", "x")
        # Deletions are validated first: a failed one leaves the user's upsertion unanswered.
        assert a.alter_user_scram_credentials([
            KpUpsertion("erin", "SCRAM-SHA-256", "x"), KpDeletion("erin", "SCRAM-SHA-512"),
        ]) == {"erin": "Attempt to delete a user credential that does not exist"}
        assert "erin" not in a.describe_user_scram_credentials()
        # The boundaries are accepted.
        assert a.alter_user_scram_credentials([
            KpUpsertion("carol", "SCRAM-SHA-256", "x", iterations=4096),
            KpUpsertion("dave", "SCRAM-SHA-512", "x", iterations=16384)]) == {"carol": None, "dave": None}
    finally:
        a.close()


def test_confluent_upsert_describe_delete(broker: BrokerThread) -> None:
    a = ConfluentAdmin({"bootstrap.servers": broker.bootstrap})
    sha256 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 10000)
    sha512 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    futures = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("alice", sha256, b"alice-secret", b"salt-of-alice"),
        UserScramCredentialUpsertion("bob", sha512, b"bob-secret"),
    ])
    assert {u: f.result(30) for u, f in futures.items()} == {"alice": None, "bob": None}
    assert logs_in(broker, "SCRAM-SHA-256", "alice", "alice-secret")
    assert logs_in(broker, "SCRAM-SHA-512", "bob", "bob-secret")
    # The salt the client chose is the one the broker offers.
    assert broker.broker.credentials.lookup("alice", "SCRAM-SHA-256").salt == b"salt-of-alice"

    everyone = a.describe_user_scram_credentials().result(30)
    assert sorted(everyone) == ["alice", "bob"]
    info = everyone["alice"].scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in info] == [(ScramMechanism.SCRAM_SHA_256, 10000)]

    per_user = a.describe_user_scram_credentials(["bob", "nobody"])
    bob = per_user["bob"].result(30)
    assert [(i.mechanism, i.iterations) for i in bob.scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_512, 4096)]
    with pytest.raises(KafkaException) as e:
        per_user["nobody"].result(30)
    assert e.value.args[0].code() == ErrorCode.RESOURCE_NOT_FOUND

    futures = a.alter_user_scram_credentials([
        UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512),
        UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512),  # she has SHA-256 only
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 20000), b"x"),
    ])
    assert futures["bob"].result(30) is None
    with pytest.raises(KafkaException) as e:
        futures["alice"].result(30)
    assert e.value.args[0].code() == ErrorCode.RESOURCE_NOT_FOUND
    with pytest.raises(KafkaException) as e:
        futures["carol"].result(30)
    assert e.value.args[0].code() == ErrorCode.UNACCEPTABLE_CREDENTIAL
    assert "Too many iterations" in e.value.args[0].str()
    assert sorted(a.describe_user_scram_credentials().result(30)) == ["alice"]


def _alter(client: KafkaClient, deletions: list[dict[str, Any]] = (),  # type: ignore[assignment]
           upsertions: list[dict[str, Any]] = ()) -> dict[str, tuple[int, str | None]]:  # type: ignore[assignment]
    resp = client.request(ALTER, {"deletions": list(deletions), "upsertions": list(upsertions)})
    out = {r.user: (r.error_code, r.error_message) for r in resp.results}
    assert len(out) == len(resp.results)  # each user answered once
    return out


def _up(name: str, mechanism: int = 1, iterations: int = 4096, salt: bytes = b"salt",
        salted_password: bytes = b"k" * 32) -> dict[str, Any]:
    return {"name": name, "mechanism": mechanism, "iterations": iterations, "salt": salt,
            "salted_password": salted_password}


def test_salted_password_is_taken_as_kafka_takes_it(broker: BrokerThread, client: KafkaClient) -> None:
    # RFC 7677's user: the client sends SaltedPassword = Hi("pencil", salt, 4096), never the password.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert _alter(client, upsertions=[_up("user", 1, 4096, salt, salted)]) == {"user": (0, None)}
    cred = broker.broker.credentials.lookup("user", "SCRAM-SHA-256")
    assert (cred.salt, cred.iterations) == (salt, 4096)
    assert logs_in(broker, "SCRAM-SHA-256", "user", "pencil")
    assert not logs_in(broker, "SCRAM-SHA-256", "user", "pencil2")
    # An empty salted password cannot key an HMAC: Kafka's controller fails it as an unknown error.
    assert _alter(client, upsertions=[_up("empty", salted_password=b"")]) == {
        "empty": (ErrorCode.UNKNOWN_SERVER_ERROR, None)}
    assert broker.broker.credentials.lookup("empty", "SCRAM-SHA-256") is None


def test_validation_codes_on_the_wire(client: KafkaClient) -> None:
    assert _alter(client, upsertions=[_up("alice"), _up("bob", 2)]) == {"alice": (0, None), "bob": (0, None)}
    results = _alter(client, deletions=[
        {"name": "alice", "mechanism": 0},  # UNKNOWN
        {"name": "bob", "mechanism": 2},
        {"name": "bob", "mechanism": 1},  # bob twice, even with another mechanism
        {"name": "bob", "mechanism": 1},  # a third time: still one answer
        {"name": "", "mechanism": 1},
        {"name": "nobody", "mechanism": 1},
    ], upsertions=[
        _up("carol", 3),  # no such mechanism
        _up("dave", 1, 4095),
        _up("dave", 1, 4096),  # dave's first upsertion already failed: no duplicate reported
        _up("erin", 2, 16385),
        _up("frank", 2, 16384),
    ])
    assert results == {
        "alice": (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "bob": (ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
        "": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        "nobody": (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"),
        "carol": (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "dave": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        "erin": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        "frank": (0, None),
    }
    # The failed parts changed nothing; the valid one was applied.
    resp = client.request(DESCRIBE, {"users": None})
    assert (resp.error_code, resp.error_message) == (0, None)
    assert {r.user: [(c.mechanism, c.iterations) for c in r.credential_infos] for r in resp.results} == {
        "alice": [(1, 4096)], "bob": [(2, 4096)], "frank": [(2, 16384)]}

    resp = client.request(DESCRIBE, {"users": [{"name": "alice"}, {"name": "ghost"}, {"name": "alice"}]})
    assert {r.user: (r.error_code, r.error_message, len(r.credential_infos)) for r in resp.results} == {
        "alice": (ErrorCode.DUPLICATE_RESOURCE,
                  "Cannot describe SCRAM credentials for the same user twice in a single request: alice", 0),
        "ghost": (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to describe a user credential that does not exist: ghost",
                  0)}
    # An empty list means every user, as null does.
    resp = client.request(DESCRIBE, {"users": []})
    assert sorted(r.user for r in resp.results) == ["alice", "bob", "frank"]


class _DenyCluster:
    """Allows everything but the cluster operations named."""

    def __init__(self, *denied: AclOperation) -> None:
        self.denied = set(denied)
        self.asked: list[tuple[str, AclOperation, ResourceType, str]] = []

    def authorize(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                  name: str) -> bool:
        self.asked.append((principal, operation, resource_type, name))
        return not (resource_type == ResourceType.CLUSTER and operation in self.denied)

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        return 0


def test_authorization(broker: BrokerThread, client: KafkaClient) -> None:
    assert _alter(client, upsertions=[_up("alice")]) == {"alice": (0, None)}
    authorizer = _DenyCluster(AclOperation.ALTER)
    broker.broker.authorizer = authorizer
    try:
        denied = (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
        assert _alter(client, deletions=[{"name": "alice", "mechanism": 1}],
                      upsertions=[_up("zed"), _up("bob")]) == {"alice": denied, "bob": denied, "zed": denied}
        assert ("User:ANONYMOUS", AclOperation.ALTER, ResourceType.CLUSTER, "kafka-cluster") in authorizer.asked
        assert broker.broker.credentials.users() == ["alice"]
        # Describe needs DESCRIBE only.
        resp = client.request(DESCRIBE, {"users": None})
        assert [r.user for r in resp.results] == ["alice"]

        authorizer.denied = {AclOperation.DESCRIBE}
        resp = client.request(DESCRIBE, {"users": [{"name": "alice"}, {"name": "bob"}]})
        assert (resp.error_code, resp.error_message) == denied
        assert [(r.user, r.error_code) for r in resp.results] == [("", denied[0]), ("", denied[0])]
        assert ("User:ANONYMOUS", AclOperation.DESCRIBE, ResourceType.CLUSTER, "kafka-cluster") in authorizer.asked
        a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            with pytest.raises(Exception, match="Cluster authorization failed"):
                a.describe_user_scram_credentials()
        finally:
            a.close()
    finally:
        broker.broker.authorizer = None


def test_credentials_survive_a_restart_and_the_file_holds_no_password(data_dir: Path) -> None:
    with BrokerThread(data_dir) as b:
        a = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            assert a.alter_user_scram_credentials([
                KpUpsertion("alice", "SCRAM-SHA-256", "hunter2-alice"),
                KpUpsertion("bob", "SCRAM-SHA-512", "hunter2-bob", iterations=8000),
            ]) == {"alice": None, "bob": None}
        finally:
            a.close()
    path = data_dir / "kbroker-scram.json"
    text = path.read_text()
    assert "hunter2" not in text
    for secret in ("hunter2-alice", "hunter2-bob"):
        assert base64.b64encode(secret.encode()).decode() not in text
    doc = json.loads(text)["data"]["users"]
    assert set(doc["alice"]["SCRAM-SHA-256"]) == {"salt", "stored_key", "server_key", "iterations"}
    # The salted password (which would log in as the user with SCRAM) is not there either.
    cred = doc["bob"]["SCRAM-SHA-512"]
    salted = hashlib.pbkdf2_hmac("sha512", b"hunter2-bob", base64.b64decode(cred["salt"]), 8000)
    assert base64.b64encode(salted).decode() not in text

    with BrokerThread(data_dir) as b:
        assert logs_in(b, "SCRAM-SHA-256", "alice", "hunter2-alice")
        assert logs_in(b, "SCRAM-SHA-512", "bob", "hunter2-bob")
        with KafkaClient(b.bootstrap, timeout=30) as c:
            users = admin.describe_user_scram_credentials(c)
            assert [(u.user, u.credentials) for u in users] == [
                ("alice", {"SCRAM-SHA-256": 4096}), ("bob", {"SCRAM-SHA-512": 8000})]
            assert admin.alter_user_scram_credentials(c, deletions=[("bob", "SCRAM-SHA-512")]) == {"bob": None}
    with BrokerThread(data_dir) as b:
        assert b.broker.credentials.users() == ["alice"]


def test_a_damaged_credentials_file_stops_the_broker(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "kbroker-scram.json").write_text('{"version": 1, "data": {"users": {"a": 3}}}')
    with pytest.raises(RuntimeError, match="failed to start") as e:
        BrokerThread(data_dir).start()
    assert "SCRAM credentials" in str(e.value.__cause__)


def test_kbroker_admin_client(broker: BrokerThread, client: KafkaClient) -> None:
    ups = [admin.ScramUpsertion("alice", "SCRAM-SHA-512", "pw", 4096),
           admin.ScramUpsertion("bob", "SCRAM-SHA-256", "pw", 100)]
    results = admin.alter_user_scram_credentials(client, upsertions=ups)
    assert results["alice"] is None
    assert results["bob"] is not None and results["bob"].name == "UNACCEPTABLE_CREDENTIAL"
    assert logs_in(broker, "SCRAM-SHA-512", "alice", "pw")
    users = admin.describe_user_scram_credentials(client, ["alice", "bob"])
    assert users[0] == admin.ScramUser("alice", {"SCRAM-SHA-512": 4096})
    assert (users[1].user, users[1].error_code) == ("bob", ErrorCode.RESOURCE_NOT_FOUND)
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        admin.alter_user_scram_credentials(client, deletions=[("alice", "SCRAM-SHA-1")])


class _SlowStore:
    """A state store whose saves wait until released (a slow disk)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.saving = threading.Event()

    def load(self, kind: str) -> Any:
        return self.inner.load(kind)

    def save(self, kind: str, document: Any) -> None:
        self.saving.set()
        assert self.release.wait(30)
        self.inner.save(kind, document)


def test_saving_does_not_hold_up_other_requests(broker: BrokerThread, client: KafkaClient) -> None:
    slow = _SlowStore(broker.broker.credentials._store)
    broker.broker.credentials._store = slow
    answers: dict[str, Any] = {}

    def alter(name: str) -> None:
        with KafkaClient(broker.bootstrap, timeout=30) as c:
            answers[name] = _alter(c, upsertions=[_up(name)])

    first = threading.Thread(target=alter, args=("alice",))
    first.start()
    try:
        assert slow.saving.wait(10)
        # While the save waits, the broker answers others, and the change is not visible yet.
        resp = client.request(DESCRIBE, {"users": [{"name": "alice"}]})
        assert resp.results[0].error_code == ErrorCode.RESOURCE_NOT_FOUND
        assert client.metadata([]).brokers
        second = threading.Thread(target=alter, args=("bob",))
        second.start()
    finally:
        slow.release.set()
        first.join(30)
    second.join(30)
    assert answers == {"alice": {"alice": (0, None)}, "bob": {"bob": (0, None)}}
    assert broker.broker.credentials.users() == ["alice", "bob"]
    assert CredentialStore(FileStateStore(slow.inner.directory)).users() == ["alice", "bob"]


def test_a_failed_save_answers_every_user_with_an_error(broker: BrokerThread, client: KafkaClient) -> None:
    class Broken:
        def load(self, kind: str) -> Any:
            return None

        def save(self, kind: str, document: Any) -> None:
            raise OSError("No space left on device")

    broker.broker.credentials._store = Broken()
    assert _alter(client, upsertions=[_up("alice"), _up("bob")]) == {
        "alice": (ErrorCode.UNKNOWN_SERVER_ERROR, None), "bob": (ErrorCode.UNKNOWN_SERVER_ERROR, None)}
    assert broker.broker.credentials.users() == []


def test_standard_authorizer_acls(tmp_path: Path) -> None:
    # With Kafka's StandardAuthorizer: DESCRIBE on the cluster lets User:ANONYMOUS describe
    # credentials, not alter them; ALTER on the cluster (which implies DESCRIBE) lets it do both.
    from kbroker.security.acl import AclBinding
    from kbroker.security.model import ANONYMOUS, CLUSTER_NAME, AclPermissionType, PatternType

    def start(op: AclOperation) -> BrokerThread:
        acl = AclBinding(ResourceType.CLUSTER, CLUSTER_NAME, PatternType.LITERAL, ANONYMOUS, "*", op,
                         AclPermissionType.ALLOW)
        FileStateStore(tmp_path).save("acls", [acl.to_json()])
        return BrokerThread(tmp_path, {"authorizer.class.name":
                                       "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}).start()

    denied = (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
    b = start(AclOperation.DESCRIBE)
    try:
        with KafkaClient(b.bootstrap, timeout=30) as c:
            assert _alter(c, upsertions=[_up("alice")]) == {"alice": denied}
            assert admin.describe_user_scram_credentials(c) == []
    finally:
        b.stop()
    b = start(AclOperation.ALTER)
    try:
        with KafkaClient(b.bootstrap, timeout=30) as c:
            assert _alter(c, upsertions=[_up("alice")]) == {"alice": (0, None)}
            assert admin.describe_user_scram_credentials(c) == [admin.ScramUser("alice", {"SCRAM-SHA-256": 4096})]
    finally:
        b.stop()
