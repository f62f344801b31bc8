"""AddPartitionsToTxn (key 24): add partitions to a producer's transaction.

v0-3 come from producers and name one transaction; v4+ (KIP-890) come from brokers,
batch several transactions and may only verify (``verify_only``) that partitions were
added. As Kafka, a transaction naming an unknown partition is not attempted at all:
that partition gets UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED. A
producer (v0-3) may not add an internal topic's partitions: TOPIC_AUTHORIZATION_FAILED, as
Kafka's write-authorisation filter, which never passes internal topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.topic_names import is_internal
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 24
VERSIONS = VersionRange(0, 5)


def _topic_results(errors: Mapping[TopicPartition, int]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for tp, code in errors.items():
        by_topic.setdefault(tp.topic, []).append({"partition_index": tp.partition, "partition_error_code": code})
    return [{"name": name, "results_by_partition": parts} for name, parts in by_topic.items()]


def client_error(error: ErrorCode, version: int) -> ErrorCode:
    """The error a client of ``version`` understands (Kafka's down-conversions)."""
    if version < 2 and error == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if version < 5 and error == ErrorCode.TRANSACTION_ABORTABLE:
        return ErrorCode.INVALID_TXN_STATE
    return error


async def _one(ctx: RequestContext, txn_id: str, pid: int, epoch: int, topics: Any,
               verify_only: bool) -> dict[TopicPartition, int]:
    metadata = ctx.broker.metadata
    partitions: list[TopicPartition] = []
    unknown: list[TopicPartition] = []
    refused: list[TopicPartition] = []
    # As Kafka: a client's request (before v4) needs WRITE on the transactional id and on each
    # topic (never granted for an internal topic); a broker's (v4+) is authorized as a whole.
    denied: frozenset[str] = frozenset()
    if ctx.version < 4 and ctx.broker.authorizer is not None:
        if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
            return {TopicPartition(t.name, p): ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                    for t in topics for p in t.partitions}
        denied = authz.denied(ctx, AclOperation.WRITE, ResourceType.TOPIC, (t.name for t in topics))
    for topic in topics:
        info = metadata.topic(topic.name)
        for p in topic.partitions:
            tp = TopicPartition(topic.name, p)
            if ctx.version < 4 and (is_internal(topic.name) or topic.name in denied):
                refused.append(tp)
            else:
                (partitions if info is not None and p in info.partitions else unknown).append(tp)
    if unknown or refused:
        out: dict[TopicPartition, int] = {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED for tp in refused}
        out.update({tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for tp in unknown})
        out.update({tp: ErrorCode.OPERATION_NOT_ATTEMPTED for tp in partitions})
        return out
    coordinator = ctx.broker.transactions
    if verify_only:
        # Passed on as the coordinator answers (no down-conversion), as Kafka.
        return dict(coordinator.verify_partitions(txn_id, pid, epoch, partitions))
    errors = await coordinator.add_partitions(txn_id, pid, epoch, partitions)
    return {tp: client_error(code, ctx.version) for tp, code in errors.items()}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    if ctx.version < 4:
        errors = await _one(ctx, body.v3_and_below_transactional_id, body.v3_and_below_producer_id,
                            body.v3_and_below_producer_epoch, body.v3_and_below_topics, False)
        return {"throttle_time_ms": 0, "results_by_topic_v3_and_below": _topic_results(errors)}
    if not authz.cluster(ctx, AclOperation.CLUSTER_ACTION):
        # As Kafka: v4+ comes from brokers only; refused as a whole.
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "results_by_transaction": []}
    results = []
    for txn in body.transactions:
        errors = await _one(ctx, txn.transactional_id, txn.producer_id, txn.producer_epoch, txn.topics,
                            bool(txn.verify_only))
        results.append({"transactional_id": txn.transactional_id, "topic_results": _topic_results(errors)})
    return {"throttle_time_ms": 0, "error_code": 0, "results_by_transaction": results}
