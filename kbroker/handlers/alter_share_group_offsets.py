"""AlterShareGroupOffsets (key 91): set share-partitions' start offsets of an empty share group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 91
VERSIONS = VersionRange(0, 0)


def _error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "responses": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    broker = ctx.broker
    group_id = body["group_id"]
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, group_id):
        return _error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    try:
        broker.groups.check_active(group_id)
    except GroupError as e:
        return _error(e.code)
    if broker.groups.manager.get(group_id) is not None or broker.groups.group_type(group_id) == "consumer":
        # One namespace: a classic or consumer group's id is not a share group's to create.
        return _error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
    share_groups = broker.share_groups
    group = share_groups.groups.get(group_id)
    if group is not None and group.members:
        # As Kafka: offsets move only while no consumer holds records.
        return _error(ErrorCode.NON_EMPTY_GROUP, "The group is not empty.")
    code = await share_groups.ensure_group(group_id)
    if code != ErrorCode.NONE:
        return _error(code)
    responses = []
    for t in body["topics"]:
        info = broker.metadata.topic(t["topic_name"])
        partitions = []
        for p in t["partitions"]:
            index = p["partition_index"]
            if info is None or not 0 <= index < len(info.partitions):
                err = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif p["start_offset"] < -1:
                err = ErrorCode.INVALID_REQUEST
            else:
                err = await broker.shares.alter_start(group_id, info.topic_id, index, p["start_offset"])
            partitions.append({"partition_index": index, "error_code": err, "error_message": None})
        responses.append({"topic_name": t["topic_name"], "topic_id": info.topic_id if info is not None else None,
                          "partitions": partitions})
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "responses": responses}
