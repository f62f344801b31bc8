"""ShareGroupDescribe (key 77): share groups' epochs, members and assignments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import ALL_OPERATIONS, RequestContext, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 77
VERSIONS = VersionRange(1, 1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    groups = []
    for group_id in dict.fromkeys(body["group_ids"]):
        if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            groups.append({"error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "error_message": None,
                           "group_id": group_id, "group_state": "", "group_epoch": 0, "assignment_epoch": 0,
                           "assignor_name": "", "members": [], "authorized_operations": -2147483648})
            continue
        try:
            ctx.broker.groups.check_active(group_id)
        except GroupError as e:
            groups.append({"error_code": e.code, "error_message": None, "group_id": group_id, "group_state": "",
                           "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "", "members": [],
                           "authorized_operations": -2147483648})
            continue
        entry = ctx.broker.share_groups.describe(group_id)
        if body["include_authorized_operations"] and entry["error_code"] == ErrorCode.NONE:
            entry["authorized_operations"] = ALL_OPERATIONS[ResourceType.GROUP]
        groups.append(entry)
    return response(len(groups), throttle_time_ms=0, groups=groups)
