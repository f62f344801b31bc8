"""The partition data path: appends, long-poll fetches, offset lookups and fetch sessions.

Handlers (Produce, Fetch, ListOffsets) talk to :class:`ReplicaManager`; it talks to the
local :class:`~kbroker.log.PartitionLog` of each partition. Replication and transactions
plug in here later: the high watermark is the log's own attribute and the last stable
offset has a single seam (:meth:`ReplicaManager.last_stable_offset`).
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
