"""FindCoordinator (key 10): this broker coordinates every group and transactional id.

As Kafka, the first lookup creates the coordinator's internal topic (``__consumer_offsets``
for groups, ``__transaction_state`` for transactional ids); when it cannot be created the
answer is the retriable COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import Errors
from kbroker.handlers.api import RequestContext

API_KEY = 10
VERSIONS = VersionRange(0, 6)
GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1



def _endpoint(ctx: RequestContext) -> tuple[str, int]:
    endpoints = ctx.broker.endpoints
    return endpoints.get(ctx.session.listener) or next(iter(endpoints.values()))


def _lookup(ctx: RequestContext, key_type: int) -> Errors:
    if key_type == GROUP_KEY_TYPE:
        # Kafka creates __consumer_offsets when a client first looks for a group coordinator.
        return Errors.NONE if ctx.broker.groups.ensure_offsets_topic() else Errors.COORDINATOR_NOT_AVAILABLE
    if key_type == TRANSACTION_KEY_TYPE:
        return Errors.NONE if ctx.broker.transactions.ensure_state_topic() else Errors.COORDINATOR_NOT_AVAILABLE
    return Errors.INVALID_REQUEST


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    key_type = body.get("key_type", GROUP_KEY_TYPE)
    host, port = _endpoint(ctx)
    node = ctx.broker.node_id

    def answer(error: Errors) -> dict[str, Any]:
        if error != Errors.NONE:
            return {"error_code": error, "error_message": error.name, "node_id": -1, "host": "", "port": -1}
        return {"error_code": 0, "error_message": None, "node_id": node, "host": host, "port": port}

    if ctx.version < 4:
        return {"throttle_time_ms": 0, **answer(_lookup(ctx, key_type))}
    error = _lookup(ctx, key_type)
    return {"throttle_time_ms": 0,
            "coordinators": [{"key": key, **answer(error)} for key in body.coordinator_keys]}
