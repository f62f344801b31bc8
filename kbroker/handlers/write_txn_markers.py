"""WriteTxnMarkers (key 27): write transaction markers to partitions this broker leads.

:func:`write_markers` is also the transaction coordinator's :data:`WriteMarkers`: it
appends the markers through the replica manager, then tells the group coordinator
about every ``__consumer_offsets`` partition whose marker was written, so that the
transaction's offsets become visible (commit) or are dropped (abort).

From clients (an administrator aborting a hanging transaction, as Kafka's
``kafka-transactions.sh abort``), a single broker refuses a marker naming a coordinator epoch
newer than its coordinator ever had, with INVALID_REQUEST. In a cluster the coordinators of
other brokers send their markers here, at their partitions' leader epochs: a marker naming a
coordinator epoch above every leader epoch of ``__transaction_state`` this broker knows is
answered REQUEST_TIMED_OUT (a coordinator whose election this broker has not learned yet retries).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import BrokerServices, RequestContext, response
from kbroker.security.model import AclOperation
from kbroker.txn.coordinator import COORDINATOR_EPOCH
from kbroker.txn.log import TRANSACTION_STATE
from kbroker.txn.markers import MarkerResults, TxnMarker

API_KEY = 27
#: v0 was removed in Kafka 4.0; v2 adds the transaction version, which v1 clients leave at 0.
VERSIONS = VersionRange(1, 2)
CONSUMER_OFFSETS = "__consumer_offsets"

log = logging.getLogger(__name__)


async def write_markers(services: BrokerServices, markers: Sequence[TxnMarker]) -> MarkerResults:
    """Append ``markers`` locally and complete the groups' transactional offsets."""
    results = await services.replica_manager.write_txn_markers(markers)
    for marker, outcome in zip(markers, results, strict=True):
        written = [tp.partition for tp, code in outcome.items() if code == 0 and tp.topic == CONSUMER_OFFSETS]
        if not written:
            continue
        try:
            services.groups.on_transaction_completed(marker.producer_id, written, marker.commit)
        except Exception:  # the markers are written; the groups' view is what failed
            log.exception("completing transactional offsets of producer %d in %s partitions %s failed",
                          marker.producer_id, CONSUMER_OFFSETS, written)
    return results


def _newest_coordinator_epoch(metadata: Any) -> int:
    """The largest leader epoch of a ``__transaction_state`` partition this broker knows (-1: none):
    in a cluster a coordinator's epoch is its partition's leader epoch."""
    topic = metadata.topic(TRANSACTION_STATE)
    if topic is None:
        return -1
    return max((p.leader_epoch for p in topic.partitions.values()), default=-1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    # A partition named twice in a marker gets one control batch, as Kafka keys them by partition.
    markers = [TxnMarker(m.producer_id, m.producer_epoch, m.coordinator_epoch, bool(m.transaction_result),
                         tuple(dict.fromkeys(TopicPartition(t.name, p) for t in m.topics for p in t.partition_indexes)))
               for m in body.markers]
    # This broker's coordinator writes every marker at one coordinator epoch, for good: a
    # marker claiming a newer one would fence it out of the partition and leave its producer's
    # transactions there prepared, holding the LSO, forever. Such a marker is refused.
    # As Kafka: ALTER or CLUSTER_ACTION on the cluster, else nothing is written and every
    # partition answers CLUSTER_AUTHORIZATION_FAILED.
    if ctx.broker.authorizer is not None and not (authz.cluster(ctx, AclOperation.ALTER)
                                                  or authz.cluster(ctx, AclOperation.CLUSTER_ACTION)):
        results: MarkerResults = [dict.fromkeys(m.partitions, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
                                  for m in markers]
    else:
        # In a cluster coordinator epochs are the leader epochs of __transaction_state's
        # partitions, and each log fences markers of an older one itself.
        # A marker from a coordinator epoch no coordinator had would fence them all out of the
        # partition the same way: in a cluster, no epoch above __transaction_state's leader epochs.
        clustered = ctx.broker.transactions.clustered
        newest = _newest_coordinator_epoch(ctx.broker.metadata) if clustered else COORDINATOR_EPOCH
        refusal = ErrorCode.REQUEST_TIMED_OUT if clustered else ErrorCode.INVALID_REQUEST
        allowed = [m.coordinator_epoch <= newest for m in markers]
        written = iter(await write_markers(ctx.broker, [m for m, ok in zip(markers, allowed, strict=True) if ok]))
        results = [next(written) if ok else dict.fromkeys(m.partitions, refusal)
                   for m, ok in zip(markers, allowed, strict=True)]
    # As Kafka, the answer is keyed by producer id: markers of one producer share an entry,
    # and a marker naming no partition has none.
    by_producer: dict[int, dict[TopicPartition, int]] = {}
    for marker, outcome in zip(markers, results, strict=True):
        for tp in marker.partitions:
            by_producer.setdefault(marker.producer_id, {})[tp] = outcome.get(tp, 0)
    out = []
    for producer_id, errors in by_producer.items():
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for tp, code in errors.items():
            by_topic.setdefault(tp.topic, []).append({"partition_index": tp.partition, "error_code": code})
        out.append({"producer_id": producer_id,
                    "topics": [{"name": n, "partitions": ps} for n, ps in by_topic.items()]})
    return response(len(out), markers=out)
