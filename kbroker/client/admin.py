"""Topic administration: create, delete, add partitions, describe configs, delete records,
describe log dirs; ACLs: create, describe, delete; users' SCRAM credentials."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION, KafkaError, check
from kbroker.common import CleaningSummary, TopicPartition
from kbroker.security import scram
from kbroker.security.acl import ANY_BINDING, AclBinding, AclBindingFilter
from kbroker.security.model import PatternType

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


# -- ACLs ---------------------------------------------------------------------------------

DESCRIBE_ACLS = 29
CREATE_ACLS = 30
DELETE_ACLS = 31


def _filter_body(f: AclBindingFilter) -> dict[str, Any]:
    return {"resource_type_filter": f.resource_type, "resource_name_filter": f.name,
            "pattern_type_filter": f.pattern_type, "principal_filter": f.principal, "host_filter": f.host,
            "operation": f.operation, "permission_type": f.permission}


def _binding(rt: int, name: str, pt: int, acl: Any) -> AclBinding:
    return AclBinding.of(rt, name, pt, acl.principal, acl.host, acl.operation, acl.permission_type)


def create_acls(client: KafkaClient, bindings: Sequence[AclBinding]) -> list[KafkaError | None]:
    """CreateAcls; per binding, None when created (or already present) or the broker's error."""
    body = {"creations": [{"resource_type": b.resource_type, "resource_name": b.name,
                           "resource_pattern_type": b.pattern_type, "principal": b.principal, "host": b.host,
                           "operation": b.operation, "permission_type": b.permission} for b in bindings]}
    resp = client.request(CREATE_ACLS, body)
    return [KafkaError(r.error_code, r.get("error_message")) if r.error_code else None for r in resp.results]


def describe_acls(client: KafkaClient, flt: AclBindingFilter = ANY_BINDING) -> list[AclBinding]:
    """DescribeAcls: the bindings ``flt`` selects (raises KafkaError, e.g. SECURITY_DISABLED)."""
    resp = client.request(DESCRIBE_ACLS, _filter_body(flt))
    check(resp.error_code, resp.get("error_message"))
    return [_binding(r.resource_type, r.resource_name, r.get("pattern_type", PatternType.LITERAL), a)
            for r in resp.resources for a in r.acls]


def delete_acls(client: KafkaClient, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding] | KafkaError]:
    """DeleteAcls; per filter, the bindings removed or the broker's error for that filter."""
    resp = client.request(DELETE_ACLS, {"filters": [_filter_body(f) for f in filters]})
    out: list[list[AclBinding] | KafkaError] = []
    for r in resp.filter_results:
        if r.error_code:
            out.append(KafkaError(r.error_code, r.get("error_message")))
        else:
            out.append([_binding(m.resource_type, m.resource_name, m.get("pattern_type", PatternType.LITERAL), m)
                        for m in r.matching_acls])
    return out


# -- SCRAM credentials ---------------------------------------------------------------------

DESCRIBE_USER_SCRAM_CREDENTIALS = 50
ALTER_USER_SCRAM_CREDENTIALS = 51
#: The iterations kafka-configs.sh uses when none are given.
DEFAULT_SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class ScramUser:
    """One user's SCRAM credentials as DescribeUserScramCredentials reports them: the
    iterations per mechanism name, or the error the broker gave for this user."""

    user: str
    credentials: dict[str, int]
    error_code: int = 0
    error_message: str | None = None


@dataclass(frozen=True)
class ScramUpsertion:
    """A user's new credential for one mechanism: the password is salted here, and only the
    salt, the iteration count and the salted password are sent."""

    user: str
    mechanism: str
    password: str
    iterations: int = DEFAULT_SCRAM_ITERATIONS
    salt: bytes | None = None

    def body(self) -> dict[str, object]:
        """The upsertion as AlterUserScramCredentials carries it."""
        mech = scram.mechanism(self.mechanism)
        salt = secrets.token_bytes(24) if self.salt is None else self.salt
        return {"name": self.user, "mechanism": mech.type, "iterations": self.iterations, "salt": salt,
                "salted_password": mech.salted_password(self.password, salt, self.iterations)}


def describe_user_scram_credentials(client: KafkaClient, users: Iterable[str] | None = None) -> list[ScramUser]:
    """The SCRAM credentials of ``users`` (None: every user that has one)."""
    body = {"users": None if users is None else [{"name": u} for u in users]}
    resp = client.request(DESCRIBE_USER_SCRAM_CREDENTIALS, body)
    check(resp.error_code, resp.error_message)
    by_type = {m.type: m.name for m in scram.MECHANISMS.values()}
    return [ScramUser(r.user, {by_type.get(c.mechanism, f"UNKNOWN({c.mechanism})"): c.iterations
                               for c in r.credential_infos}, r.error_code, r.error_message)
            for r in resp.results]


def alter_user_scram_credentials(client: KafkaClient, upsertions: Iterable[ScramUpsertion] = (),
                                 deletions: Iterable[tuple[str, str]] = ()) -> dict[str, KafkaError | None]:
    """Set and delete (user, mechanism name) credentials; each user's error, None on success.
    A mechanism name other than SCRAM-SHA-256/512 raises ValueError before anything is sent."""
    body = {"deletions": [{"name": user, "mechanism": scram.mechanism(mech).type} for user, mech in deletions],
            "upsertions": [u.body() for u in upsertions]}
    resp = client.request(ALTER_USER_SCRAM_CREDENTIALS, body, client.controller())
    return {r.user: KafkaError(r.error_code, r.error_message) if r.error_code else None for r in resp.results}


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
