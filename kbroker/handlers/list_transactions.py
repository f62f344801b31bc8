"""ListTransactions (key 66): transactional ids filtered by state, producer id, age (v1+)
and id pattern (v2+, a Java-style regular expression matching the whole id)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 66
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    error, unknown, found = ctx.broker.transactions.list_transactions(
        list(body.state_filters), list(body.producer_id_filters), int(body.get("duration_filter", -1)),
        body.get("transactional_id_pattern"))
    # As Kafka: only the transactional ids the principal may describe are listed.
    hidden = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                          (t.transactional_id for t in found))
    states = [{"transactional_id": t.transactional_id, "producer_id": t.producer_id,
               "transaction_state": t.state} for t in found if t.transactional_id not in hidden]
    return response(len(states), throttle_time_ms=0, error_code=error, unknown_state_filters=unknown,
                    transaction_states=states)
