"""Transaction markers in a cluster: each partition's marker goes to that partition's leader.

The transaction coordinator hands its markers to a :data:`~kbroker.txn.markers.WriteMarkers`
callable. On a single broker that appends locally; in a cluster :class:`ClusterMarkerWriter`
splits every marker by the leader of each partition (Kafka's TransactionMarkerChannelManager):
partitions this broker leads are written locally, the others are sent to their leaders in one
WriteTxnMarkers request per broker, concurrently. A leader that cannot be reached, or a
partition with no leader, answers a retriable error, which the coordinator retries after its
back-off (by then the metadata may name a new leader).

The same connections carry a partition leader's KIP-890 verification of a transactional produce
to the transaction coordinator when that is another broker (:meth:`ClusterMarkerWriter.verify_partitions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.replica.peer import Connector, PeerConnection, PeerError
from kbroker.txn.markers import MarkerResults, TxnMarker, WriteMarkers

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS = 27
#: v1: the first flexible version, which every broker of Kafka 4.x serves.
_VERSION = 1
ADD_PARTITIONS_TO_TXN = 24
#: v4: the first inter-broker version (KIP-890: several transactions, ``verify_only``).
_VERIFY_VERSION = 4


class ClusterMarkerWriter:
    """A :data:`WriteMarkers` that reaches every partition's leader."""

    def __init__(self, *, node_id: int, leader_of: Callable[[TopicPartition], int | None],
                 endpoint: Callable[[int], tuple[str, int] | None], local: WriteMarkers, connect: Connector,
                 timeout_s: float, backoff_s: float, monotonic: Callable[[], float] | None = None) -> None:
        """``leader_of`` gives a partition's leader (-1: none, None: no such partition);
        ``endpoint`` a broker's inter-broker address; ``local`` writes this broker's partitions."""
        self._node_id = node_id
        self._leader_of = leader_of
        self._endpoint = endpoint
        self._local = local
        self._connect = connect
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._monotonic = monotonic
        self._peers: dict[int, PeerConnection] = {}

    async def aclose(self) -> None:
        """Close the connections to other brokers."""
        peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            await peer.aclose()

    async def __call__(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        results: MarkerResults = [{} for _ in markers]
        local: list[tuple[int, TxnMarker]] = []
        remote: dict[int, list[tuple[int, TxnMarker]]] = {}
        for i, marker in enumerate(markers):
            by_leader: dict[int, list[TopicPartition]] = {}
            for tp in marker.partitions:
                leader = self._leader_of(tp)
                if leader is None:
                    results[i][tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif leader < 0:
                    results[i][tp] = ErrorCode.NOT_LEADER_OR_FOLLOWER  # an election is under way
                else:
                    by_leader.setdefault(leader, []).append(tp)
            for leader, tps in by_leader.items():
                part = TxnMarker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.commit,
                                 tuple(tps))
                (local if leader == self._node_id else remote.setdefault(leader, [])).append((i, part))

        async def send(broker: int, parts: list[tuple[int, TxnMarker]]) -> None:
            for (i, _), outcome in zip(parts, await self._send(broker, [m for _, m in parts]), strict=True):
                results[i].update(outcome)

        async with anyio.create_task_group() as tg:
            for broker, parts in remote.items():
                tg.start_soon(send, broker, parts)
            if local:
                for (i, _), outcome in zip(local, await self._local([m for _, m in local]), strict=True):
                    results[i].update(outcome)
        return results

    async def _send(self, broker: int, markers: list[TxnMarker]) -> MarkerResults:
        """One WriteTxnMarkers request to ``broker``; every partition REQUEST_TIMED_OUT (retriable)
        when it cannot be reached or answers something unreadable."""
        failed: MarkerResults = [dict.fromkeys(m.partitions, ErrorCode.REQUEST_TIMED_OUT) for m in markers]
        peer = await self._peer(broker)
        if peer is None:
            return [dict.fromkeys(m.partitions, ErrorCode.NOT_LEADER_OR_FOLLOWER) for m in markers]
        body = {"markers": [{
            "producer_id": m.producer_id, "producer_epoch": m.producer_epoch, "transaction_result": m.commit,
            "coordinator_epoch": m.coordinator_epoch,
            "topics": [{"name": topic, "partition_indexes": [tp.partition for tp in m.partitions if tp.topic == topic]}
                       for topic in dict.fromkeys(tp.topic for tp in m.partitions)]} for m in markers]}
        try:
            answer = await peer.request(WRITE_TXN_MARKERS, _VERSION, body)
        except PeerError as e:
            log.info("cannot send transaction markers to broker %d: %s", broker, e)
            return failed
        # The answer is keyed by producer id (markers of one producer share an entry).
        codes: dict[tuple[int, TopicPartition], int] = {}
        for entry in answer.markers:
            for topic in entry.topics:
                for p in topic.partitions:
                    codes[(entry.producer_id, TopicPartition(topic.name, p.partition_index))] = p.error_code
        return [{tp: codes.get((m.producer_id, tp), ErrorCode.REQUEST_TIMED_OUT) for tp in m.partitions}
                for m in markers]

    async def verify_partitions(self, broker: int, transactional_id: str, producer_id: int, producer_epoch: int,
                                partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Ask ``broker``, the transaction coordinator of ``transactional_id``, whether each partition
        is in the producer's ongoing transaction (AddPartitionsToTxn v4+ with ``verify_only``, Kafka's
        AddPartitionsToTxnManager). A coordinator that cannot be reached or answers as a whole with an
        error gives every partition a retriable error (NETWORK_EXCEPTION, or the answer's own)."""
        peer = None if broker == self._node_id else await self._peer(broker)
        if peer is None:
            return dict.fromkeys(partitions, ErrorCode.NOT_COORDINATOR)
        topics = [{"name": topic, "partitions": [tp.partition for tp in partitions if tp.topic == topic]}
                  for topic in dict.fromkeys(tp.topic for tp in partitions)]
        body = {"transactions": [{"transactional_id": transactional_id, "producer_id": producer_id,
                                  "producer_epoch": producer_epoch, "verify_only": True, "topics": topics}]}
        try:
            answer = await peer.request(ADD_PARTITIONS_TO_TXN, _VERIFY_VERSION, body)
        except PeerError as e:
            log.info("cannot verify transaction %r with broker %d: %s", transactional_id, broker, e)
            return dict.fromkeys(partitions, ErrorCode.NETWORK_EXCEPTION)
        if answer.error_code:
            return dict.fromkeys(partitions, answer.error_code)
        codes: dict[TopicPartition, int] = {}
        for txn in answer.results_by_transaction:
            if txn.transactional_id == transactional_id:
                for topic in txn.topic_results:
                    for p in topic.results_by_partition:
                        codes[TopicPartition(topic.name, p.partition_index)] = p.partition_error_code
        return {tp: codes.get(tp, ErrorCode.NETWORK_EXCEPTION) for tp in partitions}

    async def _peer(self, broker: int) -> PeerConnection | None:
        address = self._endpoint(broker)
        if address is None:
            return None
        peer = self._peers.get(broker)
        if peer is not None and (peer.host, peer.port) == address:
            return peer
        if peer is not None:
            # The broker moved (restarted on another port): the old connection is dropped.
            del self._peers[broker]
            await peer.aclose()
        peer = PeerConnection(address[0], address[1], client_id=f"kbroker-txn-markers-{self._node_id}",
                              timeout_s=self._timeout_s, backoff_s=self._backoff_s, connect=self._connect,
                              monotonic=self._monotonic)
        self._peers[broker] = peer
        return peer
