"""EndTxn (key 26): commit or abort a producer's transaction.

Served to v4: v5 belongs to transaction version 2 (an epoch bump per transaction), which
this broker does not advertise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 26
VERSIONS = VersionRange(0, 4)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, body.transactional_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    error = await ctx.broker.transactions.end_transaction(body.transactional_id, body.producer_id,
                                                          body.producer_epoch, bool(body.committed))
    if ctx.version < 2 and error == ErrorCode.PRODUCER_FENCED:
        error = ErrorCode.INVALID_PRODUCER_EPOCH  # clients before v2 do not know PRODUCER_FENCED
    return {"throttle_time_ms": 0, "error_code": error}
