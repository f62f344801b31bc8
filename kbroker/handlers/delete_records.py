"""DeleteRecords (key 21): advance partitions' log start offsets (e.g. Kafka Streams purging
the repartition records it has committed).

Per partition, as Kafka's ReplicaManager.deleteRecordsOnLocalLog: an internal topic is
INVALID_TOPIC_EXCEPTION, an unknown or not-led partition its partition error, a topic whose
cleanup.policy lacks ``delete`` POLICY_VIOLATION, an offset below 0 (other than -1, the high
watermark) or above the high watermark OFFSET_OUT_OF_RANGE; the answer's low watermark is
the new log start offset (-1 on an error). With one replica nothing waits for followers, so
``timeout_ms`` is not needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers.api import RequestContext

API_KEY = 21
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    rm = ctx.broker.replica_manager
    topics = []
    for t in ctx.request.body.topics:
        partitions = []
        for p in t.partitions:
            code, low = rm.delete_records(TopicPartition(t.name, p.partition_index), p.offset)
            partitions.append({"partition_index": p.partition_index, "low_watermark": low, "error_code": code})
        topics.append({"name": t.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}
