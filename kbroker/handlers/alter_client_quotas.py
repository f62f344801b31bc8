"""AlterClientQuotas (key 49): set or remove quota configs of user, client-id and ip entities.

Each entry is validated and answered on its own, as Kafka's controller does; the valid
ones are applied together, durably, unless ``validate_only``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType
from kbroker.security.quotas import Entity, QuotaError, validate_entity, validate_value

log = logging.getLogger(__name__)
API_KEY = 49
VERSIONS = VersionRange(0, 1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    authorized = ctx.authorize(AclOperation.ALTER_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME)
    results: list[dict[str, Any]] = []
    valid: list[tuple[Entity, dict[str, float | None]]] = []
    for entry in body.entries:
        echo = [{"entity_type": e.entity_type, "entity_name": e.entity_name} for e in entry.entity]
        result: dict[str, Any] = {"error_code": ErrorCode.NONE, "error_message": None, "entity": echo}
        results.append(result)
        if not authorized:
            result["error_code"] = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
            continue
        try:
            entity = validate_entity([(e.entity_type, e.entity_name) for e in entry.entity])
            ops: dict[str, float | None] = {}
            for op in entry.ops:
                if op.key in ops:
                    raise QuotaError(f"Duplicate quota key {op.key} for entity {_describe(entity)}")
                if not op.remove:
                    validate_value(entity, op.key, op.value)
                else:
                    validate_value(entity, op.key, 0.0)  # an unknown key is refused even for removal
                ops[op.key] = None if op.remove else float(op.value)
        except QuotaError as e:
            result["error_code"], result["error_message"] = ErrorCode.INVALID_REQUEST, str(e)
            continue
        valid.append((entity, ops))
    try:
        await ctx.broker.client_quotas.alter(valid, validate_only=bool(body.validate_only))
    except OSError as e:  # not saved, so not applied either
        log.error("cannot save client quotas: %s", e)
        for result in results:
            if result["error_code"] == ErrorCode.NONE:
                result["error_code"], result["error_message"] = ErrorCode.UNKNOWN_SERVER_ERROR, str(e)
    return {"throttle_time_ms": 0, "entries": results}


def _describe(entity: Entity) -> str:
    return ",".join(f"{t}={'<default>' if n is None else n}" for t, n in entity)
