"""DeleteRecords (key 21): advance partitions' log start offsets (e.g. Kafka Streams purging
the repartition records it has committed).

Per partition, as Kafka's ReplicaManager.deleteRecordsOnLocalLog: an internal topic is
INVALID_TOPIC_EXCEPTION, an unknown or not-led partition its partition error, a topic whose
cleanup.policy lacks ``delete`` POLICY_VIOLATION, an offset below 0 (other than -1, the high
watermark) or above the high watermark OFFSET_OUT_OF_RANGE; the answer's low watermark is
the new log start offset (-1 on an error). In a cluster the answer waits (up to ``timeout_ms``)
for the replicas on live brokers to move their log start offsets too, and its low watermark is
the smallest of them (Kafka's DelayedDeleteRecords); with one replica nothing waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import MANY, RequestContext, map_yielding, response
from kbroker.security.model import AclOperation, ResourceType

log = logging.getLogger(__name__)

API_KEY = 21
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    rm = ctx.broker.replica_manager
    # Kafka collects the request into a map keyed by topic-partition before deleting: a partition
    # named twice is deleted once, to the offset named last, and answered once, under one entry
    # per topic.
    wanted: dict[TopicPartition, int] = {}
    seen = 0
    for t in ctx.request.body.topics:
        for p in t.partitions:
            wanted[TopicPartition(t.name, p.partition_index)] = p.offset
            seen += 1
            if seen % MANY == 0:
                await anyio.sleep(0)  # a request may name hundreds of thousands: let others in
    # As Kafka: DELETE on each topic; a refused partition answers TOPIC_AUTHORIZATION_FAILED
    # (low watermark -1) whether it exists or not.
    refused = authz.denied(ctx, AclOperation.DELETE, ResourceType.TOPIC, (t.name for t in ctx.request.body.topics))
    items = list(wanted.items())

    def delete(item: tuple[TopicPartition, int]) -> tuple[int, int, Callable[[], object] | None]:
        if refused and item[0].topic in refused:
            return ErrorCode.TOPIC_AUTHORIZATION_FAILED, -1, None
        return rm.delete_records(*item)

    outcomes = await map_yielding(delete, items)
    # The segments below the new starts are out of their logs; their files go in a worker thread
    # (one request may free thousands of segments), before the answer as nothing else waits on it.
    deletions = [delete_files for _, _, delete_files in outcomes if delete_files is not None]
    if deletions:
        await anyio.to_thread.run_sync(_run_all, deletions)
    if rm.replicated:
        deleted = {tp: low for (tp, _), (code, low, _) in zip(items, outcomes, strict=True) if code == ErrorCode.NONE}
        if deleted:
            reached = await rm.await_low_watermarks(deleted, ctx.request.body.timeout_ms)
            outcomes = [(*reached[tp], None) if tp in reached else outcome
                        for (tp, _), outcome in zip(items, outcomes, strict=True)]
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for i, ((tp, _), (code, low, _)) in enumerate(zip(items, outcomes, strict=True), 1):
        by_topic.setdefault(tp.topic, []).append(
            {"partition_index": tp.partition, "low_watermark": low, "error_code": code})
        if i % MANY == 0:
            await anyio.sleep(0)
    return response(len(items), throttle_time_ms=0,
                    topics=[{"name": n, "partitions": ps} for n, ps in by_topic.items()])


def _run_all(calls: list[Callable[[], object]]) -> None:
    """Worker thread: delete each partition's freed segment files. The log start offsets have
    moved already, so one partition's failure is logged and the others' files still go."""
    for call in calls:
        try:
            call()
        except Exception:
            log.exception("deleting the segments DeleteRecords freed failed")
