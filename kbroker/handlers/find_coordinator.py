"""FindCoordinator (key 10): this broker coordinates every group.

Transactions are not supported yet. A transactional id's coordinator lookup is answered
with TRANSACTIONAL_ID_AUTHORIZATION_FAILED and a message saying so: the retriable errors
(COORDINATOR_NOT_AVAILABLE and the like) leave ``init_transactions()`` retrying until its
timeout, while every client fails at once, fatally, on this one, and librdkafka shows the
message (``...: Transactional Id authorization failed: transactions are not supported``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import Errors
from kbroker.handlers.api import RequestContext

API_KEY = 10
VERSIONS = VersionRange(0, 6)
GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
TRANSACTIONS_UNSUPPORTED_MESSAGE = "transactions are not supported by this broker (kbroker) yet"

log = logging.getLogger(__name__)


def _endpoint(ctx: RequestContext) -> tuple[str, int]:
    endpoints = ctx.broker.endpoints
    return endpoints.get(ctx.session.listener) or next(iter(endpoints.values()))


def _lookup(ctx: RequestContext, key_type: int) -> Errors:
    if key_type == GROUP_KEY_TYPE:
        # Kafka creates __consumer_offsets when a client first looks for a group coordinator.
        return Errors.NONE if ctx.broker.groups.ensure_offsets_topic() else Errors.COORDINATOR_NOT_AVAILABLE
    if key_type == TRANSACTION_KEY_TYPE:
        return Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return Errors.INVALID_REQUEST


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    key_type = body.get("key_type", GROUP_KEY_TYPE)
    host, port = _endpoint(ctx)
    node = ctx.broker.node_id

    def answer(error: Errors) -> dict[str, Any]:
        if error != Errors.NONE:
            message = TRANSACTIONS_UNSUPPORTED_MESSAGE if key_type == TRANSACTION_KEY_TYPE else error.name
            return {"error_code": error, "error_message": message, "node_id": -1, "host": "", "port": -1}
        return {"error_code": 0, "error_message": None, "node_id": node, "host": host, "port": port}

    if key_type == TRANSACTION_KEY_TYPE:
        ids = [body.key] if ctx.version < 4 else list(body.coordinator_keys)
        log.warning("refusing transactional id %s of client %r at %s:%d: %s", ", ".join(map(repr, ids)),
                    ctx.client_id, ctx.session.client_host, ctx.session.client_port,
                    TRANSACTIONS_UNSUPPORTED_MESSAGE)
    if ctx.version < 4:
        return {"throttle_time_ms": 0, **answer(_lookup(ctx, key_type))}
    error = _lookup(ctx, key_type)
    return {"throttle_time_ms": 0,
            "coordinators": [{"key": key, **answer(error)} for key in body.coordinator_keys]}
