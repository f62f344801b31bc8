"""The cluster's features end to end, with real clients over real sockets against one 3-broker
local cluster: transactions spanning partitions led by different brokers (and their coordinator
killed), KIP-392 rack-aware follower fetching, partition reassignment with data catch-up and
preferred-leader election, admin requests answered across brokers, and ACLs, SCRAM users and
dynamic broker configs shared by every broker through etcd.

One cluster serves the whole module; the tests that kill or pause a broker bring it back before
they end, so that the next test finds three live brokers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kbroker.localcluster import LocalCluster
from tests.cluster.marks import requires_cluster_features

pytestmark = requires_cluster_features
#: The longest any one test may take.
TEST_TIMEOUT_S = 150
QUIET = {"log_level": 0}
FAST = {"socket.timeout.ms": 5000, "metadata.max.age.ms": 2000, "topic.metadata.refresh.interval.ms": 1000,
        "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500}
RACK_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three brokers in racks r0, r1, r2, with the rack-aware replica selector and the ACL
    authorizer (everything allowed where no ACL names the resource)."""
    import shutil

    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed")
    c = LocalCluster(tmp_path_factory.mktemp("features"), 3, {
        "replica.selector.class": RACK_SELECTOR,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "true",
    }, per_broker={i: {"broker.rack": f"r{i}"} for i in range(3)})
    with c:
        yield c


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """Fail a test that runs longer than TEST_TIMEOUT_S (SIGALRM interrupts the main thread)."""
    import signal

    def expired(*_: object) -> None:
        raise TimeoutError(f"test took longer than {TEST_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _wait(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """``check()``'s first truthy result within ``timeout`` (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as e:  # a broker of the bootstrap list may be down meanwhile
            result, last = None, e
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


_ADMINS: dict[str, Any] = {}


def _admin(servers: str):  # type: ignore[no-untyped-def]
    """A confluent-kafka AdminClient of ``servers``, kept for the module (a client destroyed
    before its futures are done fails them)."""
    from confluent_kafka.admin import AdminClient

    if servers not in _ADMINS:
        _ADMINS[servers] = AdminClient({"bootstrap.servers": servers, "reconnect.backoff.max.ms": 500, **QUIET})
    return _ADMINS[servers]


def _create(c: LocalCluster, topic: str, assignment: list[list[int]], **configs: str) -> None:
    from confluent_kafka.admin import NewTopic

    new = NewTopic(topic, len(assignment), replica_assignment=assignment, config=configs)
    _admin(c.bootstrap_servers).create_topics([new])[topic].result(30)
    # Every replica in the ISR: the test starts from a fully replicated topic.
    _wait(f"{topic} fully in sync", lambda: all(
        sorted(p.isrs) == sorted(assignment[i]) and p.leader == assignment[i][0]
        for i, p in _partitions(c, topic).items()) and len(_partitions(c, topic)) == len(assignment))


def _partitions(c: LocalCluster, topic: str, servers: str | None = None) -> dict[int, Any]:
    t = _admin(servers or c.bootstrap_servers).list_topics(topic, timeout=5).topics[topic]
    if t.error is not None:
        raise RuntimeError(str(t.error))
    return dict(t.partitions)


def _produce(c: LocalCluster, topic: str, partition: int, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000, **QUIET})
    errors: list[object] = []
    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(40) == 0 and not errors, errors


def _consume(servers: str, topic: str, partitions: list[int], n: int, *, timeout: float = 40.0,
             settle: float = 1.0, **config: Any) -> list[bytes]:
    """Every record of ``partitions`` from the beginning: ``n`` of them, then ``settle`` seconds
    more so that a record too many would be seen."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    con = Consumer({"bootstrap.servers": servers, "group.id": f"read-{topic}", "enable.auto.commit": False,
                    **FAST, **QUIET, **config})
    con.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            m = con.poll(0.3)
            if m is not None and m.error() is None:
                out.append(m.value())
        end = time.monotonic() + settle
        while time.monotonic() < end:
            m = con.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value())
    finally:
        con.close()
    return out


def _logs(c: LocalCluster, i: int, topic: str) -> list[str]:
    """The partition directories of ``topic`` in broker ``i``'s log dir."""
    data = c.broker_dir(i) / "data"
    return sorted(d.name for d in data.iterdir() if d.is_dir() and d.name.rsplit("-", 1)[0] == topic)


def _restart_dead(c: LocalCluster) -> None:
    for i in range(c.brokers):
        if i in c.paused:
            c.resume(i)
        if not c.alive(i):
            c.restart(i)


