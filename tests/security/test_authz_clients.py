"""Authorization as real clients see it: kafka-python and confluent-kafka over PLAINTEXT, so
the principal is User:ANONYMOUS, against a broker with a rule-set authorizer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import kafka.errors as kerr
import pytest
from authz_support import Op, Res, RuleAuthorizer, cluster, rule
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType
from kafka.admin import NewTopic as KNewTopic
from kafka.structs import OffsetAndMetadata

from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, batch, create_topic, produce_one

TIMEOUT = 15


def _code(exc: BaseException) -> int:
    """A confluent-kafka KafkaException's error code."""
    assert isinstance(exc, KafkaException), exc
    return int(exc.args[0].code())


def _seed(broker: BrokerThread, topic: str, n: int = 3) -> None:
    create_topic(broker, topic)
    w = WireClient(broker.bootstrap)
    try:
        assert produce_one(w, topic, 0, batch([b"v%d" % i for i in range(n)])).error_code == 0
    finally:
        w.close()


def _poll_error(poll: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll a confluent-kafka consumer until it hands back an error event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = poll()
        if m is not None and m.error() is not None:
            return m.error()
    raise AssertionError("no error event")


# --- kafka-python ---------------------------------------------------------------------------------


def test_kafka_python_produce_topic_write_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "kp-ok")
    create_topic(kafka_broker, "kp-no")
    authorizer.deny(rule(Op.WRITE, Res.TOPIC, "kp-no"))
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, retries=0, enable_idempotence=False)
    try:
        assert p.send("kp-ok", b"v").get(TIMEOUT).offset == 0
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            p.send("kp-no", b"v").get(TIMEOUT)
    finally:
        p.close(0)


def test_kafka_python_idempotent_needs_idempotent_write_or_write(kafka_broker: BrokerThread,
                                                                 authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "kp-idem")
    authorizer.deny(cluster(Op.IDEMPOTENT_WRITE), rule(Op.WRITE, Res.TOPIC))
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True)
    try:
        # kafka-python reports the refused InitProducerId as an unexpected error, naming it.
        with pytest.raises(kerr.KafkaError, match="ClusterAuthorizationFailed"):
            p.send("kp-idem", b"v").get(TIMEOUT)
    finally:
        p.close(0)
    # WRITE on some topic is enough (KIP-679).
    authorizer.deny(cluster(Op.IDEMPOTENT_WRITE))
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True)
    try:
        assert p.send("kp-idem", b"v").get(TIMEOUT).offset == 0
    finally:
        p.close(0)


def test_kafka_python_transactional_id_write_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    authorizer.deny(rule(Op.WRITE, Res.TRANSACTIONAL_ID, "kp-tx"))
    p = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id="kp-tx")
    try:
        with pytest.raises(kerr.TransactionalIdAuthorizationFailedError):
            p.init_transactions()
    finally:
        p.close(0)


def test_kafka_python_fetch_read_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "kp-read")
    authorizer.deny(rule(Op.READ, Res.TOPIC, "kp-read"))
    c = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        c.assign([KTopicPartition("kp-read", 0)])
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                assert not c.poll(500)
    finally:
        c.close()


def test_kafka_python_group_read_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "kp-grp")
    authorizer.deny(rule(Op.READ, Res.GROUP, "kp-g"))
    c = KafkaConsumer("kp-grp", bootstrap_servers=kafka_broker.bootstrap, group_id="kp-g",
                      auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        with pytest.raises(kerr.GroupAuthorizationFailedError):
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                assert not c.poll(500)
    finally:
        c.close(autocommit=False)
    # Committing without joining (assign) is refused the same way.
    c = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id="kp-g", enable_auto_commit=False)
    try:
        c.assign([KTopicPartition("kp-grp", 0)])
        with pytest.raises(kerr.GroupAuthorizationFailedError):
            c.commit({KTopicPartition("kp-grp", 0): OffsetAndMetadata(1, "", -1)})
    finally:
        c.close(autocommit=False)


