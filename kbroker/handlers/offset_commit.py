"""OffsetCommit (key 8): store a group's consumed positions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import Errors
from kbroker.groups.records import OffsetAndMetadata
from kbroker.handlers.api import RequestContext

API_KEY = 8
#: v10 names topics by id (KIP-848 consumers only); classic clients stop at v9.
VERSIONS = VersionRange(0, 9)
_MAX_INT64 = 2**63 - 1


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    v = ctx.version
    now = ctx.broker.clock.time_ms()
    retention = body.get("retention_time_ms", -1)
    metadata = ctx.broker.metadata
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    errors: dict[TopicPartition, Errors] = {}
    for t in body.topics:
        topic = metadata.topic(t.name)
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            if topic is None or p.partition_index not in topic.partitions:
                errors[tp] = Errors.UNKNOWN_TOPIC_OR_PARTITION
                continue
            commit_ts = p.get("commit_timestamp", -1)
            if v != 1 or commit_ts < 0:
                commit_ts = now
            offsets[tp] = OffsetAndMetadata(
                offset=p.committed_offset,
                leader_epoch=p.get("committed_leader_epoch", -1),
                metadata=p.committed_metadata or "",
                commit_timestamp=commit_ts,
                # v2-4 may ask for a retention of their own; the sum must still fit the stored int64.
                expire_timestamp=min(now + retention, _MAX_INT64) if retention is not None and retention >= 0 else -1,
            )
    if offsets:
        errors.update(await ctx.broker.groups.commit_offsets(
            body.group_id, body.get("generation_id_or_member_epoch", -1), body.get("member_id", ""),
            body.get("group_instance_id"), offsets))
    return {
        "throttle_time_ms": 0,
        "topics": [{"name": t.name,
                    "partitions": [{"partition_index": p.partition_index,
                                    "error_code": errors[TopicPartition(t.name, p.partition_index)]} for p in t.partitions]}
                   for t in body.topics],
    }