# --- 4. admin requests across the cluster -------------------------------------------------------

def test_admin_requests_are_answered_for_the_whole_cluster(cluster: LocalCluster) -> None:
    from confluent_kafka.admin import ConfigResource, NewPartitions
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    c = cluster
    admin = _admin(c.bootstrap_servers)
    # DescribeCluster: every broker and the controller, from both clients.
    described = admin.describe_cluster(request_timeout=10).result(15)
    assert sorted(n.id for n in described.nodes) == [0, 1, 2]
    assert described.controller is not None and described.controller.id in (0, 1, 2)
    kadmin = KafkaAdminClient(bootstrap_servers=c.bootstrap_servers, request_timeout_ms=15000)
    try:
        kdescribed = kadmin.describe_cluster()
        assert sorted(b["broker_id"] for b in kdescribed["brokers"]) == [0, 1, 2]
        assert kdescribed["controller_id"] == described.controller.id

        # DescribeConfigs of each broker is answered by that broker (its own rack).
        for i in range(3):
            res = ConfigResource(ConfigResource.Type.BROKER, str(i))
            entries = admin.describe_configs([res])[res].result(15)
            assert entries["broker.rack"].value == f"r{i}" and entries["node.id"].value == str(i)
            kres = kadmin.describe_configs([KConfigResource(ConfigResourceType.BROKER, str(i))],
                                           config_filter="all")
            (by_name,) = kres.values()
            assert by_name[str(i)]["broker.rack"]["value"] == f"r{i}", by_name

        # CreatePartitions with explicit assignments.
        _create(c, "adm", [[0, 1]])
        admin.create_partitions([NewPartitions("adm", 3, replica_assignment=[[1, 2], [2, 0]])])["adm"].result(30)
        parts = _wait("adm grown", lambda: (p := _partitions(c, "adm")) and len(p) == 3 and p)
        assert [parts[i].replicas for i in range(3)] == [[0, 1], [1, 2], [2, 0]]
        _wait("every new replica on disk", lambda: [_logs(c, i, "adm") for i in range(3)]
              == [["adm-0", "adm-2"], ["adm-0", "adm-1"], ["adm-1", "adm-2"]])

        # DescribeLogDirs: each broker reports its own replicas.
        for i in range(3):
            (answer,) = kadmin.describe_log_dirs(topic_partitions=["adm"], brokers=[i])
            reported = {(t["name"], p["partition_index"]) for d in answer["log_dirs"] for t in d["topics"]
                        for p in t["partitions"]}
            assert answer["broker"] == i
            assert reported == {("adm", p) for p in range(3) if i in parts[p].replicas}, (i, answer)

        # DeleteTopics removes the logs on every broker.
        admin.delete_topics(["adm"])["adm"].result(30)
        _wait("adm's logs deleted everywhere", lambda: not any(_logs(c, i, "adm") for i in range(3)))
        assert "adm" not in admin.list_topics(timeout=5).topics
    finally:
        kadmin.close()


# --- 2. KIP-392: fetching from the follower in the consumer's rack -------------------------------

def test_a_consumer_with_client_rack_reads_from_the_follower_in_its_rack(cluster: LocalCluster) -> None:
    c = cluster
    _create(c, "racked", [[0, 1, 2]])
    values = [b"r%d" % i for i in range(200)]
    _produce(c, "racked", 0, values)
    # librdkafka's statistics name the broker each partition is fetched from ("broker") and its
    # leader: after the leader's preferred_read_replica answer, the follower in rack r1 serves.
    fetched_from: list[tuple[int, int]] = []

    def stats(raw: str) -> None:
        p = json.loads(raw).get("topics", {}).get("racked", {}).get("partitions", {}).get("0")
        if p is not None:
            fetched_from.append((int(p["leader"]), int(p["broker"])))

    got = _consume(c.bootstrap_servers, "racked", [0], len(values), settle=1.5, **{
        "client.rack": "r1", "statistics.interval.ms": 200, "stats_cb": stats, "max.partition.fetch.bytes": 1024})
    assert got == values
    assert (0, 1) in fetched_from, fetched_from
    # Without a rack of the cluster the consumer stays on the leader.
    fetched_from.clear()
    got = _consume(c.bootstrap_servers, "racked", [0], len(values), settle=1.0, **{
        "client.rack": "elsewhere", "statistics.interval.ms": 200, "stats_cb": stats})
    assert got == values and fetched_from and all(b == 0 for _, b in fetched_from), fetched_from


