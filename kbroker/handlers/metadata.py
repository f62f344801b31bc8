"""Metadata (key 3): brokers, cluster id, controller, and topics with their partitions."""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.errors import Result
from kbroker.metadata.manager import NewTopicRequest
from kbroker.metadata.model import PartitionInfo, TopicInfo
from kbroker.metadata.topic_names import invalid_reason, is_internal
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType

API_KEY = 3
VERSIONS = VersionRange(0, 13)

#: "Not requested" marker for authorized-operations fields (Integer.MIN_VALUE).
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
_ZERO_UUID = uuid.UUID(int=0)


def partition_entry(p: PartitionInfo, live: Container[int] | None = None) -> dict[str, Any]:
    """A partition's leader, epoch and replica sets as Metadata and DescribeTopicPartitions answer them.

    ``live``: in a cluster, the live brokers. As Kafka's metadata cache: a leader that is not
    live answers LEADER_NOT_AVAILABLE with no leader, and replicas that are not live are offline.
    """
    if live is not None:
        leader_alive = p.leader in live
        return {
            "error_code": ErrorCode.NONE if leader_alive else ErrorCode.LEADER_NOT_AVAILABLE,
            "partition_index": p.index,
            "leader_id": p.leader if leader_alive else -1,
            "leader_epoch": p.leader_epoch,
            "replica_nodes": list(p.replicas),
            "isr_nodes": list(p.isr),
            "offline_replicas": [b for b in p.replicas if b not in live],
        }
    return {
        "error_code": ErrorCode.NONE,
        "partition_index": p.index,
        "leader_id": p.leader,
        "leader_epoch": p.leader_epoch,
        "replica_nodes": list(p.replicas),
        "isr_nodes": list(p.isr),
        "offline_replicas": list(p.offline_replicas),
    }


def live_brokers(md: Any) -> frozenset[int] | None:
    """The live brokers of a cluster (None on a single broker, whose one broker is always live)."""
    return frozenset(md.live_broker_ids()) if md.clustered else None


def topic_entry(topic: TopicInfo, ops: int, live: Container[int] | None = None) -> dict[str, Any]:
    """A MetadataResponseTopic for an existing topic; ``ops`` its authorized operations (or the omitted
    marker); ``live`` as for :func:`partition_entry`."""
    return {
        "error_code": ErrorCode.NONE,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "partitions": [partition_entry(p, live) for p in sorted(topic.partitions.values(), key=lambda p: p.index)],
        "topic_authorized_operations": ops,
    }


def topic_operations(ctx: RequestContext, name: str, include_ops: bool) -> int:
    """The topic's authorized operations for this principal when asked, else the omitted marker."""
    return ctx.authorized_operations(ResourceType.TOPIC, name) if include_ops else AUTHORIZED_OPERATIONS_OMITTED


def cluster_operations(ctx: RequestContext) -> int:
    """The cluster's authorized operations for this principal, as Metadata and DescribeCluster
    report them when asked: none at all (0) without DESCRIBE on the cluster, as Kafka."""
    if not authz.cluster(ctx, AclOperation.DESCRIBE):
        return 0
    return ctx.authorized_operations(ResourceType.CLUSTER, CLUSTER_NAME)


