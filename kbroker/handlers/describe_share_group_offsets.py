"""DescribeShareGroupOffsets (key 90): the start offset of each share-partition of share groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 90
VERSIONS = VersionRange(0, 0)


def _group_error(group_id: str, code: int, message: str | None = None) -> dict[str, Any]:
    return {"group_id": group_id, "topics": [], "error_code": code, "error_message": message}


def describe_group(ctx: RequestContext, group_id: str, topics: list[Any] | None) -> dict[str, Any]:
    """One group's entry: the partitions asked for (all with a state when ``topics`` is null)."""
    broker = ctx.broker
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return _group_error(group_id, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    try:
        broker.groups.check_active(group_id)
    except GroupError as e:
        return _group_error(group_id, e.code)
    if not broker.share_groups.has_group(group_id):
        return _group_error(group_id, ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
    shares = broker.shares
    out = []
    if topics is None:
        for topic_id, indexes in shares.initialized(group_id).items():
            info = broker.metadata.topic_by_id(topic_id)
            if info is None:
                continue
            out.append({"topic_name": info.name, "topic_id": topic_id, "partitions": [
                {"partition_index": i, "start_offset": shares.start_offset(group_id, topic_id, i), "leader_epoch": 0,
                 "error_code": 0, "error_message": None} for i in indexes]})
        return {"group_id": group_id, "topics": out, "error_code": 0, "error_message": None}
    for t in topics:
        info = broker.metadata.topic(t["topic_name"])
        if info is None:
            out.append({"topic_name": t["topic_name"], "topic_id": None, "partitions": [
                {"partition_index": i, "start_offset": -1, "leader_epoch": -1,
                 "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "error_message": None}
                for i in t["partitions"]]})
            continue
        out.append({"topic_name": info.name, "topic_id": info.topic_id, "partitions": [
            {"partition_index": i, "start_offset": shares.start_offset(group_id, info.topic_id, i),
             "leader_epoch": 0 if 0 <= i < len(info.partitions) else -1,
             "error_code": 0 if 0 <= i < len(info.partitions) else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
             "error_message": None} for i in t["partitions"]]})
    return {"group_id": group_id, "topics": out, "error_code": 0, "error_message": None}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    groups = [describe_group(ctx, g["group_id"], g["topics"]) for g in ctx.request.body["groups"]]
    return response(len(groups), throttle_time_ms=0, groups=groups)
