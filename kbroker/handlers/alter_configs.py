"""AlterConfigs (key 33): replace a topic's overrides or the broker's dynamic configs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import SET, ConfigOp, alter_resource

API_KEY = 33
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    return await answer_alter(ctx, lambda c: ConfigOp(c.name, SET, c.value), incremental=False)


async def answer_alter(ctx: RequestContext, op_of: Callable[[Any], ConfigOp], *, incremental: bool) -> dict[str, Any]:
    """The response of AlterConfigs or IncrementalAlterConfigs: each resource's configs, made
    into operations by ``op_of``, authorized and then applied (or only validated)."""
    body = ctx.request.body
    responses = []
    for res in body.resources:
        ops = [op_of(c) for c in res.configs]
        # As Kafka: ALTER_CONFIGS on the cluster for a broker or its loggers, on the topic for a topic.
        refused = authz.alter_config_error(ctx, res.resource_type, res.resource_name, [o.name for o in ops])
        code: int
        message: str | None
        if refused is not None:
            code, message = refused, authz.MESSAGES[refused]
        else:
            code, message = await alter_resource(ctx.config_scope, res.resource_type, res.resource_name, ops,
                                           incremental=incremental, validate_only=bool(body.validate_only))
        responses.append({"error_code": code, "error_message": message, "resource_type": res.resource_type,
                          "resource_name": res.resource_name})
    return {"throttle_time_ms": 0, "responses": responses}
