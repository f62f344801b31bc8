"""Group configs: per-group overrides of the group coordinator's settings (Kafka's GROUP
config resource, type 32, KIP-848/KIP-932/KIP-1071).

The keys, types, defaults and checks are Kafka 4.2's ``GroupConfig``: each key's default is the
broker's matching ``group.*`` setting, and a value must lie within the broker's min/max bounds
(``group.consumer.min.session.timeout.ms`` ...), else the change is INVALID_CONFIG. A group
needs not exist to be given configs. Coordinators read an override with :meth:`GroupConfigs.get`
(None: use the broker's setting) when they need it, so a change takes effect at the next
heartbeat or acquisition.

On a single broker the overrides are one JSON file in the first log dir, replaced atomically
(off the event loop); in a cluster each group's overrides are one etcd document
(``configs/group/<group id>``), which every broker follows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import BROKER_CONFIGS, BrokerConfig, ConfigEntry, ConfigSource, ConfigSynonym, ConfigType
from kbroker.fs import read_text, save_file
from kbroker.metadata.errors import OK, Result

if TYPE_CHECKING:
    from kbroker.etcd.client import KeyValue
    from kbroker.metadata.manager import MetadataManager

log = logging.getLogger(__name__)

__all__ = ["GROUP", "GROUP_CONFIG_FILE", "GROUP_CONFIG_KEYS", "EtcdGroupConfigStore", "FileGroupConfigStore",
           "GroupConfigs", "GroupConfigStore"]

#: The GROUP config resource type (Kafka's ConfigResource.Type.GROUP).
GROUP = 32
GROUP_CONFIG_FILE = "kbroker-group-configs.json"
_FORMAT_VERSION = 1
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1



@dataclass(frozen=True)
class _Bound:
    """A broker setting a group value must not pass: its key and Kafka's default."""

    key: str
    default: int


@dataclass(frozen=True)
class _Key:
    """One group config: Kafka's name, type, the broker setting giving its default (with
    Kafka's default for it), the least value ConfigDef accepts, and the broker's bounds."""

    name: str
    type: ConfigType
    broker_key: str | None
    default: str
    doc: str
    at_least: int | None = None
    min: _Bound | None = None
    max: _Bound | None = None


_INT = ConfigType.INT
_STR = ConfigType.STRING
_KEYS = (
    _Key("consumer.session.timeout.ms", _INT, "group.consumer.session.timeout.ms", "45000",
         "The timeout to detect client failures when using the consumer group protocol.", 1,
         _Bound("group.consumer.min.session.timeout.ms", 45000), _Bound("group.consumer.max.session.timeout.ms", 60000)),
    _Key("consumer.heartbeat.interval.ms", _INT, "group.consumer.heartbeat.interval.ms", "5000",
         "The heartbeat interval given to the members of a consumer group.", 1,
         _Bound("group.consumer.min.heartbeat.interval.ms", 5000),
         _Bound("group.consumer.max.heartbeat.interval.ms", 15000)),
    _Key("share.session.timeout.ms", _INT, "group.share.session.timeout.ms", "45000",
         "The timeout to detect client failures when using the share group protocol.", 1,
         _Bound("group.share.min.session.timeout.ms", 45000), _Bound("group.share.max.session.timeout.ms", 60000)),
    _Key("share.heartbeat.interval.ms", _INT, "group.share.heartbeat.interval.ms", "5000",
         "The heartbeat interval given to the members of a share group.", 1,
         _Bound("group.share.min.heartbeat.interval.ms", 5000), _Bound("group.share.max.heartbeat.interval.ms", 15000)),
    _Key("share.record.lock.duration.ms", _INT, "group.share.record.lock.duration.ms", "30000",
         "The record acquisition lock duration in milliseconds for share groups.", 1000,
         _Bound("group.share.min.record.lock.duration.ms", 15000),
         _Bound("group.share.max.record.lock.duration.ms", 60000)),
    _Key("share.auto.offset.reset", _STR, None, "latest",
         "The strategy to initialize the share-partition start offset: earliest, latest or "
         "by_duration:<ISO 8601 duration>."),
    _Key("share.isolation.level", _STR, None, "read_uncommitted",
         "Controls how to read records written transactionally: read_committed delivers only committed "
         "transactional records, read_uncommitted all records."),
    _Key("streams.heartbeat.interval.ms", _INT, "group.streams.heartbeat.interval.ms", "5000",
         "The heartbeat interval given to the members of a streams group.", 1,
         _Bound("group.streams.min.heartbeat.interval.ms", 5000),
         _Bound("group.streams.max.heartbeat.interval.ms", 15000)),
    _Key("streams.session.timeout.ms", _INT, "group.streams.session.timeout.ms", "45000",
         "The timeout to detect client failures when using the streams group protocol.", 1,
         _Bound("group.streams.min.session.timeout.ms", 45000), _Bound("group.streams.max.session.timeout.ms", 60000)),
    _Key("streams.num.standby.replicas", _INT, "group.streams.num.standby.replicas", "0",
         "The number of standby replicas for each task.", 0,
         None, _Bound("group.streams.max.standby.replicas", 2)),
    _Key("streams.initial.rebalance.delay.ms", _INT, "group.streams.initial.rebalance.delay.ms", "3000",
         "The amount of time the group coordinator will wait for more streams clients to join a new group "
         "before performing the first rebalance.", 0),
)
#: Every group config by name.
GROUP_CONFIG_KEYS: dict[str, _Key] = {k.name: k for k in _KEYS}
_ISOLATION_LEVELS = ("read_committed", "read_uncommitted")
#: Java's Duration.parse: PnDTnHnMn.nS, each number optionally signed.
_DURATION = re.compile(r"([-+]?)P(?:([-+]?\d+)D)?(T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?"
                       r"(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?", re.IGNORECASE)
