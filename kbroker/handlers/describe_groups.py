"""DescribeGroups (key 15): state, protocol and members of groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import Errors, GroupError
from kbroker.handlers.api import DetachedBody, RequestContext

API_KEY = 15
VERSIONS = VersionRange(0, 6)
#: Groups described between two yields to the event loop.
_MANY = 1000


def _describe(ctx: RequestContext, group_id: str) -> dict[str, Any]:
    empty: dict[str, Any] = {"group_id": group_id, "group_state": "", "protocol_type": "", "protocol_data": "",
                             "members": []}
    try:
        summary = ctx.broker.groups.describe_group(group_id)
    except GroupError as e:
        return {**empty, "error_code": e.code}
    if summary is None:
        if ctx.version >= 6:  # KIP-1043: say so instead of describing a Dead group
            return {**empty, "error_code": Errors.GROUP_ID_NOT_FOUND,
                    "error_message": f"Group {group_id} not found."}
        return {**empty, "error_code": 0, "group_state": "Dead"}
    return {
        "error_code": 0,
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
    if len(names) <= _MANY:
        return {"throttle_time_ms": 0, "groups": [_describe(ctx, g) for g in names]}
    # Thousands of names: let other connections in between chunks, and encode off the event loop.
    groups: list[dict[str, Any]] = []
    for start in range(0, len(names), _MANY):
        groups.extend(_describe(ctx, g) for g in names[start : start + _MANY])
        await anyio.sleep(0)
    return DetachedBody(throttle_time_ms=0, groups=groups)
