"""ConsumerGroupDescribe (key 69): KIP-848 consumer groups, their members and assignments."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import GroupError
from kbroker.handlers.api import RequestContext, map_yielding, response
from kbroker.handlers.metadata import AUTHORIZED_OPERATIONS_OMITTED
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 69
VERSIONS = VersionRange(0, 1)


def _assignment(ctx: RequestContext, parts: Mapping[uuid.UUID, frozenset[int]]) -> dict[str, Any]:
    out = []
    for topic_id, ps in sorted(parts.items()):
        topic = ctx.broker.metadata.topic_by_id(topic_id)
        # As Kafka: a deleted topic is left out of the description.
        if topic is not None:
            out.append({"topic_id": topic_id, "topic_name": topic.name, "partitions": sorted(ps)})
    return {"topic_partitions": out}


def _describe(ctx: RequestContext, group_id: str, include_ops: bool) -> dict[str, Any]:
    empty: dict[str, Any] = {"group_id": group_id, "group_state": "", "group_epoch": 0, "assignment_epoch": 0,
                             "assignor_name": "", "members": [], "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED}
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return {**empty, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "error_message": None}
    try:
        d = ctx.broker.groups.consumer.describe(group_id)
    except GroupError as e:
        message = str(e)
        return {**empty, "error_code": e.code, "error_message": None if message == e.code.name else message}
    return {
        "error_code": 0, "error_message": None, "group_id": d.group_id, "group_state": d.state,
        "group_epoch": d.group_epoch, "assignment_epoch": d.assignment_epoch, "assignor_name": d.assignor,
        "members": [{"member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
                     "member_epoch": m.member_epoch, "client_id": m.client_id, "client_host": m.client_host,
                     "subscribed_topic_names": m.subscribed_topic_names,
                     "subscribed_topic_regex": m.subscribed_topic_regex,
                     "assignment": _assignment(ctx, m.assignment),
                     "target_assignment": _assignment(ctx, m.target),
                     "member_type": 1}  # v1: 1 = the consumer protocol (0 classic, -1 unknown)
                    for m in d.members],
        "authorized_operations": (ctx.authorized_operations(ResourceType.GROUP, group_id) if include_ops
                                  else AUTHORIZED_OPERATIONS_OMITTED),
    }


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    names = list(body.group_ids)
    include_ops = bool(body.get("include_authorized_operations", False))
    groups = await map_yielding(lambda g: _describe(ctx, g, include_ops), names)
    return response(len(names), throttle_time_ms=0, groups=groups)
