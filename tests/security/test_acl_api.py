"""CreateAcls, DescribeAcls, DeleteAcls and authorized operations, with real clients over real sockets.

A PLAINTEXT connection's principal is User:ANONYMOUS: the tests grant or deny it through
``super.users`` and ACLs stored before the broker starts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AclBinding as CKBinding
from confluent_kafka.admin import AclBindingFilter as CKFilter
from confluent_kafka.admin import AclOperation as CKOp
from confluent_kafka.admin import AclPermissionType as CKPerm
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import ResourcePatternType as CKPattern
from confluent_kafka.admin import ResourceType as CKType
from kafka import KafkaConsumer
from kafka import errors as kerrors
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KType
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from kbroker.client import KafkaClient, admin
from kbroker.client.errors import KafkaError
from kbroker.security.acl import AclBinding, AclBindingFilter
from kbroker.security.model import (
    ANONYMOUS,
    CLUSTER_NAME,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from kbroker.security.store import FileStateStore
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN = {"authorizer.class.name": STANDARD, "super.users": ANONYMOUS}
Op, P, R, T = AclOperation, PatternType, ResourceType, AclPermissionType


def start(data: Path, overrides: Mapping[str, str], acls: list[AclBinding] | None = None) -> BrokerThread:
    """A broker on ``data``, with ``acls`` stored before it starts."""
    if acls is not None:
        FileStateStore(data).save("acls", [a.to_json() for a in acls])
    return BrokerThread(data, overrides).start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker with ACLs on, administered by User:ANONYMOUS (a super user)."""
    b = start(tmp_path / "data", ADMIN)
    yield b
    b.stop()


def ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def ck_code(exc: BaseException) -> int:
    assert isinstance(exc, KafkaException)
    return int(exc.args[0].code())


def test_confluent_create_describe_delete(broker: BrokerThread) -> None:
    a = ck_admin(broker.bootstrap)
    topic_read = CKBinding(CKType.TOPIC, "orders", CKPattern.LITERAL, "User:alice", "*", CKOp.READ, CKPerm.ALLOW)
    prefixed = CKBinding(CKType.TOPIC, "ord", CKPattern.PREFIXED, "User:bob", "10.1.2.3", CKOp.WRITE, CKPerm.DENY)
    group = CKBinding(CKType.GROUP, "g1", CKPattern.LITERAL, "User:*", "*", CKOp.ALL, CKPerm.ALLOW)
    bad = CKBinding(CKType.GROUP, "g1", CKPattern.LITERAL, "User:alice", "*", CKOp.WRITE, CKPerm.ALLOW)
    bad_cluster = CKBinding(CKType.BROKER, "other", CKPattern.LITERAL, "User:alice", "*", CKOp.ALTER, CKPerm.ALLOW)
    futures = a.create_acls([topic_read, prefixed, group, bad, bad_cluster])
    # GROUP WRITE is stored, as Kafka's controller does (only kafka-acls.sh refuses it).
    for b in (topic_read, prefixed, group, bad):
        assert futures[b].result(15) is None
    for b, message in ((bad_cluster, "only valid name for the CLUSTER"),):
        with pytest.raises(KafkaException) as exc:
            futures[b].result(15)
        assert ck_code(exc.value) == CKError.INVALID_REQUEST
        assert message in str(exc.value)

    every = CKFilter(CKType.ANY, None, CKPattern.ANY, None, None, CKOp.ANY, CKPerm.ANY)
    assert set(a.describe_acls(every).result(15)) == {topic_read, prefixed, group, bad}
    # MATCH: the bindings applying to topic "orders" (literal and prefixed), not the group's.
    match = CKFilter(CKType.TOPIC, "orders", CKPattern.MATCH, None, None, CKOp.ANY, CKPerm.ANY)
    assert set(a.describe_acls(match).result(15)) == {topic_read, prefixed}
    by_principal = CKFilter(CKType.ANY, None, CKPattern.ANY, "User:bob", None, CKOp.ANY, CKPerm.ANY)
    assert a.describe_acls(by_principal).result(15) == [prefixed]

    prefixed_only = CKFilter(CKType.TOPIC, None, CKPattern.PREFIXED, None, None, CKOp.ANY, CKPerm.ANY)
    nothing = CKFilter(CKType.TOPIC, "nope", CKPattern.LITERAL, None, None, CKOp.ANY, CKPerm.ANY)
    deleted = a.delete_acls([prefixed_only, nothing, every])
    assert deleted[prefixed_only].result(15) == [prefixed]
    assert deleted[nothing].result(15) == []
    assert set(deleted[every].result(15)) == {topic_read, group, bad}
    assert a.describe_acls(every).result(15) == []


