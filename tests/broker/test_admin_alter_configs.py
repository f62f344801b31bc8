"""AlterConfigs and IncrementalAlterConfigs through real admin clients."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from kbroker.testing import BrokerThread


def _admin(b: BrokerThread) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap})


def _topic_configs(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res])[res].result(10)


def _create(admin: AdminClient, topic: str) -> None:
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)


def test_incremental_set_delete_append_subtract(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    _create(admin, "t")
    res = ConfigResource(ResourceType.TOPIC, "t", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([res])[res].result(10)
    got = _topic_configs(admin, "t")
    assert got["retention.ms"].value == "3600000" and not got["retention.ms"].is_default
    assert got["cleanup.policy"].value == "delete,compact"

    res = ConfigResource(ResourceType.TOPIC, "t", incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
    ])
    admin.incremental_alter_configs([res])[res].result(10)
    got = _topic_configs(admin, "t")
    assert got["retention.ms"].is_default
    assert got["cleanup.policy"].value == "compact"


def test_incremental_errors(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    _create(admin, "t")
    cases = [
        ("t", "retention.ms", "not-a-number", AlterConfigOpType.SET, "INVALID_CONFIG"),
        ("t", "no.such.config", "1", AlterConfigOpType.SET, "INVALID_CONFIG"),
        ("t", "retention.ms", "1", AlterConfigOpType.APPEND, "INVALID_CONFIG"),
        ("missing", "retention.ms", "1", AlterConfigOpType.SET, "UNKNOWN_TOPIC_OR_PART"),
    ]
    for topic, key, value, op, expected in cases:
        res = ConfigResource(ResourceType.TOPIC, topic,
                             incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
        with pytest.raises(KafkaException) as e:
            admin.incremental_alter_configs([res])[res].result(10)
        assert expected in e.value.args[0].name(), (key, e.value)
        if op == AlterConfigOpType.APPEND:  # Kafka 4.1.1's words
            assert e.value.args[0].str() == "Can't APPEND to key retention.ms because its type is not LIST."
    assert _topic_configs(admin, "t")["retention.ms"].is_default  # nothing was applied


def test_validate_only_changes_nothing(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    _create(admin, "t")
    res = ConfigResource(ResourceType.TOPIC, "t", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], validate_only=True)[res].result(10)
    assert _topic_configs(admin, "t")["retention.ms"].is_default


def test_alter_configs_replaces_overrides_and_survives_restart(tmp_path: Path) -> None:
    from kafka.admin import ConfigResource as KPResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    data = tmp_path / "d"
    with BrokerThread(data) as b:
        admin = _admin(b)
        admin.create_topics([NewTopic("t", 1, 1, config={"retention.ms": "5000"})])["t"].result(10)
        # confluent-kafka's alter_configs is the classic AlterConfigs: the given set replaces the overrides.
        res = ConfigResource(ResourceType.TOPIC, "t", set_config={"segment.bytes": "1048576"})
        admin.alter_configs([res])[res].result(10)
        got = _topic_configs(admin, "t")
        assert got["segment.bytes"].value == "1048576"
        assert got["retention.ms"].is_default
        # kafka-python's alter_configs sets keys and keeps the rest.
        kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        assert kp.alter_configs([KPResource(ConfigResourceType.TOPIC, "t", configs={"retention.ms": "9000"})])
        kp.close()
        got = _topic_configs(admin, "t")
        assert (got["segment.bytes"].value, got["retention.ms"].value) == ("1048576", "9000")
        assert b.broker.log_manager.get_log("t", 0).config.segment_bytes == 1048576
    with BrokerThread(data) as b2:
        assert _topic_configs(_admin(b2), "t")["segment.bytes"].value == "1048576"


def test_broker_dynamic_config_and_logger_level(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    node = str(kafka_broker.broker.node_id)
    res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    desc = ConfigResource(ResourceType.BROKER, node)
    entry = admin.describe_configs([desc])[desc].result(10)["log.retention.ms"]
    assert entry.value == "7200000" and entry.source == 2  # DYNAMIC_BROKER_CONFIG

    ro = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry("node.id", "7", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException):
        admin.incremental_alter_configs([ro])[ro].result(10)

    # BROKER_LOGGER (8) sets a logger's level; the confluent client has no enum for it: raw wire.
    from replica_wire import WireClient

    wire = WireClient(kafka_broker.bootstrap)
    try:
        body = {"resources": [{"resource_type": 8, "resource_name": node, "configs": [
            {"name": "kbroker.groups", "config_operation": 0, "value": "DEBUG"}]}]}
        resp = wire.call(44, 1, body)
        assert resp.responses[0].error_code == 0
        assert logging.getLogger("kbroker.groups").level == logging.DEBUG
        body["resources"][0]["configs"][0]["value"] = "LOUD"
        assert wire.call(44, 1, body).responses[0].error_code == 40  # INVALID_CONFIG
    finally:
        wire.close()
        logging.getLogger("kbroker.groups").setLevel(logging.NOTSET)


def _broker_configs(admin: AdminClient, node: str) -> dict[str, ConfigEntry]:
    desc = ConfigResource(ResourceType.BROKER, node)
    return admin.describe_configs([desc])[desc].result(10)


@pytest.mark.parametrize("key, value", [
    ("listeners", "PLAINTEXT://127.0.0.1:9999"),
    ("advertised.listeners", "PLAINTEXT://elsewhere:9092"),
    ("group.min.session.timeout.ms", "1000"),
    ("offsets.retention.minutes", "1"),
    # Per-listener security keys kbroker cannot reconfigure: INVALID_REQUEST, as Kafka refuses
    # what it cannot change (not INVALID_CONFIG).
    ("listener.name.plaintext.ssl.client.auth", "required"),
    ("listener.name.plaintext.plain.sasl.jaas.config", "x"),
])
def test_read_only_broker_configs_are_refused(kafka_broker: BrokerThread, key: str, value: str) -> None:
    admin = _admin(kafka_broker)
    node = str(kafka_broker.broker.node_id)
    per_listener = key.startswith("listener.name.")
    before = None if per_listener else _broker_configs(admin, node)[key].value
    res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as err:
        admin.incremental_alter_configs([res])[res].result(10)
    assert err.value.args[0].code() == 42  # INVALID_REQUEST
    # Kafka names a Scala Set in the message.
    assert f"Cannot update these configs dynamically: Set({key})" in err.value.args[0].str()
    if not per_listener:
        after = _broker_configs(admin, node)[key]
        assert after.value == before and after.source != 2
    else:
        assert key not in _broker_configs(admin, node)


def test_super_users_is_described_as_sensitive(tmp_path: Path) -> None:
    # As Kafka 4.1.1 describes it: sensitive, its value hidden.
    with BrokerThread(tmp_path, {"super.users": "User:admin;User:ops"}) as b:
        entry = _broker_configs(_admin(b), str(b.broker.node_id))["super.users"]
        assert entry.is_sensitive and entry.value is None


def test_dynamic_broker_configs_survive_restart(tmp_path: Path) -> None:
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    data = tmp_path / "data"
    with BrokerThread(data) as b:
        admin = _admin(b)
        node = str(b.broker.node_id)
        res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
            ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("producer.id.expiration.ms", "5000", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(10)
        # The producer-id expiry in force is the new one at once, not the value read at start-up.
        assert b.broker.replica_manager._producer_expiration_ms == 5000
    with BrokerThread(data) as b2:
        node = str(b2.broker.node_id)
        got = _broker_configs(_admin(b2), node)
        assert got["log.retention.ms"].value == "7200000" and got["log.retention.ms"].source == 2
        assert got["producer.id.expiration.ms"].value == "5000"
        assert b2.broker.replica_manager._producer_expiration_ms == 5000
        kp = KafkaAdminClient(bootstrap_servers=b2.bootstrap)
        try:
            # kafka-python lists the configs that differ from their defaults.
            modified = kp.describe_configs([KpResource(ConfigResourceType.BROKER, node)])["broker"][node]
            assert "log.retention.ms" in modified and "7200000" in repr(modified["log.retention.ms"])
        finally:
            kp.close()
        # Removing it is persisted too.
        res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
            ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
        admin2 = _admin(b2)
        admin2.incremental_alter_configs([res])[res].result(10)
    with BrokerThread(data) as b3:
        got = _broker_configs(_admin(b3), str(b3.broker.node_id))
        assert got["log.retention.ms"].source != 2
        assert got["producer.id.expiration.ms"].value == "5000"


def test_smallest_index_size_kafka_accepts_takes_effect_and_survives_restart(tmp_path: Path) -> None:
    # Kafka's floor for both keys is 4 bytes; an index that small holds one entry.
    from confluent_kafka import Consumer, Producer

    data = tmp_path / "data"
    with BrokerThread(data) as b:
        admin = _admin(b)
        _create(admin, "before")
        node = str(b.broker.node_id)
        res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
            ConfigEntry("log.index.size.max.bytes", "5", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(10)
        assert _broker_configs(admin, node)["log.index.size.max.bytes"].value == "5"
        topic = NewTopic("small", 1, 1, config={"segment.index.bytes": "4"})
        admin.create_topics([topic])["small"].result(10)
    with BrokerThread(data) as b2:
        p = Producer({"bootstrap.servers": b2.bootstrap})
        for topic_name in ("before", "small"):
            for i in range(3):
                p.produce(topic_name, b"v%d" % i * 3000)
        assert p.flush(10) == 0
        c = Consumer({"bootstrap.servers": b2.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
        try:
            c.subscribe(["before", "small"])
            seen: set[tuple[str, int]] = set()
            while len(seen) < 6:
                m = c.poll(10)
                assert m is not None and m.error() is None, m and m.error()
                seen.add((m.topic(), m.offset()))
        finally:
            c.close()


def test_a_broker_config_the_storage_refuses_is_neither_saved_nor_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the key's own check passes but the log defaults refuse answers INVALID_CONFIG
    before anything is saved: no connection closed, no restart that keeps failing."""
    from kbroker.log.config import LogConfig

    checked = LogConfig.__post_init__

    def refuse_one_size(self: LogConfig) -> None:
        checked(self)
        if self.segment_bytes == 12_345_678:
            raise ValueError("segment_bytes 12345678 refused by the storage layer")

    monkeypatch.setattr(LogConfig, "__post_init__", refuse_one_size)
    data = tmp_path / "data"
    with BrokerThread(data) as b:
        admin = _admin(b)
        node = str(b.broker.node_id)
        res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
            ConfigEntry("log.segment.bytes", "12345678", incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as err:
            admin.incremental_alter_configs([res])[res].result(10)
        assert err.value.args[0].code() == 40  # INVALID_CONFIG
        assert _broker_configs(admin, node)["log.segment.bytes"].source != 2
        ok = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
            ConfigEntry("log.segment.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([ok])[ok].result(10)
    with BrokerThread(data) as b2:
        assert _broker_configs(_admin(b2), str(b2.broker.node_id))["log.segment.bytes"].value == "2000000"


@pytest.mark.parametrize("key, value, code, reason", [
    ("log.cleaner.threads", "0", 42, "Log cleaner threads should be at least 1"),
    ("log.cleaner.threads", "-1", 40, "Value must be at least 0"),
    # Kafka's KafkaConfig check comes first: 128 MiB over 100000 threads is below 1 MiB each.
    ("log.cleaner.threads", "100000", 42, "log.cleaner.dedupe.buffer.size must be at least 1MB per cleaner"),
    ("log.cleaner.threads", "3", 42, "Log cleaner threads cannot be increased to more than double the current value 1"),
    ("log.cleaner.dedupe.buffer.size", "1", 42, "log.cleaner.dedupe.buffer.size must be at least 1MB per cleaner"),
    ("log.cleaner.dedupe.buffer.size", "1048576", 42, "must be at least 1MB per cleaner thread"),
])
def test_cleaner_threads_change_at_most_doubles(kafka_broker: BrokerThread, key: str, value: str, code: int,
                                                reason: str) -> None:
    """As Kafka 4.1.1 answers: one request cannot make the broker start thousands of cleaner
    threads (it used to try, and died of it), stop them all, or leave them an offset map too
    small to clean with (every pass failed); INVALID_REQUEST, Kafka's ConfigException."""
    admin = _admin(kafka_broker)
    node = str(kafka_broker.broker.node_id)
    res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as err:
        admin.incremental_alter_configs([res])[res].result(10)
    assert err.value.args[0].code() == code
    assert reason in err.value.args[0].str()
    assert kafka_broker.broker.log_manager.cleaner.config.dedupe_buffer_size == 134_217_728
    assert kafka_broker.broker.log_manager.cleaner.config.threads == 1
    ok = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry("log.cleaner.threads", "2", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([ok])[ok].result(10)
    assert kafka_broker.broker.log_manager.cleaner.config.threads == 2
    # Halving is the floor: from 2, 1 passes.
    half = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry("log.cleaner.threads", "1", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([half])[half].result(10)
    assert kafka_broker.broker.log_manager.cleaner.config.threads == 1
