"""DeleteGroups (key 42): delete Empty groups and their committed offsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext, response

API_KEY = 42
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    names = list(ctx.request.body.groups_names)
    try:
        results = await ctx.broker.groups.delete_groups(names)
    except GroupError as e:
        results = dict.fromkeys(names, e.code)
    unique = list(dict.fromkeys(names))
    return response(len(unique), throttle_time_ms=0,
                    results=[{"group_id": g, "error_code": results[g]} for g in unique])
