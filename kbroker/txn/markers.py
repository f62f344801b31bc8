"""Transaction markers: what a transaction coordinator asks partition leaders to write.

The coordinator ends a transaction by writing a COMMIT or ABORT control batch to every
partition the transaction touched (WriteTxnMarkers). It reaches the leaders only through
a :data:`WriteMarkers` callable, so the same coordinator code serves a single broker
(the callable appends locally) and a cluster (the callable sends WriteTxnMarkers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kbroker.common import TopicPartition


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """One WriteTxnMarkers entry: end ``producer_id``'s transaction in ``partitions``."""

    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: tuple[TopicPartition, ...]


#: Per marker (in request order), the error code of each of its partitions (0 = written).
MarkerResults = list[dict[TopicPartition, int]]
#: Writes markers to their partitions' leaders and reports each partition's outcome.
WriteMarkers = Callable[[Sequence[TxnMarker]], Awaitable[MarkerResults]]
