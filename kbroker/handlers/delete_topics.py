"""DeleteTopics (key 20): delete topics by name (v0+) or by topic id (v6+)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.security.quotas import THROTTLING_MESSAGE, MutationQuota

API_KEY = 20
VERSIONS = VersionRange(0, 6)
_ZERO_UUID = uuid.UUID(int=0)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, _ZERO_UUID) for name in body.topic_names]
    quota = ctx.broker.client_quotas.mutation_quota(ctx.session.principal, ctx.client_id, strict=ctx.version >= 5)
    results = [await _delete_one(ctx, name, topic_id, quota) for name, topic_id in wanted]
    return {"throttle_time_ms": quota.throttle_time_ms if quota is not None else 0, "responses": results}


async def _delete_one(ctx: RequestContext, name: str | None, topic_id: uuid.UUID,
                      quota: MutationQuota | None) -> dict[str, Any]:
    md = ctx.broker.metadata
    code: int
    message: str | None
    # controller_mutation_rate: an existing topic's partitions count against the quota.
    existing = None if quota is None else (md.topic(name) if name is not None else md.topic_by_id(topic_id))
    if name is not None and topic_id != _ZERO_UUID:
        code, message = ErrorCode.INVALID_REQUEST, "You may not specify both topic name and topic id."
    elif existing is not None and quota is not None and not quota.accept(len(existing.partitions)):
        code, message = ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLING_MESSAGE
        name = name if name is not None else existing.name
    elif name is None:
        # Its files are removed off the event loop.
        (code, message), name = await md.delete_topic(topic_id=topic_id)
    else:
        topic = md.topic(name)
        topic_id = topic.topic_id if topic is not None else _ZERO_UUID
        (code, message), _ = await md.delete_topic(name)
    return {"name": name, "topic_id": topic_id, "error_code": code, "error_message": message}
