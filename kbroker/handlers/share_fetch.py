"""ShareFetch (key 78): acknowledge, then acquire records of share-partitions (KIP-932).

The share session, acknowledgements, acquisition and the long poll are the share-partition
manager's (:mod:`kbroker.share.manager`); this maps the request and the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType
from kbroker.share.manager import AckBatches, PartitionAnswer, PartitionRef

API_KEY = 78
#: Version 0 was Kafka 4.0's early access, removed in 4.1; librdkafka and Kafka 4.1 use v1.
VERSIONS = VersionRange(1, 1)


def _top_error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "acquisition_lock_timeout_ms": 0,
            "responses": [], "node_endpoints": []}


def acks_of(topics: list[Any]) -> dict[PartitionRef, AckBatches]:
    """The acknowledgement batches of a ShareFetch/ShareAcknowledge request, by partition."""
    out: dict[PartitionRef, AckBatches] = {}
    for t in topics:
        for p in t["partitions"]:
            batches = p["acknowledgement_batches"]
            if batches:
                out.setdefault((t["topic_id"], p["partition_index"]), []).extend(
                    (b["first_offset"], b["last_offset"], list(b["acknowledge_types"])) for b in batches)
    return out


def leader_of(ctx: RequestContext, topic_id: uuid.UUID, index: int) -> dict[str, int]:
    """The partition's leader and epoch, as the response's CurrentLeader."""
    info = ctx.broker.metadata.topic_by_id(topic_id)
    if info is not None and 0 <= index < len(info.partitions):
        p = info.partitions[index]
        return {"leader_id": p.leader, "leader_epoch": p.leader_epoch}
    return {"leader_id": -1, "leader_epoch": -1}


def _not_here(ctx: RequestContext, topic_id: uuid.UUID, index: int, code: int) -> int:
    """A fetch error as Kafka's ``ReplicaManager.getPartitionOrError`` gives it: a partition the
    metadata has but this broker does not lead is NOT_LEADER_OR_FOLLOWER, one the topic does not
    have is UNKNOWN_TOPIC_OR_PARTITION (the client must not refresh metadata and retry it forever).
    Acknowledgements of a share-partition not here stay UNKNOWN_TOPIC_OR_PARTITION, as Kafka's."""
    if code not in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
        return code
    info = ctx.broker.metadata.topic_by_id(topic_id)
    exists = info is not None and 0 <= index < len(info.partitions)
    return ErrorCode.NOT_LEADER_OR_FOLLOWER if exists else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def grouped(ctx: RequestContext, answers: dict[PartitionRef, PartitionAnswer], fetch: bool) -> list[dict[str, Any]]:
    """Partition answers grouped by topic, in the order they came."""
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for (topic_id, index), a in answers.items():
        if not a.listed:
            continue
        a.error_code = _not_here(ctx, topic_id, index, a.error_code)
        entry: dict[str, Any] = {"partition_index": index, "error_code": a.error_code,
                                 "error_message": a.error_message, "current_leader": leader_of(ctx, topic_id, index)}
        if fetch:
            entry.update(acknowledge_error_code=a.ack_error_code, acknowledge_error_message=a.ack_error_message,
                         records=a.records,
                         acquired_records=[{"first_offset": r.first_offset, "last_offset": r.last_offset,
                                            "delivery_count": r.delivery_count} for r in a.acquired])
        elif a.ack_error_code:
            entry.update(error_code=a.ack_error_code, error_message=a.ack_error_message)
        out.setdefault(topic_id, []).append(entry)
    return [{"topic_id": t, "partitions": ps} for t, ps in out.items()]


def _denied_topics(ctx: RequestContext, topic_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if ctx.broker.authorizer is None:
        return set()
    names = {tid: info.name for tid in topic_ids if (info := ctx.broker.metadata.topic_by_id(tid)) is not None}
    refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC, names.values())
    return {tid for tid, name in names.items() if name in refused}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    broker = ctx.broker
    group_id = body["group_id"]
    if group_id is None or not group_id:
        return _top_error(ErrorCode.INVALID_REQUEST, "GroupId must be set")
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, group_id):
        return _top_error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    fetch = [(t["topic_id"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]]
    forget = [(f["topic_id"], index) for f in body["forgotten_topics_data"] for index in f["partitions"]]
    acks = acks_of(body["topics"])
    denied = _denied_topics(ctx, {ref[0] for ref in fetch})
    refused: dict[PartitionRef, PartitionAnswer] = {}
    if denied:
        for ref in [r for r in fetch if r[0] in denied]:
            refused[ref] = PartitionAnswer(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, listed=True)
            acks.pop(ref, None)
        fetch = [r for r in fetch if r[0] not in denied]
    max_bytes = min(body["max_bytes"], int(broker.config.get("fetch.max.bytes")))
    code, message, answers = await broker.shares.fetch(
        group_id, body["member_id"] or "", body["share_session_epoch"], fetch=fetch, forget=forget, acks=acks,
        max_wait_ms=body["max_wait_ms"], min_bytes=body["min_bytes"], max_bytes=max_bytes,
        max_records=body["max_records"])
    if code != ErrorCode.NONE:
        return _top_error(code, message)
    answers.update(refused)
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "acquisition_lock_timeout_ms": broker.shares.lock_duration_ms(group_id),
            "responses": grouped(ctx, answers, fetch=True), "node_endpoints": []}
