"""OffsetCommit (key 8): store a group's consumed positions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import Errors
from kbroker.groups.records import OffsetAndMetadata
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.manager import MetadataManager
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 8
#: v9 carries a consumer group member's epoch (KIP-848), v10 names topics by id.
VERSIONS = VersionRange(0, 10)
_MAX_INT64 = 2**63 - 1


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    v = ctx.version
    now = ctx.broker.clock.time_ms()
    retention = body.get("retention_time_ms", -1)

    def offset(p: Any) -> OffsetAndMetadata:
        commit_ts = p.get("commit_timestamp", -1)
        if v != 1 or commit_ts < 0:
            commit_ts = now
        return OffsetAndMetadata(
            offset=p["committed_offset"],
            leader_epoch=p.get("committed_leader_epoch", -1),
            metadata=p["committed_metadata"] or "",
            commit_timestamp=commit_ts,
            # v2-4 may ask for a retention of their own; the sum must still fit the stored int64.
            expire_timestamp=min(now + retention, _MAX_INT64) if retention is not None and retention >= 0 else -1,
        )

    topics, unknown_ids = named_topics(ctx.broker.metadata, body["topics"]) if v >= 10 else (body["topics"], set())
    # As Kafka: READ on the group, else every partition answers GROUP_AUTHORIZATION_FAILED;
    # then READ on each topic.
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body["group_id"]):
        return {"throttle_time_ms": 0, "topics": errors_for_all(topics, Errors.GROUP_AUTHORIZATION_FAILED)}
    known = [t for t in topics if t["name"] not in unknown_ids]
    refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC, (t["name"] for t in known))
    offsets, errors = requested_offsets(ctx.broker.metadata, known, offset, refused)
    errors.update({TopicPartition(t["name"], p["partition_index"]): Errors.UNKNOWN_TOPIC_ID
                   for t in topics if t["name"] in unknown_ids for p in t["partitions"]})
    if offsets:
        errors.update(await ctx.broker.groups.commit_offsets(
            body["group_id"], body.get("generation_id_or_member_epoch", -1), body.get("member_id", ""),
            body.get("group_instance_id"), offsets, api_version=v))
    return {"throttle_time_ms": 0, "topics": errors_by_topic(topics, errors)}


def named_topics(metadata: MetadataManager, topics: Sequence[Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """v10 names topics by id: the request's topics with their names, and the stand-in names
    given to ids no topic has (those partitions answer UNKNOWN_TOPIC_ID)."""
    out: list[dict[str, Any]] = []
    unknown: set[str] = set()
    for t in topics:
        topic = metadata.topic_by_id(t["topic_id"])
        if topic is None:
            name = f"\0{t['topic_id']}"  # no topic can be called this
            unknown.add(name)
        else:
            name = topic.name
        out.append({"name": name, "topic_id": t["topic_id"], "partitions": t["partitions"]})
    return out, unknown


def requested_offsets(metadata: MetadataManager, topics: Sequence[Any], offset: Callable[[Any], OffsetAndMetadata],
                      refused: frozenset[str] = frozenset(),
                      ) -> tuple[dict[TopicPartition, OffsetAndMetadata], dict[TopicPartition, Errors]]:
    """The offsets an OffsetCommit or TxnOffsetCommit asks for (``offset`` builds one from a
    partition entry), TOPIC_AUTHORIZATION_FAILED for the ``refused`` topics and
    UNKNOWN_TOPIC_OR_PARTITION for partitions this broker does not have."""
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    errors: dict[TopicPartition, Errors] = {}
    for t in topics:
        topic = metadata.topic(t["name"])
        for p in t["partitions"]:
            tp = TopicPartition(t["name"], p["partition_index"])
            if t["name"] in refused:
                errors[tp] = Errors.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or p["partition_index"] not in topic.partitions:
                errors[tp] = Errors.UNKNOWN_TOPIC_OR_PARTITION
            else:
                offsets[tp] = offset(p)
    return offsets, errors


def errors_for_all(topics: Sequence[Any], error: Errors) -> list[dict[str, Any]]:
    """The response's topics with every requested partition answering ``error`` (Kafka's
    getErrorResponse of OffsetCommit and TxnOffsetCommit)."""
    return errors_by_topic(topics, {TopicPartition(t["name"], p["partition_index"]): error
                                    for t in topics for p in t["partitions"]})


def errors_by_topic(topics: Sequence[Any], errors: Mapping[TopicPartition, Errors]) -> list[dict[str, Any]]:
    """The response's topics: every requested partition with its error, in request order."""
    return [{"name": t["name"], "topic_id": t.get("topic_id"),
             "partitions": [{"partition_index": p["partition_index"],
                             "error_code": errors[TopicPartition(t["name"], p["partition_index"])]} for p in t["partitions"]]}
            for t in topics]
