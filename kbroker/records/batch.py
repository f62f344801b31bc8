"""The 61-byte record batch header (magic 2), read and patched with ``struct``.

Batches stay opaque bytes on the hot path: only this header is touched. Layout
(big-endian), offsets in bytes::

    0  base_offset int64          27 base_timestamp int64
    8  batch_length int32         35 max_timestamp int64
    12 partition_leader_epoch     43 producer_id int64
    16 magic int8                 51 producer_epoch int16
    17 crc uint32                 53 base_sequence int32
    21 attributes int16           57 record_count int32
    23 last_offset_delta int32    61 records...

The CRC-32C covers everything from ``attributes`` to the end of the batch, so the
base offset, length and partition leader epoch can be patched without recomputing it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from kbroker.records.crc import crc32c

HEADER_SIZE = 61
#: Bytes before ``batch_length`` counts: base offset + the length field itself.
LOG_OVERHEAD = 12
MAGIC_V2 = 2
CRC_START = 21
NO_PRODUCER_ID = -1
NO_SEQUENCE = -1

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD = range(5)

_HEADER = struct.Struct(">qiibIhiqqqhii")
_BASE_OFFSET = struct.Struct(">q")
_LENGTH = struct.Struct(">i")
_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_ATTRS = struct.Struct(">h")
_MAX_TS = struct.Struct(">q")


class BatchError(ValueError):
    """A batch that cannot be accepted; ``error_code`` is the Kafka error to answer with.

    ``record_errors`` are ``(index in the batch, message)`` of the records at fault, when known.
    """

    def __init__(self, message: str, error_code: int, record_errors: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.record_errors = tuple(record_errors)


CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_RECORD = 87
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43


class BatchHeader(NamedTuple):
    """The decoded fixed header of one record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Total bytes of the batch including the offset and length fields."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


#: ``BatchHeader._make`` without its Python frame: headers are built for every batch appended or read.
_new_header = tuple.__new__


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the header of the batch starting at ``pos``; raises BatchError if short."""
    if len(buf) - pos < HEADER_SIZE:
        raise BatchError("record batch shorter than its 61-byte header", CORRUPT_MESSAGE)
    return _new_header(BatchHeader, _HEADER.unpack_from(buf, pos))


def peek_size(buf: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """Total size of the batch at ``pos`` from its length field, or None if fewer than 12 bytes remain."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    return LOG_OVERHEAD + _LENGTH.unpack_from(buf, pos + 8)[0]


def is_transactional(buf: bytes | bytearray | memoryview | None) -> bool:
    """True if ``buf`` starts with a magic-2 batch whose transactional flag is set."""
    return buf is not None and len(buf) >= HEADER_SIZE and buf[16] == MAGIC_V2 and bool(buf[22] & TRANSACTIONAL_BIT)


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    """CRC-32C of the covered range (attributes to end) of the batch at ``pos``."""
    mv = memoryview(buf)
    return crc32c(mv[pos + CRC_START : pos + size])


def verify_crc(buf: bytes | bytearray | memoryview, pos: int = 0, header: BatchHeader | None = None) -> bool:
    """True if the stored CRC matches the batch's bytes."""
    h = header or parse_header(buf, pos)
    return compute_crc(buf, pos, h.size) == h.crc


