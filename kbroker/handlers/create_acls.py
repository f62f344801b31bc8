"""CreateAcls (key 30): add ACL bindings (needs CLUSTER ALTER)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.acl_common import (
    CLUSTER_DENIED,
    NO_AUTHORIZER,
    acl_admin,
    cluster_allowed,
    refuse_unknown,
)
from kbroker.handlers.api import RequestContext, map_yielding, response
from kbroker.security.acl import AclBinding
from kbroker.security.model import (
    CLUSTER_NAME,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

#: Kafka's message (AclApis) for an empty resource name.
EMPTY_NAME = "Invalid empty resource name"


def _broker_check(c: Any) -> tuple[int, str | None] | None:
    """Kafka's checks before the controller sees a creation: ANY or MATCH cannot make a
    ResourcePattern or AccessControlEntry (an IllegalArgumentException there, answered as
    UNKNOWN_SERVER_ERROR without a message), then AclApis' cluster-name and empty-name checks."""
    pattern = c.get("resource_pattern_type", PatternType.LITERAL)
    if (c.resource_type == ResourceType.ANY or pattern in (PatternType.ANY, PatternType.MATCH)
            or c.operation == AclOperation.ANY or c.permission_type == AclPermissionType.ANY):
        return ErrorCode.UNKNOWN_SERVER_ERROR, None
    name = c.resource_name or ""
    if c.resource_type == ResourceType.CLUSTER and name != CLUSTER_NAME:
        return ErrorCode.INVALID_REQUEST, f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if not name:
        return ErrorCode.INVALID_REQUEST, EMPTY_NAME
    return None

API_KEY = 30
VERSIONS = VersionRange(0, 3)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    creations = ctx.request.body.creations
    for c in creations:
        refuse_unknown("CreateAclsRequest", c.resource_type, c.get("resource_pattern_type", PatternType.LITERAL),
                       c.operation, c.permission_type)
    admin = acl_admin(ctx)

    def every(code: int, message: str) -> dict[str, Any]:
        return response(len(creations), throttle_time_ms=0,
                        results=[{"error_code": code, "error_message": message} for _ in creations])

    if not cluster_allowed(ctx, AclOperation.ALTER):
        return every(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_DENIED)
    if admin is None:
        return every(ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER)
    early = [_broker_check(c) for c in creations]
    # A request may carry hundreds of thousands of bindings: other connections get in meanwhile.
    bindings = await map_yielding(_binding, [c for c, e in zip(creations, early, strict=True) if e is None])
    try:
        outcomes = iter(await admin.create_acls(bindings))
    except OSError as err:
        return every(ErrorCode.UNKNOWN_SERVER_ERROR, f"The ACLs could not be saved: {err}")
    results = []
    for found in early:
        if found is None:
            m = next(outcomes)
            # Kafka leaves a success's message at its default, "".
            found = (ErrorCode.NONE, "") if m is None else (ErrorCode.INVALID_REQUEST, m)
        results.append({"error_code": found[0], "error_message": found[1]})
    return response(len(results), throttle_time_ms=0, results=results)


def _binding(c: Any) -> AclBinding:
    return AclBinding.of(c.resource_type, c.resource_name or "",
                         c.get("resource_pattern_type", PatternType.LITERAL),  # v0: literal names only
                         c.principal or "", c.host or "", c.operation, c.permission_type)
