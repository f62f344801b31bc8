"""OffsetDelete (key 47): drop committed offsets of topics a group no longer consumes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext

API_KEY = 47
VERSIONS = VersionRange(0, 0)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    partitions = [TopicPartition(t.name, p.partition_index) for t in body.topics for p in t.partitions]
    try:
        error, results = await ctx.broker.groups.delete_offsets(body.group_id, partitions)
    except GroupError as e:
        return {"error_code": e.code, "throttle_time_ms": 0, "topics": []}
    if error != 0:
        return {"error_code": error, "throttle_time_ms": 0, "topics": []}
    return {
        "error_code": 0,
        "throttle_time_ms": 0,
        "topics": [{"name": t.name,
                    "partitions": [{"partition_index": p.partition_index,
                                    "error_code": results.get(TopicPartition(t.name, p.partition_index), 0)}
                                   for p in t.partitions]}
                   for t in body.topics],
    }
