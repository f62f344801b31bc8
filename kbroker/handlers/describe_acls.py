"""DescribeAcls (key 29): the ACL bindings a filter selects, grouped by resource pattern
(needs CLUSTER DESCRIBE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.acl_common import CLUSTER_DENIED, acl_admin, cluster_allowed, refuse_unknown
from kbroker.handlers.api import RequestContext, response
from kbroker.security.acl import AclBinding, AclBindingFilter
from kbroker.security.authorizer import AclAdmin
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


def refuse_unknown_filter(what: str, f: Any) -> None:
    """Close the connection on a filter holding the code UNKNOWN (see :func:`refuse_unknown`)."""
    refuse_unknown(what, f.resource_type_filter, f.get("pattern_type_filter", PatternType.LITERAL), f.operation,
                   f.permission_type)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    refuse_unknown_filter("DescribeAclsRequest", ctx.request.body)

    def error(code: int, message: str) -> dict[str, Any]:
        return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "resources": []}

    if not cluster_allowed(ctx, AclOperation.DESCRIBE):
        return error(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_DENIED)
    admin = acl_admin(ctx)
    if admin is None:
        return error(ErrorCode.SECURITY_DISABLED, "No Authorizer is configured on the broker")
    # Kafka's broker does not validate a describe filter: codes it does not know (read as
    # UNKNOWN) select nothing. A success's message stays at its default, "".
    # Selecting and grouping many thousands of ACLs is done in a worker thread (the ACLs
    # are an immutable snapshot), so that other connections are served meanwhile.
    found, grouped = await anyio.to_thread.run_sync(_describe, admin, filter_of(ctx.request.body))
    return response(len(found), throttle_time_ms=0, error_code=ErrorCode.NONE, error_message="",
                    resources=grouped)


def _describe(admin: AclAdmin, flt: AclBindingFilter) -> tuple[list[AclBinding], list[dict[str, Any]]]:
    found = admin.acls(flt)
    return found, resources(found)
