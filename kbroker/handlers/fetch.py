"""Fetch (key 1): read record batches, long-polling for ``min_bytes``; KIP-227 sessions.

The request's partitions (or, for an incremental fetch, the session's) are read by the
replica manager in order under the request's ``max_bytes``; the fetch session then
picks which partitions the response lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.replica.fetch_session import PartitionKey
from kbroker.replica.types import FetchParams, FetchResult, PartitionFetch
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 1
VERSIONS = VersionRange(4, 18)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    version = ctx.version
    broker = ctx.broker
    uses_ids = version >= 13
    # Fields a version lacks are absent from the decoded body, hence the .get defaults.
    replica_id = body["replica_state"]["replica_id"] if version >= 15 else body.get("replica_id", -1)

    # As Kafka: a partition named twice is fetched once, in its first place, with its last parameters.
    requested: dict[PartitionKey, PartitionFetch] = {}
    for t in body["topics"]:
        topic_key: str | uuid.UUID = t["topic_id"] if uses_ids else t["topic"]
        for p in t["partitions"]:
            requested[(topic_key, p["partition"])] = PartitionFetch(
                fetch_offset=p["fetch_offset"],
                max_bytes=p["partition_max_bytes"],
                current_leader_epoch=p.get("current_leader_epoch", -1),
                last_fetched_epoch=p.get("last_fetched_epoch", -1),
                log_start_offset=p.get("log_start_offset", -1),
            )
    forgotten: list[PartitionKey] = []
    if version >= 7:
        for f in body["forgotten_topics_data"]:
            fkey: str | uuid.UUID = f["topic_id"] if uses_ids else f["topic"]
            forgotten.extend((fkey, index) for index in f["partitions"])

    session_id = body.get("session_id", 0)
    # Before v7 there are no sessions: every fetch is a sessionless full fetch.
    session_epoch = body.get("session_epoch", -1)
    context = broker.replica_manager.fetch_sessions.new_context(
        session_id, session_epoch, list(requested.items()), forgotten, uses_ids)
    if context.error_code != ErrorCode.NONE:
        return {"throttle_time_ms": 0, "error_code": context.error_code, "session_id": 0, "responses": []}

    # Resolve names; topic ids this broker does not know answer UNKNOWN_TOPIC_ID unread.
    metadata = broker.metadata
    to_read: list[tuple[TopicPartition, PartitionFetch]] = []
    tp_of: dict[PartitionKey, TopicPartition] = {}
    # As Kafka: a follower needs CLUSTER_ACTION on the cluster, else every partition is
    # refused; a consumer needs READ on each topic, refused per partition.
    refuse_all = False
    refused: frozenset[str] = frozenset()
    if broker.authorizer is not None:
        if replica_id >= 0:
            refuse_all = not authz.cluster(ctx, AclOperation.CLUSTER_ACTION)
        else:
            refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC,
                                   (_name_of(metadata, k) for (k, _), _ in context.partitions))
    for key, fetch in context.partitions:
        topic_key, index = key
        if isinstance(topic_key, uuid.UUID):
            info = metadata.topic_by_id(topic_key)
            if info is None:
                continue
            name = info.name
        else:
            name = topic_key
        tp = TopicPartition(name, index)
        tp_of[key] = tp
        if refuse_all or name in refused:
            continue
        to_read.append((tp, fetch))

    # As Kafka: the broker caps every response, whatever the client asks for.
    cap_key = "replica.fetch.response.max.bytes" if replica_id >= 0 else "fetch.max.bytes"
    params = FetchParams(
        max_wait_ms=body["max_wait_ms"],
        min_bytes=body["min_bytes"],
        max_bytes=min(body["max_bytes"], int(broker.config.get(cap_key))),
        isolation_level=body["isolation_level"],
        replica_id=replica_id,
        # KIP-392: v11+ carries client metadata (the rack); such consumers may read from followers.
        client_rack=body.get("rack_id", "") if version >= 11 else None,
    )
    read = dict(await broker.replica_manager.fetch(to_read, params)) if to_read else {}
    unknown_id = FetchResult(ErrorCode.UNKNOWN_TOPIC_ID)
    results: list[tuple[PartitionKey, FetchResult]] = []
    for key, _ in context.partitions:
        resolved = tp_of.get(key)
        if resolved is not None and resolved in read:
            results.append((key, read[resolved]))
        elif refuse_all or (resolved is not None and resolved.topic in refused):
            results.append((key, _DENIED))
        else:
            results.append((key, unknown_id))
    out_session_id, selected = context.respond(results)
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "session_id": out_session_id,
        "responses": _group(selected, uses_ids),
    }


_DENIED = FetchResult(ErrorCode.TOPIC_AUTHORIZATION_FAILED)


def _name_of(metadata: Any, topic_key: str | uuid.UUID) -> str | None:
    """A fetched topic's name (None for a topic id this broker does not know)."""
    if isinstance(topic_key, uuid.UUID):
        info = metadata.topic_by_id(topic_key)
        return info.name if info is not None else None
    return topic_key


#: Errors Kafka's fetch handler gives before it reads (unknown topic, partition or topic
#: id, or a topic the principal may not read).
_UNKNOWN_PARTITION = frozenset({ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_ID,
                                ErrorCode.TOPIC_AUTHORIZATION_FAILED})


def _group(selected: list[tuple[PartitionKey, FetchResult]], uses_ids: bool) -> list[dict[str, Any]]:
    """Responses grouped by topic, consecutive partitions of a topic sharing one entry."""
    out: list[dict[str, Any]] = []
    last: str | uuid.UUID | None = None
    for (topic_key, index), r in selected:
        if not out or topic_key != last:
            entry: dict[str, Any] = {"partitions": []}
            entry["topic_id" if uses_ids else "topic"] = topic_key
            out.append(entry)
            last = topic_key
        partition: dict[str, Any] = {
            "partition_index": index,
            "error_code": r.error_code,
            "high_watermark": r.high_watermark,
            "last_stable_offset": r.last_stable_offset,
            "log_start_offset": r.log_start_offset,
            # Kafka answers partitions it does not know before reading any log, with the schema's
            # default (an empty list); errors met while reading leave the field null.
            "aborted_transactions": [] if r.error_code in _UNKNOWN_PARTITION
            else r.aborted_transactions and _aborted(r.aborted_transactions),
            "preferred_read_replica": r.preferred_read_replica,
            "records": r.records,
        }
        if r.diverging_epoch is not None:  # a tagged field (v12+): written only when set
            partition["diverging_epoch"] = {"epoch": r.diverging_epoch[0], "end_offset": r.diverging_epoch[1]}
        out[-1]["partitions"].append(partition)
    return out


def _aborted(txns: list[tuple[int, int]]) -> list[dict[str, int]]:
    """A read_committed answer's aborted transactions as the schema's entries."""
    return [{"producer_id": pid, "first_offset": first} for pid, first in txns]
