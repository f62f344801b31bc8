"""DeleteTopics (key 20): delete topics by name (v0+) or by topic id (v6+)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType
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
    results = [await _delete_one(ctx, name, topic_id, quota) if _allowed(ctx, name, topic_id)
               else _refusal(ctx, name, topic_id) for name, topic_id in wanted]
    return {"throttle_time_ms": quota.throttle_time_ms if quota is not None else 0, "responses": results}


def _allowed(ctx: RequestContext, name: str | None, topic_id: uuid.UUID) -> bool:
    """Whether the principal may delete the topic: DELETE on the cluster or on the topic
    (a topic that does not exist is judged in :func:`_refusal`; with deletion disabled the
    deletion itself answers, as Kafka refuses the request before authorizing)."""
    if ctx.broker.authorizer is None or not ctx.broker.config.delete_topic_enable:
        return True
    if name is not None and topic_id != _ZERO_UUID:
        return True  # INVALID_REQUEST, whoever asks
    if authz.cluster(ctx, AclOperation.DELETE):
        return True
    md = ctx.broker.metadata
    if name is None:
        topic = md.topic_by_id(topic_id)
        if topic is None:
            return True  # UNKNOWN_TOPIC_ID: ids are not secret
        name = topic.name
    elif md.topic(name) is None:
        # Unknown: UNKNOWN_TOPIC_OR_PARTITION only to a principal that may describe it.
        return ctx.authorize(AclOperation.DESCRIBE, ResourceType.TOPIC, name)
    return ctx.authorize(AclOperation.DELETE, ResourceType.TOPIC, name)


def _refusal(ctx: RequestContext, name: str | None, topic_id: uuid.UUID) -> dict[str, Any]:
    """Kafka's TOPIC_AUTHORIZATION_FAILED answer: a topic named by id is named in it only
    to a principal that may describe it; one named by name never shows its id."""
    code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if name is None:
        topic = ctx.broker.metadata.topic_by_id(topic_id)
        if topic is not None and ctx.authorize(AclOperation.DESCRIBE, ResourceType.TOPIC, topic.name):
            name = topic.name
        return {"name": name, "topic_id": topic_id, "error_code": code, "error_message": authz.MESSAGES[code]}
    return {"name": name, "topic_id": _ZERO_UUID, "error_code": code, "error_message": authz.MESSAGES[code]}


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
