"""Checks of a client's batch before it is appended, as Kafka's LogValidator makes them.

In order: framing, CRC and sizes (nothing is decompressed before those pass), the header
rules for client batches, then a walk over the records (see
:mod:`kbroker.records.validation`). The hot path only walks record lengths; a
compacted topic is the exception: every record must carry a key (compaction keeps the
latest value per key), so there each record's fields are walked too.
"""

from __future__ import annotations

from kbroker.codec.error_codes import ErrorCode
from kbroker.records.batch import CORRUPT_MESSAGE, BatchError, iter_headers, validate_batches, verify_crc
from kbroker.records.validation import check_client_batch, validate_records
from kbroker.replica.errors import PartitionError


def validate_client_batches(topic: str, partition: int, records: bytes | bytearray | memoryview, *,
                            max_message_bytes: int, compacted: bool) -> None:
    """Raise BatchError or PartitionError (with record errors) if ``records`` must be refused.

    The CRC of a compressed batch is checked before it is decompressed. An uncompressed
    batch's CRC is left to the log's append, which checks it anyway, unless its records
    or its header is refused: then a CRC mismatch is reported first, as Kafka orders the checks.
    """
    mv = memoryview(records)
    pos = 0
    for h in validate_batches(mv, max_message_bytes, check_crc=None):
        keyless: list[int] | None = [] if compacted else None
        try:
            check_client_batch(h)
            # The payload itself when it is the one batch: bytes are walked faster than a view.
            validate_records(records if h.size == len(records) else mv[pos : pos + h.size], h, keyless=keyless)
        except BatchError:
            if not h.compression and not verify_crc(mv, pos, h):
                raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE) from None
            raise
        if keyless:
            if not h.compression and not verify_crc(mv, pos, h):
                raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE)
            _refuse_keyless(topic, partition, keyless)
        pos += h.size


def _refuse_keyless(topic: str, partition: int, missing: list[int]) -> None:
    """INVALID_RECORD naming every record without a key (by its index in the batch)."""
    reason = f"Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    shown = ", ".join(f"(batchIndex={i}, message='{reason}')" for i in missing[:3])
    raise PartitionError(
        ErrorCode.INVALID_RECORD,
        f"One or more records have been rejected due to {len(missing)} record errors in total, and only "
        f"showing the first three errors at most: [{shown}]",
        record_errors=[(i, reason) for i in missing],
    )


def check_timestamps(records: bytes | bytearray | memoryview, now_ms: int, before_max_ms: int | None,
                     after_max_ms: int | None) -> None:
    """INVALID_TIMESTAMP unless each CreateTime batch's timestamps lie within the topic's bounds of ``now_ms``.

    Kafka's ``message.timestamp.before.max.ms`` / ``after.max.ms``; the batch header's first
    and largest timestamps stand for its records, so the records stay unread.
    """
    low = now_ms - before_max_ms if before_max_ms is not None else None
    high = now_ms + after_max_ms if after_max_ms is not None else None
    for _, h in iter_headers(records):
        for ts in (h.base_timestamp, h.max_timestamp):
            if ts == -1:  # NO_TIMESTAMP
                continue
            if (low is not None and ts < low) or (high is not None and ts > high):
                raise PartitionError(
                    ErrorCode.INVALID_TIMESTAMP,
                    f"Timestamp {ts} of message with offset {h.base_offset} is out of range. The timestamp "
                    f"should be within [{low if low is not None else 'unbounded'}, "
                    f"{high if high is not None else 'unbounded'}]",
                    record_errors=[(0, f"Timestamp {ts} is out of range")])
