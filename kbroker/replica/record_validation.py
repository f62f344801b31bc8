"""Checks of a client's batch before it is appended, as Kafka's LogValidator makes them.

In order: framing, CRC and sizes (nothing is decompressed before those pass), the header
rules for client batches, then a walk over the records (see
:mod:`kbroker.records.validation`). The hot path only walks record lengths; a
compacted topic is the exception: every record must carry a key (compaction keeps the
latest value per key), so there each record's fields are walked too.

Then the timestamp rules (:func:`check_timestamps`) and, for a topic whose
``compression.type`` names a codec, the rewrite of batches in another codec
(:func:`recompress_for_topic`), which also applies to the broker's own appends.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kbroker.codec.error_codes import ErrorCode
from kbroker.log.config import LogConfig
from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CORRUPT_MESSAGE,
    HEADER_SIZE,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_BIT,
    BatchError,
    BatchHeader,
    iter_headers,
    validate_batches,
    verify_crc,
)
from kbroker.records.recompress import iter_record_prefixes, recompress_batch, records_section
from kbroker.records.validation import MAX_DECOMPRESSED_BATCH_BYTES, check_client_batch, validate_records
from kbroker.records.varint import decode_varint
from kbroker.replica.errors import PartitionError

TimestampErrors = Callable[[memoryview, BatchHeader], list[tuple[int, str]]]


def validate_client_batches(topic: str, partition: int, records: bytes | bytearray | memoryview, *,
                            max_message_bytes: int, compacted: bool,
                            timestamp_errors: TimestampErrors | None = None) -> list[BatchHeader]:
    """Raise BatchError or PartitionError (with record errors) if ``records`` must be refused;
    else return the batches' headers (all checked but the CRC of uncompressed batches, which
    the log's append checks: see :meth:`kbroker.log.PartitionLog.append`'s ``headers``).

    The CRC of a compressed batch is checked before it is decompressed. An uncompressed
    batch's CRC is left to the log's append, which checks it anyway, unless its records
    or its header is refused: then a CRC mismatch is reported first, as Kafka orders the checks.
    On a compacted topic, records without a key are INVALID_RECORD unless other records'
    timestamps are refused too (``timestamp_errors`` names them): then, as Kafka, the
    answer is INVALID_TIMESTAMP with both kinds of record errors.
    """
    mv = memoryview(records)
    pos = 0
    headers = validate_batches(mv, max_message_bytes, check_crc=None)
    for h in headers:
        size = LOG_OVERHEAD + h.batch_length  # h.size, without the property call
        keyless: list[int] | None = [] if compacted else None
        try:
            check_client_batch(h)
            # The payload itself when it is the one batch: bytes are walked faster than a view.
            validate_records(records if size == len(records) else mv[pos : pos + size], h, keyless=keyless)
        except BatchError:
            if not h.compression and not verify_crc(mv, pos, h):
                raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE) from None
            raise
        if keyless:
            if not h.compression and not verify_crc(mv, pos, h):
                raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE)
            _refuse_keyless(topic, partition, keyless,
                            timestamp_errors(mv[pos : pos + size], h) if timestamp_errors else [])
        pos += size
    return headers


def _refuse_keyless(topic: str, partition: int, missing: list[int], timestamp_errors: list[tuple[int, str]]) -> None:
    """INVALID_RECORD naming every record without a key (by its index in the batch), or
    INVALID_TIMESTAMP when other records' timestamps are refused as well."""
    reason = f"Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
    keyless = set(missing)
    late = [e for e in timestamp_errors if e[0] not in keyless]  # Kafka checks a record's key first
    if late:
        raise PartitionError(ErrorCode.INVALID_TIMESTAMP,
                             "One or more records have been rejected due to invalid timestamp",
                             record_errors=sorted([(i, reason) for i in missing] + late))
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{reason}')" for i in missing[:3])
    raise PartitionError(
        ErrorCode.INVALID_RECORD,
        f"One or more records have been rejected due to {len(missing)} record errors in total, and only "
        f"showing the first three errors at most: [{shown}]",
        record_errors=[(i, reason) for i in missing],
    )


_LONG_MAX = 2**63 - 1


def _java_long(n: int) -> int:
    """``n`` wrapped to a Java long, as Kafka's bounds in its message overflow."""
    return (n + 2**63) % 2**64 - 2**63


def check_timestamps(records: bytes | bytearray | memoryview, now_ms: int, before_max_ms: int | None,
                     after_max_ms: int | None, *, log_append_time: bool = False) -> None:
    """INVALID_TIMESTAMP as Kafka's ``LogValidator.validateTimestamp`` answers it, per record.

    On a CreateTime topic each record's timestamp (but -1, none) must lie within
    ``message.timestamp.before.max.ms`` before and ``after.max.ms`` after ``now_ms``
    (None: unbounded); a record without one, in a batch a producer marked LogAppendTime,
    is refused. On a LogAppendTime topic a producer's LogAppendTime batch is refused.

    The batch header stands for its records where it can: its first and max timestamps
    bound the records from above, so only a lower bound (``before.max.ms``), a header out of
    range or a LogAppendTime batch walks the records (decompressing a compressed batch)
    to name each record at fault, as Kafka does.
    """
    high = now_ms + after_max_ms if after_max_ms is not None else None
    low = now_ms - before_max_ms if before_max_ms is not None else None
    if not log_append_time and low is None and _headers_within(records, high):
        return  # the usual case, read from the headers' fixed fields alone
    for pos, h in iter_headers(records):
        if log_append_time:
            if not h.log_append_time:
                continue
        elif not h.log_append_time and low is None and (high is None or (h.base_timestamp <= high
                                                                          and h.max_timestamp <= high)):
            continue  # the header's timestamps bound every record's from above
        errors = timestamp_errors(memoryview(records)[pos : pos + h.size], h, now_ms, before_max_ms, after_max_ms,
                                  log_append_time)
        if errors:
            raise PartitionError(ErrorCode.INVALID_TIMESTAMP,
                                 "One or more records have been rejected due to invalid timestamp",
                                 record_errors=errors)


