"""SyncGroup (key 14): the leader hands out assignments; every member receives its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 14
VERSIONS = VersionRange(0, 5)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "protocol_type": None,
                "protocol_name": None, "assignment": b""}
    result = await ctx.broker.groups.sync_group(
        body["group_id"], body["generation_id"], body["member_id"], body.get("group_instance_id"),
        body.get("protocol_type"), body.get("protocol_name"),
        {a["member_id"]: bytes(a["assignment"]) for a in body["assignments"]})
    return {
        "throttle_time_ms": 0,
        "error_code": result.error,
        "protocol_type": result.protocol_type,
        "protocol_name": result.protocol_name,
        "assignment": result.assignment,
    }
