"""DescribeTransactions (key 65): the coordinator's state of transactional ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext, response

API_KEY = 65
VERSIONS = VersionRange(0, 0)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    ids = list(ctx.request.body.transactional_ids)
    states = [{
        "error_code": d.error, "transactional_id": d.transactional_id, "transaction_state": d.state,
        "transaction_timeout_ms": d.timeout_ms, "transaction_start_time_ms": d.start_time_ms,
        "producer_id": d.producer_id, "producer_epoch": d.producer_epoch,
        "topics": [{"topic": t, "partitions": ps} for t, ps in d.partitions.items()],
    } for d in ctx.broker.transactions.describe(ids)]
    return response(len(states), throttle_time_ms=0, transaction_states=states)