def test_per_filter_errors_and_invalid_describe(broker: BrokerThread) -> None:
    # Clients refuse UNKNOWN filters themselves; the broker must answer them as Kafka does.
    with KafkaClient(broker.bootstrap) as c:
        assert admin.create_acls(c, [AclBinding(R.TOPIC, "t", P.LITERAL, "User:a", "*", Op.READ, T.ALLOW)]) == [None]
        results = admin.delete_acls(c, [AclBindingFilter(R.UNKNOWN), AclBindingFilter(operation=Op.UNKNOWN),
                                        AclBindingFilter(R.TOPIC, "t")])
        assert isinstance(results[0], KafkaError) and results[0].name == "INVALID_REQUEST"
        assert "Unknown patternFilter" in str(results[0])
        assert isinstance(results[1], KafkaError) and "Unknown entryFilter" in str(results[1])
        assert results[2] == [AclBinding(R.TOPIC, "t", P.LITERAL, "User:a", "*", Op.READ, T.ALLOW)]
        with pytest.raises(KafkaError, match="INVALID_REQUEST"):
            admin.describe_acls(c, AclBindingFilter(permission=T.UNKNOWN))
        errors = admin.create_acls(c, [AclBinding(R.TOPIC, "t", P.MATCH, "User:a", "*", Op.READ, T.ALLOW),
                                       AclBinding(R.TOPIC, "t", P.LITERAL, "alice", "*", Op.READ, T.ALLOW)])
        assert [e.name if e else None for e in errors] == ["INVALID_REQUEST", "INVALID_REQUEST"]
        assert "Invalid patternType MATCH" in str(errors[0]) and "no colon" in str(errors[1])


def test_kafka_python_create_describe_delete(broker: BrokerThread) -> None:
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        read = ACL("User:alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                   ResourcePattern(KType.TOPIC, "events"))
        pre = ACL("User:alice", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW,
                  ResourcePattern(KType.TOPIC, "ev", ACLResourcePatternType.PREFIXED))
        bad = ACL("User:alice", "*", ACLOperation.ALTER, ACLPermissionType.ALLOW,
                  ResourcePattern(KType.CLUSTER, "not-the-cluster"))
        created = k.create_acls([read, pre, bad])
        assert created["succeeded"] == [read, pre]
        assert created["failed"] == [kerrors.InvalidRequestError]
        everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                               ResourcePatternFilter(KType.ANY, None, ACLResourcePatternType.ANY))
        acls, err = k.describe_acls(everything)
        assert err is kerrors.NoError and set(acls) == {read, pre}
        match = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                          ResourcePatternFilter(KType.TOPIC, "events", ACLResourcePatternType.MATCH))
        assert set(k.describe_acls(match)[0]) == {read, pre}
        [(_, removed, err)] = k.delete_acls([ACLFilter(
            "User:alice", None, ACLOperation.READ, ACLPermissionType.ANY,
            ResourcePatternFilter(KType.TOPIC, None, ACLResourcePatternType.ANY))])
        assert err is kerrors.NoError and removed == [read]
        assert k.describe_acls(everything)[0] == [pre]
    finally:
        k.close()


def test_security_disabled_without_authorizer(tmp_path: Path) -> None:
    b = start(tmp_path / "data", {})
    try:
        a = ck_admin(b.bootstrap)
        every = CKFilter(CKType.ANY, None, CKPattern.ANY, None, None, CKOp.ANY, CKPerm.ANY)
        # librdkafka drops DescribeAcls' top-level error code (an empty list, whatever the error);
        # the other clients below see SECURITY_DISABLED.
        assert a.describe_acls(every).result(15) == []
        binding = CKBinding(CKType.TOPIC, "t", CKPattern.LITERAL, "User:a", "*", CKOp.READ, CKPerm.ALLOW)
        with pytest.raises(KafkaException) as exc:
            a.create_acls([binding])[binding].result(15)
        assert ck_code(exc.value) == CKError.SECURITY_DISABLED
        with pytest.raises(KafkaException) as exc:
            a.delete_acls([every])[every].result(15)
        assert ck_code(exc.value) == CKError.SECURITY_DISABLED
        k = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            with pytest.raises(kerrors.SecurityDisabledError):
                k.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                          ResourcePatternFilter(KType.ANY, None, ACLResourcePatternType.ANY)))
        finally:
            k.close()
        with KafkaClient(b.bootstrap) as c, pytest.raises(KafkaError, match="SECURITY_DISABLED"):
            admin.describe_acls(c)
    finally:
        b.stop()


