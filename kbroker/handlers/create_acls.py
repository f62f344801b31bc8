"""CreateAcls (key 30): add ACL bindings (needs CLUSTER ALTER)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.acl_common import CLUSTER_DENIED, NO_AUTHORIZER, acl_admin, cluster_allowed
from kbroker.handlers.api import RequestContext
from kbroker.security.acl import AclBinding
from kbroker.security.model import AclOperation, PatternType

API_KEY = 30
VERSIONS = VersionRange(0, 3)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    creations = ctx.request.body.creations
    admin = acl_admin(ctx)

    def every(code: int, message: str) -> dict[str, Any]:
        return {"throttle_time_ms": 0,
                "results": [{"error_code": code, "error_message": message} for _ in creations]}

    if not cluster_allowed(ctx, AclOperation.ALTER):
        return every(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_DENIED)
    if admin is None:
        return every(ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER)
    bindings = [AclBinding.of(c.resource_type, c.resource_name or "",
                              c.get("resource_pattern_type", PatternType.LITERAL),  # v0: literal names only
                              c.principal or "", c.host or "", c.operation, c.permission_type)
                for c in creations]
    try:
        outcomes = await admin.create_acls(bindings)
    except OSError as e:
        return every(ErrorCode.UNKNOWN_SERVER_ERROR, f"The ACLs could not be saved: {e}")
    return {"throttle_time_ms": 0,
            "results": [{"error_code": ErrorCode.NONE if m is None else ErrorCode.INVALID_REQUEST,
                         "error_message": m} for m in outcomes]}
