"""Rewriting a batch into another codec, as Kafka's LogValidator does for a topic's ``compression.type``.

Kafka (``LogValidator.buildRecordsAndAssignOffsets``) rebuilds such a batch with a
``MemoryRecordsBuilder``: the records keep their keys, values, headers and timestamps,
take offset deltas 0, 1, ... and timestamp deltas from the first record's timestamp, and
lose their (unused) attributes; the batch keeps the producer id, epoch, base sequence and
transactional flag. Its base timestamp is the first record's and its max timestamp the
largest record's, or under LogAppendTime the append time (Kafka 4.1 keeps the first
record's timestamp as the base of such a batch).

Records are rewritten without decoding their keys, values or headers: only each record's
prefix (length, attributes, timestamp delta, offset delta) is looked at, and when every
prefix is already what Kafka's builder writes (the usual case) the records section is
reused byte for byte. Compressed input is decompressed with the same cap as the
validation of client batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from kbroker.records.batch import (
    COMPRESSION_MASK,
    CONTROL_BIT,
    CORRUPT_MESSAGE,
    HEADER_SIZE,
    INVALID_RECORD,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchError,
    BatchHeader,
    seal_batch,
)
from kbroker.records.compression import CompressionError, DecompressionLimitError, compress, iter_decompress
from kbroker.records.varint import VarintError, decode_varint, decode_varlong, encode_varint, encode_varlong

Buffer = bytes | bytearray | memoryview


class RecordPrefix(NamedTuple):
    """The fixed-order fields at the start of one record, and where the rest of it lies."""

    attributes: int
    timestamp_delta: int
    offset_delta: int
    #: Start and end (in the records section) of the key, value and headers.
    rest_start: int
    end: int


def records_section(batch: Buffer, header: BatchHeader, limit: int) -> bytes | memoryview:
    """The records of the batch at the start of ``batch``, decompressed (at most ``limit`` bytes).

    Raises BatchError: CORRUPT_MESSAGE for data the codec cannot read, INVALID_RECORD past ``limit``.
    """
    data = memoryview(batch)[HEADER_SIZE : header.size]
    if not header.compression:
        return data
    try:
        return b"".join(iter_decompress(header.compression, data, limit))
    except DecompressionLimitError as e:
        raise BatchError(f"record batch rejected: {e}", INVALID_RECORD) from None
    except CompressionError as e:
        raise BatchError(f"cannot decompress record batch: {e}", CORRUPT_MESSAGE) from None


def iter_record_prefixes(buf: Buffer, count: int) -> Iterator[RecordPrefix]:
    """The prefix of each of the ``count`` records in ``buf`` (a batch's records section), one
    at a time: a decompressed batch may hold millions of records, so nothing is kept per record.

    Raises BatchError(INVALID_RECORD) if a record does not fit in ``buf`` or the records
    do not fill it exactly (the latter once the last record has been yielded).
    """
    pos, end = 0, len(buf)
    dv, dl = decode_varint, decode_varlong
    index = 0
    try:
        for index in range(count):
            length, p = dv(buf, pos)
            rec_end = p + length
            if length < 6 or rec_end > end:
                raise BatchError(f"Invalid record {index} in the batch: bad record size {length}", INVALID_RECORD)
            attributes = buf[p]
            ts_delta, p = dl(buf, p + 1)
            offset_delta, p = dv(buf, p)
            if p > rec_end:
                raise BatchError(f"Invalid record {index} in the batch: record ends inside its prefix",
                                 INVALID_RECORD)
            pos = rec_end
            yield RecordPrefix(attributes, ts_delta, offset_delta, p, rec_end)
    except (VarintError, IndexError) as e:
        raise BatchError(f"Invalid record {index} in the batch: malformed record: {e}", INVALID_RECORD) from None
    if pos != end:
        raise BatchError(f"Incorrect declared batch size, {end - pos} bytes remaining after the declared "
                         f"{count} records", INVALID_RECORD)


def record_prefixes(buf: Buffer, count: int) -> list[RecordPrefix]:
    """Every prefix :func:`iter_record_prefixes` yields, as a list (for small batches and tests)."""
    return list(iter_record_prefixes(buf, count))


def record_timestamps(header: BatchHeader, prefixes: list[RecordPrefix]) -> list[int]:
    """Each record's timestamp as Kafka reads it: the batch's max timestamp for every record of
    a LogAppendTime batch, else the base timestamp plus the record's delta."""
    if header.log_append_time:
        return [header.max_timestamp] * len(prefixes)
    base = header.base_timestamp
    return [base + p.timestamp_delta for p in prefixes]


def _timestamp(header: BatchHeader, prefix: RecordPrefix) -> int:
    """One record's timestamp as :func:`record_timestamps` reads it."""
    return header.max_timestamp if header.log_append_time else header.base_timestamp + prefix.timestamp_delta


def recompress_batch(batch: Buffer, header: BatchHeader, codec: int, *, level: int | None = None,
                     log_append_time_ms: int | None = None, limit: int) -> bytes:
    """The batch at the start of ``batch`` rebuilt as one batch compressed with ``codec``.

    ``level`` is Kafka's level for the codec (None: its default). ``log_append_time_ms``
    makes it a LogAppendTime batch with that max timestamp. The base offset and
    partition leader epoch are copied (the log assigns both); the CRC is computed anew.
    Raises BatchError for records that do not decompress or do not parse.
    """
    buf = records_section(batch, header, limit)
    # Two streaming passes over the records (a batch may decompress to millions of them, and a
    # list of their prefixes would cost the broker gigabytes): the first finds the timestamps'
    # first and max and whether every record is already as Kafka's builder writes them
    # (attributes 0, offset deltas 0.., timestamp deltas from the first record's timestamp:
    # most producers write exactly that); only otherwise the second rewrites each prefix.
    count = header.record_count
    first_ts: int | None = None
    max_ts: int | None = None
    canonical = True
    n = 0
    for i, p in enumerate(iter_record_prefixes(buf, count)):
        n = i + 1
        ts = _timestamp(header, p)
        if first_ts is None:
            first_ts = ts
        if max_ts is None or ts > max_ts:
            max_ts = ts
        if canonical and not (p.attributes == 0 and p.offset_delta == i and p.timestamp_delta == ts - first_ts):
            canonical = False
    if first_ts is None or max_ts is None:
        first_ts = max_ts = -1
    records: Buffer
    if canonical:
        records = buf
    else:
        out = bytearray()
        for i, p in enumerate(iter_record_prefixes(buf, count)):
            body = bytearray(b"\x00")
            body += encode_varlong(_timestamp(header, p) - first_ts)
            body += encode_varint(i)
            body += buf[p.rest_start : p.end]
            out += encode_varint(len(body))
            out += body
        records = out
    payload = compress(codec, records, level) if codec else bytes(records)
    attributes = codec | (header.attributes & (TRANSACTIONAL_BIT | CONTROL_BIT))
    if log_append_time_ms is not None:
        attributes |= TIMESTAMP_TYPE_BIT
        max_ts = log_append_time_ms
    if attributes & COMPRESSION_MASK != codec:
        raise ValueError(f"unknown compression codec {codec}")
    new = header._replace(
        batch_length=HEADER_SIZE - LOG_OVERHEAD + len(payload),
        crc=0,
        attributes=attributes,
        last_offset_delta=n - 1,
        base_timestamp=first_ts,
        max_timestamp=max_ts,
        record_count=n,
    )
    return seal_batch(new, payload)
