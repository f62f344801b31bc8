"""Group configs (the GROUP config resource) through real admin clients over a socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kbroker.testing import BrokerThread


def _admin(b: BrokerThread) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap})


def _describe(admin: AdminClient, group: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.GROUP, group)
    return admin.describe_configs([res])[res].result(10)


def _alter(admin: AdminClient, group: str, *entries: ConfigEntry) -> None:
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=list(entries))
    admin.incremental_alter_configs([res])[res].result(10)


def _set(key: str, value: str | None, op: AlterConfigOpType = AlterConfigOpType.SET) -> ConfigEntry:
    return ConfigEntry(key, value, incremental_operation=op)


def test_set_describe_delete_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with BrokerThread(data) as b:
        admin = _admin(b)
        got = _describe(admin, "never-created")  # a group needs not exist
        assert got["consumer.session.timeout.ms"].value == "45000"
        assert got["consumer.session.timeout.ms"].is_default
        assert got["share.auto.offset.reset"].value == "latest"
        assert got["share.isolation.level"].value == "read_uncommitted"
        assert {"share.record.lock.duration.ms", "streams.num.standby.replicas"} <= set(got)
        _alter(admin, "g1", _set("consumer.session.timeout.ms", "50000"), _set("share.auto.offset.reset", "earliest"),
               _set("share.record.lock.duration.ms", "20000"))
        got = _describe(admin, "g1")
        entry = got["consumer.session.timeout.ms"]
        assert entry.value == "50000" and not entry.is_default
        assert int(entry.source) == 8  # GROUP_CONFIG
        assert got["share.auto.offset.reset"].value == "earliest"
        assert b.broker.group_configs.get("g1", "share.record.lock.duration.ms") == "20000"
        assert b.broker.group_configs.get("g1", "consumer.heartbeat.interval.ms") is None
        assert b.broker.group_configs.get("other", "consumer.session.timeout.ms") is None
        _alter(admin, "g1", _set("share.auto.offset.reset", None, AlterConfigOpType.DELETE))
        assert _describe(admin, "g1")["share.auto.offset.reset"].is_default
    with BrokerThread(data) as b:  # kept across a restart
        got = _describe(_admin(b), "g1")
        assert got["consumer.session.timeout.ms"].value == "50000"
        assert got["share.record.lock.duration.ms"].value == "20000"
        assert got["share.auto.offset.reset"].is_default
        assert b.broker.group_configs.get("g1", "consumer.session.timeout.ms") == "50000"


@pytest.mark.parametrize(("key", "value", "op", "message"), [
    ("consumer.session.timeout.ms", "30000", AlterConfigOpType.SET,
     "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
    ("consumer.session.timeout.ms", "70000", AlterConfigOpType.SET,
     "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms"),
    ("consumer.heartbeat.interval.ms", "abc", AlterConfigOpType.SET,
     "Invalid value abc for configuration consumer.heartbeat.interval.ms: Not a number of type INT"),
    ("share.record.lock.duration.ms", "500", AlterConfigOpType.SET,
     "Invalid value 500 for configuration share.record.lock.duration.ms: Value must be at least 1000"),
    ("share.isolation.level", "dirty", AlterConfigOpType.SET, None),
    ("share.auto.offset.reset", "by_duration:-PT1H", AlterConfigOpType.SET, None),
    ("share.auto.offset.reset", "sometimes", AlterConfigOpType.SET, None),
    ("group.initial.rebalance.delay.ms", "1", AlterConfigOpType.SET,
     "Unknown group config name: group.initial.rebalance.delay.ms"),
    ("consumer.session.timeout.ms", "50000", AlterConfigOpType.APPEND,
     "Can't APPEND to key consumer.session.timeout.ms because its type is not LIST."),
])
def test_bad_values_are_invalid_config(kafka_broker: BrokerThread, key: str, value: str, op: AlterConfigOpType,
                                       message: str | None) -> None:
    admin = _admin(kafka_broker)
    with pytest.raises(KafkaException) as e:
        _alter(admin, "g", _set(key, value, op))
    assert e.value.args[0].name() == "INVALID_CONFIG", e.value
    if message is not None:
        assert e.value.args[0].str() == message
    assert kafka_broker.broker.group_configs.overrides("g") == {}  # nothing applied


def test_cross_checks_and_valid_durations(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    # An interval within bounds but not below the session timeout (the broker's 45000 bound: raise it).
    _alter(admin, "g", _set("share.auto.offset.reset", "by_duration:P1DT2H3M4.5S"),
           _set("share.isolation.level", "read_committed"))
    assert kafka_broker.broker.group_configs.overrides("g") == {
        "share.auto.offset.reset": "by_duration:P1DT2H3M4.5S", "share.isolation.level": "read_committed"}
    # One bad key refuses the whole request.
    with pytest.raises(KafkaException):
        _alter(admin, "g", _set("consumer.session.timeout.ms", "50000"), _set("consumer.heartbeat.interval.ms", "1"))
    assert kafka_broker.broker.group_configs.get("g", "consumer.session.timeout.ms") is None


def test_validate_only_and_legacy_alter(kafka_broker: BrokerThread) -> None:
    admin = _admin(kafka_broker)
    res = ConfigResource(ResourceType.GROUP, "g", incremental_configs=[_set("consumer.session.timeout.ms", "50000")])
    admin.incremental_alter_configs([res], validate_only=True)[res].result(10)
    assert kafka_broker.broker.group_configs.overrides("g") == {}
    _alter(admin, "g", _set("share.isolation.level", "read_committed"))
    # AlterConfigs replaces the whole set.
    res = ConfigResource(ResourceType.GROUP, "g", set_config={"consumer.heartbeat.interval.ms": "6000"})
    admin.alter_configs([res])[res].result(10)
    assert kafka_broker.broker.group_configs.overrides("g") == {"consumer.heartbeat.interval.ms": "6000"}


def test_kafka_python_group_resource(kafka_broker: BrokerThread) -> None:
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.alter_configs([KpResource(ConfigResourceType.GROUP, "kp", configs={"share.heartbeat.interval.ms": "6000"})])
        assert kafka_broker.broker.group_configs.get("kp", "share.heartbeat.interval.ms") == "6000"
        got = admin.describe_configs([KpResource(ConfigResourceType.GROUP, "kp")], config_filter="all")
        entries = next(iter(next(iter(got.values())).values()))
        assert entries["share.heartbeat.interval.ms"]["value"] == "6000"
        assert entries["share.session.timeout.ms"]["value"] == "45000"
        modified = admin.describe_configs([KpResource(ConfigResourceType.GROUP, "kp")])
        assert list(next(iter(next(iter(modified.values())).values()))) == ["share.heartbeat.interval.ms"]
    finally:
        admin.close()


def test_list_config_resources(kafka_broker: BrokerThread) -> None:
    from tests.broker.replica_wire import WireClient

    admin = _admin(kafka_broker)
    _alter(admin, "with-configs", _set("consumer.heartbeat.interval.ms", "6000"))
    wire = WireClient(kafka_broker.bootstrap)
    try:
        resp = wire.call(74, 1, {"resource_types": [32]})
        assert resp.error_code == 0
        assert [(r.resource_name, r.resource_type) for r in resp.config_resources] == [("with-configs", 32)]
        every = wire.call(74, 1, {"resource_types": []})
        assert {(r.resource_name, r.resource_type) for r in every.config_resources} >= {
            ("with-configs", 32), ("1", 4), ("1", 8)}
        assert wire.call(74, 0, {}).config_resources == []  # v0: client-metrics subscriptions only
        assert wire.call(74, 1, {"resource_types": [3]}).error_code == 35  # UNSUPPORTED_VERSION
        # Removing a group's last config removes the group from the list.
        _alter(admin, "with-configs", _set("consumer.heartbeat.interval.ms", None, AlterConfigOpType.DELETE))
        assert wire.call(74, 1, {"resource_types": [32]}).config_resources == []
    finally:
        wire.close()


def test_group_acls_guard_group_configs(tmp_path: Path) -> None:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType

    overrides = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                 "allow.everyone.if.no.acl.found": "true"}
    with BrokerThread(tmp_path / "d", overrides) as b:
        admin = _admin(b)
        denies = [AclBinding(ResourceType.GROUP, "secret", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*", op,
                             AclPermissionType.DENY)
                  for op in (AclOperation.ALTER_CONFIGS, AclOperation.DESCRIBE_CONFIGS)]
        for f in admin.create_acls(denies).values():
            f.result(10)
        for action in (lambda: _alter(admin, "secret", _set("consumer.session.timeout.ms", "50000")),
                       lambda: _describe(admin, "secret")):
            with pytest.raises(KafkaException) as e:
                action()
            assert e.value.args[0].name() == "GROUP_AUTHORIZATION_FAILED"
        assert b.broker.group_configs.overrides("secret") == {}
        _alter(admin, "open", _set("consumer.session.timeout.ms", "50000"))  # other groups are not covered
        assert _describe(admin, "open")["consumer.session.timeout.ms"].value == "50000"
