"""AddOffsetsToTxn (key 25): add a group's ``__consumer_offsets`` partition to a transaction,
so that TxnOffsetCommit may then write the group's offsets in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 25
VERSIONS = VersionRange(0, 4)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    # As Kafka: WRITE on the transactional id, then READ on the group.
    if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, body.transactional_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body.group_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    error = await ctx.broker.transactions.add_offsets(body.transactional_id, body.producer_id,
                                                      body.producer_epoch, body.group_id)
    if ctx.version < 2 and error == ErrorCode.PRODUCER_FENCED:
        error = ErrorCode.INVALID_PRODUCER_EPOCH  # clients before v2 do not know PRODUCER_FENCED
    return {"throttle_time_ms": 0, "error_code": error}
