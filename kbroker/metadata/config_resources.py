"""Config resources as DescribeConfigs, AlterConfigs and IncrementalAlterConfigs name them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    BrokerConfig,
    ConfigError,
    ConfigHolder,
    ConfigSource,
    ConfigType,
)
from kbroker.config.broker import fixed_listener_key
from kbroker.config.topic import effective_topic_config
from kbroker.metadata.errors import OK, Result
from kbroker.metadata.log_config import log_config_for

if TYPE_CHECKING:
    from kbroker.metadata.manager import MetadataManager


@dataclass(frozen=True)
class ConfigScope:
    """What describing and altering configs needs: this node's id, the broker config holder
    (a dynamic change replaces its config) and the topics."""

    node_id: int
    configs: ConfigHolder
    metadata: MetadataManager

    @property
    def config(self) -> BrokerConfig:
        return self.configs.current

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3

#: log4j level names clients send, as Python logging levels.
_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "OFF": logging.CRITICAL + 10}


class ConfigOp(NamedTuple):
    """One requested change: AlterConfigs sends only SETs (a null value removes the key)."""

    name: str
    op: int
    value: str | None


def check_broker_name(broker: ConfigScope, name: str, *, allow_default: bool) -> Result:
    """A broker resource names this node's id (or, where allowed, "" for the cluster default)."""
    if name == "" and allow_default:
        return OK
    try:
        node = int(name)
    except ValueError:
        return ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {name}"
    if node != broker.node_id:
        return (ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {broker.node_id} or empty string, but received {name}")
    return OK


async def alter_resource(broker: ConfigScope, rtype: int, name: str, ops: Sequence[ConfigOp], *,
                         incremental: bool, validate_only: bool) -> Result:
    """Apply config changes to one resource; nothing changes unless all of them are valid."""
    names = [o.name for o in ops]
    if len(names) != len(set(names)):
        return ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys"
    if rtype == TOPIC:
        return await _alter_topic(broker, name, ops, incremental, validate_only)
    if rtype == BROKER:
        return await _alter_broker(broker, name, ops, incremental, validate_only)
    if rtype == BROKER_LOGGER and incremental:
        return _alter_loggers(broker, name, ops, validate_only)
    return ErrorCode.INVALID_REQUEST, f"Unsupported resource type {rtype}"


def _list_op(current: str | None, op: ConfigOp) -> str:
    items = [i for i in (current or "").split(",") if i]
    values = [v for v in (op.value or "").split(",") if v]
    if op.op == APPEND:
        items += [v for v in values if v not in items]
    else:
        items = [i for i in items if i not in values]
    return ",".join(items)


async def _alter_topic(broker: ConfigScope, name: str, ops: Sequence[ConfigOp], incremental: bool,
                       validate_only: bool) -> Result:
    topic = broker.metadata.topic(name)
    if topic is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist."
    effective = effective_topic_config(broker.config, topic.configs)
    updates: dict[str, str | None] = {}
    for o in ops:
        if o.op in (APPEND, SUBTRACT):
            definition = TOPIC_CONFIGS.get(o.name)
            if definition is None or definition.type != ConfigType.LIST:
                # Kafka's controller's text (a broker resource gets its broker's older one, below).
                verb = "APPEND" if o.op == APPEND else "SUBTRACT"
                return ErrorCode.INVALID_CONFIG, f"Can't {verb} to key {o.name} because its type is not LIST."
            updates[o.name] = _list_op(effective[o.name].value, o)
        elif o.op == DELETE:
            updates[o.name] = None
        elif o.op == SET:
            if o.value is None and incremental:
                return ErrorCode.INVALID_REQUEST, f"Null value not supported for: {o.name}"
            updates[o.name] = o.value
        else:
            return ErrorCode.INVALID_REQUEST, f"Unknown config operation {o.op}"
    if not incremental:
        updates = {k: v for k, v in updates.items() if v is not None}
    return await broker.metadata.alter_topic_configs_async(name, updates, incremental=incremental,
                                                           validate_only=validate_only)


async def _alter_broker(broker: ConfigScope, name: str, ops: Sequence[ConfigOp], incremental: bool,
                        validate_only: bool) -> Result:
    """A broker resource's dynamic configs: this broker's own (its id) or the cluster-wide defaults
    (""). On a single broker both are this broker's, kept in a local file; in a cluster they are
    kept in etcd and every broker concerned applies them."""
    checked = check_broker_name(broker, name, allow_default=True)
    if checked != OK:
        return checked
    config = broker.config
    fixed = sorted({o.name for o in ops
                    if ((d := BROKER_CONFIGS.get(o.name)) is not None and d.read_only) or fixed_listener_key(o.name)})
    if fixed:
        # Kafka refuses the whole change (its ConfigException becomes INVALID_REQUEST).
        # Kafka's message names a Scala Set: "Set(a, b)".
        return ErrorCode.INVALID_REQUEST, f"Cannot update these configs dynamically: Set({', '.join(fixed)})"
    clustered = broker.metadata.clustered
    # In a cluster, "" names the cluster-wide defaults, a layer of their own.
    target = None if name == "" else broker.node_id
    updates: dict[str, str | None] = {}
    if not incremental:
        # AlterConfigs replaces the whole dynamic set: what it does not name is removed.
        if clustered:
            updates = dict.fromkeys(broker.metadata.dynamic_broker_configs(target))
        else:
            updates = {e.name: None for e in config.describe() if e.source == ConfigSource.DYNAMIC_BROKER_CONFIG}
    for o in ops:
        if o.op in (APPEND, SUBTRACT):
            definition = BROKER_CONFIGS.get(o.name)
            if definition is None or definition.type != ConfigType.LIST:
                return ErrorCode.INVALID_CONFIG, f"Config value append is not allowed for config key: {o.name}"
            current = config.get(o.name)
            updates[o.name] = _list_op(",".join(current) if isinstance(current, list) else current, o)
        elif o.op == DELETE:
            updates[o.name] = None
        else:
            updates[o.name] = o.value
    try:
        new = config.with_dynamic(updates, default=clustered and target is None)
        # The storage defaults every open log takes from it must hold too, before anything is saved.
        log_config_for(new, {})
    except (ConfigError, ValueError) as e:
        return ErrorCode.INVALID_CONFIG, str(e)
    refused = _check_cleaner(config, new)
    if refused is not None:
        return ErrorCode.INVALID_REQUEST, refused  # Kafka's ConfigException from its reconfiguration check
    if validate_only:
        return OK
    if clustered:
        return await broker.metadata.alter_dynamic_broker_configs(target, updates)
    try:
        broker.metadata.save_dynamic_config(new)
    except OSError as e:
        return ErrorCode.KAFKA_STORAGE_ERROR, f"Cannot persist the broker configs: {e}"
    broker.configs.replace(new)  # subscribers (open logs, the replica manager) apply it
    return OK


#: The keys Kafka's LogCleaner reconfigures: changing any of them runs its thread-count check.
_CLEANER_RECONFIGURABLE = ("log.cleaner.threads", "log.cleaner.dedupe.buffer.size", "log.cleaner.io.buffer.load.factor",
                           "log.cleaner.io.buffer.size", "message.max.bytes", "log.cleaner.io.max.bytes.per.second",
                           "log.cleaner.backoff.ms")


def _check_cleaner(old: BrokerConfig, new: BrokerConfig) -> str | None:
    """Kafka's checks of a dynamic change to the cleaner's settings; None if it passes, else
    Kafka's message. Its KafkaConfig requires at least 1 MiB of dedupe buffer per cleaner thread
    (a smaller map holds too few keys, or none: every pass would fail); its
    ``LogCleaner.validateReconfiguration`` wants at least 1 thread and at most double or half
    the current count (so one request cannot make the broker start thousands of threads)."""
    if all(old.get(k) == new.get(k) for k in _CLEANER_RECONFIGURABLE):
        return None
    threads, current = int(new.get("log.cleaner.threads")), int(old.get("log.cleaner.threads"))
    if threads < 1:
        reason = "Log cleaner threads should be at least 1"  # Kafka: "/ by zero", from the next check
    elif int(new.get("log.cleaner.dedupe.buffer.size")) // threads <= 1024 * 1024:
        return "requirement failed: log.cleaner.dedupe.buffer.size must be at least 1MB per cleaner thread."
    elif threads < current // 2:
        reason = f"Log cleaner threads cannot be reduced to less than half the current value {current}"
    elif threads > current * 2:
        reason = f"Log cleaner threads cannot be increased to more than double the current value {current}"
    else:
        return None
    # Kafka wraps it in ConfigException("Invalid dynamic configuration", e), whose text is this.
    return (f"Invalid value org.apache.kafka.common.config.ConfigException: {reason} for configuration "
            "Invalid dynamic configuration")


def _alter_loggers(broker: ConfigScope, name: str, ops: Sequence[ConfigOp], validate_only: bool) -> Result:
    checked = check_broker_name(broker, name, allow_default=False)
    if checked != OK:
        return checked
    changes: list[tuple[logging.Logger, int]] = []
    for o in ops:
        logger = logging.root if o.name == "root" else logging.getLogger(o.name)
        if o.op == SET:
            level = _LEVELS.get((o.value or "").upper())
            if level is None:
                return ErrorCode.INVALID_CONFIG, f"Cannot set the log level of {o.name} to {o.value}"
            changes.append((logger, level))
        elif o.op == DELETE:
            if o.name == "root":
                return ErrorCode.INVALID_REQUEST, "Removing the log level of the root logger is not allowed"
            changes.append((logger, logging.NOTSET))
        else:
            return ErrorCode.INVALID_REQUEST, f"{o.name}: APPEND and SUBTRACT do not apply to log levels"
    if not validate_only:
        for logger, level in changes:
            logger.setLevel(level)
    return OK