def test_cluster_permissions_are_checked(tmp_path: Path) -> None:
    # ANONYMOUS may describe the cluster (so list ACLs) but not alter it; and nothing from 127.0.0.1
    # once a host-specific DENY is added.
    cluster_describe = AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.DESCRIBE, T.ALLOW)
    b = start(tmp_path / "data", {"authorizer.class.name": STANDARD}, [cluster_describe])
    try:
        with KafkaClient(b.bootstrap) as c:
            assert admin.describe_acls(c) == [cluster_describe]
            [err] = admin.create_acls(c, [AclBinding(R.TOPIC, "t", P.LITERAL, ANONYMOUS, "*", Op.READ, T.ALLOW)])
            assert err is not None and err.name == "CLUSTER_AUTHORIZATION_FAILED"
            [res] = admin.delete_acls(c, [AclBindingFilter()])
            assert isinstance(res, KafkaError) and res.name == "CLUSTER_AUTHORIZATION_FAILED"
        a = ck_admin(b.bootstrap)
        binding = CKBinding(CKType.TOPIC, "t", CKPattern.LITERAL, "User:a", "*", CKOp.READ, CKPerm.ALLOW)
        with pytest.raises(KafkaException) as exc:
            a.create_acls([binding])[binding].result(15)
        assert ck_code(exc.value) == CKError.CLUSTER_AUTHORIZATION_FAILED
    finally:
        b.stop()
    deny_local = AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, "User:*", "127.0.0.1", Op.DESCRIBE, T.DENY)
    b = start(tmp_path / "data", {"authorizer.class.name": STANDARD}, [cluster_describe, deny_local])
    try:
        with KafkaClient(b.bootstrap) as c, pytest.raises(KafkaError, match="CLUSTER_AUTHORIZATION_FAILED"):
            admin.describe_acls(c)
    finally:
        b.stop()


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack IPv6 sockets here")
def test_host_acls_apply_to_ipv4_clients_of_a_dual_stack_listener(tmp_path: Path) -> None:
    # A listener on every interface (PLAINTEXT://:9092) takes IPv4 clients on an IPv6 socket, as
    # ::ffff:127.0.0.1; an ACL for host 127.0.0.1 must still apply to them, as in Kafka.
    cluster_describe = AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.DESCRIBE, T.ALLOW)
    deny_local = AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, "User:*", "127.0.0.1", Op.DESCRIBE, T.DENY)
    everywhere = {"authorizer.class.name": STANDARD, "listeners": "PLAINTEXT://:0",
                  "advertised.listeners": "PLAINTEXT://127.0.0.1:0"}
    b = start(tmp_path / "data", everywhere, [cluster_describe, deny_local])
    try:
        with KafkaClient(f"127.0.0.1:{b.port}") as c, pytest.raises(KafkaError, match="CLUSTER_AUTHORIZATION_FAILED"):
            admin.describe_acls(c)
        a = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{b.port}")
        try:
            with pytest.raises(kerrors.ClusterAuthorizationFailedError):
                a.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                          permission_type=ACLPermissionType.ANY,
                                          resource_pattern=ResourcePatternFilter(KType.ANY, None,
                                                                                 ACLResourcePatternType.ANY)))
        finally:
            a.close()
    finally:
        b.stop()