def _error_entry(code: int, name: str | None, topic_id: uuid.UUID = _ZERO_UUID,
                 internal: bool = False) -> dict[str, Any]:
    return {"error_code": code, "name": name, "topic_id": topic_id, "is_internal": internal, "partitions": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    version = ctx.version
    md = ctx.broker.metadata
    requested = body["topics"]
    include_ops = bool(body.get("include_topic_authorized_operations", False))
    # allow_auto_topic_creation only exists from v4; older clients always implied true.
    allow_auto = bool(body.get("allow_auto_topic_creation", True))
    live = live_brokers(md)

    topics: list[dict[str, Any]] = []
    if requested is None or (version == 0 and not requested):
        # As Kafka: a listing of every topic leaves out, silently, those the principal may not describe.
        hidden = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, md.topics)
        topics = [topic_entry(t, topic_operations(ctx, t.name, include_ops), live)
                  for name, t in sorted(md.topics.items()) if name not in hidden]
    else:
        # As Kafka: a named topic the principal may not describe answers TOPIC_AUTHORIZATION_FAILED
        # whether it exists or not (one named by id keeps its id: ids are not secret); one it
        # may describe but that would be auto-created needs CREATE on the cluster or the topic.
        by_id = {r["topic_id"]: md.topic_by_id(r["topic_id"]) for r in requested if r["name"] is None}
        names = [r["name"] for r in requested if r["name"] is not None]
        refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC,
                               [*names, *(t.name for t in by_id.values() if t is not None)])
        auto = allow_auto and ctx.broker.config.auto_create_topics_enable
        not_creatable: frozenset[str] = frozenset()
        if auto and ctx.broker.authorizer is not None:
            missing = [n for n in names if n not in refused and md.topic(n) is None]
            if missing and not authz.cluster(ctx, AclOperation.CREATE):
                not_creatable = authz.denied(ctx, AclOperation.CREATE, ResourceType.TOPIC, missing)
        created: dict[str, Result] = {}
        if auto:
            created = await _auto_create(
                ctx, [n for n in names if n not in refused and n not in not_creatable])
        seen: set[str] = set()
        for req in requested:
            name = req["name"]
            topic_id = req.get("topic_id", _ZERO_UUID)
            if name is None:
                topic = by_id[topic_id]
                if topic is None:
                    # The response name only becomes nullable in v12.
                    topics.append(_error_entry(ErrorCode.UNKNOWN_TOPIC_ID, None if version >= 12 else "", topic_id))
                elif topic.name in refused:
                    topics.append(_error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                               None if version >= 12 else "", topic_id))
                else:
                    topics.append(topic_entry(topic, topic_operations(ctx, topic.name, include_ops), live))
                continue
            if name in seen:
                continue  # Kafka answers each requested name once
            seen.add(name)
            if name in refused:
                topics.append(_error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED, name))
            elif name in not_creatable:
                topics.append(_error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED, name, internal=is_internal(name)))
            else:
                topics.append(_by_name(ctx, name, created.get(name), include_ops))

    response: dict[str, Any] = {
        "throttle_time_ms": 0,
        "brokers": [{"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
                    for b in md.brokers(ctx.session.listener)],
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "topics": topics,
        "error_code": ErrorCode.NONE,
    }
    if body.get("include_cluster_authorized_operations", False):
        response["cluster_authorized_operations"] = cluster_operations(ctx)
    return response


async def _auto_create(ctx: RequestContext, names: list[str]) -> dict[str, Result]:
    """Create the requested topics that do not exist, as one batch off the event loop.

    At most ``max.partitions.per.request`` partitions are created per request; the
    names beyond that answer LEADER_NOT_AVAILABLE and a client's retry creates them.
    """
    md = ctx.broker.metadata
    cfg = ctx.broker.config
    budget = md.max_partitions_per_request
    out: dict[str, Result] = {}
    batch: list[NewTopicRequest] = []
    for name in dict.fromkeys(names):
        if md.topic(name) is not None or invalid_reason(name) is not None:
            continue
        if is_internal(name):
            # The broker's own shape: its configured partitions and compaction.
            out[name] = md.auto_create(name)
        elif cfg.num_partitions <= budget:
            budget -= cfg.num_partitions
            batch.append(NewTopicRequest(name))
        elif cfg.num_partitions > md.max_partitions_per_request:
            # No request could create it: the creation answers POLICY_VIOLATION.
            batch.append(NewTopicRequest(name))
        else:
            out[name] = ErrorCode.LEADER_NOT_AVAILABLE, None
    if batch:
        for new, result in zip(batch, await md.create_topics_async(batch), strict=True):
            # Already existing means another request is creating it right now.
            code = ErrorCode.LEADER_NOT_AVAILABLE if result[0] == ErrorCode.TOPIC_ALREADY_EXISTS else result[0]
            out[new.name] = code, result[1]
    return out


def _by_name(ctx: RequestContext, name: str, created: Result | None, include_ops: bool) -> dict[str, Any]:
    md = ctx.broker.metadata
    topic = md.topic(name)
    if topic is None and created is not None and created[0] != ErrorCode.NONE:
        return _error_entry(created[0], name)
    if topic is None:
        code = ErrorCode.INVALID_TOPIC_EXCEPTION if invalid_reason(name) else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return _error_entry(code, name)
    return topic_entry(topic, topic_operations(ctx, name, include_ops), live_brokers(md))
