"""ListGroups (key 16): every group, optionally filtered by state (v4+) and type (v5+)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 16
VERSIONS = VersionRange(0, 5)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    try:
        listings = ctx.broker.groups.list_groups()
    except GroupError as e:
        return {"throttle_time_ms": 0, "error_code": e.code, "groups": []}
    states = {s.lower() for s in body.get("states_filter") or ()}
    types = {t.lower() for t in body.get("types_filter") or ()}
    if types:
        listings = [g for g in listings if g.group_type.lower() in types]
    # As Kafka: DESCRIBE on the cluster lists every group; otherwise only the groups the
    # principal may describe are listed.
    if ctx.broker.authorizer is not None and not authz.cluster(ctx, AclOperation.DESCRIBE):
        hidden = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, (g.group_id for g in listings))
        listings = [g for g in listings if g.group_id not in hidden]
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "groups": [{"group_id": g.group_id, "protocol_type": g.protocol_type, "group_state": g.state,
                    "group_type": g.group_type}
                   for g in listings if not states or g.state.lower() in states],
    }
