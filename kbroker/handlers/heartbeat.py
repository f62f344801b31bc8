"""Heartbeat (key 12): keep a member's session alive and learn of rebalances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 12
VERSIONS = VersionRange(0, 4)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    error = ctx.broker.groups.heartbeat(body["group_id"], body["member_id"], body.get("group_instance_id"),
                                        body["generation_id"])
    return {"throttle_time_ms": 0, "error_code": error}