def test_acls_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bindings = [AclBinding(R.TOPIC, "t", P.LITERAL, "User:a", "*", Op.READ, T.ALLOW),
                AclBinding(R.GROUP, "g-", P.PREFIXED, "User:*", "10.0.0.9", Op.ALL, T.DENY),
                AclBinding(R.TRANSACTIONAL_ID, "tx", P.LITERAL, "User:a", "*", Op.WRITE, T.ALLOW)]
    b = start(data, ADMIN)
    try:
        with KafkaClient(b.bootstrap) as c:
            assert admin.create_acls(c, bindings) == [None, None, None]
            assert admin.delete_acls(c, [AclBindingFilter(R.TRANSACTIONAL_ID)]) == [bindings[2:]]
    finally:
        b.stop()
    b = start(data, ADMIN)
    try:
        with KafkaClient(b.bootstrap) as c:
            assert admin.describe_acls(c) == bindings[:2]
        assert b.broker.authorizer.authorize("User:a", "10.0.0.1", Op.DESCRIBE, R.TOPIC, "t")
    finally:
        b.stop()


def test_unknown_authorizer_class_refuses_to_start(tmp_path: Path) -> None:
    thread = BrokerThread(tmp_path / "data", {"authorizer.class.name": "com.example.Custom"})
    with pytest.raises(RuntimeError) as exc:
        thread.start()
    assert "unsupported authorizer 'com.example.Custom'" in str(exc.value.__cause__)
    # The data directory is left usable: a broker with a good config starts on it.
    start(tmp_path / "data", ADMIN).stop()


def _bits_of(ops: list[CKOp]) -> set[str]:
    return {op.name for op in ops}


def test_cluster_operations_need_describe_on_the_cluster(tmp_path: Path) -> None:
    # As Kafka: without DESCRIBE on the cluster, its authorized operations are reported as none,
    # whatever else the principal may do there (Metadata v8-10 and DescribeCluster).
    acls = [AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.CREATE, T.ALLOW),
            AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.IDEMPOTENT_WRITE, T.ALLOW)]
    b = start(tmp_path / "data", {"authorizer.class.name": STANDARD}, acls)
    try:
        a = ck_admin(b.bootstrap)
        cluster = a.describe_cluster(include_authorized_operations=True).result(15)
        assert _bits_of(cluster.authorized_operations or []) == set()
        wire = WireClient(b.bootstrap)
        try:
            for version in (8, 10):
                resp = wire.call(3, version, {"topics": [], "allow_auto_topic_creation": False,
                                              "include_cluster_authorized_operations": True,
                                              "include_topic_authorized_operations": False})
                assert resp["cluster_authorized_operations"] == 0
            resp = wire.call(60, 0, {"include_cluster_authorized_operations": True})
            assert resp["error_code"] == 0 and resp["cluster_authorized_operations"] == 0
        finally:
            wire.close()
    finally:
        b.stop()


def test_idempotent_producer_id_refused_under_a_wildcard_deny(tmp_path: Path) -> None:
    # KIP-679: without IDEMPOTENT_WRITE, an idempotent producer needs WRITE on some topic; a
    # wildcard DENY takes back a wildcard ALLOW whichever is older, as in Kafka.
    acls = [AclBinding(R.TOPIC, "*", P.LITERAL, ANONYMOUS, "*", Op.WRITE, T.ALLOW),
            AclBinding(R.TOPIC, "*", P.LITERAL, "User:*", "*", Op.ALL, T.DENY)]
    b = start(tmp_path / "data", {"authorizer.class.name": STANDARD}, acls)
    try:
        wire = WireClient(b.bootstrap)
        try:
            resp = wire.call(22, 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                     "producer_id": -1, "producer_epoch": -1})
            assert resp["error_code"] == CKError.CLUSTER_AUTHORIZATION_FAILED and resp["producer_id"] == -1
        finally:
            wire.close()
    finally:
        b.stop()


