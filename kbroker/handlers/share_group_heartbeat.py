"""ShareGroupHeartbeat (key 76): join, stay in and leave a share group (KIP-932)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups import client_host
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 76
#: Version 0 was Kafka 4.0's early access, removed in 4.1; clients use v1.
VERSIONS = VersionRange(1, 1)


def _error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "member_id": None,
            "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    group_id = body["group_id"]
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, group_id):
        return _error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    topics = body["subscribed_topic_names"]
    if topics is not None and ctx.broker.authorizer is not None:
        from kbroker.handlers import authz

        if authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, topics):
            return _error(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    try:
        ctx.broker.groups.check_active(group_id)
    except GroupError as e:
        return _error(e.code)
    out = await ctx.broker.share_groups.heartbeat(
        group_id, body["member_id"], body["member_epoch"], body["rack_id"],
        None if topics is None else list(topics), ctx.client_id or "", client_host(ctx.session.client_host))
    return {"throttle_time_ms": 0, **out}
