"""LeaveGroup (key 13): members leave, one (v0-2) or a batch (v3+, KIP-345)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 13
VERSIONS = VersionRange(0, 5)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body.group_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "members": []}
    if ctx.version < 3:
        members: list[tuple[str, str | None]] = [(body.member_id, None)]
    else:
        members = [(m.member_id, m.get("group_instance_id")) for m in body.members]
    error, results = ctx.broker.groups.leave_group(body.group_id, members)
    if ctx.version < 3:
        # One member: its outcome is the request's.
        if error == 0 and results:
            error = results[0][2]
        return {"throttle_time_ms": 0, "error_code": error}
    return {
        "throttle_time_ms": 0,
        "error_code": error,
        "members": [{"member_id": m, "group_instance_id": i, "error_code": e} for m, i, e in results],
    }