#: Each session timeout must exceed its protocol's heartbeat interval.
_SESSION_OVER_INTERVAL = (("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"),
                          ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
                          ("streams.session.timeout.ms", "streams.heartbeat.interval.ms"))


def _duration_ms(text: str) -> int | None:
    """Milliseconds of an ISO 8601 duration as Java's Duration.parse reads it; None if it does not parse."""
    m = _DURATION.fullmatch(text)
    if m is None or (m.group(2) is None and m.group(3) is None) or m.group(3) == "T" \
            or (m.group(3) is not None and not any(m.group(i) for i in (4, 5, 6))):
        return None
    # As Java's: each number a long, and each product and sum in seconds too (a numeric
    # overflow does not parse). Length first: int() refuses over 4300 digits with ValueError.
    if any(len(m.group(i) or "") > 20 for i in (2, 4, 5, 6)):
        return None
    days, hours, minutes, seconds = (int(m.group(i) or 0) for i in (2, 4, 5, 6))
    parts = (days * 86400, hours * 3600, minutes * 60, seconds)
    if any(not _LONG_MIN <= n <= _LONG_MAX for n in (days, hours, minutes, *parts)) \
            or not _LONG_MIN <= sum(parts) <= _LONG_MAX:
        return None
    fraction = int((m.group(7) or "").ljust(9, "0")[:9] or 0)
    frac_ns = -fraction if (m.group(6) or "").startswith("-") else fraction
    total_ns = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1_000_000_000 + frac_ns
    return (-total_ns if m.group(1) == "-" else total_ns) // 1_000_000


def _auto_offset_reset_error(value: str) -> str | None:
    v = value.strip().lower()
    if v in ("earliest", "latest"):
        return None
    if v.startswith("by_duration:"):
        ms = _duration_ms(v[len("by_duration:"):].strip())
        if ms is None:
            return f"Invalid value {value} for configuration share.auto.offset.reset: Unable to parse duration string"
        if ms < 0:
            return f"Invalid value {value} for configuration share.auto.offset.reset: Negative duration is not allowed."
        return None
    return (f"Invalid value {value} for configuration share.auto.offset.reset: the value must be either "
            "'earliest', 'latest', or of the format 'by_duration:<PnDTnHnMn.nS.>'.")


def _broker_int(config: BrokerConfig, bound: _Bound) -> int:
    """The broker's setting ``bound.key``, or Kafka's default where kbroker does not declare it."""
    return int(config.get(bound.key)) if bound.key in BROKER_CONFIGS else bound.default


def default_values(config: BrokerConfig) -> dict[str, str]:
    """Every group config's default: the broker's group.* setting (Kafka's extractGroupConfigMap)."""
    out = {}
    for k in _KEYS:
        out[k.name] = str(config.get(k.broker_key)) if k.broker_key in BROKER_CONFIGS else k.default
    return out


