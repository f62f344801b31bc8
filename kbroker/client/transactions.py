"""Transaction administration: list and describe transactions, describe producers, abort.

The operations of Kafka's Admin client that ``kafka-transactions.sh`` uses:
ListTransactions goes to every broker (each coordinates its own transactional ids),
DescribeTransactions to each id's coordinator, DescribeProducers to each partition's
leader, and an abort is a WriteTxnMarkers ABORT sent to the partition leader with the
producer id, epoch and coordinator epoch of the open transaction (``Admin.abortTransaction``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from construct import Container

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import (
    BROKER_NOT_AVAILABLE,
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
    NOT_LEADER_OR_FOLLOWER,
    REPLICA_NOT_AVAILABLE,
    TRANSACTIONAL_ID_NOT_FOUND,
    UNKNOWN_TOPIC_OR_PARTITION,
    UNSUPPORTED_VERSION,
    KafkaError,
)
from kbroker.client.groups import COORDINATOR_TRANSACTION, find_coordinator
from kbroker.common import TopicPartition

WRITE_TXN_MARKERS = 27
DESCRIBE_PRODUCERS = 61
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66

#: The transaction states a ListTransactions state filter may name (Kafka's TransactionState).
TRANSACTION_STATES = ("Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit",
                      "CompleteAbort", "PrepareEpochFence")

#: How often a request is tried while the coordinator or leader moves or loads (about 10 s).
ATTEMPTS = 100
BACKOFF_S = 0.1


@dataclass(frozen=True)
class TransactionListing:
    """One transactional id as ListTransactions reports it."""

    transactional_id: str
    producer_id: int
    state: str


@dataclass(frozen=True)
class TransactionDescription:
    """One transactional id's state at its coordinator (DescribeTransactions)."""

    coordinator_id: int
    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    #: When the ongoing transaction started (ms since the epoch); None without one.
    start_time_ms: int | None
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class ProducerState:
    """One producer a partition's leader remembers (DescribeProducers)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    #: The epoch of the coordinator that last wrote a marker for it; None if none did.
    coordinator_epoch: int | None
    #: First offset of its open transaction in the partition; None when it has none.
    current_txn_start_offset: int | None


# -- ListTransactions ------------------------------------------------------------------


def list_transactions(client: KafkaClient, *, states: Iterable[str] = (), producer_ids: Iterable[int] = (),
                      duration_ms: int = -1, transactional_id_pattern: str | None = None,
                      ) -> dict[int, list[TransactionListing]]:
    """The transactions every broker coordinates, by broker id.

    Filters as ListTransactionsOptions: ``states`` (names from :data:`TRANSACTION_STATES`),
    ``producer_ids``, ``duration_ms`` (only transactions running longer than that; -1 for
    all; ListTransactions v1+) and ``transactional_id_pattern`` (a regular expression the
    whole id matches; v2+). A broker without the version a filter needs is an error, as
    in Kafka's client, not a silently wider listing.
    """
    body = {"state_filters": list(states), "producer_id_filters": list(producer_ids),
            "duration_filter": duration_ms, "transactional_id_pattern": transactional_id_pattern}
    out: dict[int, list[TransactionListing]] = {}
    for node in sorted(client.metadata([]).brokers):
        version = client.version_for(LIST_TRANSACTIONS, node)
        if duration_ms >= 0 and version < 1:
            raise KafkaError(UNSUPPORTED_VERSION, "Duration filter can be set only when using API "
                             f"version 1 or higher; broker {node} only has version {version}.")
        if transactional_id_pattern is not None and version < 2:
            raise KafkaError(UNSUPPORTED_VERSION, "Transactional id pattern filter can be set only when using "
                             f"API version 2 or higher; broker {node} only has version {version}.")
        out[node] = _list_on(client, node, body)
    return out


def _list_on(client: KafkaClient, node: int, body: Mapping[str, Any]) -> list[TransactionListing]:
    """One broker's listing, asked again while its coordinator loads (Kafka's ListTransactionsHandler)."""
    for i in range(ATTEMPTS):
        resp = client.request(LIST_TRANSACTIONS, body, node)
        if resp.error_code == COORDINATOR_LOAD_IN_PROGRESS and i < ATTEMPTS - 1:
            time.sleep(BACKOFF_S)
            continue
        if resp.error_code == COORDINATOR_NOT_AVAILABLE:  # final, unlike for other requests
            raise KafkaError(resp.error_code, f"ListTransactions request sent to broker {node} failed "
                             "because the coordinator is shutting down.")
        if resp.error_code:
            raise KafkaError(resp.error_code, f"ListTransactions request sent to broker {node} failed: "
                                              f"{KafkaError(resp.error_code).message}")
        return [TransactionListing(s.transactional_id, int(s.producer_id), s.transaction_state)
                for s in resp.transaction_states]
    raise AssertionError("unreachable")


# -- DescribeTransactions --------------------------------------------------------------


def _description(node: int, s: Container) -> TransactionDescription:
    partitions = tuple(sorted(TopicPartition(t.topic, int(p)) for t in s.topics for p in t.partitions))
    start = int(s.transaction_start_time_ms)
    return TransactionDescription(node, s.transactional_id, s.transaction_state, int(s.producer_id),
                                  int(s.producer_epoch), int(s.transaction_timeout_ms),
                                  None if start < 0 else start, partitions)


def describe_transactions(client: KafkaClient,
                          transactional_ids: Iterable[str]) -> dict[str, TransactionDescription | KafkaError]:
    """Each transactional id's description, or the error its coordinator answered.

    An id its coordinator does not know gets TRANSACTIONAL_ID_NOT_FOUND. The coordinator is
    looked up again after NOT_COORDINATOR/COORDINATOR_NOT_AVAILABLE, and asked again while it
    loads, as Kafka's admin client does.
    """
    pending = list(dict.fromkeys(transactional_ids))
    out: dict[str, TransactionDescription | KafkaError] = {}
    for i in range(ATTEMPTS):
        by_node: dict[int, list[str]] = {}
        for tid in pending:
            try:
                by_node.setdefault(find_coordinator(client, tid, COORDINATOR_TRANSACTION), []).append(tid)
            except KafkaError as e:
                out[tid] = e
        retry: list[str] = []
        for node, ids in by_node.items():
            resp = client.request(DESCRIBE_TRANSACTIONS, {"transactional_ids": ids}, node)
            answered = set()
            for s in resp.transaction_states:
                tid = s.transactional_id
                if tid not in ids:
                    continue  # not asked for: ignored, as Kafka's admin client does
                answered.add(tid)
                if not s.error_code:
                    out[tid] = _description(node, s)
                elif s.error_code in (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE):
                    retry.append(tid)
                    out[tid] = KafkaError(s.error_code)
                elif s.error_code == TRANSACTIONAL_ID_NOT_FOUND:
                    out[tid] = KafkaError(s.error_code, f"Transactional id '{tid}' does not exist.")
                else:
                    out[tid] = KafkaError(s.error_code, f"DescribeTransactions request for transactional id "
                                                        f"'{tid}' failed: {KafkaError(s.error_code).message}")
            for tid in ids:
                if tid not in answered:
                    out[tid] = KafkaError(-1, f"DescribeTransactions did not answer for '{tid}'.")
        pending = retry
        if not pending or i == ATTEMPTS - 1:
            break
        time.sleep(BACKOFF_S)
    return out


def describe_transaction(client: KafkaClient, transactional_id: str) -> TransactionDescription:
    """One transactional id's description; KafkaError (e.g. TRANSACTIONAL_ID_NOT_FOUND) otherwise."""
    result = describe_transactions(client, [transactional_id])[transactional_id]
    if isinstance(result, KafkaError):
        raise result
    return result


