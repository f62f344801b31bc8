"""Turn the broker config plus a topic's overrides into the storage layer's LogConfig."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kbroker.log.config import LogConfig

if TYPE_CHECKING:
    from kbroker.config import BrokerConfig

#: The topic configs the storage layer acts on; the rest only matter to DescribeConfigs.
LOG_CONFIG_KEYS = (
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "segment.index.bytes",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "file.delete.delay.ms",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "segment.jitter.ms",
)


def log_config_for(broker_config: BrokerConfig, topic_overrides: Mapping[str, str | None]) -> LogConfig:
    """The LogConfig of a topic: its overrides, else the broker's ``log.*`` synonyms, else defaults.

    Raises ``kbroker.config.ConfigError`` for overrides that do not validate and
    ``ValueError`` for values LogConfig itself rejects.
    """
    from kbroker.config import TOPIC_CONFIGS, effective_topic_config

    # A stored override of a key this release no longer has (Kafka 4 removed
    # message.timestamp.difference.max.ms) is ignored, as Kafka's LogConfig ignores it.
    topic_overrides = {k: v for k, v in topic_overrides.items() if k in TOPIC_CONFIGS}
    # effective_topic_config resolves the synonym chains (e.g. retention.ms <-
    # log.retention.ms / .minutes / .hours) so the mapping here stays one-to-one.
    effective = effective_topic_config(broker_config, topic_overrides)
    props: dict[str, str] = {}
    for key in LOG_CONFIG_KEYS:
        value = effective[key].value
        if value is not None:
            props[key] = value
    return LogConfig().with_overrides(props)
