"""Broker and topic configuration with Kafka's config keys.

``BrokerConfig.load(file, env=..., overrides=...)`` builds the broker config;
``TOPIC_CONFIGS``, ``validate_topic_configs`` and ``effective_topic_config`` cover
topic-level configs. Both report DescribeConfigs-ready entries with sources.
"""

from kbroker.config.broker import (
    ENV_PREFIX,
    BrokerConfig,
    ConfigEntry,
    ConfigSynonym,
    env_var_name,
    generate_cluster_id,
    parse_override,
)
from kbroker.config.broker_keys import BROKER_CONFIGS
from kbroker.config.errors import ConfigError
from kbroker.config.holder import ConfigHolder
from kbroker.config.listeners import Listener
from kbroker.config.properties import load_properties, parse_properties
from kbroker.config.topic import (
    TOPIC_CONFIGS,
    TopicConfigDef,
    TopicConfigValue,
    describe_topic_configs,
    effective_topic_config,
    effective_topic_values,
    validate_topic_configs,
)
from kbroker.config.types import ConfigDef, ConfigSource, ConfigType, UpdateMode

__all__ = [
    "ConfigHolder",
    "BROKER_CONFIGS",
    "ENV_PREFIX",
    "TOPIC_CONFIGS",
    "BrokerConfig",
    "ConfigDef",
    "ConfigEntry",
    "ConfigError",
    "ConfigSource",
    "ConfigSynonym",
    "ConfigType",
    "Listener",
    "TopicConfigDef",
    "TopicConfigValue",
    "UpdateMode",
    "describe_topic_configs",
    "effective_topic_config",
    "effective_topic_values",
    "env_var_name",
    "generate_cluster_id",
    "load_properties",
    "parse_override",
    "parse_properties",
    "validate_topic_configs",
]
