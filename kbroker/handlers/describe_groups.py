"""DescribeGroups (key 15): state, protocol and members of groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import Errors, GroupError
from kbroker.handlers.api import RequestContext, map_yielding, response
from kbroker.handlers.metadata import AUTHORIZED_OPERATIONS_OMITTED
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 15
VERSIONS = VersionRange(0, 6)


def _ops(ctx: RequestContext, group_id: str) -> int:
    # As Kafka: reported (when asked) for the groups described without error.
    if ctx.request.body.get("include_authorized_operations", False):
        return ctx.authorized_operations(ResourceType.GROUP, group_id)
    return AUTHORIZED_OPERATIONS_OMITTED


def _describe(ctx: RequestContext, group_id: str) -> dict[str, Any]:
    empty: dict[str, Any] = {"group_id": group_id, "group_state": "", "protocol_type": "", "protocol_data": "",
                             "members": []}
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return {**empty, "error_code": Errors.GROUP_AUTHORIZATION_FAILED}
    try:
        summary = ctx.broker.groups.describe_group(group_id)
    except GroupError as e:
        return {**empty, "error_code": e.code}
    if summary is None:
        if ctx.version >= 6:  # KIP-1043: say so, and (as Kafka) still name the state Dead
            what = "is not a classic group" if ctx.broker.groups.group_type(group_id) else "not found"
            return {**empty, "error_code": Errors.GROUP_ID_NOT_FOUND, "group_state": "Dead",
                    "error_message": f"Group {group_id} {what}."}
        return {**empty, "error_code": 0, "group_state": "Dead", "authorized_operations": _ops(ctx, group_id)}
    return {
        "error_code": 0,
        "authorized_operations": _ops(ctx, group_id),
        "group_id": summary.group_id,
        "group_state": summary.state,
        "protocol_type": summary.protocol_type,
        "protocol_data": summary.protocol,
        "members": [{"member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                     "client_host": m.client_host, "member_metadata": m.metadata,
                     "member_assignment": m.assignment} for m in summary.members],
    }


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    names = ctx.request.body.groups
    groups = await map_yielding(lambda g: _describe(ctx, g), names)
    return response(len(names), throttle_time_ms=0, groups=groups)
