"""On-disk log storage in Kafka's layout: segments, indexes, partition logs, the log manager."""

from kbroker.log.checkpoint import (
    OffsetCheckpointFile,
    PartitionMetadataFile,
    decode_topic_id,
    encode_topic_id,
)
from kbroker.log.config import LogConfig
from kbroker.log.errors import CorruptIndexError, KafkaStorageError, LogError, OffsetOutOfRange
from kbroker.log.index import OffsetIndex, OffsetPosition, TimeIndex, TimestampOffset
from kbroker.log.leader_epoch import EpochEntry, LeaderEpochCache
from kbroker.log.manager import LogManager
from kbroker.log.partition_log import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    AppendInfo,
    PartitionLog,
)
from kbroker.log.producer_state import AppendOrigin
from kbroker.log.segment import LogSegment
from kbroker.log.segments import LogSegments
from kbroker.log.topic_store import TopicRecord, TopicStore

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "AppendInfo",
    "AppendOrigin",
    "CorruptIndexError",
    "EpochEntry",
    "KafkaStorageError",
    "LeaderEpochCache",
    "LogConfig",
    "LogError",
    "LogManager",
    "LogSegment",
    "LogSegments",
    "OffsetCheckpointFile",
    "OffsetIndex",
    "OffsetOutOfRange",
    "OffsetPosition",
    "PartitionLog",
    "PartitionMetadataFile",
    "TimeIndex",
    "TimestampOffset",
    "TopicRecord",
    "TopicStore",
    "decode_topic_id",
    "encode_topic_id",
]
