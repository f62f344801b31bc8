"""Topic-level configs: names, types, validation, and their broker-level defaults.

A topic config's value is, in order: the topic's own override
(``DYNAMIC_TOPIC_CONFIG``), else the first explicitly set broker synonym
(``STATIC_BROKER_CONFIG`` / ``DYNAMIC_BROKER_CONFIG``; e.g. ``retention.ms`` <-
``log.retention.ms`` > ``log.retention.minutes`` > ``log.retention.hours``), else
the broker synonym's default or the topic default (``DEFAULT_CONFIG``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kbroker.config.broker import BrokerConfig, ConfigEntry, ConfigSynonym
from kbroker.config.broker_keys import (
    BROKER_CONFIGS,
    CLEANUP_POLICIES,
    COMPRESSION_TYPES,
    LONG_MAX,
    MIN_SEGMENT_BYTES,
    TIMESTAMP_TYPES,
)
from kbroker.config.errors import ConfigError
from kbroker.config.types import (
    ConfigDef,
    ConfigSource,
    ConfigType,
    UpdateMode,
    at_least,
    between,
    each_of,
    one_of,
)

_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000


def _throttled_replicas(value: Any) -> str | None:
    """Validator for ``*.replication.throttled.replicas``: ``*`` or ``partition:broker,...``."""
    items = list(value or ())
    if items == ["*"]:
        return None
    for item in items:
        partition, sep, broker = item.partition(":")
        if not sep or not partition.strip().isdigit() or not broker.strip().isdigit():
            return "must be the literal '*' or a list of replicas in the format [partitionId]:[brokerId],..."
    return None


@dataclass(frozen=True)
class TopicConfigDef(ConfigDef):
    """A topic config: a :class:`ConfigDef` plus its broker synonyms.

    ``synonyms`` are ``(broker key, multiplier)`` pairs, highest precedence first;
    the multiplier turns the broker unit into the topic unit (hours -> ms).
    """

    synonyms: tuple[tuple[str, int], ...] = ()


def _t(
    name: str,
    type_: ConfigType,
    default: Any,
    doc: str,
    validators: tuple[Any, ...] = (),
    *synonyms: tuple[str, int],
) -> TopicConfigDef:
    return TopicConfigDef(
        name, type_, default, doc, validators, UpdateMode.CLUSTER_WIDE, False, tuple(synonyms)
    )


BOOL, STR, INT, LONG, DOUBLE, LIST = (
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)

# fmt: off
_DEFS = (
    _t("cleanup.policy", LIST, ["delete"], "delete and/or compact.", (each_of(*CLEANUP_POLICIES),), ("log.cleanup.policy", 1)),
    _t("compression.type", STR, "producer", "Compression of stored batches.", (one_of(*COMPRESSION_TYPES),), ("compression.type", 1)),
    _t("compression.gzip.level", INT, -1, "gzip compression level.", (between(1, 9, -1),), ("compression.gzip.level", 1)),
    _t("compression.lz4.level", INT, 9, "lz4 compression level.", (between(1, 17),), ("compression.lz4.level", 1)),
    _t("compression.zstd.level", INT, 3, "zstd compression level.", (between(-131072, 22),), ("compression.zstd.level", 1)),
    _t("delete.retention.ms", LONG, 86400000, "How long tombstones are kept in a compacted topic.", (at_least(0),), ("log.cleaner.delete.retention.ms", 1)),
    _t("file.delete.delay.ms", LONG, 60000, "Delay before a deleted segment's files are removed.", (at_least(0),), ("log.segment.delete.delay.ms", 1)),
    _t("flush.messages", LONG, LONG_MAX, "Records appended before a forced fsync.", (at_least(1),), ("log.flush.interval.messages", 1)),
    _t("flush.ms", LONG, LONG_MAX, "Milliseconds before a forced fsync.", (at_least(0),), ("log.flush.interval.ms", 1)),
    _t("follower.replication.throttled.replicas", LIST, [], "Throttled follower replicas.", (_throttled_replicas,)),
    _t("index.interval.bytes", INT, 4096, "Bytes between offset-index entries.", (at_least(0),), ("log.index.interval.bytes", 1)),
    _t("leader.replication.throttled.replicas", LIST, [], "Throttled leader replicas.", (_throttled_replicas,)),
    _t("local.retention.bytes", LONG, -2, "Local retention size for tiered storage.", (at_least(-2),), ("log.local.retention.bytes", 1)),
    _t("local.retention.ms", LONG, -2, "Local retention time for tiered storage.", (at_least(-2),), ("log.local.retention.ms", 1)),
    _t("max.compaction.lag.ms", LONG, LONG_MAX, "Maximum time a record stays uncompacted.", (at_least(1),), ("log.cleaner.max.compaction.lag.ms", 1)),
    _t("max.message.bytes", INT, 1048588, "Largest record batch size allowed.", (at_least(0),), ("message.max.bytes", 1)),
    _t("message.timestamp.after.max.ms", LONG, _HOUR_MS, "How far a CreateTime timestamp may lie in the future.", (at_least(0),), ("log.message.timestamp.after.max.ms", 1)),
    _t("message.timestamp.before.max.ms", LONG, LONG_MAX, "How far a CreateTime timestamp may lie in the past.", (at_least(0),), ("log.message.timestamp.before.max.ms", 1)),
    _t("message.timestamp.type", STR, "CreateTime", "CreateTime or LogAppendTime.", (one_of(*TIMESTAMP_TYPES),), ("log.message.timestamp.type", 1)),
    _t("min.cleanable.dirty.ratio", DOUBLE, 0.5, "Dirty ratio at which the log is compacted.", (between(0, 1),), ("log.cleaner.min.cleanable.ratio", 1)),
    _t("min.compaction.lag.ms", LONG, 0, "Minimum time a record stays uncompacted.", (at_least(0),), ("log.cleaner.min.compaction.lag.ms", 1)),
    _t("min.insync.replicas", INT, 1, "Minimum in-sync replicas for acks=all.", (at_least(1),), ("min.insync.replicas", 1)),
    _t("preallocate", BOOL, False, "Preallocate segment files.", (), ("log.preallocate", 1)),
    _t("remote.storage.enable", BOOL, False, "Tiered storage for this topic.", ()),
    _t("retention.bytes", LONG, -1, "Partition size above which old segments are deleted; -1 is unlimited.", (), ("log.retention.bytes", 1)),
    _t("retention.ms", LONG, 604800000, "Time to keep a segment; -1 keeps forever.", (at_least(-1),), ("log.retention.ms", 1), ("log.retention.minutes", _MINUTE_MS), ("log.retention.hours", _HOUR_MS)),
    _t("segment.bytes", INT, 1073741824, "Size at which a segment is rolled.", (at_least(MIN_SEGMENT_BYTES),), ("log.segment.bytes", 1)),
    _t("segment.index.bytes", INT, 10485760, "Maximum size of an offset index file.", (at_least(4),), ("log.index.size.max.bytes", 1)),
    _t("segment.jitter.ms", LONG, 0, "Maximum random jitter subtracted from segment.ms.", (at_least(0),), ("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", _HOUR_MS)),
    _t("segment.ms", LONG, 604800000, "Time after which a segment is rolled.", (at_least(1),), ("log.roll.ms", 1), ("log.roll.hours", _HOUR_MS)),
    _t("unclean.leader.election.enable", BOOL, False, "Allow an out-of-sync replica to become leader.", (), ("unclean.leader.election.enable", 1)),
)
# fmt: on

#: Every topic config kbroker accepts, by name (alphabetical).
TOPIC_CONFIGS: dict[str, TopicConfigDef] = {d.name: d for d in _DEFS}


class TopicConfigValue(NamedTuple):
    """A topic config's effective value (as a string, None for null) and its source."""

    value: str | None
    source: ConfigSource


