"""Topic administration: create, delete, add partitions, describe configs, delete records,
describe log dirs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION, KafkaError, check
from kbroker.common import CleaningSummary, TopicPartition

CREATE_TOPICS = 19
DELETE_TOPICS = 20
DELETE_RECORDS = 21
DESCRIBE_CONFIGS = 32
DESCRIBE_LOG_DIRS = 35
CREATE_PARTITIONS = 37
#: DeleteRecords' offset meaning "up to the high watermark" (as kafka-delete-records.sh takes it).
HIGH_WATERMARK = -1

RESOURCE_TOPIC = 2
#: DescribeConfigs config_source values.
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_DEFAULT = 5


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    read_only: bool
    is_default: bool
    is_sensitive: bool
    source: int


def create_topic(client: KafkaClient, name: str, partitions: int = -1, replication_factor: int = -1,
                 configs: Mapping[str, str] | None = None, *, timeout_ms: int = 30000,
                 validate_only: bool = False) -> None:
    """Create one topic (-1 partitions/replication factor means the broker default)."""
    body = {
        "topics": [{
            "name": name,
            "num_partitions": partitions,
            "replication_factor": replication_factor,
            "assignments": [],
            "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
        }],
        "timeout_ms": timeout_ms,
        "validate_only": validate_only,
    }
    resp = client.request(CREATE_TOPICS, body, client.controller())
    for r in resp.topics:
        if r.name == name:
            check(r.error_code, r.get("error_message"))


def delete_topic(client: KafkaClient, name: str, *, timeout_ms: int = 30000) -> None:
    """Delete one topic by name."""
    body = {"topics": [{"name": name}], "topic_names": [name], "timeout_ms": timeout_ms}
    resp = client.request(DELETE_TOPICS, body, client.controller())
    for r in resp.responses:
        if r.name == name:
            check(r.error_code, r.get("error_message"))


def create_partitions(client: KafkaClient, name: str, count: int, *, timeout_ms: int = 30000) -> None:
    """Grow topic ``name`` to ``count`` partitions in total."""
    body = {"topics": [{"name": name, "count": count, "assignments": None}],
            "timeout_ms": timeout_ms, "validate_only": False}
    resp = client.request(CREATE_PARTITIONS, body, client.controller())
    for r in resp.results:
        if r.name == name:
            check(r.error_code, r.error_message)


def describe_topic_configs(client: KafkaClient, name: str) -> list[ConfigEntry]:
    """Every config of topic ``name`` with its value and source."""
    body = {"resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": name,
                           "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}
    resp = client.request(DESCRIBE_CONFIGS, body)
    for r in resp.results:
        if r.resource_name != name:
            continue
        check(r.error_code, r.error_message)
        out = []
        for c in r.configs:
            source = c.get("config_source")
            if source is None:
                source = SOURCE_DEFAULT if c.get("is_default") else SOURCE_DYNAMIC_TOPIC
            out.append(ConfigEntry(c.name, c.value, c.read_only, source == SOURCE_DEFAULT,
                                   c.is_sensitive, source))
        return out
    raise KafkaError(UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")


def topic_overrides(client: KafkaClient, name: str) -> dict[str, str | None]:
    """The configs set on topic ``name`` itself (what kafka-topics.sh shows as ``Configs:``)."""
    return {c.name: (None if c.is_sensitive else c.value)
            for c in describe_topic_configs(client, name) if c.source == SOURCE_DYNAMIC_TOPIC}


def leaders_of(client: KafkaClient, partitions: Iterable[TopicPartition]
               ) -> tuple[dict[int, list[TopicPartition]], dict[TopicPartition, KafkaError]]:
    """The partitions grouped by leader, and the ones that cannot be sent anywhere (an unknown
    topic or partition, no leader) with their error, from one Metadata request."""
    wanted = list(dict.fromkeys(partitions))
    md = client.metadata(sorted({tp.topic for tp in wanted}))
    by_leader: dict[int, list[TopicPartition]] = {}
    failed: dict[TopicPartition, KafkaError] = {}
    for tp in wanted:
        try:
            leader = md.topic(tp.topic).partition(tp.partition).leader
        except KafkaError as e:
            failed[tp] = e
            continue
        if leader < 0:
            failed[tp] = KafkaError(LEADER_NOT_AVAILABLE, f"Partition {tp.topic}-{tp.partition} has no leader.")
        else:
            by_leader.setdefault(leader, []).append(tp)
    return by_leader, failed


def _by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for tp in partitions:
        out.setdefault(tp.topic, []).append(tp.partition)
    return out


@dataclass(frozen=True)
class DeletedRecords:
    """DeleteRecords' answer for one partition: its new log start offset, or the error."""

    low_watermark: int
    error: KafkaError | None = None


