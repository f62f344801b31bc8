"""The partition data path: appends, long-poll fetches, offset lookups and fetch sessions.

Handlers (Produce, Fetch, ListOffsets, WriteTxnMarkers) talk to :class:`ReplicaManager`; it
talks to the local :class:`~kbroker.log.PartitionLog` of each partition. Transaction markers,
the last stable offset and aborted transactions come from the logs; replication plugs in
here later (the high watermark is the log's own attribute).
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
