"""Producer ids and transactions: the ids this broker hands to InitProducerId (kept across
restarts) and the transaction coordinator (:mod:`kbroker.txn.coordinator`).

Per-partition producer state (sequence numbers, open transactions, snapshots) belongs to the
partition's log and lives in :mod:`kbroker.log.producer_state`.
"""

from kbroker.txn.producer_ids import ProducerIdManager

__all__ = ["ProducerIdManager"]