def _parse_overrides(configs: Mapping[str, str | None]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, raw in configs.items():
        definition = TOPIC_CONFIGS.get(key)
        if definition is None:
            raise ConfigError(f"Unknown topic config name: {key}", key)
        if raw is None:
            raise ConfigError(f"Null value not supported for topic config: {key}", key)
        parsed[key] = definition.parse(raw)
    low, high = parsed.get("min.compaction.lag.ms"), parsed.get("max.compaction.lag.ms")
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"conflict topic config setting min.compaction.lag.ms ({low}) > max.compaction.lag.ms ({high})",
            "max.compaction.lag.ms",
        )
    return parsed


def validate_topic_configs(configs: Mapping[str, str | None]) -> None:
    """Check topic config overrides (CreateTopics / AlterConfigs).

    Raises :class:`ConfigError` naming the key for an unknown name, a null or bad
    value, or conflicting compaction lags — Kafka answers these with INVALID_CONFIG.
    """
    _parse_overrides(configs)


def _broker_default(
    definition: TopicConfigDef, broker: BrokerConfig
) -> tuple[Any, ConfigSource, list[ConfigSynonym]]:
    """The value a topic inherits from the broker, its source, and the broker synonyms."""
    chosen: tuple[Any, ConfigSource] | None = None
    for key, factor in definition.synonyms:
        if broker.is_set(key) and chosen is None:
            value = broker.get(key)
            chosen = (value * factor if factor != 1 else value, broker.source(key))
    for key, factor in definition.synonyms:
        default = BROKER_CONFIGS[key].default
        if default is not None and chosen is None:
            chosen = (default * factor if factor != 1 else default, ConfigSource.DEFAULT_CONFIG)
    keys = [key for key, _ in definition.synonyms]
    # As Kafka (ConfigHelper.configSynonyms): synonyms before the first one naming the primary
    # broker key (keys[0]) are dropped, so retention.ms, whose log.retention.ms has no default,
    # lists log.retention.hours only when log.retention.ms itself is set somewhere.
    synonyms = broker.synonyms(keys[0], keys) if keys else []
    if chosen is None:
        chosen = (definition.default, ConfigSource.DEFAULT_CONFIG)
    value, source = chosen
    # Kafka names the source of an inherited value after the first synonym left, else DEFAULT_CONFIG
    # (log.retention.hours=2 alone gives retention.ms 7200000 from DEFAULT_CONFIG, no synonyms).
    source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
    if definition.name == "retention.ms" and value is not None and value < 0:
        value = -1  # any negative broker retention means "forever", as in Kafka
    return value, source, synonyms


