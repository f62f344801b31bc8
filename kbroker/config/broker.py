"""``BrokerConfig``: the broker's configuration, layered and typed.

Layers, lowest to highest precedence: built-in defaults, a ``server.properties``
file, ``KBROKER_<KEY>`` environment variables (dots become underscores, upper
case: ``log.dirs`` -> ``KBROKER_LOG_DIRS``), ``--override key=value`` pairs, and
finally dynamic updates made at runtime (:meth:`BrokerConfig.with_dynamic`).
File, environment and overrides all count as ``STATIC_BROKER_CONFIG``.
"""

from __future__ import annotations

import base64
import difflib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from kbroker.config.broker_keys import BROKER_CONFIGS, SECURITY_PROTOCOLS
from kbroker.config.errors import ConfigError
from kbroker.config.listeners import (
    Listener,
    check_distinct_ports,
    parse_listener_list,
    parse_protocol_map,
)
from kbroker.config.properties import load_properties
from kbroker.config.types import ConfigDef, ConfigSource, ConfigType

T = TypeVar("T")
log = logging.getLogger("kbroker.config")

ENV_PREFIX = "KBROKER_"
#: Variables with the prefix that are not broker configs (the client commands' default
#: bootstrap servers, the test kit's external Kafka): not warned about as unknown keys.
NOT_CONFIG_ENV = frozenset({"KBROKER_BOOTSTRAP", "KBROKER_TEST_BOOTSTRAP"})
_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 3_600_000
#: Wildcard addresses: a listener may bind them, clients cannot connect to them.
_ALL_INTERFACES = ("0.0.0.0", "::")

#: Broker keys that set the same thing in different units (Kafka's ServerTopicConfigSynonyms),
#: highest precedence first; each one's DescribeConfigs synonyms come from its whole group.
_SYNONYM_GROUPS = (
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
)
_BROKER_SYNONYMS = {
    key: tuple(k for k in group if k in BROKER_CONFIGS) for group in _SYNONYM_GROUPS for key in group
    if key in BROKER_CONFIGS
}


#: Keys that start so set another key for one listener (``listener.name.sasl_ssl.ssl.client.auth``).
LISTENER_PREFIX = "listener.name."
#: Keys that may be set per listener, besides every ``ssl.*`` and ``sasl.*`` key.
_PER_LISTENER_KEYS = frozenset({"max.connections", "max.connection.creation.rate", "connections.max.reauth.ms",
                                "connection.failed.authentication.delay.ms", "principal.builder.class"})
#: Per-listener keys that can change at runtime.
_DYNAMIC_PER_LISTENER_KEYS = frozenset({"max.connections", "max.connection.creation.rate"})
_LISTENER_KEY = re.compile(r"^listener\.name\.(?P<listener>[a-z0-9_]+)\.(?:(?P<mech>[a-z0-9-]+)\.(?=sasl\.|connections\.max\.reauth\.ms$))?(?P<key>.+)$")


def fixed_listener_key(key: str) -> bool:
    """Whether ``key`` is a valid per-listener key this broker cannot change at runtime (all but
    the connection limits): Kafka refuses those it cannot reconfigure with INVALID_REQUEST."""
    match = _LISTENER_KEY.match(key)
    if match is None:
        return False
    try:
        definition = listener_key_def(key)
    except ConfigError:
        return False
    return definition.name not in _DYNAMIC_PER_LISTENER_KEYS


def listener_key_def(key: str) -> ConfigDef:
    """The definition a ``listener.name.<listener>.[<mechanism>.]<key>`` key is parsed with;
    raises :class:`ConfigError` when ``<key>`` cannot be set per listener."""
    match = _LISTENER_KEY.match(key)
    base = match["key"] if match else ""
    definition = BROKER_CONFIGS.get(base)
    if (match is None or definition is None
            or not (base.startswith(("ssl.", "sasl.")) or base in _PER_LISTENER_KEYS)):
        raise ConfigError(
            f"Invalid configuration {key}: expected listener.name.<listener>.<key> with a lower-case listener "
            "name and an ssl.*, sasl.* or connection key (listener.name.<listener>.<mechanism>.sasl.* or "
            "listener.name.<listener>.<mechanism>.connections.max.reauth.ms for one SASL mechanism)",
            key,
        )
    return definition


