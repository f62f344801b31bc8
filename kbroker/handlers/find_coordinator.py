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
from kbroker.handlers.authz import MESSAGES
from kbroker.security.model import AclOperation, ResourceType

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


def _refused(ctx: RequestContext, key_type: int, key: str) -> Errors | None:
    """As Kafka: looking up a coordinator needs DESCRIBE on the group or transactional id."""
    if key_type == GROUP_KEY_TYPE and not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, key):
        return Errors.GROUP_AUTHORIZATION_FAILED
    if key_type == TRANSACTION_KEY_TYPE and not ctx.authorize(AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                                                              key):
        return Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return None


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
        refused = _refused(ctx, key_type, body.key)
        if refused is not None:
            return {"throttle_time_ms": 0, **answer(refused), "error_message": MESSAGES[refused]}
        return {"throttle_time_ms": 0, **answer(_lookup(ctx, key_type))}
    # Kafka leaves a refused key's message null from v4.
    refusals = [(key, _refused(ctx, key_type, key)) for key in body.coordinator_keys]
    all_refused = bool(refusals) and all(r is not None for _, r in refusals)
    error = Errors.NONE if all_refused else _lookup(ctx, key_type)
    return {"throttle_time_ms": 0,
            "coordinators": [{"key": key, **answer(error)} if refused is None
                             else {"key": key, **answer(refused), "error_message": None}
                             for key, refused in refusals]}