def test_authorized_operations(tmp_path: Path) -> None:
    acls = [
        AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.CREATE, T.ALLOW),
        AclBinding(R.CLUSTER, CLUSTER_NAME, P.LITERAL, ANONYMOUS, "*", Op.DESCRIBE, T.ALLOW),
        AclBinding(R.TOPIC, "acl-", P.PREFIXED, "User:*", "*", Op.READ, T.ALLOW),
        AclBinding(R.TOPIC, "acl-two", P.LITERAL, ANONYMOUS, "*", Op.ALTER_CONFIGS, T.ALLOW),
        AclBinding(R.TOPIC, "acl-two", P.LITERAL, ANONYMOUS, "*", Op.READ, T.DENY),
        AclBinding(R.GROUP, "acl-group", P.LITERAL, ANONYMOUS, "*", Op.READ, T.ALLOW),
    ]
    b = start(tmp_path / "data", {"authorizer.class.name": STANDARD}, acls)
    try:
        with KafkaClient(b.bootstrap) as c:
            admin.create_topic(c, "acl-one", 1)
            admin.create_topic(c, "acl-two", 1)
        a = ck_admin(b.bootstrap)
        cluster = a.describe_cluster(include_authorized_operations=True).result(15)
        assert _bits_of(cluster.authorized_operations) == {"CREATE", "DESCRIBE"}
        assert a.describe_cluster().result(15).authorized_operations is None
        topics = a.describe_topics(TopicCollection(["acl-one", "acl-two"]), include_authorized_operations=True)
        assert _bits_of(topics["acl-one"].result(15).authorized_operations) == {"READ", "DESCRIBE"}
        assert _bits_of(topics["acl-two"].result(15).authorized_operations) == {
            "DESCRIBE", "ALTER_CONFIGS", "DESCRIBE_CONFIGS"}

        k = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            described = {t["name"]: t for t in k.describe_topics(["acl-one", "acl-two"])}
            assert set(described["acl-one"]["authorized_operations"]) == {"READ", "DESCRIBE"}
            assert set(described["acl-two"]["authorized_operations"]) == {
                "DESCRIBE", "ALTER_CONFIGS", "DESCRIBE_CONFIGS"}
            assert set(k.describe_cluster()["authorized_operations"]) == {"CREATE", "DESCRIBE"}
            pages = k.describe_topic_partitions(["acl-two"])
            assert pages["topics"][0]["topic_authorized_operations"] == (
                (1 << Op.DESCRIBE) | (1 << Op.ALTER_CONFIGS) | (1 << Op.DESCRIBE_CONFIGS))
            consumer = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id="acl-group",
                                     enable_auto_commit=False)
            try:
                consumer.assign([KTP("acl-one", 0)])
                consumer.commit({KTP("acl-one", 0): OffsetAndMetadata(0, "", -1)})
            finally:
                consumer.close()
            groups = k.describe_groups(["acl-group"])
            assert set(groups["acl-group"]["authorized_operations"]) == {"READ", "DESCRIBE"}
        finally:
            k.close()
        described_group = a.describe_consumer_groups(["acl-group"], include_authorized_operations=True)
        assert _bits_of(described_group["acl-group"].result(15).authorized_operations) == {"READ", "DESCRIBE"}
        assert a.describe_consumer_groups(["acl-group"])["acl-group"].result(15).authorized_operations is None
    finally:
        b.stop()


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_every_version_on_the_wire(broker: BrokerThread, version: int) -> None:
    from tests.broker.replica_wire import WireClient

    wire = WireClient(broker.bootstrap)
    try:
        creation = {"resource_type": R.TOPIC, "resource_name": "w", "resource_pattern_type": P.LITERAL,
                    "principal": "User:w", "host": "*", "operation": Op.WRITE, "permission_type": T.ALLOW}
        prefixed = {**creation, "resource_name": "w-", "resource_pattern_type": P.PREFIXED}
        creations = [creation, prefixed] if version >= 1 else [creation]
        resp = wire.call(30, version, {"creations": creations})
        assert [r.error_code for r in resp.results] == [0] * len(creations)
        # v0 knows literal names only: its filters select literal bindings.
        flt = {"resource_type_filter": R.TOPIC, "resource_name_filter": None, "pattern_type_filter": P.ANY,
               "principal_filter": "User:w", "host_filter": None, "operation": Op.ANY, "permission_type": T.ANY}
        resp = wire.call(29, version, flt)
        assert resp.error_code == 0
        described = sorted((r.resource_name, r.get("pattern_type", P.LITERAL), [a.operation for a in r.acls])
                           for r in resp.resources)
        expected = [("w", P.LITERAL, [Op.WRITE])] + ([("w-", P.PREFIXED, [Op.WRITE])] if version >= 1 else [])
        assert described == expected
        resp = wire.call(31, version, {"filters": [flt, {**flt, "operation": 0}]})
        first, second = resp.filter_results
        assert first.error_code == 0
        assert sorted(m.resource_name for m in first.matching_acls) == [name for name, _, _ in expected]
        assert second.error_code == 42 and second.error_message == "Unknown entryFilter."
        assert wire.call(29, version, flt).resources == []
    finally:
        wire.sock.close()
