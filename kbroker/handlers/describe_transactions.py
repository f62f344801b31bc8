"""DescribeTransactions (key 65): the coordinator's state of transactional ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 65
VERSIONS = VersionRange(0, 0)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    ids = list(ctx.request.body.transactional_ids)
    # As Kafka: DESCRIBE on the transactional id, else TRANSACTIONAL_ID_AUTHORIZATION_FAILED and
    # nothing else; the partitions listed are only those of topics the principal may describe.
    refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, ids)
    described = iter(ctx.broker.transactions.describe([i for i in ids if i not in refused]))
    states = []
    for txn_id in ids:
        if txn_id in refused:
            states.append({"error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional_id": txn_id,
                           "transaction_state": "", "transaction_timeout_ms": 0, "transaction_start_time_ms": 0,
                           "producer_id": 0, "producer_epoch": 0, "topics": []})
            continue
        d = next(described)
        hidden = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, d.partitions)
        states.append({
            "error_code": d.error, "transactional_id": d.transactional_id, "transaction_state": d.state,
            "transaction_timeout_ms": d.timeout_ms, "transaction_start_time_ms": d.start_time_ms,
            "producer_id": d.producer_id, "producer_epoch": d.producer_epoch,
            "topics": [{"topic": t, "partitions": ps} for t, ps in d.partitions.items() if t not in hidden],
        })
    return response(len(states), throttle_time_ms=0, transaction_states=states)
