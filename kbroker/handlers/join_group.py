"""JoinGroup (key 11): join a group and wait for the join barrier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups import JoinRequest, client_host
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 11
VERSIONS = VersionRange(0, 9)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    v = ctx.version
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body["group_id"]):
        # Kafka's JoinGroupRequest.getErrorResponse.
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "generation_id": -1,
                "protocol_type": None, "protocol_name": None if v >= 7 else "", "leader": "",
                "skip_assignment": False, "member_id": "", "members": []}
    rebalance_timeout = body.get("rebalance_timeout_ms")
    req = JoinRequest(
        group_id=body["group_id"],
        member_id=body["member_id"],
        session_timeout_ms=body["session_timeout_ms"],
        # v0 has no rebalance timeout; the session timeout stood in for it.
        rebalance_timeout_ms=body["session_timeout_ms"] if rebalance_timeout is None else rebalance_timeout,
        protocol_type=body["protocol_type"],
        protocols=[(p["name"], bytes(p["metadata"])) for p in body["protocols"]],
        group_instance_id=body.get("group_instance_id"),
        client_id=ctx.client_id or "",
        client_host=client_host(ctx.session.client_host),
        require_known_member_id=v >= 4,
        supports_skip_assignment=v >= 9,
        reason=body.get("reason"),
    )
    result = await ctx.broker.groups.join_group(req)
    return {
        "throttle_time_ms": 0,
        "error_code": result.error,
        "generation_id": result.generation_id,
        "protocol_type": result.protocol_type,
        # Before v7 the protocol name is not nullable.
        "protocol_name": result.protocol_name if v >= 7 else (result.protocol_name or ""),
        "leader": result.leader_id,
        "skip_assignment": result.skip_assignment,
        "member_id": result.member_id,
        "members": [{"member_id": m, "group_instance_id": i, "metadata": md} for m, i, md in result.members],
    }