def env_var_name(key: str) -> str:
    """The environment variable that sets ``key``: ``log.dirs`` -> ``KBROKER_LOG_DIRS``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


_ENV_TO_KEY = {env_var_name(key): key for key in BROKER_CONFIGS}


def parse_override(text: str) -> tuple[str, str]:
    """Split one ``key=value`` override; raise :class:`ConfigError` if it has no ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--override expects key=value, got {text!r}")
    return key.strip(), value


def did_you_mean(name: str, known: Iterable[str] = BROKER_CONFIGS) -> str:
    """``; did you mean 'x'?`` naming the known name closest to ``name``, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def generate_cluster_id() -> str:
    """A new Kafka-style cluster id: a random UUID, base64url without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ConfigSynonym:
    """One layer's value of a config, for DescribeConfigs' synonyms."""

    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True)
class ConfigEntry:
    """One config as DescribeConfigs reports it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    sensitive: bool
    type: ConfigType
    doc: str
    synonyms: tuple[ConfigSynonym, ...] = ()


#: Keys that name the same id; see BrokerConfig._entry.
_ID_ALIASES = {"broker.id": "node.id", "node.id": "broker.id"}


@dataclass(frozen=True)
class _Setting:
    raw: str
    value: Any
    origin: str


class Setting(Generic[T]):
    """A typed read-only attribute for one config key: ``conv(config.get(key))``."""

    def __init__(self, key: str, conv: Callable[[Any], T]) -> None:
        self.key = key
        self._conv = conv

    @overload
    def __get__(self, obj: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, obj: BrokerConfig, owner: type) -> T: ...
    def __get__(self, obj: BrokerConfig | None, owner: type) -> T | Setting[T]:
        if obj is None:
            return self
        return self._conv(obj.get(self.key))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


class BrokerConfig:
    """The broker's configuration. Immutable; build with :meth:`load` or the constructor.

    ``BrokerConfig({"log.dirs": "/tmp/x"})`` treats the mapping as static broker
    config (as if read from ``server.properties``) and ignores the environment.
    """

    def __init__(self, props: Mapping[str, str] | None = None) -> None:
        self._static: dict[str, _Setting] = {}
        self._dynamic: dict[str, _Setting] = {}
        #: Cluster-wide dynamic defaults (below this broker's own dynamic configs).
        self._dynamic_default: dict[str, _Setting] = {}
        self._unknown: dict[str, str] = {}
        self._per_listener: dict[str, _Setting] = {}
        self._dynamic_listener: dict[str, _Setting] = {}
        if props:
            self._add_layer(props.items(), lambda key: "config")
        self._finish()

    # ----------------------------------------------------------------- building

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Iterable[str] | Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Build from defaults < ``config_file`` < environment < ``overrides``.

        ``env`` defaults to ``os.environ``; ``overrides`` is ``key=value`` strings or a mapping.
        """
        self = cls.__new__(cls)
        self._static, self._dynamic, self._unknown, self._per_listener = {}, {}, {}, {}
        self._dynamic_listener, self._dynamic_default = {}, {}
        if config_file is not None:
            path = str(config_file)
            self._add_layer(load_properties(config_file).items(), lambda key: path)
        environ = os.environ if env is None else env
        env_pairs: list[tuple[str, str]] = []
        for name in sorted(environ):
            if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_ENV:
                continue
            key = _ENV_TO_KEY.get(name)
            if key is None:
                log.warning("Unknown broker config environment variable %s is ignored%s", name,
                            did_you_mean(name, _ENV_TO_KEY))
                continue
            env_pairs.append((key, environ[name]))
        self._add_layer(env_pairs, _env_origin)
        if overrides is not None:
            pairs = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
            self._add_layer(pairs, lambda key: f"--override {key}")
        self._finish()
        return self

    @classmethod
    def from_sources(
        cls,
        config_file: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Iterable[str] | Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Same as :meth:`load`, with the environment passed as ``environ``."""
        return cls.load(config_file, env=environ, overrides=overrides)

    def with_dynamic(self, updates: Mapping[str, str | None], *, default: bool = False) -> BrokerConfig:
        """A copy with dynamic broker configs set (``None`` removes one); with ``default``, in the
        layer of the cluster-wide dynamic defaults (which this broker's own dynamic configs override).

        Raises :class:`ConfigError` for unknown or read-only keys and bad values.
        """
        new = type(self).__new__(type(self))
        new._static, new._dynamic, new._unknown = dict(self._static), dict(self._dynamic), dict(self._unknown)
        new._per_listener = dict(self._per_listener)
        new._dynamic_listener = dict(self._dynamic_listener)
        new._dynamic_default = dict(self._dynamic_default)
        for key, raw in updates.items():
            layer = new._dynamic_default if default else new._dynamic
            if key.startswith(LISTENER_PREFIX) and _LISTENER_KEY.match(key) is not None:
                # A listener's connection limits change at runtime, as Kafka's ListenerReconfigurable.
                definition = listener_key_def(key)
                if definition.name not in _DYNAMIC_PER_LISTENER_KEYS:
                    raise ConfigError(f"Cannot update these configs dynamically: {key}", key)
                layer = new._dynamic_listener
            else:
                found = BROKER_CONFIGS.get(key)
                if found is None:
                    raise ConfigError(f"Unknown broker config: {key}{did_you_mean(key)}", key)
                if found.read_only:
                    raise ConfigError(f"Cannot update these configs dynamically: {key}", key)
                definition = found
            if raw is None:
                layer.pop(key, None)
            else:
                origin = "dynamic default broker config" if default else "dynamic broker config"
                layer[key] = _Setting(raw, definition.parse(raw, origin), origin)
        new._finish()
        return new

    def dynamic_values(self, *, default: bool = False) -> dict[str, str]:
        """The dynamic broker configs in force, as their raw strings (what is persisted); with
        ``default``, the cluster-wide dynamic defaults."""
        if default:
            return {key: s.raw for key, s in self._dynamic_default.items()}
        return {key: s.raw for key, s in (self._dynamic | self._dynamic_listener).items()}

    def _add_layer(self, pairs: Iterable[tuple[str, str]], origin_of: Callable[[str], str]) -> None:
        for key, raw in pairs:
            origin = origin_of(key)
            if key.startswith(LISTENER_PREFIX):
                self._per_listener[key] = _Setting(raw, listener_key_def(key).parse(raw, origin), origin)
                continue
            definition = BROKER_CONFIGS.get(key)
            if definition is None:
                log.warning("Unknown broker config %r (from %s) is ignored%s", key, origin, did_you_mean(key))
                self._unknown[key] = raw
                continue
            self._static[key] = _Setting(raw, definition.parse(raw, origin), origin)

    def _finish(self) -> None:
        """Cross-key checks and derived values."""
        node_id, broker_id = self._setting("node.id"), self._setting("broker.id")
        if node_id is not None and broker_id is not None and node_id.value != broker_id.value:
            raise ConfigError(
                f"broker.id ({broker_id.value}) and node.id ({node_id.value}) must be equal when both are set",
                "broker.id",
            )
        chosen = node_id if node_id is not None else broker_id
        self._node_id: int = chosen.value if chosen is not None else BROKER_CONFIGS["node.id"].default
        self._retention_ms = self._compute_retention_ms()
        self._listeners, self._advertised = self._compute_listeners()

    def _compute_retention_ms(self) -> int:
        for key, factor in (("log.retention.ms", 1), ("log.retention.minutes", _MS_PER_MINUTE)):
            setting = self._setting(key)
            if setting is not None:
                millis = int(setting.value) * factor
                break
        else:
            key, millis = "log.retention.hours", int(self.get("log.retention.hours")) * _MS_PER_HOUR
        if millis == 0:
            raise ConfigError(f"{key} must be unlimited (-1) or greater than 0", key)
        return -1 if millis < 0 else millis

    def _compute_listeners(self) -> tuple[list[Listener], list[Listener]]:
        listeners = parse_listener_list("listeners", self.get("listeners"))
        check_distinct_ports("listeners", listeners)
        protocols = parse_protocol_map(
            "listener.security.protocol.map", self.get("listener.security.protocol.map")
        )
        for name, mapped in protocols.items():
            if mapped not in SECURITY_PROTOCOLS:
                raise ConfigError(
                    f"Invalid value for configuration listener.security.protocol.map: {name} maps to "
                    f"{mapped}, which is not one of {', '.join(SECURITY_PROTOCOLS)}",
                    "listener.security.protocol.map",
                )
        self._protocols = protocols
        for listener in listeners:
            protocol = protocols.get(listener.name)
            if protocol is None:
                raise ConfigError(
                    f"Invalid value for configuration listeners: listener {listener.name} has no entry "
                    "in listener.security.protocol.map",
                    "listeners",
                )
        raw_advertised = self.get("advertised.listeners")
        advertised = [] if raw_advertised is None else parse_listener_list("advertised.listeners", raw_advertised)
        names = {listener.name for listener in listeners}
        for listener in advertised:
            if listener.name not in names:
                raise ConfigError(
                    f"Invalid value for configuration advertised.listeners: {listener.name} is not "
                    "a listener name in listeners",
                    "advertised.listeners",
                )
            if listener.host in _ALL_INTERFACES:
                raise ConfigError(
                    "Invalid value for configuration advertised.listeners: cannot advertise the "
                    f"non-routable address {listener.host}",
                    "advertised.listeners",
                )
        # As Kafka: a listener advertises itself unless advertised.listeners names it, and
        # clients cannot connect to a wildcard address (an empty host advertises the host name).
        named = {listener.name for listener in advertised if listener.host}
        for listener in listeners:
            if listener.host in _ALL_INTERFACES and listener.name not in named:
                raise ConfigError(
                    f"Invalid value for configuration listeners: {listener} cannot be advertised to "
                    f"clients (non-routable address {listener.host}); set advertised.listeners for "
                    f"{listener.name}, or leave the host empty ({listener.name}://:{listener.port}) "
                    "to advertise this machine's host name",
                    "listeners",
                )
        return listeners, advertised if raw_advertised is not None else list(listeners)

    # ----------------------------------------------------------------- generic access

    def _setting(self, key: str) -> _Setting | None:
        return self._dynamic.get(key) or self._dynamic_default.get(key) or self._static.get(key)

    def get(self, key: str) -> Any:
        """The effective parsed value of a recognised key (its default when unset)."""
        setting = self._setting(key)
        if setting is not None:
            value = setting.value
        elif key in BROKER_CONFIGS:
            value = BROKER_CONFIGS[key].default
        else:
            raise ConfigError(f"Unknown broker config: {key}", key)
        return list(value) if isinstance(value, list) else value  # callers may not mutate ours

    def is_set(self, key: str) -> bool:
        """True when ``key`` was given explicitly (in any layer), not defaulted."""
        return self._setting(key) is not None

    def source(self, key: str) -> ConfigSource:
        """Where the effective value of ``key`` comes from."""
        if key in self._dynamic:
            return ConfigSource.DYNAMIC_BROKER_CONFIG
        if key in self._dynamic_default:
            return ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
        if key in self._static:
            return ConfigSource.STATIC_BROKER_CONFIG
        return ConfigSource.DEFAULT_CONFIG

    def originals(self) -> dict[str, str]:
        """The raw strings of every explicitly set recognised key, dynamic over static."""
        merged = {key: s.raw for key, s in self._static.items()}
        merged.update((key, s.raw) for key, s in self._dynamic_default.items())
        merged.update((key, s.raw) for key, s in self._dynamic.items())
        return merged

    @property
    def unknown(self) -> dict[str, str]:
        """Unrecognised keys that were given (and ignored), with their raw values."""
        return dict(self._unknown)

    def describe(self) -> list[ConfigEntry]:
        """Every recognised key as DescribeConfigs reports it, with its synonyms."""
        return [self._entry(definition) for definition in BROKER_CONFIGS.values()]

    def synonyms(self, name: str, keys: Sequence[str]) -> list[ConfigSynonym]:
        """DescribeConfigs' synonyms of ``name`` among the broker keys ``keys`` (highest precedence first).

        As Kafka (ConfigHelper.configSynonyms): every key's dynamic value, then every key's
        static value, then every key's non-null default; then the entries before the first
        one named ``name`` are dropped. So ``retention.ms`` (name ``log.retention.ms``) with
        nothing set has no synonyms at all, not ``log.retention.hours``' default.
        """
        out: list[ConfigSynonym] = []
        for layer, source in (
            (self._dynamic, ConfigSource.DYNAMIC_BROKER_CONFIG),
            (self._dynamic_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
            (self._static, ConfigSource.STATIC_BROKER_CONFIG),
        ):
            out += [ConfigSynonym(k, BROKER_CONFIGS[k].render(layer[k].value), source) for k in keys if k in layer]
        out += [ConfigSynonym(k, BROKER_CONFIGS[k].default_str, ConfigSource.DEFAULT_CONFIG)
                for k in keys if BROKER_CONFIGS[k].default is not None]
        first = next((i for i, s in enumerate(out) if s.name == name), len(out))
        return out[first:]

    def _entry(self, definition: ConfigDef) -> ConfigEntry:
        key = definition.name
        # As Kafka (KafkaConfig copies one into the other), node.id and broker.id are described
        # alike when only one of them is set.
        shown = key
        alias = _ID_ALIASES.get(key)
        if alias is not None and self._setting(key) is None and self._setting(alias) is not None:
            shown = alias
        if shown == key:
            synonyms = self.synonyms(key, _BROKER_SYNONYMS.get(key, (key,)))
        else:
            synonyms = [ConfigSynonym(key, definition.render(layer[shown].value), source)
                        for layer, source in ((self._dynamic, ConfigSource.DYNAMIC_BROKER_CONFIG),
                                              (self._dynamic_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
                                              (self._static, ConfigSource.STATIC_BROKER_CONFIG))
                        if shown in layer]
        return ConfigEntry(
            name=key,
            value=definition.render(self.get(shown)),
            source=self.source(shown),
            read_only=definition.read_only,
            sensitive=definition.sensitive,
            type=definition.type,
            doc=definition.doc,
            synonyms=tuple(synonyms),
        )

    def __repr__(self) -> str:
        shown = {key: "[hidden]" if BROKER_CONFIGS[key].sensitive else raw for key, raw in self.originals().items()}
        shown.update((key, "[hidden]" if listener_key_def(key).sensitive else raw)
                     for key, raw in self.listener_keys().items())
        return f"BrokerConfig({shown!r})"

    # ----------------------------------------------------------------- typed accessors

    @property
    def node_id(self) -> int:
        """``node.id`` (or ``broker.id`` when only that is set)."""
        return self._node_id

    @property
    def cluster_id(self) -> str | None:
        """``cluster.id`` if configured; otherwise None (the storage layer generates one)."""
        value: str | None = self.get("cluster.id")
        return value

    @property
    def listeners(self) -> list[Listener]:
        """Parsed ``listeners``: (name, host, port) tuples; port 0 is ephemeral."""
        return list(self._listeners)

    @property
    def advertised_listeners(self) -> list[Listener]:
        """Parsed ``advertised.listeners``, defaulting to :attr:`listeners`.

        Port 0 means "the port the listener of this name actually bound"; an empty
        host means the broker should advertise its own host name.
        """
        return list(self._advertised)

    def security_protocol(self, listener: str) -> str:
        """The security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) of a listener name."""
        return self._protocols[listener.upper()]

    def listener_get(self, listener: str, key: str, mechanism: str | None = None) -> Any:
        """``key`` as a listener sees it: ``listener.name.<listener>.<mechanism>.<key>``
        (with a SASL ``mechanism``), then ``listener.name.<listener>.<key>``, then ``key``.

        As Kafka, the listener name in the prefix is lower case and the mechanism too
        (``listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config``).
        """
        base = f"{LISTENER_PREFIX}{listener.lower()}."
        candidates = ([f"{base}{mechanism.lower()}.{key}"] if mechanism else []) + [f"{base}{key}"]
        for name in candidates:
            setting = self._dynamic_listener.get(name) or self._per_listener.get(name)
            if setting is not None:
                value = setting.value
                return list(value) if isinstance(value, list) else value
        return self.get(key)

    def listener_keys(self) -> dict[str, str]:
        """The ``listener.name.*`` keys given, with their raw values (sensitive ones included)."""
        return {key: s.raw for key, s in self._per_listener.items()}

    @property
    def log_dirs(self) -> list[Path]:
        """Data directories: ``log.dirs`` if set, else ``log.dir``."""
        dirs = self.get("log.dirs")
        return [Path(d) for d in dirs] if dirs is not None else [Path(self.get("log.dir"))]

    # Plain keys, read through the table (each key's doc is in broker_keys.py).
    num_partitions = Setting("num.partitions", int)
    default_replication_factor = Setting("default.replication.factor", int)
    auto_create_topics_enable = Setting("auto.create.topics.enable", bool)
    delete_topic_enable = Setting("delete.topic.enable", bool)
    log_segment_bytes = Setting("log.segment.bytes", int)
    log_index_interval_bytes = Setting("log.index.interval.bytes", int)
    log_index_size_max_bytes = Setting("log.index.size.max.bytes", int)
    log_flush_interval_messages = Setting("log.flush.interval.messages", int)
    log_flush_interval_ms = Setting("log.flush.interval.ms", _optional_int)
    message_max_bytes = Setting("message.max.bytes", int)
    socket_request_max_bytes = Setting("socket.request.max.bytes", int)
    log_retention_bytes = Setting("log.retention.bytes", int)
    log_retention_check_interval_ms = Setting("log.retention.check.interval.ms", int)
    log_cleanup_policy = Setting("log.cleanup.policy", list)
    log_message_timestamp_type = Setting("log.message.timestamp.type", str)
    compression_type = Setting("compression.type", str)
    min_insync_replicas = Setting("min.insync.replicas", int)
    offsets_topic_num_partitions = Setting("offsets.topic.num.partitions", int)
    offsets_topic_replication_factor = Setting("offsets.topic.replication.factor", int)
    group_initial_rebalance_delay_ms = Setting("group.initial.rebalance.delay.ms", int)
    group_min_session_timeout_ms = Setting("group.min.session.timeout.ms", int)
    group_max_session_timeout_ms = Setting("group.max.session.timeout.ms", int)
    transaction_state_log_num_partitions = Setting("transaction.state.log.num.partitions", int)
    transaction_state_log_replication_factor = Setting("transaction.state.log.replication.factor", int)

    # Keys with a synonym or a unit to resolve.
    @property
    def log_roll_ms(self) -> int:
        """Segment roll time: ``log.roll.ms`` if set, else ``log.roll.hours`` in ms."""
        millis = self.get("log.roll.ms")
        return int(millis) if millis is not None else int(self.get("log.roll.hours")) * _MS_PER_HOUR

    @property
    def log_retention_ms(self) -> int:
        """Retention time: ``log.retention.ms`` > ``.minutes`` > ``.hours``; -1 = forever."""
        return self._retention_ms

    @property
    def offsets_retention_ms(self) -> int:
        """``offsets.retention.minutes`` in milliseconds."""
        return int(self.get("offsets.retention.minutes")) * _MS_PER_MINUTE


def _env_origin(key: str) -> str:
    """Where an environment-provided ``key`` came from, for messages."""
    return f"environment variable {env_var_name(key)}"