def iter_headers(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each whole batch in ``buf``; stops at a partial tail."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        h = parse_header(buf, pos)
        if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + h.size > end:
            return
        yield pos, h
        pos += h.size


def validate_batches(buf: bytes | bytearray | memoryview, max_batch_size: int | None = None, *,
                     check_crc: bool | None = True) -> list[BatchHeader]:
    """Check every batch in a produce payload and return their headers.

    Raises :class:`BatchError` with the code Kafka answers with: CORRUPT_MESSAGE for
    framing or CRC errors and unknown magic, INVALID_RECORD for old (v0/v1) magic and
    semantically wrong batches, MESSAGE_TOO_LARGE over ``max_batch_size``. The payload
    must be whole batches. ``check_crc=None`` checks the CRC of compressed batches only
    (for a caller whose later steps check the others).
    """
    headers: list[BatchHeader] = []
    mv = memoryview(buf)
    pos = 0
    end = len(mv)
    if end == 0:
        raise BatchError("empty record set", CORRUPT_MESSAGE)
    while pos < end:
        # Magic sits at byte 16 in every message format, so judge it before the length.
        magic = mv[pos + 16] if end - pos > 16 else MAGIC_V2
        if magic != MAGIC_V2:
            # Kafka: v0/v1 message sets are refused from v3+ produce requests; any other
            # magic means the bytes are not a batch at all.
            code = INVALID_RECORD if magic in (0, 1) else CORRUPT_MESSAGE
            raise BatchError(f"unsupported record batch magic {magic}", code)
        if end - pos < HEADER_SIZE:
            raise BatchError("truncated record batch", CORRUPT_MESSAGE)
        h = _new_header(BatchHeader, _HEADER.unpack_from(mv, pos))
        size = LOG_OVERHEAD + h.batch_length  # h.size, without the property call
        if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            raise BatchError("record batch length does not match the payload", CORRUPT_MESSAGE)
        if max_batch_size is not None and size > max_batch_size:
            raise BatchError(
                f"record batch of {size} bytes exceeds the limit {max_batch_size}", MESSAGE_TOO_LARGE
            )
        compression = h.attributes & COMPRESSION_MASK
        if (check_crc or (check_crc is None and compression)) and compute_crc(mv, pos, size) != h.crc:
            raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE)
        if h.record_count <= 0:  # control batches hold exactly one record too
            raise BatchError("record batch holds no records", INVALID_RECORD)
        if h.last_offset_delta != h.record_count - 1:
            # Compacted batches may have gaps, but a producer's batch never does.
            raise BatchError("record batch offsets are not contiguous", INVALID_RECORD)
        if compression > COMPRESSION_ZSTD:
            raise BatchError(f"unknown compression codec {compression}", CORRUPT_MESSAGE)
        headers.append(h)
        pos += size
    return headers


def verify_uncompressed_crcs(buf: bytes | bytearray | memoryview, headers: Sequence[BatchHeader]) -> None:
    """The CRC check ``validate_batches(check_crc=None)`` leaves out: raise CORRUPT_MESSAGE
    if an uncompressed batch of ``buf`` (whose ``headers`` that call returned) fails its CRC."""
    pos = 0
    for h in headers:
        size = LOG_OVERHEAD + h.batch_length
        if not h.attributes & COMPRESSION_MASK and compute_crc(buf, pos, size) != h.crc:
            raise BatchError("record batch CRC-32C mismatch", CORRUPT_MESSAGE)
        pos += size


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Patch the base offset (not covered by the CRC)."""
    _BASE_OFFSET.pack_into(buf, pos, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    """Patch the partition leader epoch (not covered by the CRC)."""
    _EPOCH.pack_into(buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, size: int, timestamp_ms: int) -> None:
    """Mark the batch as LogAppendTime with ``timestamp_ms`` as its max timestamp; rewrites the CRC."""
    attrs = _ATTRS.unpack_from(buf, pos + 21)[0] | TIMESTAMP_TYPE_BIT
    _ATTRS.pack_into(buf, pos + 21, attrs)
    _MAX_TS.pack_into(buf, pos + 35, timestamp_ms)
    _CRC.pack_into(buf, pos + 17, compute_crc(buf, pos, size))


def pack_header(h: BatchHeader) -> bytes:
    """Encode a header (its ``crc`` field is written as given)."""
    return _HEADER.pack(*h)


def seal_batch(h: BatchHeader, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """A whole batch: ``h`` with the batch length of ``payload`` (the records), then the
    payload, and the CRC-32C computed over both."""
    # h with its batch length and a zero CRC (fields 1 and 4), without _replace's frames.
    out = bytearray(_HEADER.pack(h[0], HEADER_SIZE - LOG_OVERHEAD + len(payload), h[2], h[3], 0, *h[5:]))
    out += payload
    _CRC.pack_into(out, CRC_START - _CRC.size, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)