def _resolve(
    broker: BrokerConfig, overrides: Mapping[str, str | None]
) -> dict[str, tuple[Any, ConfigSource, list[ConfigSynonym]]]:
    parsed = _parse_overrides(overrides)
    out: dict[str, tuple[Any, ConfigSource, list[ConfigSynonym]]] = {}
    for name, definition in TOPIC_CONFIGS.items():
        value, source, synonyms = _broker_default(definition, broker)
        if name in parsed:
            value, source = parsed[name], ConfigSource.DYNAMIC_TOPIC_CONFIG
            synonyms.insert(0, ConfigSynonym(name, definition.render(value), source))
        out[name] = (value, source, synonyms)
    return out


def effective_topic_config(
    broker_config: BrokerConfig, overrides: Mapping[str, str | None]
) -> dict[str, TopicConfigValue]:
    """Every topic config's effective value (rendered as a string) and source.

    Raises :class:`ConfigError` when ``overrides`` do not validate.
    """
    return {
        name: TopicConfigValue(TOPIC_CONFIGS[name].render(value), source)
        for name, (value, source, _) in _resolve(broker_config, overrides).items()
    }


def effective_topic_values(
    broker_config: BrokerConfig, overrides: Mapping[str, str | None]
) -> dict[str, Any]:
    """Every topic config's effective value, parsed (ints, bools, lists, floats)."""
    return {name: value for name, (value, _, _) in _resolve(broker_config, overrides).items()}


def describe_topic_configs(
    broker_config: BrokerConfig, overrides: Mapping[str, str | None]
) -> list[ConfigEntry]:
    """Topic configs as DescribeConfigs reports them, with synonyms (highest first)."""
    entries = []
    for name, (value, source, synonyms) in _resolve(broker_config, overrides).items():
        definition = TOPIC_CONFIGS[name]
        entries.append(
            ConfigEntry(
                name=name,
                value=definition.render(value),
                source=source,
                read_only=False,
                sensitive=definition.sensitive,
                type=definition.type,
                doc=definition.doc,
                synonyms=tuple(synonyms),
            )
        )
    return entries