# --- 5. ACLs, SCRAM users and dynamic broker configs across brokers ------------------------------

def test_an_acl_created_through_one_broker_is_enforced_by_another(cluster: LocalCluster) -> None:
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    c = cluster
    _create(c, "guarded", [[2]])
    _produce(c, "guarded", 0, [b"secret"])
    # READ denied, DESCRIBE allowed (with an ACL naming the topic, nothing else is allowed: the
    # consumer would not even see the topic in Metadata).
    deny = AclBinding(ResourceType.TOPIC, "guarded", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                      AclOperation.READ, AclPermissionType.DENY)
    describe = AclBinding(ResourceType.TOPIC, "guarded", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                          AclOperation.DESCRIBE, AclPermissionType.ALLOW)
    for f in _admin(c.bootstrap(0)).create_acls([deny, describe]).values():
        f.result(15)
    # Broker 2 leads the partition: its fetch answers TOPIC_AUTHORIZATION_FAILED.
    only2 = c.bootstrap(2)
    flt = AclBindingFilter(ResourceType.TOPIC, "guarded", ResourcePatternType.LITERAL, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    _wait("broker 2 lists the ACLs", lambda: sorted(map(str, _admin(only2).describe_acls(flt).result(10)))
          == sorted(map(str, [deny, describe])))

    def denied() -> bool:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        con = Consumer({"bootstrap.servers": only2, "group.id": "guarded-reader", **FAST, **QUIET})
        try:
            con.assign([TopicPartition("guarded", 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 10
            seen = []
            while time.monotonic() < deadline:
                m = con.poll(0.3)
                if m is None:
                    continue
                if m.error() is None:
                    return False
                if m.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    return True
                seen.append(m.error())
            raise AssertionError(f"neither a record nor an authorization error: {seen}")
        finally:
            con.close()

    assert denied()
    _admin(c.bootstrap(1)).delete_acls([flt])[flt].result(15)
    _wait("broker 2 serves again", lambda: _consume(only2, "guarded", [0], 1, timeout=10, settle=0) == [b"secret"])


def test_a_scram_user_created_through_one_broker_is_known_to_the_others(cluster: LocalCluster) -> None:
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    c = cluster
    up = UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")
    _admin(c.bootstrap(0)).alter_user_scram_credentials([up])["alice"].result(15)
    for i in (1, 2):
        described = _wait(f"broker {i} knows alice", lambda i=i: _admin(c.bootstrap(i))
                          .describe_user_scram_credentials(["alice"])["alice"].result(10))
        assert [(ci.mechanism, ci.iterations) for ci in described.scram_credential_infos] == \
            [(ScramMechanism.SCRAM_SHA_256, 4096)]


BROKER_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
               'password="secret" user_broker="secret";')


def test_a_scram_user_created_through_one_broker_logs_in_on_another(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A cluster whose one listener speaks SASL (brokers log in to each other with PLAIN)."""
    from confluent_kafka.admin import (
        AdminClient,
        NewTopic,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    def login(servers: str, mechanism: str, user: str, password: str) -> AdminClient:
        return AdminClient({"bootstrap.servers": servers, "security.protocol": "SASL_PLAINTEXT",
                            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
                            **QUIET})

    def can_log_in(password: str) -> bool:
        try:
            return "sasl" in login(c.bootstrap(2), "SCRAM-SHA-256", "carol", password).list_topics(timeout=3).topics
        except Exception:  # refused: librdkafka reports the failed connection
            return False

    c = LocalCluster(tmp_path_factory.mktemp("sasl"), 3, {
        "listener.security.protocol.map": "PLAINTEXT:SASL_PLAINTEXT", "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "PLAIN", "listener.name.plaintext.plain.sasl.jaas.config": BROKER_JAAS})
    with c:
        admin = login(c.bootstrap(0), "PLAIN", "broker", "secret")
        admin.create_topics([NewTopic("sasl", 1, 3)])["sasl"].result(30)
        # Replication runs over the SASL listener too.
        _wait("sasl replicated", lambda: sorted(admin.list_topics("sasl", timeout=5).topics["sasl"].partitions[0].isrs)
              == [0, 1, 2])
        assert not can_log_in("pw")
        up = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")
        admin.alter_user_scram_credentials([up])["carol"].result(15)
        _wait("carol logs in on broker 2", lambda: can_log_in("pw"))
        assert not can_log_in("wrong")


def _broker_value(servers: str, node: int, key: str) -> tuple[str | None, int]:
    """(value, source) of ``key`` as broker ``node`` describes its config."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    res = ConfigResource(ConfigResource.Type.BROKER, str(node))
    admin = AdminClient({"bootstrap.servers": servers, **QUIET})  # a new one: the broker may have restarted
    entry = admin.describe_configs([res])[res].result(15)[key]
    return entry.value, int(getattr(entry.source, "value", entry.source))


def _alter_broker_config(servers: str, name: str, key: str, value: str | None) -> None:
    """IncrementalAlterConfigs of broker resource ``name`` ("": the cluster default): SET
    ``value``, or DELETE when None. A broker's own resource goes through confluent-kafka; the
    cluster default through kbroker's client (confluent-kafka and kafka-python refuse the empty
    name, which Kafka's own tools send)."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from kbroker.client.cluster import KafkaClient

    if name:
        op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        res = ConfigResource(ConfigResource.Type.BROKER, name,
                             incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
        admin = AdminClient({"bootstrap.servers": servers, **QUIET})  # a new one: the broker may have restarted
        admin.incremental_alter_configs([res])[res].result(15)
        return
    with KafkaClient(servers) as client:
        body = client.request(44, {"resources": [{
            "resource_type": 4, "resource_name": "",
            "configs": [{"name": key, "config_operation": 0 if value is not None else 1, "value": value}]}],
            "validate_only": False})
    (res,) = body.responses
    assert res.error_code == 0, (res.error_code, res.error_message)


def test_cluster_wide_dynamic_broker_configs_apply_on_every_broker_and_survive_restarts(
        cluster: LocalCluster) -> None:
    c = cluster
    key = "log.cleaner.backoff.ms"
    _alter_broker_config(c.bootstrap(0), "", key, "12345")
    # Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG (source 3) on every broker.
    for i in range(3):
        _wait(f"broker {i} applies the default", lambda i=i: _broker_value(c.bootstrap(i), i, key) == ("12345", 3))
    # A broker's own dynamic config wins over the cluster default (DYNAMIC_BROKER_CONFIG, source 2).
    _alter_broker_config(c.bootstrap(1), "1", key, "23456")
    assert _broker_value(c.bootstrap(1), 1, key) == ("23456", 2)
    assert _broker_value(c.bootstrap(0), 0, key) == ("12345", 3)
    # Both live in etcd: a restarted broker (and one that was down when they changed) has them.
    c.kill(2)
    try:
        _alter_broker_config(c.bootstrap(0), "", key, "34567")
    finally:
        c.restart(2)
    assert _broker_value(c.bootstrap(2), 2, key) == ("34567", 3)
    c.restart(1)
    assert _broker_value(c.bootstrap(1), 1, key) == ("23456", 2)
    # Deleting both brings the static value back everywhere.
    _alter_broker_config(c.bootstrap(1), "1", key, None)
    _alter_broker_config(c.bootstrap(2), "", key, None)
    for i in range(3):
        _wait(f"broker {i} back to its static value",
              lambda i=i: _broker_value(c.bootstrap(i), i, key) == ("15000", 5))


# --- 1. transactions across brokers ---------------------------------------------------------------

def _coordinator(c: LocalCluster, transactional_id: str) -> int:
    from kbroker.client.cluster import KafkaClient

    with KafkaClient(c.bootstrap_servers) as client:
        body = client.request(10, {"key": transactional_id, "key_type": 1, "coordinator_keys": [transactional_id]})
    coords = getattr(body, "coordinators", None)
    if coords:
        assert coords[0].error_code == 0, coords[0]
        return int(coords[0].node_id)
    assert body.error_code == 0, body
    return int(body.node_id)


def test_transactions_spanning_brokers_commit_abort_and_survive_their_coordinator(cluster: LocalCluster) -> None:
    from confluent_kafka import KafkaException, Producer

    c = cluster
    _create(c, "txn", [[0, 1, 2], [1, 2, 0], [2, 0, 1]], **{"min.insync.replicas": "2"})
    tid = "e2e-txn"
    conf = {"bootstrap.servers": c.bootstrap_servers, "transactional.id": tid, "transaction.timeout.ms": 60000,
            "message.timeout.ms": 60000, **FAST, **QUIET}

    def run(p: Any, tag: str, commit: bool) -> list[bytes]:
        p.begin_transaction()
        values = [b"%s-%d-%d" % (tag.encode(), part, i) for part in range(3) for i in range(5)]
        for v in values:
            p.produce("txn", v, partition=int(v.split(b"-")[1]))
        # Written before the end (an abort would drop records still queued in the client).
        assert p.flush(30) == 0
        (p.commit_transaction if commit else p.abort_transaction)(30)
        return values

    first = Producer(conf)
    first.init_transactions(30)
    committed = run(first, "a", True)
    run(first, "b", False)
    committed += run(first, "c", True)
    assert sorted(_consume(c.bootstrap_servers, "txn", [0, 1, 2], 30, **{"isolation.level": "read_committed"})) == sorted(committed)
    assert len(_consume(c.bootstrap_servers, "txn", [0, 1, 2], 45, **{"isolation.level": "read_uncommitted"})) == 45

    coordinator = _coordinator(c, tid)
    c.kill(coordinator)
    try:
        # A new producer of the same transactional.id finds the new coordinator and fences the old one.
        second = Producer(conf)
        second.init_transactions(60)
        committed += run(second, "d", True)
        with pytest.raises(KafkaException) as fenced:
            run(first, "e", True)
        assert fenced.value.args[0].fatal() or "fenc" in str(fenced.value).lower(), fenced.value
        assert _coordinator(c, tid) != coordinator
        assert sorted(_consume(c.bootstrap_servers, "txn", [0, 1, 2], 45,
                               **{"isolation.level": "read_committed"})) == sorted(committed)
    finally:
        _restart_dead(c)


# --- 3. reassignment with data catch-up, preferred-leader election --------------------------------

def test_a_reassigned_partition_moves_its_data_and_preferred_election_restores_leadership(
        cluster: LocalCluster) -> None:
    from confluent_kafka import ElectionType
    from confluent_kafka import TopicPartition as CTopicPartition
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    c = cluster
    # kafka-python sends reassignments to the controller: the broker frozen below is another one.
    controller = _admin(c.bootstrap_servers).describe_cluster().result(10).controller.id
    new = next(i for i in (2, 1, 0) if i != controller)
    old, kept = (i for i in range(3) if i != new)
    _create(c, "moving", [[old, kept]])
    values = [b"m%d" % i for i in range(300)]
    _produce(c, "moving", 0, values)
    tp = TopicPartition("moving", 0)
    # The new replica frozen: the move cannot finish before it is listed as under way.
    kadmin = KafkaAdminClient(bootstrap_servers=f"{c.bootstrap(old)},{c.bootstrap(kept)}", request_timeout_ms=15000)
    try:
        assert kadmin.list_partition_reassignments([tp]) == {}  # connected to the controller before the freeze
        c.pause(new)
        try:
            kadmin.alter_partition_reassignments({tp: [kept, new]})
            ongoing = kadmin.list_partition_reassignments([tp])
        finally:
            c.resume(new)
        info = ongoing[tp]
        assert sorted(info["replicas"]) == [0, 1, 2] and info["adding_replicas"] == [new] \
            and info["removing_replicas"] == [old], info
        _wait("the move done", lambda: _partitions(c, "moving")[0].replicas == [kept, new]
              and sorted(_partitions(c, "moving")[0].isrs) == sorted([kept, new]), timeout=45)
        assert kadmin.list_partition_reassignments([tp]) == {}
    finally:
        kadmin.close()
    _wait("the old replica's log deleted", lambda: _logs(c, old, "moving") == [])
    assert _logs(c, new, "moving") == ["moving-0"]
    # The data is on the new replica: with the others gone, it alone serves all of it.
    c.kill(kept)
    c.kill(old)
    try:
        _wait("the new replica leads", lambda: _partitions(c, "moving", c.bootstrap(new))[0].leader == new)
        assert _consume(c.bootstrap(new), "moving", [0], len(values)) == values
    finally:
        _restart_dead(c)
    # The preferred leader is back in the ISR; a PREFERRED election gives it the lead.
    _wait("the preferred replica in sync", lambda: sorted(_partitions(c, "moving")[0].isrs) == sorted([kept, new]),
          timeout=45)
    assert _partitions(c, "moving")[0].leader == new
    ctp = CTopicPartition("moving", 0)
    _admin(c.bootstrap_servers).elect_leaders(ElectionType.PREFERRED, [ctp]).result(30)
    _wait("the preferred replica leads again", lambda: _partitions(c, "moving")[0].leader == kept)
    assert _consume(c.bootstrap_servers, "moving", [0], len(values)) == values