def validate(overrides: Mapping[str, str], config: BrokerConfig) -> str | None:
    """Why ``overrides`` (a group's whole set) cannot be the group's configs, in Kafka's words;
    None if they can. Kafka's GroupConfig.validate over the broker defaults with the overrides on top."""
    for name in overrides:
        if name not in GROUP_CONFIG_KEYS:
            return f"Unknown group config name: {name}"
    combined = {**default_values(config), **overrides}
    ints: dict[str, int] = {}
    for k in _KEYS:
        raw = combined[k.name]
        if k.type == _INT:
            try:
                value = int(raw.strip())
            except ValueError:
                return f"Invalid value {raw} for configuration {k.name}: Not a number of type INT"
            if not _INT_MIN <= value <= _INT_MAX:
                return f"Invalid value {raw} for configuration {k.name}: Not a number of type INT"
            if k.at_least is not None and value < k.at_least:
                return f"Invalid value {value} for configuration {k.name}: Value must be at least {k.at_least}"
            ints[k.name] = value
        elif k.name == "share.auto.offset.reset":
            refused = _auto_offset_reset_error(raw)
            if refused is not None:
                return refused
        elif k.name == "share.isolation.level" and raw.strip() not in _ISOLATION_LEVELS:
            return (f"Invalid value {raw} for configuration {k.name}: String must be one of: "
                    f"{', '.join(_ISOLATION_LEVELS)}")
    for k in _KEYS:
        if k.min is not None and ints[k.name] < _broker_int(config, k.min):
            return f"{k.name} must be greater than or equal to {k.min.key}"
        if k.max is not None and ints[k.name] > _broker_int(config, k.max):
            return f"{k.name} must be less than or equal to {k.max.key}"
    for session, interval in _SESSION_OVER_INTERVAL:
        if ints[session] <= ints[interval]:
            return f"{session} must be greater than {interval}"
    return None


class GroupConfigStore(Protocol):
    """Where group configs are kept: the overrides of every group that has some."""

    def load(self) -> dict[str, dict[str, str]]:
        """Every group's overrides as last saved."""
        ...

    async def save(self, group_id: str, values: Mapping[str, str], everything: Mapping[str, dict[str, str]]) -> Result:
        """Make ``values`` group ``group_id``'s overrides (none: it has none); ``everything`` is
        every group's overrides with that change made. The error if it could not be kept."""
        ...


class FileGroupConfigStore:
    """Single broker: every group's overrides in one JSON file, replaced atomically."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / GROUP_CONFIG_FILE

    def load(self) -> dict[str, dict[str, str]]:
        try:
            raw = json.loads(read_text(self.path))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.error("ignoring unreadable group configs in %s: %s", self.path, e)
            return {}
        groups = raw.get("groups") if isinstance(raw, dict) and raw.get("version") == _FORMAT_VERSION else None
        if not isinstance(groups, dict):
            log.error("ignoring group configs in %s: unsupported format", self.path)
            return {}
        return {str(g): {str(k): str(v) for k, v in c.items()} for g, c in groups.items() if isinstance(c, dict) and c}

    async def save(self, group_id: str, values: Mapping[str, str], everything: Mapping[str, dict[str, str]]) -> Result:
        doc = {"version": _FORMAT_VERSION, "groups": {g: dict(sorted(c.items())) for g, c in sorted(everything.items())}}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        try:
            await anyio.to_thread.run_sync(self._write, data)
        except OSError as e:
            return ErrorCode.KAFKA_STORAGE_ERROR, f"Cannot persist the group configs: {e}"
        return OK

    def _write(self, data: bytes) -> None:
        save_file(self.path, data)


class EtcdGroupConfigStore:
    """Cluster: one etcd document per group under ``configs/group/``, written by compare-and-swap;
    every broker learns a change from the cluster's image (:meth:`document_changed`)."""

    def __init__(self, metadata: MetadataManager) -> None:
        self._metadata = metadata
        #: Called with (group id, its overrides) when etcd's copy changed.
        self.on_change: Callable[[str, dict[str, str]], None] | None = None

    def _prefix(self) -> str | None:
        keys = self._metadata.cluster_keys or (self._metadata.cluster.keys if self._metadata.cluster else None)
        return None if keys is None else keys.configs + "group/"

    def load(self) -> dict[str, dict[str, str]]:
        return {}  # they arrive with the cluster's image, through document_changed

    def document_changed(self, key: str, kv: KeyValue | None) -> None:
        """A changed etcd document: a group's overrides are taken up, anything else ignored."""
        prefix = self._prefix()
        if prefix is None or not key.startswith(prefix) or self.on_change is None:
            return
        values: dict[str, str] = {}
        if kv is not None:
            from kbroker.metadata.cluster_state import config_document  # cluster mode only

            try:
                values = config_document(kv.value)
            except ValueError as e:
                log.error("ignoring undecodable group configs %s: %s", key, e)
                return
        self.on_change(key[len(prefix):], values)

    async def save(self, group_id: str, values: Mapping[str, str], everything: Mapping[str, dict[str, str]]) -> Result:
        from kbroker.etcd.client import Compare, Delete, Put

        cluster = self._metadata.cluster
        prefix = self._prefix()
        if cluster is None or prefix is None:
            return ErrorCode.UNKNOWN_SERVER_ERROR, "Not joined to the cluster yet."
        key = prefix + group_id
        op = Put(key, json.dumps(dict(values), sort_keys=True).encode()) if values else Delete(key)
        try:
            result = await cluster.client.txn([Compare.mod_revision(key, cluster.image.mod_revision(key))], [op])
        except Exception as e:  # etcd unreachable: nothing changed
            return ErrorCode.UNKNOWN_SERVER_ERROR, f"Cannot persist the group configs: {e}"
        if not result.succeeded:
            # Another broker changed this group's configs since they were read here.
            await cluster.wait_applied(cluster.image.revision + 1, timeout=1.0)
            return ErrorCode.CONCURRENT_TRANSACTIONS, f"The configs of group {group_id} changed meanwhile; retry."
        await cluster.wait_applied(result.revision)
        return OK