# -- DescribeProducers -----------------------------------------------------------------


def _producers(p: Container) -> list[ProducerState]:
    return [ProducerState(int(s.producer_id), int(s.producer_epoch), int(s.last_sequence),
                          int(s.last_timestamp),
                          None if s.coordinator_epoch < 0 else int(s.coordinator_epoch),
                          None if s.current_txn_start_offset < 0 else int(s.current_txn_start_offset))
            for s in p.active_producers]


def _leaders(client: KafkaClient, partitions: Sequence[TopicPartition],
             failed: dict[TopicPartition, KafkaError]) -> dict[int, list[TopicPartition]]:
    """The partitions by leader (-1: none now); partitions that do not exist go to ``failed``."""
    md = client.metadata(sorted({tp.topic for tp in partitions}))
    by_leader: dict[int, list[TopicPartition]] = {}
    for tp in partitions:
        try:
            leader = md.topic(tp.topic).partition(tp.partition).leader
        except KafkaError as e:
            if not e.retriable:
                failed[tp] = e
                continue
            leader = -1  # e.g. LEADER_NOT_AVAILABLE while the topic is created
        by_leader.setdefault(leader, []).append(tp)
    return by_leader


def describe_producers(client: KafkaClient, partitions: Iterable[TopicPartition], *,
                       broker_id: int | None = None) -> dict[TopicPartition, list[ProducerState] | KafkaError]:
    """The active producers of each partition, from its leader (or from ``broker_id``).

    A partition that does not exist, or an error the broker answered, is reported as that
    partition's KafkaError; NOT_LEADER_OR_FOLLOWER from a leader is retried after a metadata
    refresh, as Kafka's admin client does (not when ``broker_id`` names the broker).
    """
    pending = list(dict.fromkeys(TopicPartition(*tp) for tp in partitions))
    out: dict[TopicPartition, list[ProducerState] | KafkaError] = {}
    for i in range(ATTEMPTS):
        failed: dict[TopicPartition, KafkaError] = {}
        if broker_id is not None:
            targets = {broker_id: pending}
        else:
            targets = _leaders(client, pending, failed)
        out.update(failed)
        retry: list[TopicPartition] = []
        for node, tps in targets.items():
            if node < 0:  # no leader right now
                retry.extend(tps)
                for tp in tps:
                    out[tp] = KafkaError(NOT_LEADER_OR_FOLLOWER, f"Partition {tp.topic}-{tp.partition} has no leader.")
                continue
            topics: dict[str, list[int]] = {}
            for tp in tps:
                topics.setdefault(tp.topic, []).append(tp.partition)
            body = {"topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()]}
            resp = client.request(DESCRIBE_PRODUCERS, body, node)
            asked = set(tps)
            for tp in tps:
                out[tp] = KafkaError(-1, f"DescribeProducers did not answer for {tp.topic}-{tp.partition}.")
            for t in resp.topics:
                for p in t.partitions:
                    tp = TopicPartition(t.name, p.partition_index)
                    if tp not in asked:
                        continue
                    if not p.error_code:
                        out[tp] = _producers(p)
                    elif p.error_code == NOT_LEADER_OR_FOLLOWER and broker_id is None:
                        retry.append(tp)
                        out[tp] = KafkaError(p.error_code)
                    else:
                        where = "leader" if broker_id is None else f"broker {broker_id}"
                        out[tp] = KafkaError(p.error_code, f"Failed to describe producers for partition "
                                             f"{tp.topic}-{tp.partition} on {where}: "
                                             f"{p.error_message or KafkaError(p.error_code).message}")
        pending = retry
        if not pending or i == ATTEMPTS - 1:
            break
        time.sleep(BACKOFF_S)
    return out


def describe_partition_producers(client: KafkaClient, tp: TopicPartition, *,
                                 broker_id: int | None = None) -> list[ProducerState]:
    """The active producers of one partition; KafkaError when it cannot be described."""
    tp = TopicPartition(*tp)
    result = describe_producers(client, [tp], broker_id=broker_id)[tp]
    if isinstance(result, KafkaError):
        raise result
    return result


# -- abort (WriteTxnMarkers) -----------------------------------------------------------

#: WriteTxnMarkers errors after which the leader is looked up again (Kafka's AbortTransactionHandler).
_RELOOKUP = frozenset({NOT_LEADER_OR_FOLLOWER, REPLICA_NOT_AVAILABLE, BROKER_NOT_AVAILABLE,
                       UNKNOWN_TOPIC_OR_PARTITION})


def abort_transaction(client: KafkaClient, tp: TopicPartition, producer_id: int, producer_epoch: int,
                      coordinator_epoch: int) -> None:
    """Write an ABORT marker for ``producer_id``'s open transaction in partition ``tp``.

    As ``Admin.abortTransaction``: one WriteTxnMarkers marker (result ABORT) to the
    partition's leader; the leader refuses an epoch older than the producer's
    (INVALID_PRODUCER_EPOCH) and a coordinator epoch older than the last marker's
    (TRANSACTION_COORDINATOR_FENCED). A moved leader is looked up again.
    """
    tp = TopicPartition(*tp)
    spec = (f"(topic-partition {tp.topic}-{tp.partition}, producer id {producer_id}, "
            f"producer epoch {producer_epoch}, coordinator epoch {coordinator_epoch})")
    body = {"markers": [{
        "producer_id": producer_id, "producer_epoch": producer_epoch, "transaction_result": False,
        "topics": [{"name": tp.topic, "partition_indexes": [tp.partition]}],
        "coordinator_epoch": coordinator_epoch, "transaction_version": 0,
    }]}
    last: KafkaError | None = None
    for _ in range(ATTEMPTS):
        leader = client.topic(tp.topic).partition(tp.partition).leader
        resp = client.request(WRITE_TXN_MARKERS, body, leader)
        code = _marker_error(resp, tp, producer_id)
        if not code:
            return
        last = KafkaError(code, f"WriteTxnMarkers request with {spec} failed: {KafkaError(code).message}")
        if code not in _RELOOKUP:
            raise last
        time.sleep(BACKOFF_S)
    assert last is not None
    raise last


def _marker_error(resp: Container, tp: TopicPartition, producer_id: int) -> int:
    """The error code the response gives the one marker sent; KafkaError if it has not exactly that."""
    markers = list(resp.markers)
    if len(markers) != 1 or markers[0].producer_id != producer_id:
        raise KafkaError(-1, f"WriteTxnMarkers response included unexpected marker entries "
                             f"(expected exactly one with producer id {producer_id}).")
    topics = list(markers[0].topics)
    if len(topics) != 1 or topics[0].name != tp.topic:
        raise KafkaError(-1, f"WriteTxnMarkers response included unexpected topic entries "
                             f"(expected exactly one for {tp.topic}).")
    parts = list(topics[0].partitions)
    if len(parts) != 1 or parts[0].partition_index != tp.partition:
        raise KafkaError(-1, f"WriteTxnMarkers response included unexpected partition entries "
                             f"(expected exactly one for {tp.topic}-{tp.partition}).")
    return int(parts[0].error_code)


__all__ = [
    "TRANSACTION_STATES", "ProducerState", "TransactionDescription", "TransactionListing",
    "abort_transaction", "describe_partition_producers", "describe_producers", "describe_transaction",
    "describe_transactions", "list_transactions",
]
