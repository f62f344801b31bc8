"""OffsetDelete (key 47): drop committed offsets of topics a group no longer consumes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import GroupError
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 47
VERSIONS = VersionRange(0, 0)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    metadata = ctx.broker.metadata
    # As Kafka: DELETE on the group, then READ on each topic.
    if not ctx.authorize(AclOperation.DELETE, ResourceType.GROUP, body.group_id):
        return {"error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "throttle_time_ms": 0, "topics": []}
    refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in body.topics))
    partitions: list[TopicPartition] = []
    # As Kafka: partitions that do not exist are answered here, and never reach the coordinator.
    unknown: dict[TopicPartition, int] = {}
    for t in body.topics:
        topic = metadata.topic(t.name)
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            if t.name in refused:
                unknown[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or p.partition_index not in topic.partitions:
                unknown[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                partitions.append(tp)
    try:
        error, results = await ctx.broker.groups.delete_offsets(body.group_id, partitions)
    except GroupError as e:
        return {"error_code": e.code, "throttle_time_ms": 0, "topics": []}
    if error != 0:
        return {"error_code": error, "throttle_time_ms": 0, "topics": []}
    answers: dict[TopicPartition, int] = {**unknown, **results}
    return {
        "error_code": 0,
        "throttle_time_ms": 0,
        "topics": [{"name": t.name,
                    "partitions": [{"partition_index": p.partition_index,
                                    "error_code": answers.get(TopicPartition(t.name, p.partition_index), 0)}
                                   for p in t.partitions]}
                   for t in body.topics],
    }