class GroupConfigs:
    """Every group's config overrides: looked up by the coordinators, described and altered
    through the GROUP config resource, persisted by a :class:`GroupConfigStore`."""

    def __init__(self, store: GroupConfigStore, broker_config: Callable[[], BrokerConfig]) -> None:
        """``broker_config`` gives the broker's current config (the defaults and bounds)."""
        self._store = store
        self._config = broker_config
        self._groups: dict[str, dict[str, str]] = store.load()
        self._lock = anyio.Lock()
        if isinstance(store, EtcdGroupConfigStore):
            store.on_change = self._changed

    def get(self, group_id: str, key: str) -> str | None:
        """Group ``group_id``'s override of ``key`` (a group config name), None when it has none."""
        overrides = self._groups.get(group_id)
        return None if overrides is None else overrides.get(key)

    def overrides(self, group_id: str) -> dict[str, str]:
        """The configs set on group ``group_id``."""
        return dict(self._groups.get(group_id, {}))

    def group_ids(self) -> list[str]:
        """The groups that have configs, sorted."""
        return sorted(self._groups)

    def describe(self, group_id: str) -> list[ConfigEntry]:
        """Every group config of ``group_id``: its override (GROUP_CONFIG) or the broker's default."""
        defaults = default_values(self._config())
        overrides = self._groups.get(group_id, {})
        out = []
        for k in sorted(_KEYS, key=lambda k: k.name):
            if k.name in overrides:
                value = overrides[k.name]
                source = ConfigSource.GROUP_CONFIG
                synonyms: tuple[ConfigSynonym, ...] = (ConfigSynonym(k.name, value, source),)
            else:
                value, source, synonyms = defaults[k.name], ConfigSource.DEFAULT_CONFIG, ()
            out.append(ConfigEntry(k.name, value, source, False, False, k.type, k.doc, synonyms))
        return out

    async def alter(self, group_id: str, updates: Mapping[str, str | None], *, replace: bool,
                    validate_only: bool) -> Result:
        """Change group ``group_id``'s configs: ``updates`` sets keys (None removes one); with
        ``replace`` (AlterConfigs) they become the whole set. Nothing changes unless the result
        is valid (Kafka's checks, INVALID_CONFIG) and persisted."""
        if group_id == "":
            return ErrorCode.INVALID_REQUEST, "Group name must not be empty"
        async with self._lock:  # one change at a time: each is computed from the one before
            for _attempt in range(5):
                result = await self._alter_once(group_id, updates, replace=replace, validate_only=validate_only)
                # In a cluster another broker may have changed the group's configs meanwhile: the
                # change is made again over theirs, once this broker has seen them.
                if result[0] != ErrorCode.CONCURRENT_TRANSACTIONS:
                    return result
            return result

    async def _alter_once(self, group_id: str, updates: Mapping[str, str | None], *, replace: bool,
                          validate_only: bool) -> Result:
        current = {} if replace else dict(self._groups.get(group_id, {}))
        for name, value in updates.items():
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
        refused = validate(current, self._config())
        if refused is not None:
            return ErrorCode.INVALID_CONFIG, refused
        if validate_only or current == self._groups.get(group_id, {}):
            return OK
        everything = {**self._groups, group_id: current}
        if not current:
            del everything[group_id]
        # Shielded: a saved change is also the one in force here, even if the request is cancelled.
        with anyio.CancelScope(shield=True):
            result = await self._store.save(group_id, current, everything)
            if result[0] != ErrorCode.NONE:
                return result
            if not isinstance(self._store, EtcdGroupConfigStore):  # etcd's copy arrives through the image
                self._groups = everything
        return OK

    def _changed(self, group_id: str, values: dict[str, str]) -> None:
        if values:
            self._groups[group_id] = values
        else:
            self._groups.pop(group_id, None)
