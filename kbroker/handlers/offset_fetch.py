"""OffsetFetch (key 9): a group's committed offsets; one group (v0-7) or several (v8+)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import Errors, GroupError
from kbroker.groups.records import OffsetAndMetadata
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, map_yielding, response
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 9
#: v9 carries a consumer group member's id and epoch (KIP-848), v10 names topics by id.
VERSIONS = VersionRange(0, 10)


def _partition(index: int, om: OffsetAndMetadata | Errors | None, error: int = 0) -> dict[str, Any]:
    if isinstance(om, Errors):
        error, om = om, None
    if om is None:
        return {"partition_index": index, "committed_offset": -1, "committed_leader_epoch": -1, "metadata": "",
                "error_code": error}
    return {"partition_index": index, "committed_offset": om.offset, "committed_leader_epoch": om.leader_epoch,
            "metadata": om.metadata, "error_code": 0}


def _fetch(ctx: RequestContext, group_id: str, topics: Sequence[Any] | None,
           require_stable: bool, member_id: str | None = None, member_epoch: int = -1,
           ) -> tuple[int, list[dict[str, Any]]]:
    """``(group error, topics)``; with no coordinator, per-partition errors as v0/v1 need.

    ``require_stable`` (v7+) answers UNSTABLE_OFFSET_COMMIT for each partition with a
    transactional offset pending, per partition in every version, as Kafka.
    """
    # As Kafka: DESCRIBE on the group; then offsets only of topics the principal may describe
    # (named ones it may not answer TOPIC_AUTHORIZATION_FAILED, unnamed ones are left out).
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return _group_error(Errors.GROUP_AUTHORIZATION_FAILED, topics)
    refused = frozenset() if topics is None else authz.denied(
        ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in topics))
    requested = None if topics is None else [TopicPartition(t.name, p) for t in topics for p in t.partition_indexes
                                             if t.name not in refused]
    try:
        offsets = ctx.broker.groups.fetch_offsets(group_id, requested, require_stable, member_id=member_id,
                                                  member_epoch=member_epoch)
    except GroupError as e:
        return _group_error(e.code, topics)
    if topics is None:
        hidden = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (tp.topic for tp in offsets))
        if hidden:
            offsets = {tp: om for tp, om in offsets.items() if tp.topic not in hidden}
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, p), om in offsets.items():
        by_topic.setdefault(topic, []).append(_partition(p, om))
    out = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    out.extend({"name": t.name,
                "partitions": [_partition(p, None, Errors.TOPIC_AUTHORIZATION_FAILED) for p in t.partition_indexes]}
               for t in topics or () if t.name in refused)
    return Errors.NONE, out


def _group_error(code: int, topics: Sequence[Any] | None) -> tuple[int, list[dict[str, Any]]]:
    """A group-level error, also on each requested partition (v0/v1 have no group error field)."""
    return code, [{"name": t.name, "partitions": [_partition(p, None, code) for p in t.partition_indexes]}
                  for t in topics or ()]


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    require_stable = bool(body.get("require_stable", False))
    if ctx.version >= 8:
        def one(g: Any) -> dict[str, Any]:
            if ctx.version >= 10:
                return _fetch_by_id(ctx, g, require_stable)
            error, topics = _fetch(ctx, g.group_id, g.topics, require_stable, g.get("member_id"),
                                   g.get("member_epoch", -1))
            return {"group_id": g.group_id, "topics": topics if error == 0 else [], "error_code": error}

        groups = await map_yielding(one, body.groups)
        return response(len(groups), throttle_time_ms=0, groups=groups)
    error, topics = _fetch(ctx, body.group_id, body.topics, require_stable)
    if ctx.version >= 2 and error != 0:
        topics = []
    return {"throttle_time_ms": 0, "topics": topics, "error_code": error}


class _Named:
    """A v10 topic entry with the name its id resolves to."""

    def __init__(self, name: str, partition_indexes: Sequence[int]) -> None:
        self.name = name
        self.partition_indexes = partition_indexes


def _fetch_by_id(ctx: RequestContext, g: Any, require_stable: bool) -> dict[str, Any]:
    """v10: topics named by id in the request and the response; an unknown id answers UNKNOWN_TOPIC_ID."""
    metadata = ctx.broker.metadata
    named: list[_Named] | None = None
    unknown: list[dict[str, Any]] = []
    if g.topics is not None:
        named = []
        for t in g.topics:
            topic = metadata.topic_by_id(t.topic_id)
            if topic is None:
                unknown.append({"topic_id": t.topic_id, "name": "",
                                "partitions": [_partition(p, None, Errors.UNKNOWN_TOPIC_ID)
                                               for p in t.partition_indexes]})
            else:
                named.append(_Named(topic.name, t.partition_indexes))
    error, topics = _fetch(ctx, g.group_id, named, require_stable, g.get("member_id"), g.get("member_epoch", -1))
    if error != 0:
        return {"group_id": g.group_id, "topics": [], "error_code": error}
    out = []
    for t in topics:
        topic = metadata.topic(t["name"])
        if topic is not None:  # offsets of a deleted topic have no id to be named by
            out.append({**t, "topic_id": topic.topic_id})
    return {"group_id": g.group_id, "topics": out + unknown, "error_code": 0}
