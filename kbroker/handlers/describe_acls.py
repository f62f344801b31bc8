"""DescribeAcls (key 29): the ACL bindings a filter selects, grouped by resource pattern
(needs CLUSTER DESCRIBE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.acl_common import CLUSTER_DENIED, acl_admin, cluster_allowed
from kbroker.handlers.api import RequestContext, response
from kbroker.security.acl import AclBinding, AclBindingFilter, InvalidAcl
from kbroker.security.model import AclOperation, PatternType

API_KEY = 29
VERSIONS = VersionRange(0, 3)


def filter_of(f: Any) -> AclBindingFilter:
    """The filter a DescribeAcls request or a DeleteAcls filter entry holds (v0: literal names only)."""
    return AclBindingFilter.of(f.resource_type_filter, f.resource_name_filter,
                               f.get("pattern_type_filter", PatternType.LITERAL), f.principal_filter,
                               f.host_filter, f.operation, f.permission_type)


def resources(bindings: list[AclBinding]) -> list[dict[str, Any]]:
    """DescribeAclsResource entries: one per resource pattern, each with its ACLs."""
    grouped: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for b in bindings:
        grouped.setdefault((b.resource_type, b.name, b.pattern_type), []).append(
            {"principal": b.principal, "host": b.host, "operation": b.operation,
             "permission_type": b.permission})
    return [{"resource_type": rt, "resource_name": name, "pattern_type": pt, "acls": acls}
            for (rt, name, pt), acls in grouped.items()]


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    def error(code: int, message: str) -> dict[str, Any]:
        return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "resources": []}

    if not cluster_allowed(ctx, AclOperation.DESCRIBE):
        return error(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_DENIED)
    admin = acl_admin(ctx)
    if admin is None:
        return error(ErrorCode.SECURITY_DISABLED, "No Authorizer is configured on the broker")
    flt = filter_of(ctx.request.body)
    try:
        flt.validate()
    except InvalidAcl as e:
        return error(ErrorCode.INVALID_REQUEST, str(e))
    found = admin.acls(flt)
    return response(len(found), throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    resources=resources(found))
