"""DescribeClientQuotas / AlterClientQuotas over real sockets (kafka-python and kbroker's
own client), the ``kbroker quotas`` CLI, durability across a restart, authorization, and
controller_mutation_rate on CreateTopics, CreatePartitions and DeleteTopics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kbroker.cli import main as cli
from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import KafkaError
from kbroker.codec.error_codes import ErrorCode
from kbroker.security.model import AclOperation, ResourceType
from kbroker.testing import BrokerThread

pytestmark = pytest.mark.integration


def test_kafka_python_alters_and_describes_client_quotas(kafka_broker: BrokerThread) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.protocol.admin import AlterClientQuotasRequest as A
    from kafka.protocol.admin import DescribeClientQuotasRequest as D

    client = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)

    async def send(request: Any) -> Any:
        return await client._manager.send(request)

    def alter(entity: list[tuple[str, str | None]], ops: list[tuple[str, float, bool]],
              validate_only: bool = False) -> Any:
        entry = A.EntryData(entity=[A.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                            ops=[A.EntryData.OpData(key=k, value=v, remove=r) for k, v, r in ops])
        return client._manager.run(send, A(entries=[entry], validate_only=validate_only)).entries[0]

    def describe(components: list[tuple[str, int, str | None]], strict: bool = False) -> Any:
        comps = [D.ComponentData(entity_type=t, match_type=m, match=n) for t, m, n in components]
        return client._manager.run(send, D(components=comps, strict=strict))

    try:
        ok = alter([("user", "bob"), ("client-id", None)], [("producer_byte_rate", 1024.0, False),
                                                            ("request_percentage", 12.5, False)])
        assert ok.error_code == 0 and ok.entity[0].entity_type == "user"
        r = describe([("user", 0, "bob")])
        assert r.error_code == 0
        assert [(e.entity_type, e.entity_name) for e in r.entries[0].entity] == [("client-id", None), ("user", "bob")]
        assert {v.key: v.value for v in r.entries[0].values} == {"producer_byte_rate": 1024.0,
                                                                  "request_percentage": 12.5}
        assert describe([("user", 0, "bob")], strict=True).entries == []

        # validate_only answers as a change would, and changes nothing.
        assert alter([("user", "carol")], [("consumer_byte_rate", 10.0, False)], validate_only=True).error_code == 0
        assert describe([("user", 0, "carol")]).entries == []

        bad = alter([("user", "bob")], [("no_such_quota", 1.0, False)])
        assert (bad.error_code, bad.error_message) == (ErrorCode.INVALID_REQUEST,
                                                        "Invalid configuration key no_such_quota")
        bad = alter([("user", "bob")], [("producer_byte_rate", 1.5, False)])
        assert bad.error_code == ErrorCode.INVALID_REQUEST and "Long" in bad.error_message
        bad = alter([("group", "g")], [("producer_byte_rate", 1.0, False)])
        assert bad.error_code == ErrorCode.INVALID_REQUEST
        bad = alter([("ip", "1.2.3.4"), ("user", "x")], [("connection_creation_rate", 1.0, False)])
        assert bad.error_code == ErrorCode.INVALID_REQUEST and "IP entity" in bad.error_message
        assert alter([("ip", "10.0.0.9")], [("connection_creation_rate", 3.0, False)]).error_code == 0

        r = describe([("nope", 0, "x")])
        assert r.error_code == ErrorCode.INVALID_REQUEST and r.entries is None

        # Removing the last quota of an entity removes the entity.
        assert alter([("user", "bob"), ("client-id", None)], [("producer_byte_rate", 0.0, True),
                                                              ("request_percentage", 0.0, True)]).error_code == 0
        assert describe([("user", 0, "bob")]).entries == []
        assert [e.entity[0].entity_type for e in describe([("ip", 2, None)]).entries] == ["ip"]
    finally:
        client.close()


def test_quotas_survive_a_restart_and_v0_is_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerThread(data) as broker, KafkaClient(broker.bootstrap) as client:
        admin.alter_client_quotas(client, {"user": "alice"}, {"consumer_byte_rate": 2048})
        admin.alter_client_quotas(client, {"client-id": None}, {"controller_mutation_rate": 1.5})
    with BrokerThread(data) as broker, KafkaClient(broker.bootstrap) as client:
        assert admin.describe_client_quotas(client) == {
            (("user", "alice"),): {"consumer_byte_rate": 2048.0},
            (("client-id", None),): {"controller_mutation_rate": 1.5},
        }
        conn = client.connection()
        _, resp = conn.request(admin.DESCRIBE_CLIENT_QUOTAS, {"components": [
            {"entity_type": "user", "match_type": admin.MATCH_SPECIFIED, "match": None}], "strict": False}, version=0)
        assert [e.entity[0].entity_name for e in resp.entries] == ["alice"]
        _, resp = conn.request(admin.ALTER_CLIENT_QUOTAS, {"entries": [{"entity": [
            {"entity_type": "user", "entity_name": "alice"}], "ops": [
            {"key": "consumer_byte_rate", "value": 0.0, "remove": True}]}], "validate_only": False}, version=0)
        assert resp.entries[0].error_code == 0
        assert (("user", "alice"),) not in admin.describe_client_quotas(client)


class DenyAll:
    """An authorizer that allows nothing."""

    def __init__(self) -> None:
        self.checks: list[tuple[AclOperation, ResourceType, str]] = []

    def authorize(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                  name: str) -> bool:
        self.checks.append((operation, resource_type, name))
        return False

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        return 0


def test_quota_apis_need_cluster_describe_and_alter_configs(kafka_broker: BrokerThread) -> None:
    deny = DenyAll()
    kafka_broker.broker.authorizer = deny
    with KafkaClient(kafka_broker.bootstrap) as client:
        with pytest.raises(KafkaError) as e:
            admin.describe_client_quotas(client)
        assert e.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        with pytest.raises(KafkaError) as e:
            admin.alter_client_quotas(client, {"user": "x"}, {"producer_byte_rate": 1})
        assert e.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert deny.checks == [(AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, "kafka-cluster"),
                           (AclOperation.ALTER_CONFIGS, ResourceType.CLUSTER, "kafka-cluster")]
    kafka_broker.broker.authorizer = None
    with KafkaClient(kafka_broker.bootstrap) as client:
        assert admin.describe_client_quotas(client) == {}


def test_cli_alters_and_describes(kafka_broker: BrokerThread, capsys: pytest.CaptureFixture[str]) -> None:
    bs = ["--bootstrap-server", kafka_broker.bootstrap]
    assert cli(["quotas", "--alter", "--user", "alice", "--client-default", *bs,
                "--add-config", "producer_byte_rate=1024,request_percentage=50.5"]) == 0
    assert cli(["quotas", "--alter", "--user-default", *bs, "--add-config", "consumer_byte_rate=2048"]) == 0
    assert "Completed updating config for user-principal 'alice', the default client-id." in capsys.readouterr().out
    assert cli(["quotas", "--describe", "--user", "alice", "--client-default", *bs]) == 0
    out = capsys.readouterr().out
    assert out == ("Quota configs for user-principal 'alice', the default client-id are "
                   "producer_byte_rate=1024.0, request_percentage=50.5\n")
    assert cli(["quotas", "--describe", *bs]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert cli(["quotas", "--alter", "--user", "alice", "--client-default", *bs,
                "--delete-config", "request_percentage"]) == 0
    capsys.readouterr()
    assert cli(["quotas", "--describe", "--user", "alice", "--client-default", *bs]) == 0
    assert "request_percentage" not in capsys.readouterr().out
    # Errors: a value that is no number, an unknown key, no entity.
    assert cli(["quotas", "--alter", "--user", "a", *bs, "--add-config", "producer_byte_rate=fast"]) == 1
    assert "must be a number" in capsys.readouterr().err
    assert cli(["quotas", "--alter", "--user", "a", *bs, "--add-config", "bogus=1"]) == 1
    assert "Invalid configuration key bogus" in capsys.readouterr().err
    assert cli(["quotas", "--alter", *bs, "--add-config", "producer_byte_rate=1"]) == 1
    assert "--alter needs --user" in capsys.readouterr().err


def _create(client: KafkaClient, name: str, partitions: int, version: int) -> Any:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
                        "configs": []}], "timeout_ms": 10000, "validate_only": False}
    return client.connection().request(19, body, version=version)[1]


def test_controller_mutation_rate_on_create_topics(kafka_broker: BrokerThread) -> None:
    with KafkaClient(kafka_broker.bootstrap) as setup:
        # Every client id its own bucket: 11 samples of 1 s at 2 partitions/s, a burst of 22.
        admin.alter_client_quotas(setup, {"client-id": None}, {"controller_mutation_rate": 2})
    with KafkaClient(kafka_broker.bootstrap, client_id="c1") as client:
        r = _create(client, "t1", 20, 7)
        assert r.topics[0].error_code == 0 and r.throttle_time_ms == 0
        r = _create(client, "t2", 10, 7)  # tokens left: accepted, overdrawing the bucket, not throttled
        assert r.topics[0].error_code == 0 and r.throttle_time_ms == 0
        r = _create(client, "t3", 1, 7)
        assert r.topics[0].error_code == ErrorCode.THROTTLING_QUOTA_EXCEEDED
        assert r.topics[0].error_message == "The throttling quota has been exceeded."
        assert 3000 < r.throttle_time_ms <= 4000  # 8 tokens short at 2 per second
        assert kafka_broker.broker.metadata.topic("t3") is None
        # The connection was muted for that long (KIP-219): the next request waits.
        started = time.monotonic()
        client.connection().request(18, {}, version=3)  # ApiVersions
        assert time.monotonic() - started > 2.5
    with KafkaClient(kafka_broker.bootstrap, client_id="c2") as client:
        # Before v6 the quota is permissive: the topic is created and the client throttled.
        r = _create(client, "t4", 30, 5)
        assert r.topics[0].error_code == 0 and 3000 < r.throttle_time_ms <= 4000
    with KafkaClient(kafka_broker.bootstrap, client_id="c3") as client:
        assert _create(client, "t5", 30, 7).topics[0].error_code == 0
        # CreatePartitions v3 is strict.
        _, r = client.connection().request(37, {"topics": [{"name": "t5", "count": 31, "assignments": None}],
                                                 "timeout_ms": 10000, "validate_only": False}, version=3)
        assert r.results[0].error_code == ErrorCode.THROTTLING_QUOTA_EXCEEDED and r.throttle_time_ms > 3000
    with KafkaClient(kafka_broker.bootstrap, client_id="c4") as client:
        assert _create(client, "t6", 30, 7).topics[0].error_code == 0
        # DeleteTopics v5 is strict.
        _, r = client.connection().request(20, {"topic_names": ["t1"], "timeout_ms": 10000}, version=5)
        assert r.responses[0].error_code == ErrorCode.THROTTLING_QUOTA_EXCEEDED and r.throttle_time_ms > 3000
        assert kafka_broker.broker.metadata.topic("t1") is not None
    with KafkaClient(kafka_broker.bootstrap, client_id="c5") as client:
        # Within the quota a deletion goes through.
        _, r = client.connection().request(20, {"topic_names": ["t1"], "timeout_ms": 10000}, version=5)
        assert r.responses[0].error_code == 0
        assert kafka_broker.broker.metadata.topic("t1") is None


def _fetch_body(topic: str) -> dict[str, Any]:
    return {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 50 * 1024 * 1024,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{
                "partition": 0, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
                "log_start_offset": -1, "partition_max_bytes": 1024 * 1024}]}],
            "forgotten_topics_data": [], "rack_id": ""}


def test_a_throttled_fetch_is_answered_empty(kafka_broker: BrokerThread) -> None:
    from kbroker.client.data import produce

    with KafkaClient(kafka_broker.bootstrap) as client:
        admin.create_topic(client, "f", 1)
        produce(client, "f", 0, [(None, b"v" * 30_000)])
        # 10 windows' worth (the most one fetch may return) is 20 kB: the 30 kB batch still
        # comes whole, as the first batch of a fetch always does, and puts the client over.
        admin.alter_client_quotas(client, {"client-id": "reader"}, {"consumer_byte_rate": 2000})
    with KafkaClient(kafka_broker.bootstrap, client_id="reader") as client:
        _, first = client.connection().request(1, _fetch_body("f"), version=12)
        assert first.throttle_time_ms > 0
        assert first.responses == [] and first.error_code == 0 and first.session_id == 0
    with KafkaClient(kafka_broker.bootstrap, client_id="other") as client:
        _, r = client.connection().request(1, _fetch_body("f"), version=12)
        assert r.throttle_time_ms == 0 and len(r.responses[0].partitions[0].records) > 30_000


def test_request_percentage_throttles_and_mutes_the_connection(kafka_broker: BrokerThread) -> None:
    with KafkaClient(kafka_broker.bootstrap) as client:
        admin.alter_client_quotas(client, {"client-id": "busy"}, {"request_percentage": 0.0001})
    with KafkaClient(kafka_broker.bootstrap, client_id="busy") as client:
        conn = client.connection()
        _, r = conn.request(3, {"topics": [], "allow_auto_topic_creation": False}, version=9)
        # Over the quota after one request; the request quota's throttle is at most one window.
        assert 0 < r.throttle_time_ms <= 1000
        started = time.monotonic()
        _, r = conn.request(3, {"topics": [], "allow_auto_topic_creation": False}, version=9)
        assert time.monotonic() - started >= r.throttle_time_ms / 1000 * 0.5
        assert time.monotonic() - started >= 0.5  # the connection was muted after the first answer
    with KafkaClient(kafka_broker.bootstrap, client_id="idle") as client:
        _, r = client.connection().request(3, {"topics": [], "allow_auto_topic_creation": False}, version=9)
        assert r.throttle_time_ms == 0


def test_confluent_kafka_create_topics_under_a_mutation_quota(kafka_broker: BrokerThread) -> None:
    pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    with KafkaClient(kafka_broker.bootstrap) as setup:
        admin.alter_client_quotas(setup, {"client-id": "lib"}, {"controller_mutation_rate": 10})
    client = AdminClient({"bootstrap.servers": kafka_broker.bootstrap, "client.id": "lib"})
    # librdkafka's CreateTopics predates v6: the quota is permissive, the topic is created
    # (a burst of 110 partitions overdrawn by 20) and the client throttled for about 2 s.
    for future in client.create_topics([NewTopic("big", 130, 1)], operation_timeout=30).values():
        future.result(30)
    started = time.monotonic()
    for future in client.create_topics([NewTopic("next", 1, 1)], operation_timeout=30).values():
        future.result(30)
    assert time.monotonic() - started > 1.0
    assert kafka_broker.broker.metadata.topic("big") is not None
    assert kafka_broker.broker.metadata.topic("next") is not None