def delete_records(client: KafkaClient, offsets: Mapping[TopicPartition, int], *,
                   timeout_ms: int = 30000) -> dict[TopicPartition, DeletedRecords]:
    """Delete the records below ``offsets`` (:data:`HIGH_WATERMARK`: all the committed ones),
    each partition at its leader; returns each partition's low watermark or error."""
    by_leader, failed = leaders_of(client, offsets)
    out = {tp: DeletedRecords(-1, e) for tp, e in failed.items()}
    for leader, tps in by_leader.items():
        body = {"timeout_ms": timeout_ms, "topics": [
            {"name": t, "partitions": [{"partition_index": p, "offset": offsets[TopicPartition(t, p)]} for p in ps]}
            for t, ps in _by_topic(tps).items()]}
        resp = client.request(DELETE_RECORDS, body, leader)
        for t in resp.topics:
            for p in t.partitions:
                tp = TopicPartition(t.name, p.partition_index)
                if tp in offsets:
                    out[tp] = DeletedRecords(p.low_watermark, KafkaError(p.error_code) if p.error_code else None)
    for tp in offsets:
        out.setdefault(tp, DeletedRecords(-1, KafkaError(UNKNOWN_TOPIC_OR_PARTITION,
                                                         f"The broker did not answer for {tp.topic}-{tp.partition}.")))
    return out


@dataclass(frozen=True)
class ReplicaLogInfo:
    """One partition's log in one log dir."""

    size: int
    offset_lag: int
    is_future: bool
    #: None when never cleaned (or the broker does not report cleanings: Apache Kafka does not).
    last_cleaning: CleaningSummary | None


@dataclass(frozen=True)
class LogDirInfo:
    """One log dir of a broker: its error, volume space (-1 when not reported) and partitions."""

    path: str
    error_code: int
    total_bytes: int
    usable_bytes: int
    partitions: dict[TopicPartition, ReplicaLogInfo]


def describe_log_dirs(client: KafkaClient, node_id: int,
                      partitions: Iterable[TopicPartition] | None = None) -> list[LogDirInfo]:
    """DescribeLogDirs on broker ``node_id`` for ``partitions`` (None: every partition it hosts)."""
    topics = None if partitions is None else [
        {"topic": t, "partitions": ps} for t, ps in _by_topic(partitions).items()]
    resp = client.request(DESCRIBE_LOG_DIRS, {"topics": topics}, node_id)
    check(resp.get("error_code", 0))
    out = []
    for r in resp.results:
        logs: dict[TopicPartition, ReplicaLogInfo] = {}
        for t in r.topics:
            for p in t.partitions:
                cleaning = p.get("last_cleaning")
                logs[TopicPartition(t.name, p.partition_index)] = ReplicaLogInfo(
                    p.partition_size, p.offset_lag, p.is_future_key,
                    None if cleaning is None else CleaningSummary(**{k: cleaning[k] for k in _CLEANING_FIELDS}))
        out.append(LogDirInfo(r.log_dir, r.error_code, r.get("total_bytes", -1), r.get("usable_bytes", -1), logs))
    return out


_CLEANING_FIELDS = tuple(CleaningSummary.__dataclass_fields__)


# -- client quotas ---------------------------------------------------------------------

DESCRIBE_CLIENT_QUOTAS = 48
ALTER_CLIENT_QUOTAS = 49
#: DescribeClientQuotas match types.
MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2
#: A client quota entity: (entity type, name) pairs; a None name is the type's default.
QuotaEntity = tuple[tuple[str, str | None], ...]


def describe_client_quotas(client: KafkaClient, components: Iterable[tuple[str, int, str | None]] = (),
                           *, strict: bool = False) -> dict[QuotaEntity, dict[str, float]]:
    """The quotas of the entities matching a filter of (entity type, match type, match)
    components (none: every entity); raises :class:`KafkaError` on a refused filter."""
    body = {"components": [{"entity_type": t, "match_type": m, "match": name} for t, m, name in components],
            "strict": strict}
    resp = client.request(DESCRIBE_CLIENT_QUOTAS, body)
    check(resp.error_code, resp.get("error_message"))
    out: dict[QuotaEntity, dict[str, float]] = {}
    for entry in resp.entries or []:
        entity = tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity))
        out[entity] = {v.key: v.value for v in entry["values"]}
    return out


def alter_client_quotas(client: KafkaClient, entity: Mapping[str, str | None],
                        set_values: Mapping[str, float] | None = None, remove: Iterable[str] = (),
                        *, validate_only: bool = False) -> None:
    """Set and remove quotas of one entity (``{"user": "alice", "client-id": None}``: alice's
    default client); raises :class:`KafkaError` when the broker refuses it."""
    ops = [{"key": k, "value": float(v), "remove": False} for k, v in (set_values or {}).items()]
    ops += [{"key": k, "value": 0.0, "remove": True} for k in remove]
    body = {"entries": [{"entity": [{"entity_type": t, "entity_name": n} for t, n in entity.items()],
                         "ops": ops}],
            "validate_only": validate_only}
    resp = client.request(ALTER_CLIENT_QUOTAS, body)
    for r in resp.entries:
        check(r.error_code, r.get("error_message"))
