"""AlterConfigs (key 33): replace a topic's or a group's overrides, or the broker's dynamic configs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.group_configs import GROUP
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import APPEND, DELETE, SET, SUBTRACT, ConfigOp, alter_resource
from kbroker.metadata.errors import Result

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
        elif res.resource_type == GROUP:
            code, message = await _alter_group(ctx, res.resource_name, ops, incremental=incremental,
                                               validate_only=bool(body.validate_only))
        else:
            code, message = await alter_resource(ctx.config_scope, res.resource_type, res.resource_name, ops,
                                           incremental=incremental, validate_only=bool(body.validate_only))
        responses.append({"error_code": code, "error_message": message, "resource_type": res.resource_type,
                          "resource_name": res.resource_name})
    return {"throttle_time_ms": 0, "responses": responses}


async def _alter_group(ctx: RequestContext, group_id: str, ops: list[ConfigOp], *, incremental: bool,
                       validate_only: bool) -> Result:
    """A group's configs, as Kafka's controller changes them: SET and DELETE; APPEND and SUBTRACT
    only for LIST keys, which group configs have none of."""
    if len({o.name for o in ops}) != len(ops):
        return ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys"
    updates: dict[str, str | None] = {}
    for o in ops:
        if o.op in (APPEND, SUBTRACT):
            # No group config is a LIST (Kafka's isSplittable), so neither applies; Kafka's text.
            verb = "APPEND" if o.op == APPEND else "SUBTRACT"
            return ErrorCode.INVALID_CONFIG, f"Can't {verb} to key {o.name} because its type is not LIST."
        elif o.op == DELETE:
            updates[o.name] = None
        elif o.op == SET:
            if o.value is None and incremental:
                return ErrorCode.INVALID_REQUEST, f"Null value not supported for: {o.name}"
            updates[o.name] = o.value
        else:
            return ErrorCode.INVALID_REQUEST, f"Unknown config operation {o.op}"
    if not incremental:
        updates = {k: v for k, v in updates.items() if v is not None}
    return await ctx.broker.group_configs.alter(group_id, updates, replace=not incremental,
                                                validate_only=validate_only)
