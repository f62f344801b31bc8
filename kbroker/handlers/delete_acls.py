"""DeleteAcls (key 31): remove the ACL bindings each filter selects (needs CLUSTER ALTER)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.acl_common import CLUSTER_DENIED, NO_AUTHORIZER, acl_admin, cluster_allowed
from kbroker.handlers.api import RequestContext, response
from kbroker.handlers.describe_acls import filter_of
from kbroker.security.acl import AclBinding
from kbroker.security.model import AclOperation

API_KEY = 31
VERSIONS = VersionRange(0, 3)


def _matching(b: AclBinding) -> dict[str, Any]:
    return {"error_code": ErrorCode.NONE, "error_message": None, "resource_type": b.resource_type,
            "resource_name": b.name, "pattern_type": b.pattern_type, "principal": b.principal,
            "host": b.host, "operation": b.operation, "permission_type": b.permission}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    filters = ctx.request.body.filters

    def every(code: int, message: str) -> dict[str, Any]:
        return {"throttle_time_ms": 0, "filter_results": [
            {"error_code": code, "error_message": message, "matching_acls": []} for _ in filters]}

    if not cluster_allowed(ctx, AclOperation.ALTER):
        return every(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_DENIED)
    admin = acl_admin(ctx)
    if admin is None:
        return every(ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER)
    try:
        outcomes = await admin.delete_acls([filter_of(f) for f in filters])
    except OSError as e:
        return every(ErrorCode.UNKNOWN_SERVER_ERROR, f"The ACLs could not be saved: {e}")
    results: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, str):
            results.append({"error_code": ErrorCode.INVALID_REQUEST, "error_message": outcome, "matching_acls": []})
        else:
            results.append({"error_code": ErrorCode.NONE, "error_message": None,
                            "matching_acls": [_matching(b) for b in outcome]})
    return response(sum(len(r["matching_acls"]) for r in results), throttle_time_ms=0, filter_results=results)
