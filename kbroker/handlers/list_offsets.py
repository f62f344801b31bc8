"""ListOffsets (key 2): offsets by timestamp, plus the special earliest/latest/max lookups.

Timestamps: -1 latest (high watermark, or last stable offset for read_committed), -2
earliest, -3 the record with the largest timestamp, -4 earliest local (= earliest
without tiered storage), -5 latest tiered and -6 earliest pending upload (offset -1:
nothing is tiered); any other value finds the first record at or after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.replica.types import CONSUMER_REPLICA_ID, READ_UNCOMMITTED, OffsetResult
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 2
VERSIONS = VersionRange(0, 11)
_DENIED = OffsetResult(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
#: The first version that may ask for each special (negative) timestamp; as Kafka, an older
#: version asking for it, or any other negative timestamp, is answered UNSUPPORTED_VERSION.
SPECIAL_TIMESTAMP_MIN_VERSION = {-1: 0, -2: 0, -3: 7, -4: 8, -5: 9, -6: 11}


def timestamp_supported(timestamp: int, version: int) -> bool:
    """Whether ListOffsets at ``version`` may ask for ``timestamp``."""
    return timestamp >= 0 or version >= SPECIAL_TIMESTAMP_MIN_VERSION.get(timestamp, 1 << 15)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    version = ctx.version
    rm = ctx.broker.replica_manager
    # Replicas (and debugging tools) read up to the log end offset; consumers by isolation level.
    isolation: int | None = body.get("isolation_level", READ_UNCOMMITTED)
    if body.replica_id != CONSUMER_REPLICA_ID:
        isolation = None
    # As Kafka: a partition asked for twice is answered INVALID_REQUEST, once (Kafka keys its
    # answers by partition, so the repeats fold into one entry).
    counts = Counter(TopicPartition(t.name, p.partition_index) for t in body.topics for p in t.partitions)
    duplicates = {tp for tp, n in counts.items() if n > 1}
    answered: set[TopicPartition] = set()
    # As Kafka: a topic the principal may not describe answers TOPIC_AUTHORIZATION_FAILED for
    # every partition named, before any other check.
    refused = authz.denied(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in body.topics))
    # In a cluster, a client's lookup on a leader whose high watermark lags its epoch start.
    lagging = rm.high_watermark_lagging if isolation is not None and rm.replicated else None
    topics = []
    for t in body.topics:
        partitions = []
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            if refused and t.name in refused:
                r = _DENIED
            elif tp in duplicates:
                if tp in answered:
                    continue
                answered.add(tp)
                r = OffsetResult(ErrorCode.INVALID_REQUEST)
            elif not timestamp_supported(p.timestamp, version):
                r = OffsetResult(ErrorCode.UNSUPPORTED_VERSION)
            else:
                r = rm.fetch_offset_for_timestamp(tp, p.timestamp, isolation_level=isolation,
                                                  current_leader_epoch=p.get("current_leader_epoch", -1))
                if lagging is not None and _not_available(p.timestamp, r) and lagging(tp):
                    r = OffsetResult(ErrorCode.OFFSET_NOT_AVAILABLE if version >= 5 else ErrorCode.LEADER_NOT_AVAILABLE)
            partitions.append(_partition(version, p, r))
        topics.append({"name": t.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


#: Lookups a lagging high watermark does not concern: the log start, and tiered offsets.
_ALWAYS_AVAILABLE = frozenset({-2, -4, -5, -6})


def _not_available(timestamp: int, r: OffsetResult) -> bool:
    """Whether a successful lookup may be one a lagging high watermark hides (Kafka's
    maybeOffsetsError): the latest offset, or a lookup that found nothing below the HW."""
    return r.error_code == ErrorCode.NONE and timestamp not in _ALWAYS_AVAILABLE and (
        timestamp == -1 or r.offset < 0)


def _partition(version: int, p: Any, r: OffsetResult) -> dict[str, Any]:
    out: dict[str, Any] = {"partition_index": p.partition_index, "error_code": r.error_code}
    if version == 0:
        # v0 answers a list of up to max_num_offsets offsets; one lookup gives at most one.
        wanted = p.get("max_num_offsets", 1)
        out["old_style_offsets"] = [r.offset] if r.error_code == ErrorCode.NONE and r.offset >= 0 and wanted > 0 else []
    else:
        out.update(timestamp=r.timestamp, offset=r.offset, leader_epoch=r.leader_epoch)
    return out
