"""OffsetForLeaderEpoch (key 23): the end offset of a leader epoch in a partition's log.

Followers ask it to find where their log diverges from the leader's before fetching
(KIP-101, KIP-279); consumers after a leader change, to detect a truncation of what they
consumed (KIP-320). Only the leader answers. As Kafka: CLUSTER_ACTION on the cluster
allows every topic; without it each topic needs DESCRIBE (TOPIC_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 23
VERSIONS = VersionRange(0, 4)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    rm = ctx.broker.replica_manager
    refused: frozenset[str] = frozenset()
    if ctx.broker.authorizer is not None and not authz.cluster(ctx, AclOperation.CLUSTER_ACTION):
        refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.topic for t in body.topics))
    topics = []
    for t in body.topics:
        partitions = []
        for p in t.partitions:
            error: int
            if t.topic in refused:
                error, epoch, end_offset = ErrorCode.TOPIC_AUTHORIZATION_FAILED, -1, -1
            else:
                error, epoch, end_offset = rm.offsets_for_leader_epoch(
                    TopicPartition(t.topic, p.partition), p.get("current_leader_epoch", -1), p.leader_epoch)
            partitions.append({"error_code": error, "partition": p.partition, "leader_epoch": epoch,
                               "end_offset": end_offset})
        topics.append({"topic": t.topic, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}