# A batch header's attributes, last offset delta, base and max timestamps (from byte 21), and its length (byte 8).
_HEADER_TIMES = struct.Struct(">hiqq")
_LENGTH = struct.Struct(">i")


def _headers_within(records: bytes | bytearray | memoryview, high: int | None) -> bool:
    """True if every batch is CreateTime with base and max timestamps at most ``high`` (None: unbounded)."""
    pos, end = 0, len(records)
    while end - pos >= HEADER_SIZE:
        attributes, _, base, largest = _HEADER_TIMES.unpack_from(records, pos + 21)
        if attributes & TIMESTAMP_TYPE_BIT or (high is not None and (base > high or largest > high)):
            return False
        pos += LOG_OVERHEAD + _LENGTH.unpack_from(records, pos + 8)[0]
    return True


def timestamp_errors(batch: memoryview, h: BatchHeader, now_ms: int, before_max_ms: int | None,
                     after_max_ms: int | None, log_append_time: bool) -> list[tuple[int, str]]:
    """Kafka's record errors for the timestamps of the batch ``batch`` (headed ``h``); empty
    when every record passes (see :func:`check_timestamps`)."""
    high = now_ms + after_max_ms if after_max_ms is not None else None
    low = now_ms - before_max_ms if before_max_ms is not None else None
    buf = records_section(batch, h, MAX_DECOMPRESSED_BATCH_BYTES)
    errors: list[tuple[int, str]] = []
    shown_low = _java_long(now_ms - (before_max_ms if before_max_ms is not None else _LONG_MAX))
    shown_high = _java_long(now_ms + (after_max_ms if after_max_ms is not None else _LONG_MAX))
    for index, p in enumerate(iter_record_prefixes(buf, h.record_count)):  # nothing kept per record
        ts = h.max_timestamp if h.log_append_time else h.base_timestamp + p.timestamp_delta
        offset = h.base_offset + p.offset_delta
        if not log_append_time and ts != -1:
            if (low is not None and ts < low) or (high is not None and ts > high):
                errors.append((index, f"Timestamp {ts} of message with offset {offset} is out of range. "
                                      f"The timestamp should be within [{shown_low}, {shown_high}]"))
        elif h.log_append_time:
            key_len, q = decode_varint(buf, p.rest_start)
            value_len, _ = decode_varint(buf, q + max(key_len, 0))
            record = (f"DefaultRecord(offset={offset}, timestamp={ts}, key={max(key_len, 0)} bytes, "
                      f"value={max(value_len, 0)} bytes)")
            errors.append((index, f"Invalid timestamp type in message {record}. Producer should not set "
                                  "timestamp type to LogAppendTime."))
    return errors


#: The codec id a topic's ``compression.type`` stores batches in (``producer`` keeps each batch's own).
TOPIC_CODECS = {"uncompressed": COMPRESSION_NONE, "gzip": COMPRESSION_GZIP, "snappy": COMPRESSION_SNAPPY,
                "lz4": COMPRESSION_LZ4, "zstd": COMPRESSION_ZSTD}


def recompress_for_topic(records: bytes | bytearray | memoryview, config: LogConfig,
                         log_append_time_ms: int | None) -> bytes | bytearray | memoryview:
    """``records`` with each batch in the codec of the topic's ``compression.type`` (not ``producer``).

    As Kafka's LogValidator: a batch already in that codec is kept as sent, and so is an
    uncompressed control batch (transaction markers stay uncompressed); any other batch
    is rebuilt in the topic's codec at its ``compression.<codec>.level`` (see
    :func:`kbroker.records.recompress.recompress_batch`), stamped with ``log_append_time_ms``
    when the topic uses LogAppendTime. A rebuilt batch above ``max.message.bytes`` is
    refused with MESSAGE_TOO_LARGE, Kafka's RecordTooLargeException.
    """
    codec = TOPIC_CODECS[config.compression_type]
    level = {COMPRESSION_GZIP: config.compression_gzip_level, COMPRESSION_LZ4: config.compression_lz4_level,
             COMPRESSION_ZSTD: config.compression_zstd_level}.get(codec)
    parts: list[bytes | memoryview] = []
    changed = False
    mv = memoryview(records)
    for pos, h in iter_headers(records):
        batch = mv[pos : pos + h.size]
        if h.compression == codec or (h.is_control and not h.compression):
            parts.append(batch)
            continue
        rebuilt = recompress_batch(batch, h, codec, level=level, log_append_time_ms=log_append_time_ms,
                                   limit=MAX_DECOMPRESSED_BATCH_BYTES)
        if len(rebuilt) > config.max_message_bytes:
            # Kafka's RecordTooLargeException, whose text ("Message batch size is N bytes in append
            # to partition ...") its produce answer leaves out: no error message.
            raise PartitionError(ErrorCode.MESSAGE_TOO_LARGE)
        parts.append(rebuilt)
        changed = True
    if not changed:
        return records
    return parts[0] if len(parts) == 1 else b"".join(parts)
