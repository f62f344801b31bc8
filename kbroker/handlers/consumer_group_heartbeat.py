"""ConsumerGroupHeartbeat (key 68): join, heartbeat in and leave a KIP-848 consumer group.

v0: the broker generates a joining member's id; v1 (Kafka 4.0): the client does, and may
subscribe with a regular expression evaluated on the broker. As Kafka's KafkaApis: READ on
the group, then DESCRIBE on every subscribed topic named (TOPIC_AUTHORIZATION_FAILED
naming those refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups import client_host
from kbroker.groups.consumer_group import HeartbeatRequest
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 68
VERSIONS = VersionRange(0, 1)


def _error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "member_id": None,
            "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body["group_id"]):
        return _error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    names = body.get("subscribed_topic_names")
    if names:
        refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
        if refused:
            return _error(ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                          f"The following topics are not authorized: {', '.join(sorted(refused))}")
    owned = body.get("topic_partitions")
    req = HeartbeatRequest(
        group_id=body["group_id"], member_id=body["member_id"], member_epoch=body["member_epoch"],
        instance_id=body.get("instance_id"), rack_id=body.get("rack_id"),
        rebalance_timeout_ms=body.get("rebalance_timeout_ms", -1),
        subscribed_topic_names=None if names is None else list(names),
        subscribed_topic_regex=body.get("subscribed_topic_regex"),
        server_assignor=body.get("server_assignor"),
        owned=None if owned is None else {t["topic_id"]: list(t["partitions"]) for t in owned},
        client_id=ctx.client_id or "", client_host=client_host(ctx.session.client_host), version=ctx.version)
    result = await ctx.broker.groups.consumer.heartbeat(req)
    if result.error != ErrorCode.NONE:
        return _error(result.error, result.message)
    assignment = None
    if result.assignment is not None:
        assignment = {"topic_partitions": [{"topic_id": t, "partitions": sorted(ps)}
                                           for t, ps in sorted(result.assignment.items())]}
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "member_id": result.member_id,
            "member_epoch": result.member_epoch, "heartbeat_interval_ms": result.heartbeat_interval_ms,
            "assignment": assignment}
