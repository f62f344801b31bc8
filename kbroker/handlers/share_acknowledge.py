"""ShareAcknowledge (key 79): acknowledge acquired records without fetching (KIP-932)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.handlers.share_fetch import acks_of, grouped
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 79
VERSIONS = VersionRange(1, 1)


def _top_error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "responses": [],
            "node_endpoints": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    group_id = body["group_id"]
    if not group_id:
        return _top_error(ErrorCode.INVALID_REQUEST, "GroupId must be set")
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, group_id):
        return _top_error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    code, answers = await ctx.broker.shares.acknowledge(group_id, body["member_id"] or "",
                                                        body["share_session_epoch"], acks_of(body["topics"]))
    if code != ErrorCode.NONE:
        return _top_error(code)
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "responses": grouped(ctx, answers, fetch=False), "node_endpoints": []}
