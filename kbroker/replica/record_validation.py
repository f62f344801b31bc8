"""Checks that need the records themselves, run only for topics whose config asks for them.

The hot path keeps batches opaque; a compacted topic is the exception: every record
must carry a key (compaction keeps the latest value per key), as Kafka's LogValidator
enforces, so those batches are decoded here.
"""

from __future__ import annotations

from kbroker.codec.error_codes import ErrorCode
from kbroker.records.record import iter_records
from kbroker.replica.errors import PartitionError


def check_compacted_keys(topic: str, partition: int, batch: bytes | bytearray | memoryview) -> None:
    """Raise INVALID_RECORD naming every record without a key (by its index in the batch)."""
    missing = [i for i, r in enumerate(iter_records(batch)) if r.key is None]
    if not missing:
        return
    reason = f"Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    shown = ", ".join(f"(batchIndex={i}, message='{reason}')" for i in missing[:3])
    raise PartitionError(
        ErrorCode.INVALID_RECORD,
        f"One or more records have been rejected due to {len(missing)} record errors in total, and only "
        f"showing the first three errors at most: [{shown}]",
        record_errors=[(i, reason) for i in missing],
    )
