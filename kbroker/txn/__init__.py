"""Producer ids: the block of ids this broker hands to InitProducerId, kept across restarts.

Per-partition producer state (sequence numbers, snapshots) belongs to the partition's log
and lives in :mod:`kbroker.log.producer_state`; the transaction coordinator will live here.
"""

from kbroker.txn.producer_ids import ProducerIdManager

__all__ = ["ProducerIdManager"]
