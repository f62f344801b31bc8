"""DescribeClientQuotas (key 48): the quota configs of the entities a filter matches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType
from kbroker.security.quotas import FilterComponent, QuotaError

API_KEY = 48
VERSIONS = VersionRange(0, 1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        return _error(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None)
    components = [FilterComponent(c.entity_type, c.match_type, c.match) for c in body.components]
    try:
        found = ctx.broker.client_quotas.describe(components, bool(body.strict))
    except QuotaError as e:
        return _error(ErrorCode.INVALID_REQUEST, str(e))
    entries = [{"entity": [{"entity_type": t, "entity_name": n} for t, n in entity],
                "values": [{"key": k, "value": v} for k, v in sorted(values.items())]}
               for entity, values in found]
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None, "entries": entries}


def _error(code: int, message: str | None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "entries": None}
