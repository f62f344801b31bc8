"""Tests for kbroker.config: properties parsing, layering, typed keys, topic configs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kbroker.config import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    BrokerConfig,
    ConfigError,
    ConfigSource,
    ConfigType,
    Listener,
    describe_topic_configs,
    effective_topic_config,
    effective_topic_values,
    env_var_name,
    generate_cluster_id,
    parse_properties,
    validate_topic_configs,
)
from kbroker.config.docs import update_readme

REPO = Path(__file__).resolve().parent.parent


def load(props: str | None = None, tmp_path: Path | None = None, env=None, overrides=None) -> BrokerConfig:
    path = None
    if props is not None:
        assert tmp_path is not None
        path = tmp_path / "server.properties"
        path.write_text(props, encoding="utf-8")
    return BrokerConfig.load(path, env=env or {}, overrides=overrides)


# ------------------------------------------------------------------ properties syntax


def test_properties_separators_and_comments() -> None:
    text = "\n".join(
        [
            "# comment",
            "! also a comment",
            "   ",
            "a=1",
            "b: 2",
            "c 3",
            "  d   =   4",
            "e=",
            "f",
            "g:=x",
            "h==y",
            "i = value with spaces  ",
        ]
    )
    assert parse_properties(text) == {
        "a": "1",
        "b": "2",
        "c": "3",
        "d": "4",
        "e": "",
        "f": "",
        "g": "=x",
        "h": "=y",
        "i": "value with spaces  ",
    }


def test_properties_continuations() -> None:
    text = "listeners=PLAINTEXT://127.0.0.1:9092,\\\n    OTHER://127.0.0.1:9093\nnext=1\n"
    assert parse_properties(text) == {
        "listeners": "PLAINTEXT://127.0.0.1:9092,OTHER://127.0.0.1:9093",
        "next": "1",
    }
    # an even number of trailing backslashes is an escaped backslash, not a continuation
    assert parse_properties("a=x\\\\\nb=2") == {"a": "x\\", "b": "2"}
    # a continuation line that starts with '#' is part of the value
    assert parse_properties("a=1\\\n  #2") == {"a": "1#2"}
    # a comment line never continues
    assert parse_properties("# c \\\nb=2") == {"b": "2"}
    # continuation at end of file, CRLF and CR line ends
    assert parse_properties("a=1\\") == {"a": "1"}
    assert parse_properties("a=1\r\nb=2\rc=3") == {"a": "1", "b": "2", "c": "3"}


def test_properties_escapes() -> None:
    text = r"key\ with\:sep\=s = tab\there\nnl \u00e9\\ \#x" + "\n" + r"path=C:\\data"
    assert parse_properties(text) == {"key with:sep=s": "tab\there\nnl \u00e9\\ #x", "path": "C:\\data"}


def test_properties_last_wins_and_bad_unicode_escape() -> None:
    assert parse_properties("a=1\na=2") == {"a": "2"}
    with pytest.raises(ConfigError, match="uxxxx"):
        parse_properties("a=\\u12")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        BrokerConfig.load(tmp_path / "nope.properties", env={})


# ------------------------------------------------------------------ defaults and layering


def test_defaults() -> None:
    config = BrokerConfig()
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    assert config.advertised_listeners == config.listeners
    assert config.node_id == 1
    assert config.cluster_id is None
    assert config.log_dirs == [Path("./kbroker-data")]
    assert config.num_partitions == 1
    assert config.default_replication_factor == 1
    assert config.auto_create_topics_enable is True
    assert config.log_segment_bytes == 1073741824
    assert config.log_roll_ms == 168 * 3600 * 1000
    assert config.log_index_interval_bytes == 4096
    assert config.log_index_size_max_bytes == 10485760
    assert config.log_flush_interval_messages == 2**63 - 1
    assert config.log_flush_interval_ms is None
    assert config.message_max_bytes == 1048588
    assert config.socket_request_max_bytes == 104857600
    assert config.log_retention_ms == 168 * 3600 * 1000
    assert config.log_retention_bytes == -1
    assert config.log_cleanup_policy == ["delete"]
    assert config.log_message_timestamp_type == "CreateTime"
    assert config.offsets_topic_num_partitions == 50
    assert config.offsets_retention_ms == 10080 * 60_000
    assert config.group_initial_rebalance_delay_ms == 3000
    assert config.group_min_session_timeout_ms == 6000
    assert config.group_max_session_timeout_ms == 1800000
    assert config.offsets_topic_replication_factor == 1
    assert config.transaction_state_log_num_partitions == 50
    assert config.delete_topic_enable is True
    assert config.compression_type == "producer"


def test_precedence_file_env_override(tmp_path: Path) -> None:
    props = "num.partitions=2\nlog.segment.bytes=1000\nmessage.max.bytes=5000\n"
    env = {"KBROKER_LOG_SEGMENT_BYTES": "2000", "KBROKER_MESSAGE_MAX_BYTES": "6000", "PATH": "/bin"}
    config = load(props, tmp_path, env=env, overrides=["message.max.bytes=7000"])
    assert config.num_partitions == 2
    assert config.log_segment_bytes == 2000
    assert config.message_max_bytes == 7000
    assert config.default_replication_factor == 1
    assert config.source("num.partitions") is ConfigSource.STATIC_BROKER_CONFIG
    assert config.source("default.replication.factor") is ConfigSource.DEFAULT_CONFIG


def test_env_var_names() -> None:
    assert env_var_name("log.dirs") == "KBROKER_LOG_DIRS"
    config = BrokerConfig.load(env={"KBROKER_LOG_DIRS": "/a, /b", "KBROKER_NODE_ID": "7"})
    assert config.log_dirs == [Path("/a"), Path("/b")]
    assert config.node_id == 7


def test_overrides_as_mapping_and_from_sources() -> None:
    config = BrokerConfig.from_sources(
        overrides={"num.partitions": "3"}, environ={"KBROKER_NUM_PARTITIONS": "2"}
    )
    assert config.num_partitions == 3


def test_unknown_key_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kbroker.config"):
        config = load("no.such.key=1\nnum.partitions=3\n", tmp_path, env={"KBROKER_BOGUS_THING": "x"})
    assert config.num_partitions == 3
    assert config.unknown == {"no.such.key": "1"}
    assert "no.such.key" in caplog.text
    assert "KBROKER_BOGUS_THING" in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num.partitions", "abc"),
        ("num.partitions", "0"),
        ("num.partitions", "1.5"),
        ("num.partitions", "99999999999"),
        ("log.segment.bytes", "13"),
        ("auto.create.topics.enable", "yes"),
        ("log.cleanup.policy", "delete,shred"),
        ("log.message.timestamp.type", "createtime"),
        ("compression.type", "brotli"),
        ("offsets.topic.replication.factor", "40000"),
        ("log.cleaner.min.cleanable.ratio", "1.5"),
        ("log.dirs", ""),
    ],
)
def test_bad_value_names_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.load(env={}, overrides=[f"{key}={value}"])
    assert key in str(info.value)
    assert info.value.key == key


def test_bad_value_names_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KBROKER_NUM_PARTITIONS"):
        BrokerConfig.load(env={"KBROKER_NUM_PARTITIONS": "x"})
    with pytest.raises(ConfigError, match=r"server\.properties"):
        load("num.partitions=x\n", tmp_path)


def test_values_are_trimmed_and_case_insensitive_booleans() -> None:
    config = BrokerConfig({"num.partitions": " 4 ", "auto.create.topics.enable": "FALSE"})
    assert config.num_partitions == 4
    assert config.auto_create_topics_enable is False


def test_log_dir_fallback() -> None:
    assert BrokerConfig({"log.dir": "/x"}).log_dirs == [Path("/x")]
    assert BrokerConfig({"log.dir": "/x", "log.dirs": "/y,/z"}).log_dirs == [Path("/y"), Path("/z")]


def test_broker_id_alias() -> None:
    assert BrokerConfig({"broker.id": "5"}).node_id == 5
    assert BrokerConfig({"node.id": "5", "broker.id": "5"}).node_id == 5
    with pytest.raises(ConfigError, match=r"broker\.id"):
        BrokerConfig({"node.id": "5", "broker.id": "6"})


def test_cluster_id() -> None:
    assert BrokerConfig({"cluster.id": "abc"}).cluster_id == "abc"
    generated = generate_cluster_id()
    assert len(generated) == 22 and generated != generate_cluster_id()


# ------------------------------------------------------------------ listeners


def test_listener_parsing() -> None:
    config = BrokerConfig(
        {
            "listeners": "PLAINTEXT://127.0.0.1:0, internal://:9093,V6://[::1]:9094",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,V6:PLAINTEXT",
        }
    )
    assert config.listeners == [
        Listener("PLAINTEXT", "127.0.0.1", 0),
        Listener("INTERNAL", "", 9093),
        Listener("V6", "::1", 9094),
    ]
    assert str(config.listeners[2]) == "V6://[::1]:9094"
    assert config.advertised_listeners == config.listeners


def test_advertised_listeners() -> None:
    config = BrokerConfig(
        {"listeners": "PLAINTEXT://0.0.0.0:9092", "advertised.listeners": "PLAINTEXT://broker.example:19092"}
    )
    assert config.advertised_listeners == [Listener("PLAINTEXT", "broker.example", 19092)]
    with pytest.raises(ConfigError, match=r"advertised\.listeners"):
        BrokerConfig({"advertised.listeners": "OTHER://h:1"})
    with pytest.raises(ConfigError, match=r"advertised\.listeners"):
        BrokerConfig({"advertised.listeners": "PLAINTEXT://0.0.0.0:9092"})


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:9092",
        "PLAINTEXT://127.0.0.1",
        "PLAINTEXT://127.0.0.1:notaport",
        "PLAINTEXT://127.0.0.1:70000",
        "PLAINTEXT://a:1,PLAINTEXT://b:2",
        "PLAINTEXT://h:9092,OTHER://h:9092",
        "CLIENT://127.0.0.1:9093",
        "",
    ],
)
def test_malformed_listeners(value: str) -> None:
    overrides = {
        "listeners": value,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT,SSL:SSL",
    }
    with pytest.raises(ConfigError) as info:
        BrokerConfig(overrides)
    assert info.value.key == "listeners"
    assert "listeners" in str(info.value)


def test_two_ephemeral_listeners_are_fine() -> None:
    config = BrokerConfig(
        {
            "listeners": "A://127.0.0.1:0,B://127.0.0.1:0",
            "listener.security.protocol.map": "A:PLAINTEXT,B:PLAINTEXT",
        }
    )
    assert [ls.port for ls in config.listeners] == [0, 0]


# ------------------------------------------------------------------ time-unit precedence


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, 168 * 3_600_000),
        ({"log.retention.hours": "1"}, 3_600_000),
        ({"log.retention.hours": "1", "log.retention.minutes": "2"}, 120_000),
        ({"log.retention.hours": "1", "log.retention.minutes": "2", "log.retention.ms": "3"}, 3),
        ({"log.retention.ms": "-1"}, -1),
        ({"log.retention.hours": "-5"}, -1),
    ],
)
def test_retention_precedence(props: dict[str, str], expected: int) -> None:
    assert BrokerConfig(props).log_retention_ms == expected


def test_retention_zero_rejected() -> None:
    with pytest.raises(ConfigError, match=r"log\.retention\.minutes"):
        BrokerConfig({"log.retention.minutes": "0"})


def test_roll_precedence() -> None:
    assert BrokerConfig({"log.roll.hours": "2"}).log_roll_ms == 7_200_000
    assert BrokerConfig({"log.roll.hours": "2", "log.roll.ms": "5"}).log_roll_ms == 5


# ------------------------------------------------------------------ describe and dynamic


def test_describe_sources_and_types() -> None:
    config = BrokerConfig({"num.partitions": "3"}).with_dynamic({"log.retention.bytes": "100"})
    entries = {e.name: e for e in config.describe()}
    assert set(entries) == set(BROKER_CONFIGS)
    assert entries["num.partitions"].value == "3"
    assert entries["num.partitions"].source is ConfigSource.STATIC_BROKER_CONFIG
    assert entries["num.partitions"].read_only
    assert entries["num.partitions"].type is ConfigType.INT
    assert entries["num.partitions"].doc
    assert entries["log.retention.bytes"].source is ConfigSource.DYNAMIC_BROKER_CONFIG
    assert entries["log.retention.bytes"].value == "100"
    assert not entries["log.retention.bytes"].read_only
    assert [s.source for s in entries["log.retention.bytes"].synonyms] == [
        ConfigSource.DYNAMIC_BROKER_CONFIG,
        ConfigSource.DEFAULT_CONFIG,
    ]
    assert entries["log.retention.ms"].value is None
    assert entries["log.cleanup.policy"].value == "delete"
    assert entries["log.flush.interval.messages"].value == str(2**63 - 1)
    # Passwords, inline keys and JAAS configs, and super.users (as Kafka describes it), and nothing
    # else, are sensitive (never described).
    assert {n for n, e in entries.items() if e.sensitive} == {
        n for n, d in BROKER_CONFIGS.items() if d.type is ConfigType.PASSWORD} | {"super.users"}
    assert "sasl.jaas.config" in {n for n, e in entries.items() if e.sensitive}


def test_with_dynamic_rules() -> None:
    config = BrokerConfig()
    with pytest.raises(ConfigError, match=r"num\.partitions"):
        config.with_dynamic({"num.partitions": "4"})
    with pytest.raises(ConfigError, match="nope"):
        config.with_dynamic({"nope": "4"})
    with pytest.raises(ConfigError, match=r"message\.max\.bytes"):
        config.with_dynamic({"message.max.bytes": "x"})
    changed = config.with_dynamic({"message.max.bytes": "10"})
    assert changed.message_max_bytes == 10 and config.message_max_bytes == 1048588
    assert changed.with_dynamic({"message.max.bytes": None}).message_max_bytes == 1048588


def test_list_values_cannot_be_mutated_through_get() -> None:
    config = BrokerConfig()
    config.get("log.cleanup.policy").append("compact")
    assert config.log_cleanup_policy == ["delete"]


# ------------------------------------------------------------------ topic configs


def test_topic_configs_known() -> None:
    for name in (
        "cleanup.policy", "segment.bytes", "segment.ms", "retention.ms", "retention.bytes",
        "max.message.bytes", "message.timestamp.type", "index.interval.bytes", "segment.index.bytes",
        "flush.messages", "flush.ms", "min.insync.replicas", "compression.type", "delete.retention.ms",
        "min.compaction.lag.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio",
        "unclean.leader.election.enable", "message.timestamp.after.max.ms", "preallocate",
        "file.delete.delay.ms", "local.retention.ms",
    ):  # fmt: skip
        assert name in TOPIC_CONFIGS
    # Removed in Kafka 4.0 (KIP-937's deprecation), with its broker synonym.
    assert "message.timestamp.difference.max.ms" not in TOPIC_CONFIGS
    assert "log.message.timestamp.difference.max.ms" not in BROKER_CONFIGS
    assert TOPIC_CONFIGS["message.timestamp.after.max.ms"].default == 3_600_000
    for definition in TOPIC_CONFIGS.values():
        for key, _ in definition.synonyms:
            assert key in BROKER_CONFIGS


def test_validate_topic_configs_ok() -> None:
    validate_topic_configs(
        {"cleanup.policy": "compact,delete", "retention.ms": "-1", "segment.bytes": "1024"}
    )
    validate_topic_configs({})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("no.such.config", "1"),
        ("retention.ms", "-2"),
        ("segment.bytes", "abc"),
        ("segment.bytes", "10"),
        ("cleanup.policy", "compact,archive"),
        ("min.cleanable.dirty.ratio", "2"),
        ("preallocate", "maybe"),
        ("message.timestamp.type", "Now"),
        ("min.insync.replicas", "0"),
        ("leader.replication.throttled.replicas", "0-1"),
        ("compression.type", None),
    ],
)
def test_validate_topic_configs_names_key(key: str, value: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        validate_topic_configs({key: value})
    assert key in str(info.value)
    assert info.value.key == key


def test_compaction_lag_conflict() -> None:
    with pytest.raises(ConfigError) as err:
        validate_topic_configs({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})
    # Kafka 4.1.1's words.
    assert str(err.value) == "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"


def test_effective_topic_config_sources() -> None:
    broker = BrokerConfig({"log.retention.minutes": "10", "log.segment.bytes": "4096"})
    effective = effective_topic_config(broker, {"cleanup.policy": "compact"})
    assert set(effective) == set(TOPIC_CONFIGS)
    assert effective["cleanup.policy"] == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # Kafka: a value inherited from a secondary synonym (log.retention.minutes, not the primary
    # log.retention.ms) is reported from DEFAULT_CONFIG, as its synonym list is empty.
    assert effective["retention.ms"] == ("600000", ConfigSource.DEFAULT_CONFIG)
    assert effective["segment.bytes"] == ("4096", ConfigSource.STATIC_BROKER_CONFIG)
    assert effective["segment.ms"] == (str(168 * 3_600_000), ConfigSource.DEFAULT_CONFIG)
    assert effective["max.message.bytes"] == ("1048588", ConfigSource.DEFAULT_CONFIG)
    assert effective["flush.ms"] == (str(2**63 - 1), ConfigSource.DEFAULT_CONFIG)
    assert effective["remote.storage.enable"] == ("false", ConfigSource.DEFAULT_CONFIG)
    with pytest.raises(ConfigError, match="bogus"):
        effective_topic_config(broker, {"bogus": "1"})


def test_effective_topic_config_dynamic_broker_and_values() -> None:
    broker = BrokerConfig().with_dynamic({"log.retention.ms": "-7", "log.roll.ms": "1000"})
    effective = effective_topic_config(broker, {})
    assert effective["retention.ms"] == ("-1", ConfigSource.DYNAMIC_BROKER_CONFIG)
    assert effective["segment.ms"] == ("1000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    values = effective_topic_values(broker, {"preallocate": "true", "cleanup.policy": "compact, delete"})
    assert values["preallocate"] is True
    assert values["cleanup.policy"] == ["compact", "delete"]
    assert values["segment.ms"] == 1000
    assert values["min.cleanable.dirty.ratio"] == 0.5


def test_describe_topic_configs_synonyms() -> None:
    # As Apache Kafka 4.1 answers (checked with kafka-configs against the reference broker):
    # the broker synonyms are listed from the primary one (log.retention.ms) on, so a set
    # log.retention.hours alone shows none of them.
    broker = BrokerConfig({"log.retention.hours": "2", "log.roll.ms": "7200000"})
    entries = {e.name: e for e in describe_topic_configs(broker, {"retention.ms": "5"})}
    retention = entries["retention.ms"]
    assert retention.value == "5" and retention.source is ConfigSource.DYNAMIC_TOPIC_CONFIG
    # As Kafka 4.1.1 answers (checked against it): broker synonyms before the first one naming the
    # primary key (log.retention.ms, unset and without a default here) are dropped.
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("retention.ms", "5", ConfigSource.DYNAMIC_TOPIC_CONFIG),
    ]
    assert not retention.read_only and retention.type is ConfigType.LONG
    inherited = {e.name: e for e in describe_topic_configs(broker, {})}["retention.ms"]
    assert (inherited.value, inherited.source, inherited.synonyms) == ("7200000", ConfigSource.DEFAULT_CONFIG, ())
    cleanup = {e.name: e for e in describe_topic_configs(broker, {})}["cleanup.policy"]
    assert [(s.name, s.source) for s in cleanup.synonyms] == [("log.cleanup.policy", ConfigSource.DEFAULT_CONFIG)]
    segment = entries["segment.ms"]
    assert segment.value == "7200000" and segment.source is ConfigSource.STATIC_BROKER_CONFIG
    assert [(s.name, s.value, s.source) for s in segment.synonyms] == [
        ("log.roll.ms", "7200000", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.roll.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]


def test_describe_topic_configs_synonyms_start_at_the_primary_broker_key() -> None:
    """Nothing set: retention.ms, segment.ms and segment.jitter.ms list no synonyms (Kafka drops
    log.*.hours' defaults because log.*.ms, the primary key, has none); others list their default."""
    entries = {e.name: e for e in describe_topic_configs(BrokerConfig({}), {})}
    for name in ("retention.ms", "segment.ms", "segment.jitter.ms"):
        assert entries[name].synonyms == (), name
        assert entries[name].source is ConfigSource.DEFAULT_CONFIG
    assert entries["retention.ms"].value == "604800000"
    assert [(s.name, s.value) for s in entries["cleanup.policy"].synonyms] == [("log.cleanup.policy", "delete")]
    dynamic = BrokerConfig({"log.retention.hours": "2"}).with_dynamic({"log.retention.ms": "8000000"})
    synonyms = {e.name: e for e in describe_topic_configs(dynamic, {})}["retention.ms"].synonyms
    assert [(s.name, s.source) for s in synonyms] == [
        ("log.retention.ms", ConfigSource.DYNAMIC_BROKER_CONFIG),
        ("log.retention.hours", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", ConfigSource.DEFAULT_CONFIG)]


def test_describe_broker_configs_synonyms_span_the_unit_variants() -> None:
    """log.retention.hours is described with the synonyms of its group from itself on, as Kafka."""
    entries = {e.name: e for e in BrokerConfig({"log.retention.hours": "2", "log.roll.ms": "7200000"}).describe()}
    assert [(s.name, s.value, s.source) for s in entries["log.retention.hours"].synonyms] == [
        ("log.retention.hours", "2", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]
    assert entries["log.retention.ms"].synonyms == ()
    assert [(s.name, s.source) for s in entries["log.roll.ms"].synonyms] == [
        ("log.roll.ms", ConfigSource.STATIC_BROKER_CONFIG), ("log.roll.hours", ConfigSource.DEFAULT_CONFIG)]
    assert [(s.name, s.source) for s in entries["log.roll.hours"].synonyms] == [
        ("log.roll.hours", ConfigSource.DEFAULT_CONFIG)]


def test_describe_topic_configs_synonyms_from_the_primary_key_on() -> None:
    broker = BrokerConfig({"log.retention.ms": "1000", "log.retention.hours": "2"})
    retention = {e.name: e for e in describe_topic_configs(broker, {})}["retention.ms"]
    assert retention.value == "1000" and retention.source is ConfigSource.STATIC_BROKER_CONFIG
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("log.retention.ms", "1000", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "2", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]


# ------------------------------------------------------------------ README stays true


def test_readme_config_table_is_generated_from_definitions() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert update_readme(readme) == readme, "README config table is stale: run `make config-docs`"


def test_typed_settings_name_keys_of_the_table() -> None:
    """Every typed accessor reads a key the table defines, and its default converts."""
    from kbroker.config import BROKER_CONFIGS
    from kbroker.config.broker import Setting

    config = BrokerConfig({})
    settings = {name: v for name, v in vars(BrokerConfig).items() if isinstance(v, Setting)}
    assert settings
    for name, setting in settings.items():
        assert setting.key in BROKER_CONFIGS, name
        getattr(config, name)


def test_node_id_and_broker_id_are_described_alike() -> None:
    # Kafka 4.1.1 (checked against it): with only node.id=1 in server.properties, DescribeConfigs
    # reports broker.id=1 from STATIC_BROKER_CONFIG too; and the other way round.
    def described(config: BrokerConfig) -> dict[str, tuple[str | None, ConfigSource]]:
        return {e.name: (e.value, e.source) for e in config.describe() if e.name in ("node.id", "broker.id")}

    assert described(BrokerConfig({"node.id": "3"})) == {
        "node.id": ("3", ConfigSource.STATIC_BROKER_CONFIG), "broker.id": ("3", ConfigSource.STATIC_BROKER_CONFIG)}
    assert described(BrokerConfig({"broker.id": "4"})) == {
        "node.id": ("4", ConfigSource.STATIC_BROKER_CONFIG), "broker.id": ("4", ConfigSource.STATIC_BROKER_CONFIG)}
    assert described(BrokerConfig({})) == {
        "node.id": ("1", ConfigSource.DEFAULT_CONFIG), "broker.id": (None, ConfigSource.DEFAULT_CONFIG)}


def test_doubles_render_as_java_writes_them() -> None:
    # Kafka's DescribeConfigs shows Double.toString: log.cleaner.io.max.bytes.per.second is Double.MAX_VALUE.
    from kbroker.config.types import java_double

    cases = {1.7976931348623157e308: "1.7976931348623157E308", 0.5: "0.5", 1.0: "1.0", 1e-4: "1.0E-4",
             12345678.0: "1.2345678E7", 1e7: "1.0E7", 9999999.5: "9999999.5", 0.001: "0.001", -2.5e10: "-2.5E10",
             0.0: "0.0", 5e-5: "5.0E-5"}
    assert {v: java_double(v) for v in cases} == cases
    assert BROKER_CONFIGS["log.cleaner.io.max.bytes.per.second"].default_str == "1.7976931348623157E308"


# ------------------------------------------------------------------ security protocols and per-listener keys


def test_kafka_default_protocol_map_names_every_protocol() -> None:
    config = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,"
                                        "SASL_SSL://127.0.0.1:0"})
    assert [config.security_protocol(ls.name) for ls in config.listeners] == [
        "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


def test_protocol_map_refuses_unknown_protocols() -> None:
    with pytest.raises(ConfigError, match="not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"):
        BrokerConfig({"listeners": "A://127.0.0.1:0", "listener.security.protocol.map": "A:TLS"})


def test_listener_prefixed_keys_override_the_broker_wide_ones() -> None:
    config = BrokerConfig({
        "listeners": "INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_SSL",
        "ssl.client.auth": "requested",
        "listener.name.external.ssl.client.auth": "required",
        "sasl.jaas.config": "broker-wide",
        "listener.name.external.plain.sasl.jaas.config": "external plain",
        "listener.name.external.sasl.jaas.config": "external any",
    })
    assert config.listener_get("EXTERNAL", "ssl.client.auth") == "required"
    assert config.listener_get("INTERNAL", "ssl.client.auth") == "requested"
    assert config.listener_get("EXTERNAL", "sasl.jaas.config", "PLAIN") == "external plain"
    assert config.listener_get("EXTERNAL", "sasl.jaas.config", "SCRAM-SHA-256") == "external any"
    assert config.listener_get("INTERNAL", "sasl.jaas.config", "PLAIN") == "broker-wide"


@pytest.mark.parametrize("key,value,reason", [
    ("listener.name.external.log.dirs", "/x", "expected listener.name.<listener>.<key>"),
    ("listener.name.EXTERNAL.ssl.client.auth", "required", "lower-case listener name"),
    ("listener.name.external.ssl.client.auth", "sometimes", "ssl.client.auth"),
])
def test_bad_listener_prefixed_keys_are_refused(key: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason.replace(".", r"\.").replace("<", ".").replace(">", ".")):
        BrokerConfig({key: value})


def test_repr_hides_secrets() -> None:
    config = BrokerConfig({"ssl.key.password": "s3cret", "listener.name.sasl_ssl.plain.sasl.jaas.config":
                           'x required user_admin="s3cret";'})
    assert "s3cret" not in repr(config)