def test_kafka_python_admin(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "kp-adm")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        authorizer.deny(cluster(Op.CREATE), rule(Op.CREATE, Res.TOPIC, "kp-new-no"), cluster(Op.DELETE),
                        rule(Op.DELETE, Res.TOPIC, "kp-adm"), rule(Op.DESCRIBE, Res.TOPIC, "kp-hidden"))
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            admin.create_topics([KNewTopic("kp-new-no", 1, 1)])
        admin.create_topics([KNewTopic("kp-new-yes", 1, 1)])  # CREATE on the topic alone
        assert kafka_broker.broker.metadata.topic("kp-new-yes") is not None
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            admin.delete_topics(["kp-adm"])
        assert kafka_broker.broker.metadata.topic("kp-adm") is not None
        create_topic(kafka_broker, "kp-hidden")
        assert "kp-hidden" not in admin.list_topics() and "kp-adm" in admin.list_topics()
        # kafka-python drops a refused resource's error code and answers no configs; it shows
        # AlterConfigs' error message.
        node = str(kafka_broker.broker.node_id)
        topic_res = KConfigResource(ConfigResourceType.TOPIC, "kp-adm")
        assert admin.describe_configs([topic_res], config_filter="all")["topic"]["kp-adm"]
        authorizer.rules |= {rule(Op.DESCRIBE_CONFIGS, Res.TOPIC, "kp-adm"), cluster(Op.DESCRIBE_CONFIGS),
                             rule(Op.ALTER_CONFIGS, Res.TOPIC, "kp-adm")}
        assert admin.describe_configs([topic_res], config_filter="all") == {"topic": {"kp-adm": {}}}
        broker_res = KConfigResource(ConfigResourceType.BROKER, node)
        assert admin.describe_configs([broker_res], config_filter="all") == {"broker": {node: {}}}
        altered = admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-adm",
                                                      configs={"retention.ms": "1000"})], raise_on_unknown=False)
        assert "TopicAuthorizationFailedError" in str(altered["topic"]["kp-adm"])
        assert "retention.ms" not in kafka_broker.broker.metadata.topic("kp-adm").configs
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            admin.delete_records({KTopicPartition("kp-adm", 0): 1})
    finally:
        admin.close()


def test_kafka_python_list_groups_filtered(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "kp-lg")
    for g in ("kp-seen", "kp-unseen"):
        c = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=g, enable_auto_commit=False)
        c.assign([KTopicPartition("kp-lg", 0)])
        c.commit({KTopicPartition("kp-lg", 0): OffsetAndMetadata(1, "", -1)})
        c.close(autocommit=False)
    authorizer.deny(cluster(Op.DESCRIBE), rule(Op.DESCRIBE, Res.GROUP, "kp-unseen"))
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        groups = [g["group_id"] for g in admin.list_groups()]
        assert "kp-seen" in groups and "kp-unseen" not in groups
    finally:
        admin.close()


# --- confluent-kafka ------------------------------------------------------------------------------


def test_confluent_produce_topic_write_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "ck-no")
    authorizer.deny(rule(Op.WRITE, Res.TOPIC, "ck-no"))
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 0, "retries": 0})
    reports: list[Any] = []
    p.produce("ck-no", b"v", partition=0, on_delivery=lambda err, msg: reports.append(err))
    p.flush(TIMEOUT)
    assert reports and reports[0] is not None and reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_confluent_idempotent_needs_idempotent_write_or_write(kafka_broker: BrokerThread,
                                                              authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "ck-idem")
    authorizer.deny(cluster(Op.IDEMPOTENT_WRITE), rule(Op.WRITE, Res.TOPIC))
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True})
    p.produce("ck-idem", b"v", partition=0)
    # librdkafka makes the refused InitProducerId a fatal error, raised from flush.
    with pytest.raises(KafkaException) as info:
        p.flush(TIMEOUT)
    assert _code(info.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED and info.value.args[0].fatal()
    # WRITE on some topic is enough (KIP-679).
    authorizer.deny(cluster(Op.IDEMPOTENT_WRITE))
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True})
    reports: list[Any] = []
    p.produce("ck-idem", b"v", partition=0, on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(TIMEOUT) == 0 and reports == [None]


def test_confluent_transactional_id_write_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    authorizer.deny(rule(Op.WRITE, Res.TRANSACTIONAL_ID, "ck-tx"))
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": "ck-tx"})
    with pytest.raises(KafkaException) as info:
        p.init_transactions(TIMEOUT)
    assert _code(info.value) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_confluent_fetch_read_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "ck-read")
    authorizer.deny(rule(Op.READ, Res.TOPIC, "ck-read"))
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "ck-any", "enable.auto.commit": False})
    try:
        c.assign([CTopicPartition("ck-read", 0, 0)])
        assert _poll_error(lambda: c.poll(0.2)).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        c.close()


