"""TxnOffsetCommit (key 28): a transactional producer commits a group's offsets in its transaction.

As Kafka's handler: partitions of unknown topics (or partitions a topic does not have)
get UNKNOWN_TOPIC_OR_PARTITION and are left out; for the rest, the group's
``__consumer_offsets`` partition must be in the producer's transaction (checked with the
transaction coordinator unless the producer already has a transaction open in that
partition at the request's epoch, KIP-890), then the group coordinator writes the offsets
in the transaction; they count once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.groups.errors import Errors
from kbroker.groups.records import OffsetAndMetadata
from kbroker.groups.storage import CONSUMER_OFFSETS
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.handlers.offset_commit import errors_by_topic, errors_for_all, requested_offsets
from kbroker.handlers.produce import verify_with_coordinator
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 28
#: v3 adds member id, generation and group instance id (KIP-447); v4 lets a failed
#: verification answer TRANSACTION_ABORTABLE (KIP-890); v5 marks transactions v2 clients,
#: which this broker (transactions v1 only) serves as v4.
VERSIONS = VersionRange(0, 5)
VERIFICATION_ENABLE = "transaction.partition.verification.enable"
#: Kafka's CoordinatorOperationExceptionHelper: what a failed verification or write becomes.
_OPERATION_ERRORS = {
    Errors.NETWORK_EXCEPTION: Errors.COORDINATOR_LOAD_IN_PROGRESS,
    Errors.UNKNOWN_TOPIC_OR_PARTITION: Errors.COORDINATOR_NOT_AVAILABLE,
    Errors.NOT_ENOUGH_REPLICAS: Errors.COORDINATOR_NOT_AVAILABLE,
    Errors.REQUEST_TIMED_OUT: Errors.COORDINATOR_NOT_AVAILABLE,
    Errors.NOT_LEADER_OR_FOLLOWER: Errors.NOT_COORDINATOR,
    Errors.KAFKA_STORAGE_ERROR: Errors.NOT_COORDINATOR,
    Errors.MESSAGE_TOO_LARGE: Errors.UNKNOWN_SERVER_ERROR,
    Errors.RECORD_LIST_TOO_LARGE: Errors.UNKNOWN_SERVER_ERROR,
    Errors.INVALID_FETCH_SIZE: Errors.UNKNOWN_SERVER_ERROR,
}


def verification_error(error: Errors, version: int) -> Errors:
    """What TxnOffsetCommit answers when the offsets partition failed verification.

    As Kafka: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH, TRANSACTION_ABORTABLE is
    INVALID_TXN_STATE before v4 (older clients do not know it), and the coordinator
    runtime's mapping applies to the rest.
    """
    if error == Errors.PRODUCER_FENCED:
        return Errors.INVALID_PRODUCER_EPOCH
    if error == Errors.TRANSACTION_ABORTABLE and version < 4:
        return Errors.INVALID_TXN_STATE
    return _OPERATION_ERRORS.get(error, error)


async def _verify(ctx: RequestContext, body: Any, guards: dict[TopicPartition, int]) -> Errors:
    """Whether the group's offsets partition is in the producer's transaction (KIP-890), asked of
    the transactional id's coordinator, on this broker or (in a cluster) another one."""
    if not ctx.broker.config.get(VERIFICATION_ENABLE):
        return Errors.NONE
    tp = TopicPartition(CONSUMER_OFFSETS, ctx.broker.groups.partition_for(body.group_id))
    if ctx.broker.replica_manager.has_ongoing_transaction(tp, body.producer_id, body.producer_epoch):
        return Errors.NONE  # records of this transaction are already there: nothing to verify
    result = await verify_with_coordinator(ctx, body.transactional_id, body.producer_id, body.producer_epoch,
                                           [tp], guards)
    return verification_error(Errors(result.get(tp, Errors.NONE)), ctx.version)


async def _commit(ctx: RequestContext, body: Any,
                  offsets: dict[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, Errors]:
    if not body.group_id:
        return dict.fromkeys(offsets, Errors.INVALID_GROUP_ID)
    guards: dict[TopicPartition, int] = {}
    error = await _verify(ctx, body, guards)
    # A transaction marker written to the offsets partition while another broker's coordinator
    # was asked may have ended the transaction it vouched for: retried (Kafka's VerificationGuard).
    if error == Errors.NONE and any(ctx.broker.replica_manager.markers_written(tp) != n for tp, n in guards.items()):
        error = Errors.COORDINATOR_LOAD_IN_PROGRESS
    if error != Errors.NONE:
        return dict.fromkeys(offsets, error)
    # No await between the verification (or its guard check) above and the write below.
    return await ctx.broker.groups.txn_commit_offsets(
        body.transactional_id, body.group_id, body.producer_id, body.producer_epoch,
        body.get("generation_id", -1), body.get("member_id", ""), body.get("group_instance_id"), offsets)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    now = ctx.broker.clock.time_ms()
    # As Kafka: WRITE on the transactional id, then READ on the group, else every partition
    # answers the refusal; then READ on each topic.
    if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, body.transactional_id):
        return {"throttle_time_ms": 0,
                "topics": errors_for_all(body.topics, Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)}
    if not ctx.authorize(AclOperation.READ, ResourceType.GROUP, body.group_id):
        return {"throttle_time_ms": 0, "topics": errors_for_all(body.topics, Errors.GROUP_AUTHORIZATION_FAILED)}
    refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in body.topics))
    offsets, errors = requested_offsets(
        ctx.broker.metadata, body.topics,
        lambda p: OffsetAndMetadata(offset=p.committed_offset, leader_epoch=p.get("committed_leader_epoch", -1),
                                    metadata=p.committed_metadata or "", commit_timestamp=now),
        refused)
    if offsets:
        errors.update(await _commit(ctx, body, offsets))
    if ctx.version < 2:
        # As Kafka: 0.11-2.0 producers could crash on COORDINATOR_LOAD_IN_PROGRESS (KAFKA-7296).
        errors = {tp: Errors.COORDINATOR_NOT_AVAILABLE if e == Errors.COORDINATOR_LOAD_IN_PROGRESS else e
                  for tp, e in errors.items()}
    return {"throttle_time_ms": 0, "topics": errors_by_topic(body.topics, errors)}
