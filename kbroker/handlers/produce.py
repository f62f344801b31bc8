"""Produce (key 0): append one record batch per partition; acks=0 gets no response.

Served from v3 (magic-2 batches only), but advertised from v0 as Kafka 4 does:
librdkafka decides whether the broker speaks magic 2 from Produce's advertised
range (KAFKA-18659) and never actually sends v0-v2.

Transactional batches need the request's transactional id (else every partition gets
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka). With
``transaction.partition.verification.enable`` (KIP-890), a partition where the producer
has no transaction open yet at the batch's epoch is first checked with the transaction
coordinator: it must have been added to the producer's transaction. Verification with this
broker's coordinator is synchronous and nothing awaits between it and the append, so an EndTxn
cannot slip in between; in a cluster, verification with another broker's coordinator is guarded
by the partition's count of written transaction markers instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import CloseConnection, RequestContext
from kbroker.metadata.topic_names import TRANSACTION_STATE
from kbroker.records.batch import BatchError, is_transactional, iter_headers
from kbroker.replica.types import AppendResult
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 0
VERSIONS = VersionRange(3, 13)
ADVERTISED_MIN_VERSION = 0
_NO_TXN_ID = AppendResult(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
_TOPIC_DENIED = AppendResult(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
_UNRESOLVED = AppendResult(ErrorCode.UNKNOWN_TOPIC_ID)
VERIFICATION_ENABLE = "transaction.partition.verification.enable"
#: Verification errors older clients may not retry: answered as NOT_ENOUGH_REPLICAS, which
#: every client retries without refreshing metadata (Kafka's choice).
_RETRY_AS_NOT_ENOUGH_REPLICAS = frozenset({
    ErrorCode.CONCURRENT_TRANSACTIONS, ErrorCode.NETWORK_EXCEPTION, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR})


def _producer_of(records: Any) -> tuple[int, int] | None:
    """``(producer id, epoch)`` of the first transactional batch, None when there is none."""
    if not records:
        return None
    try:
        for _, h in iter_headers(records):
            if h.is_transactional:
                return h.producer_id, h.producer_epoch
    except (BatchError, ValueError):
        return None  # malformed: the append reports it
    return None


def verification_failure(error: ErrorCode, version: int) -> AppendResult:
    """What the producer gets for a partition that failed verification (Kafka's ReplicaManager)."""
    if error == ErrorCode.PRODUCER_FENCED:
        error = ErrorCode.INVALID_PRODUCER_EPOCH
    elif error == ErrorCode.TRANSACTION_ABORTABLE and version <= 10:
        error = ErrorCode.INVALID_TXN_STATE  # clients before Produce v11 do not know TRANSACTION_ABORTABLE
    if error == ErrorCode.INVALID_TXN_STATE:
        return AppendResult(error, error_message="Partition was not added to the transaction")
    if error in _RETRY_AS_NOT_ENOUGH_REPLICAS:
        return AppendResult(ErrorCode.NOT_ENOUGH_REPLICAS, error_message=(
            f"Unable to verify the partition has been added to the transaction. Underlying error: {error.name}"))
    return AppendResult(error)


async def verify_with_coordinator(ctx: RequestContext, transactional_id: str, producer_id: int, producer_epoch: int,
                                  partitions: list[TopicPartition], guards: dict[TopicPartition, int]
                                  ) -> Mapping[TopicPartition, int]:
    """Each partition's KIP-890 verification error code (0: in the producer's ongoing transaction).

    This broker's transaction coordinator answers synchronously when it serves ``transactional_id``;
    in a cluster where another broker does, that broker is asked (AddPartitionsToTxn ``verify_only``)
    and ``guards`` gets each partition's count of written transaction markers, which the caller
    compares again, with no await in between, right before it writes.
    """
    transactions = ctx.broker.transactions
    codes: Mapping[TopicPartition, int] = transactions.verify_partitions(
        transactional_id, producer_id, producer_epoch, partitions)
    remote = transactions.remote_verify
    if remote is None or all(code != ErrorCode.NOT_COORDINATOR for code in codes.values()):
        return codes
    state = ctx.broker.metadata.partition(TRANSACTION_STATE, transactions.partition_for(transactional_id))
    if state is None or state.leader < 0 or state.leader == ctx.broker.node_id:
        return dict.fromkeys(partitions, ErrorCode.COORDINATOR_NOT_AVAILABLE)
    replicas = ctx.broker.replica_manager
    guards.update((tp, replicas.markers_written(tp)) for tp in partitions)
    return await remote(state.leader, transactional_id, producer_id, producer_epoch, partitions)


async def _verify(ctx: RequestContext, transactional_id: str, entries: dict[TopicPartition, Any]
                  ) -> dict[TopicPartition, AppendResult]:
    """Failed verifications by partition; those partitions are not appended.

    When this broker coordinates ``transactional_id`` the check is local and synchronous. In a
    cluster where another broker does, it is asked (AddPartitionsToTxn ``verify_only``, as Kafka's
    AddPartitionsToTxnManager); a transaction marker written to a partition while the answer was
    awaited makes that partition's verification stale (Kafka's VerificationGuard): it is retried.
    """
    if not ctx.broker.config.get(VERIFICATION_ENABLE):
        return {}
    replicas = ctx.broker.replica_manager
    metadata = ctx.broker.metadata
    by_producer: dict[tuple[int, int], list[TopicPartition]] = {}
    for tp, records in entries.items():
        producer = _producer_of(records)
        info = metadata.topic(tp.topic)
        if info is None or tp.partition not in info.partitions:
            continue  # the append answers UNKNOWN_TOPIC_OR_PARTITION, as Kafka does before verifying
        # As Kafka, only a transaction open at the batch's own epoch makes verification needless.
        if producer is not None and not replicas.has_ongoing_transaction(tp, *producer):
            by_producer.setdefault(producer, []).append(tp)
    failed: dict[TopicPartition, AppendResult] = {}
    guards: dict[TopicPartition, int] = {}
    for (pid, epoch), tps in by_producer.items():
        codes = await verify_with_coordinator(ctx, transactional_id, pid, epoch, tps, guards)
        for tp, error in codes.items():
            if error != ErrorCode.NONE:
                failed[tp] = verification_failure(ErrorCode(error), ctx.version)
    # No await from here to the append: a marker written while a remote answer was awaited
    # may have ended the transaction the answer speaks of.
    for tp, written in guards.items():
        if tp not in failed and replicas.markers_written(tp) != written:
            failed[tp] = verification_failure(ErrorCode.CONCURRENT_TRANSACTIONS, ctx.version)
    return failed


async def handle(ctx: RequestContext) -> Mapping[str, Any] | None:
    body = ctx.request.body
    version = ctx.version
    metadata = ctx.broker.metadata
    topic_data = body["topic_data"]
    if len(topic_data) == 1 and ctx.broker.authorizer is None:
        td = topic_data[0]
        if len(td["partition_data"]) == 1:
            one = await _handle_one(ctx, body, td, version)
            if one is not _GENERAL:
                return one
    entries: dict[TopicPartition, Any] = {}
    # Response layout in request order: (name or id, [(partition, tp or None when unresolved)]).
    layout: list[tuple[str | uuid.UUID, list[tuple[int, TopicPartition | None]]]] = []
    transactional = False
    for td in body["topic_data"]:
        name: str | None
        if version >= 13:
            topic = metadata.topic_by_id(td["topic_id"])
            name = topic.name if topic is not None else None
            key: str | uuid.UUID = td["topic_id"]
        else:
            name = key = td["name"]
        parts: list[tuple[int, TopicPartition | None]] = []
        for pd in td["partition_data"]:
            index = pd["index"]
            records = pd["records"]
            if not transactional and is_transactional(records):
                transactional = True
            tp = TopicPartition(name, index) if name is not None else None
            if tp is not None:
                entries[tp] = records
            parts.append((index, tp))
        layout.append((key, parts))

    unresolved = _UNRESOLVED
    if transactional and (body["transactional_id"] is None or not ctx.authorize(
            AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, body["transactional_id"])):
        # As Kafka: the whole request is refused and nothing is written.
        results = {tp: _NO_TXN_ID for tp in entries}
        unresolved = _NO_TXN_ID
    else:
        # As Kafka: a topic the principal may not write answers TOPIC_AUTHORIZATION_FAILED
        # whether or not it exists, and is neither verified nor appended.
        refused = authz.denied(ctx, AclOperation.WRITE, ResourceType.TOPIC, (tp.topic for tp in entries))
        if refused:
            entries = {tp: r for tp, r in entries.items() if tp.topic not in refused}
        unverified = await _verify(ctx, body["transactional_id"], entries) if transactional else None
        # No await between the verification (or its guard check) above and the append below.
        results = await ctx.broker.replica_manager.append_records(
            {tp: r for tp, r in entries.items() if tp not in unverified} if unverified else entries,
            acks=body["acks"], timeout_ms=body["timeout_ms"], transactional_id=body["transactional_id"])
        if unverified:
            results.update(unverified)
        if refused:
            results.update({tp: _TOPIC_DENIED for _, parts in layout for _, tp in parts
                            if tp is not None and tp.topic in refused})

    if body["acks"] == 0:
        failed = any(r.error_code for r in results.values()) or any(
            tp is None for _, parts in layout for _, tp in parts)
        if failed:
            # As Kafka: with no response to carry the error, closing the connection makes
            # the client refresh its metadata.
            raise CloseConnection("acks=0 produce failed for at least one partition")
        return None

    responses = []
    for key, parts in layout:
        partition_responses = []
        for index, tp in parts:
            r = results.get(tp, unresolved) if tp is not None else unresolved
            partition_responses.append(_partition_response(index, r))
        entry: dict[str, Any] = {"partition_responses": partition_responses}
        if version >= 13:
            entry["topic_id"] = key
        else:
            entry["name"] = key
        responses.append(entry)
    return {"responses": responses, "throttle_time_ms": 0}


#: What :func:`_handle_one` returns for a request it leaves to the general path.
_GENERAL: Any = object()


async def _handle_one(ctx: RequestContext, body: Any, td: Any, version: int) -> Mapping[str, Any] | None:
    """:func:`handle` for the usual request: one partition of one known topic, no transaction,
    no authorizer (nothing to refuse or verify). Answers exactly as the general path does;
    returns ``_GENERAL`` for anything else."""
    pd = td["partition_data"][0]
    records = pd["records"]
    if is_transactional(records):
        return _GENERAL
    if version >= 13:
        topic = ctx.broker.metadata.topic_by_id(td["topic_id"])
        if topic is None:
            return _GENERAL
        name = topic.name
    else:
        name = td["name"]
    index = pd["index"]
    tp = TopicPartition(name, index)
    acks = body["acks"]
    result = (await ctx.broker.replica_manager.append_records(
        {tp: records}, acks=acks, timeout_ms=body["timeout_ms"], transactional_id=body["transactional_id"]))[tp]
    if acks == 0:
        if result.error_code:
            raise CloseConnection("acks=0 produce failed for at least one partition")
        return None
    entry: dict[str, Any] = {"partition_responses": [_partition_response(index, result)]}
    if version >= 13:
        entry["topic_id"] = td["topic_id"]
    else:
        entry["name"] = name
    return {"responses": [entry], "throttle_time_ms": 0}


def _partition_response(index: int, r: AppendResult) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": r.error_code,
        "base_offset": r.base_offset,
        "log_append_time_ms": r.log_append_time_ms,
        "log_start_offset": r.log_start_offset,
        "record_errors": [{"batch_index": i, "batch_index_error_message": m} for i, m in r.record_errors]
        if r.record_errors else [],
        "error_message": r.error_message,
    }
