"""The security state of a cluster in etcd: shared by brokers, changes seen, races refused."""

from __future__ import annotations

import pytest

from kbroker.config import BrokerConfig
from kbroker.etcd.client import EtcdSyncClient, KeyValue
from kbroker.etcd.server import EtcdServer
from kbroker.security.authorizer import StandardAuthorizer
from kbroker.security.etcd_store import EtcdStateStore
from kbroker.security.scram import CredentialStore, ScramCredential


@pytest.fixture
def client(etcd_server: EtcdServer):  # type: ignore[no-untyped-def]
    c = EtcdSyncClient([etcd_server.endpoint])
    yield c
    c.close()


def _kv(client: EtcdSyncClient, key: str) -> KeyValue | None:
    return client.get(key)


def test_documents_round_trip_and_absent_kind(client: EtcdSyncClient, request: pytest.FixtureRequest) -> None:
    prefix = f"/t-{request.node.name}/state/"
    a = EtcdStateStore(client, prefix)
    assert a.load("acls") is None
    a.save("acls", [{"x": 1}])
    b = EtcdStateStore(client, prefix)
    assert b.load("acls") == [{"x": 1}]
    a.save("acls", [{"x": 2}])  # a knows its own revision: no conflict
    assert a.load("acls") == [{"x": 2}]


def test_a_stale_writer_is_refused_and_takes_the_newer_document(client: EtcdSyncClient,
                                                               request: pytest.FixtureRequest) -> None:
    prefix = f"/t-{request.node.name}/state/"
    a, b = EtcdStateStore(client, prefix), EtcdStateStore(client, prefix)
    assert a.load("quotas") is None and b.load("quotas") is None
    a.save("quotas", ["from a"])
    reloaded: list[str] = []
    b.on_reload("quotas", reloaded.append)
    with pytest.raises(OSError, match="changed by another broker"):
        b.save("quotas", ["from b"])
    assert b.load("quotas") == ["from a"] and reloaded == ["quotas"]
    b.save("quotas", ["from b, after a"])  # the retry, on the fresh revision
    assert EtcdStateStore(client, prefix).load("quotas") == ["from b, after a"]


def test_watched_changes_reload_the_component_once(client: EtcdSyncClient, request: pytest.FixtureRequest) -> None:
    prefix = f"/t-{request.node.name}/state/"
    a, b = EtcdStateStore(client, prefix), EtcdStateStore(client, prefix)
    creds_a, creds_b = CredentialStore(a), CredentialStore(b)
    b.on_reload("scram", lambda _: creds_b.reload())
    creds_a.upsert("alice", "SCRAM-SHA-256", ScramCredential(b"salt", b"stored", b"server", 4096))
    assert creds_b.lookup("alice", "SCRAM-SHA-256") is None  # not seen yet
    kv = _kv(client, prefix + "scram")
    b.remember("scram", kv)  # what the cluster's watch does
    assert creds_b.lookup("alice", "SCRAM-SHA-256") is not None
    calls: list[str] = []
    a.on_reload("scram", calls.append)
    a.remember("scram", kv)  # a's own write coming back through the watch: nothing to do
    assert calls == []


def test_an_unreadable_watched_document_keeps_the_old_state(client: EtcdSyncClient,
                                                            request: pytest.FixtureRequest) -> None:
    prefix = f"/t-{request.node.name}/state/"
    store = EtcdStateStore(client, prefix)
    authorizer = StandardAuthorizer(BrokerConfig.load(env={}), store)
    store.on_reload("acls", lambda _: authorizer.reload())
    store.remember("acls", KeyValue(prefix + "acls", b"not json", 1, 10**9, 1))
    assert len(authorizer) == 0
    assert store.load("acls") is None


def test_etcd_down_is_an_os_error(request: pytest.FixtureRequest) -> None:
    from kbroker.etcd.server import free_port

    c = EtcdSyncClient([f"http://127.0.0.1:{free_port()}"], timeout=0.5)
    try:
        store = EtcdStateStore(c, "/x/state/")
        with pytest.raises(OSError, match="cannot read"):
            store.load("acls")
        with pytest.raises(OSError, match="cannot save"):
            store.save("acls", [])
    finally:
        c.close()
