"""The partition data path: appends, long-poll fetches, offset lookups and fetch sessions.

Handlers (Produce, Fetch, ListOffsets, WriteTxnMarkers) talk to :class:`ReplicaManager`; it
talks to the local :class:`~kbroker.log.PartitionLog` of each partition. Transaction markers,
the last stable offset and aborted transactions come from the logs; in a cluster the leader
side of replication lives here too (:mod:`kbroker.replica.partition_state`).
"""

from kbroker.common import TopicPartition
from kbroker.replica.manager import ReplicaManager
from kbroker.replica.types import (
    AppendResult,
    FetchParams,
    FetchResult,
    OffsetResult,
    PartitionFetch,
)

__all__ = [
    "AppendResult", "FetchParams", "FetchResult", "OffsetResult", "PartitionFetch", "ReplicaManager",
    "TopicPartition",
]
