"""Idempotent producers: producer ids, per-partition producer state and its snapshots.

Transactions (coordinator, markers, LSO) will build on the same pieces.
"""

from kbroker.txn.producer_ids import ProducerIdManager
from kbroker.txn.producer_state import (
    BatchMetadata,
    ProducerStateEntry,
    ProducerStateError,
    ProducerStateManager,
)

__all__ = [
    "BatchMetadata",
    "ProducerIdManager",
    "ProducerStateEntry",
    "ProducerStateError",
    "ProducerStateManager",
]