def test_confluent_group_read_denied(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "ck-grp")
    authorizer.deny(rule(Op.READ, Res.GROUP, "ck-g"))
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "ck-g", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["ck-grp"])
        assert _poll_error(lambda: c.poll(0.2)).code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "ck-g", "enable.auto.commit": False})
    try:
        c.assign([CTopicPartition("ck-grp", 0, 0)])
        with pytest.raises(KafkaException) as info:
            c.commit(offsets=[CTopicPartition("ck-grp", 0, 1)], asynchronous=False)
        assert _code(info.value) == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()


def test_confluent_admin(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "ck-adm")
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    node = str(kafka_broker.broker.node_id)
    authorizer.deny(cluster(Op.CREATE), rule(Op.CREATE, Res.TOPIC, "ck-new-no"), cluster(Op.DELETE),
                    rule(Op.DELETE, Res.TOPIC, "ck-adm"), rule(Op.DESCRIBE_CONFIGS, Res.TOPIC, "ck-adm"),
                    cluster(Op.DESCRIBE_CONFIGS), rule(Op.ALTER_CONFIGS, Res.TOPIC, "ck-adm"),
                    rule(Op.DESCRIBE, Res.TOPIC, "ck-hidden"))
    futures = admin.create_topics([NewTopic("ck-new-no", 1, 1), NewTopic("ck-new-yes", 1, 1)])
    with pytest.raises(KafkaException) as info:
        futures["ck-new-no"].result(TIMEOUT)
    assert _code(info.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    futures["ck-new-yes"].result(TIMEOUT)  # CREATE on the topic alone
    with pytest.raises(KafkaException) as info:
        admin.delete_topics(["ck-adm"])["ck-adm"].result(TIMEOUT)
    assert _code(info.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    topic_res, broker_res = ConfigResource("TOPIC", "ck-adm"), ConfigResource("BROKER", node)
    described = admin.describe_configs([topic_res, broker_res])
    with pytest.raises(KafkaException) as info:
        described[topic_res].result(TIMEOUT)
    assert _code(info.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as info:
        described[broker_res].result(TIMEOUT)
    assert _code(info.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    alter = ConfigResource("TOPIC", "ck-adm", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as info:
        admin.incremental_alter_configs([alter])[alter].result(TIMEOUT)
    assert _code(info.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as info:
        admin.delete_records([CTopicPartition("ck-adm", 0, 1)])[CTopicPartition("ck-adm", 0)].result(TIMEOUT)
    assert _code(info.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_topic(kafka_broker, "ck-hidden")
    listed = admin.list_topics(timeout=TIMEOUT).topics
    assert "ck-adm" in listed and "ck-hidden" not in listed


def test_confluent_list_groups_filtered(kafka_broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    _seed(kafka_broker, "ck-lg")
    for g in ("ck-seen", "ck-unseen"):
        c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": g, "enable.auto.commit": False})
        c.assign([CTopicPartition("ck-lg", 0, 0)])
        c.commit(offsets=[CTopicPartition("ck-lg", 0, 1)], asynchronous=False)
        c.close()
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    every = {g.group_id for g in admin.list_consumer_groups().result(TIMEOUT).valid}
    assert {"ck-seen", "ck-unseen"} <= every
    authorizer.deny(cluster(Op.DESCRIBE), rule(Op.DESCRIBE, Res.GROUP, "ck-unseen"))
    some = {g.group_id for g in admin.list_consumer_groups().result(TIMEOUT).valid}
    assert "ck-seen" in some and "ck-unseen" not in some
