"""DeleteGroups (key 42): delete Empty groups and their committed offsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 42
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    names = list(ctx.request.body.groups_names)
    # As Kafka: a group the principal may not delete answers GROUP_AUTHORIZATION_FAILED untouched.
    refused = authz.denied(ctx, AclOperation.DELETE, ResourceType.GROUP, names)
    allowed = [g for g in names if g not in refused] if refused else names
    results: dict[str, int] = {}
    if allowed:
        try:
            results.update(await ctx.broker.groups.delete_groups(allowed))
        except GroupError as e:
            results.update(dict.fromkeys(allowed, e.code))
    results.update(dict.fromkeys(refused, ErrorCode.GROUP_AUTHORIZATION_FAILED))
    unique = list(dict.fromkeys(names))
    return response(len(unique), throttle_time_ms=0,
                    results=[{"group_id": g, "error_code": results[g]} for g in unique])
