"""DeleteShareGroupOffsets (key 92): forget the share-partition states of topics of an empty share group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 92
VERSIONS = VersionRange(0, 0)


def _error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "responses": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    broker = ctx.broker
    group_id = body["group_id"]
    if not ctx.authorize(AclOperation.DELETE, ResourceType.GROUP, group_id):
        return _error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    try:
        broker.groups.check_active(group_id)
    except GroupError as e:
        return _error(e.code)
    group = broker.share_groups.groups.get(group_id)
    if group is None:
        return _error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
    if group.members:
        return _error(ErrorCode.NON_EMPTY_GROUP, "The group is not empty.")
    responses = []
    for t in body["topics"]:
        info = broker.metadata.topic(t["topic_name"])
        if info is None:
            responses.append({"topic_name": t["topic_name"], "topic_id": None,
                              "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "error_message": None})
            continue
        code = await broker.shares.delete_topic(group_id, info.topic_id)
        responses.append({"topic_name": info.name, "topic_id": info.topic_id, "error_code": code,
                          "error_message": None})
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "responses": responses}
