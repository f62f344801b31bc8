"""DescribeTopicPartitions (key 75): topics and their partitions, paginated (KIP-966).

Kafka's admin client (``describeTopics``, so ``kafka-topics --describe``) asks this before
Metadata. As Kafka: the topics answer sorted by name, an empty list means every topic, at
most ``min(response_partition_limit, 2000)`` partitions are described per response and
``next_cursor`` names where the next request starts. kbroker keeps no eligible leader
replicas (KIP-966's ELR needs a controller that tracks them), so ELR and last-known ELR are
empty lists, as Kafka reports them with ELR disabled. In a cluster, a partition whose
leader is not live answers LEADER_NOT_AVAILABLE, as in Metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.handlers.metadata import AUTHORIZED_OPERATIONS_OMITTED, live_brokers, partition_entry
from kbroker.metadata.topic_names import invalid_reason, is_internal
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 75
VERSIONS = VersionRange(0, 0)
#: Kafka's max.request.partition.size.limit default: the most partitions one response describes.
MAX_PARTITIONS = 2000
_ZERO_UUID = uuid.UUID(int=0)


def _error_topic(ctx: RequestContext, code: int, name: str) -> dict[str, Any]:
    return {"error_code": code, "name": name, "topic_id": _ZERO_UUID, "is_internal": is_internal(name),
            "partitions": [], "topic_authorized_operations": ctx.authorized_operations(ResourceType.TOPIC, name)}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    md = ctx.broker.metadata
    live = live_brokers(md)
    requested = [t.name for t in body.topics]
    fetch_all = not requested
    cursor = body.cursor
    start_topic = cursor.topic_name if cursor is not None else ""
    if cursor is not None and (cursor.partition_index < 0 or (not fetch_all and start_topic not in requested)):
        # Kafka throws InvalidRequestException: every requested topic answers INVALID_REQUEST
        # (its error response leaves the authorized operations unset).
        return {"throttle_time_ms": 0, "next_cursor": None,
                "topics": [{**_error_topic(ctx, ErrorCode.INVALID_REQUEST, n), "is_internal": False,
                            "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED} for n in requested]}
    names = sorted(md.topics) if fetch_all else sorted(set(requested))
    remaining = max(min(MAX_PARTITIONS, int(body.response_partition_limit)), 1)
    topics: list[dict[str, Any]] = []
    next_cursor: dict[str, Any] | None = None
    # As Kafka: topics the principal may not describe are left out of a listing of every
    # topic; named ones answer TOPIC_AUTHORIZATION_FAILED (without their id), after the others.
    refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (n for n in names if n >= start_topic))
    unauthorized: list[dict[str, Any]] = []
    for name in names:
        if name < start_topic:
            continue  # before the cursor: answered by an earlier request
        if name in refused:
            if not fetch_all:
                unauthorized.append({**_error_topic(ctx, ErrorCode.TOPIC_AUTHORIZATION_FAILED, name), "is_internal": False,
                                     "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED})
            continue
        if remaining == 0:
            next_cursor = {"topic_name": name, "partition_index": 0}
            break
        topic = md.topic(name)
        if topic is None:
            if not fetch_all:
                code = ErrorCode.INVALID_TOPIC_EXCEPTION if invalid_reason(name) else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                topics.append(_error_topic(ctx, code, name))
            continue
        first = cursor.partition_index if cursor is not None and name == start_topic else 0
        count = len(topic.partitions)
        upper = min(count, first + remaining)
        # No eligible leader replicas (KIP-966) to report.
        partitions = [
            {**partition_entry(p, live), "eligible_leader_replicas": [], "last_known_elr": []}
            # Only this page's partitions are looked at: a cursor deep into a topic of many
            # thousands of partitions costs no more than the first page.
            for p in (topic.partitions.get(i) for i in range(first, upper))
            if p is not None
        ]
        topics.append({"error_code": ErrorCode.NONE, "name": name, "topic_id": topic.topic_id,
                       "is_internal": topic.internal, "partitions": partitions,
                       "topic_authorized_operations": ctx.authorized_operations(ResourceType.TOPIC, name)})
        if upper < count:
            next_cursor = {"topic_name": name, "partition_index": upper}
            break
        remaining -= len(partitions)
    topics.extend(unauthorized)
    # A full page, or many topics named (each unknown one answered), is encoded off the loop.
    items = len(topics) + sum(len(t["partitions"]) for t in topics)
    return response(items, throttle_time_ms=0, topics=topics, next_cursor=next_cursor)
