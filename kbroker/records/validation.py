"""Checks of the records inside a client's batch, as Kafka's LogValidator makes them.

The batch header is checked first (:func:`kbroker.records.batch.validate_batches`), and
the CRC of a compressed batch before it is decompressed; this module then walks the
records without materialising them. Every walk checks that each record's length varint
fits, that the lengths add up to the records section and that the number of records is
the header's count; this length walk is what the hot path pays (runs of same-size
records are checked with C-level slicing, see :func:`_skip_lengths`). The full walk,
used where the records are looked at
anyway (compacted topics need every key), also checks the fields inside each record
and that offset deltas count up from 0.

Uncompressed records are walked in place over the caller's buffer; compressed ones as
they stream out of the decompressor, which is cut off at ``limit`` decompressed bytes,
so neither memory nor work grows with what a small compressed batch claims to hold.

Errors follow Kafka: INVALID_RECORD for records that do not match their batch or their
own framing, CORRUPT_MESSAGE for compressed data that does not decompress.
"""

from __future__ import annotations

from kbroker.records.batch import (
    CORRUPT_MESSAGE,
    HEADER_SIZE,
    INVALID_RECORD,
    NO_PRODUCER_ID,
    BatchError,
    BatchHeader,
)
from kbroker.records.compression import CompressionError, DecompressionLimitError, iter_decompress
from kbroker.records.varint import VarintError, decode_varint, decode_varlong

#: The most bytes a compressed batch may decompress to, whatever its topic's limits:
#: ``max.message.bytes`` caps the compressed size only, and a 1 MB batch of zeros would
#: otherwise expand to gigabytes. Large enough for any real producer's batch.
MAX_DECOMPRESSED_BATCH_BYTES = 64 * 1024 * 1024

Buffer = bytes | bytearray | memoryview
# attributes, timestamp delta, offset delta, key length, value length, header count: a byte each at least.
_MIN_RECORD_BODY = 6
# Records checked at once by the first stride of a run of same-size records, and at most.
_RUN_PROBE, _RUN_MAX = 16, 4096


class _Incomplete(Exception):
    """The buffer ends inside a record (streaming only: more bytes are coming)."""


def check_client_batch(header: BatchHeader) -> None:
    """Header rules for batches a client writes (Kafka's ``validateBatch`` for client origin)."""
    if header.is_control:
        raise BatchError("Clients are not allowed to write control records", INVALID_RECORD)
    if header.producer_id != NO_PRODUCER_ID and header.base_sequence < 0:
        raise BatchError(f"Invalid sequence number {header.base_sequence} for producer {header.producer_id}",
                         INVALID_RECORD)


def validate_records(batch: Buffer, header: BatchHeader, *, full: bool = False, keyless: list[int] | None = None,
                     limit: int = MAX_DECOMPRESSED_BATCH_BYTES) -> None:
    """Walk the records of the batch at the start of ``batch`` (its header already checked).

    Every record's length must fit, the lengths must add up to the records section and
    their number must be the header's count. ``full`` (implied by ``keyless``) also
    checks each record's fields and that offset deltas count up from 0 (always done for
    compressed batches); with ``keyless``
    a list, the indexes of records without a key are appended to it. Compressed batches
    may decompress to at most ``limit`` bytes.

    Raises BatchError (INVALID_RECORD, or CORRUPT_MESSAGE for undecompressible data),
    with ``record_errors`` naming the record where Kafka names it.
    """
    count = header.record_count
    # Compressed records are decompressed anyway; their offset deltas give consumers the
    # offsets, so they are checked (with every field) as Kafka checks each of them.
    walk = _walk if full or keyless is not None or header.compression else _walk_lengths_fast
    if not header.compression:
        # In place, and bounded by the batch so varints cannot read past it. Plain bytes
        # (a produce request's payload) index and slice faster than a memoryview.
        mv = batch if isinstance(batch, bytes) and len(batch) == header.size else memoryview(batch)[: header.size]
        try:
            pos, index = walk(mv, HEADER_SIZE, header.size, 0, count, keyless)
        except _Incomplete as e:
            raise BatchError(f"record batch declares {count} records but record {e.args[1]} is cut off",
                             INVALID_RECORD) from None
        if index < count:
            raise BatchError(f"record batch declares {count} records but holds {index}", INVALID_RECORD)
        if pos != header.size:
            raise _remaining(header.size - pos, count)
        return
    data = memoryview(batch)[HEADER_SIZE : header.size]
    buf = bytearray()  # the records not yet checked: at most a chunk and one cut-off record
    index = 0
    produced = 0
    try:
        for chunk in iter_decompress(header.compression, data, limit):
            produced += len(chunk)
            buf += chunk
            try:
                pos, index = walk(buf, 0, len(buf), index, count, keyless)
            except _Incomplete as e:
                pos, index = e.args
                # A record longer than what may still come out is refused before it is buffered.
                rec_end = _declared_end(buf, pos)
                if rec_end is not None and produced - len(buf) + rec_end > limit:
                    raise DecompressionLimitError(f"decompresses to more than {limit} bytes") from None
            if index == count and pos < len(buf):
                raise _remaining(len(buf) - pos, count)
            del buf[:pos]
    except DecompressionLimitError as e:
        raise BatchError(f"record batch rejected: {e}", INVALID_RECORD) from None
    except CompressionError as e:
        raise BatchError(f"cannot decompress record batch: {e}", CORRUPT_MESSAGE) from None
    if index < count:
        raise BatchError(f"record batch declares {count} records but holds {index} whole ones", INVALID_RECORD)


def _remaining(n: int, count: int) -> BatchError:
    return BatchError(f"Incorrect declared batch size, {n} bytes remaining after the declared {count} records",
                      INVALID_RECORD)


def _declared_end(buf: bytearray, pos: int) -> int | None:
    """Where in ``buf`` the record at ``pos`` ends, if its length varint is complete."""
    try:
        length, p = decode_varint(buf, pos)
    except VarintError:
        return None
    return p + length


def _skip_lengths(buf: Buffer, pos: int, end: int, index: int, count: int) -> tuple[int, int]:
    """Skip whole records with valid lengths from ``pos``; returns ``(pos, index)`` where it stopped.

    The hot path. Producers often write many records of one size in a row (fixed-size
    values; the record length only steps up when the offset delta needs another varint
    byte), so once a record has its predecessor's size, it and those after it are
    checked as a run: their length bytes sit at a fixed stride, and C-level slicing
    compares them all at once. Other records cost one pure-Python step each. Stops
    before any record it cannot vouch for (cut off at ``end``, a bad length, or a length
    of three bytes or more, i.e. 8 KiB or longer): :func:`_walk_lengths` takes that
    record and says what is wrong, if anything.
    """
    probe = _RUN_PROBE
    last = -1
    try:
        while index < count:
            c = buf[pos]
            if c < 0x80:
                n = c
                width = 1
            else:
                c2 = buf[pos + 1]
                if c2 >= 0x80:
                    break
                n = (c2 << 7) | (c & 0x7F)
                width = 2
            if n & 1 or n < 2 * _MIN_RECORD_BODY:  # negative (odd in zig-zag) or too short
                break
            stride = width + (n >> 1)
            if n != last:
                if pos + stride > end:
                    break
                last = n
                pos += stride
                index += 1
                continue
            # The same size as the record before: records [index, index + k) if each
            # starts with this record's length bytes.
            k = min(count - index, (end - pos) // stride, probe)
            if k < 1:
                break
            stop = pos + (k - 1) * stride + 1
            head = bytes(buf[pos:stop:stride])
            run = k - len(head.lstrip(head[:1]))
            if width == 2:
                second = bytes(buf[pos + 1 : stop + 1 : stride])
                run = min(run, k - len(second.lstrip(second[:1])))
            probe = min(probe * 2, _RUN_MAX) if run == k else _RUN_PROBE
            pos += run * stride
            index += run
    except IndexError:
        pass
    return pos, index


def _walk_lengths_fast(buf: Buffer, pos: int, end: int, index: int, count: int,
                       keyless: list[int] | None = None) -> tuple[int, int]:
    """:func:`_walk_lengths`, with the records :func:`_skip_lengths` vouches for skipped in bulk.

    Where the fast skip stops, one record is walked carefully (it raises if the record
    is bad or cut off) and the fast skip resumes after it.
    """
    while True:
        pos, index = _skip_lengths(buf, pos, end, index, count)
        if index >= count:
            return pos, index
        pos, index = _walk_lengths(buf, pos, end, index, index + 1)


def _walk_lengths(buf: Buffer, pos: int, end: int, index: int, count: int,
                  keyless: list[int] | None = None) -> tuple[int, int]:
    """Each record's length varint, skipping its body: one pure-Python step per record.

    Same contract as :func:`_walk` without looking inside records.
    """
    try:
        while index < count:
            if pos >= end:
                raise _Incomplete(pos, index)
            c = buf[pos]
            if c < 0x80:
                length = (c >> 1) ^ -(c & 1)
                p = pos + 1
            elif pos + 1 < end and (c2 := buf[pos + 1]) < 0x80:
                c = (c & 0x7F) | (c2 << 7)
                length = (c >> 1) ^ -(c & 1)
                p = pos + 2
            else:
                try:
                    length, p = decode_varint(buf, pos)
                except VarintError:
                    if end - pos < 5:
                        raise _Incomplete(pos, index) from None
                    raise
            if length < _MIN_RECORD_BODY:
                raise _record_error(index, f"invalid record size {length}")
            if p + length > end:
                raise _Incomplete(pos, index)
            pos = p + length
            index += 1
    except VarintError as e:
        raise _record_error(index, f"malformed record length: {e}") from None
    return pos, index


def _walk(buf: Buffer, pos: int, end: int, index: int, count: int,
          keyless: list[int] | None = None) -> tuple[int, int]:
    """Check records ``index``.. from ``pos`` until ``count`` are done or ``buf`` ends at ``end``.

    Returns ``(pos, index)`` after the last record checked. Raises _Incomplete with the
    same pair if a record is cut off at ``end``, BatchError if one is malformed.
    One-byte varints (most lengths and deltas) are decoded inline.
    """
    dv = decode_varint
    try:
        while index < count:
            if pos >= end:
                raise _Incomplete(pos, index)
            b = buf[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                p = pos + 1
            else:
                try:
                    length, p = dv(buf, pos)
                except VarintError:
                    if end - pos < 5:
                        raise _Incomplete(pos, index) from None  # the length itself is cut off
                    raise
            rec_end = p + length
            if length < _MIN_RECORD_BODY:
                raise _record_error(index, f"invalid record size {length}")
            if rec_end > end:
                raise _Incomplete(pos, index)
            p += 1  # attributes
            b = buf[p]
            if b < 0x80:  # timestamp delta
                p += 1
            else:
                p = decode_varlong(buf, p)[1]
            b = buf[p]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                delta, p = dv(buf, p)
            if delta != index:
                raise BatchError(
                    f"Record {index} has offset delta {delta}: offsets inside a batch must count up from 0",
                    INVALID_RECORD, [(index, f"offset delta {delta}, expected {index}")])
            b = buf[p]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                n, p = dv(buf, p)
            if n >= 0:
                p += n
            elif keyless is not None:
                keyless.append(index)
            if p >= rec_end:
                raise _record_error(index, "record ends inside its key")
            b = buf[p]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                n, p = dv(buf, p)
            if n > 0:
                p += n
            if p >= rec_end:
                raise _record_error(index, "record ends inside its value")
            b = buf[p]
            if b == 0:  # no headers
                p += 1
            else:
                p = _skip_headers(buf, p, rec_end, index)
            if p != rec_end:
                raise _record_error(index, f"record declares {length} bytes but its fields take {p - rec_end + length}")
            pos = rec_end
            index += 1
    except (VarintError, IndexError) as e:
        raise _record_error(index, f"malformed record: {e}") from None
    return pos, index


def _skip_headers(buf: Buffer, p: int, rec_end: int, index: int) -> int:
    dv = decode_varint
    n, p = dv(buf, p)
    if n < 0:
        raise _record_error(index, f"invalid number of record headers {n}")
    if n > rec_end - p:  # each header takes at least two bytes: do not loop on a huge count
        raise _record_error(index, f"{n} record headers cannot fit in the record")
    for _ in range(n):
        size, p = dv(buf, p)
        if size < 0:
            raise _record_error(index, f"invalid negative header key size {size}")
        p += size
        if p >= rec_end:
            raise _record_error(index, "record ends inside a header")
        size, p = dv(buf, p)
        if size > 0:
            p += size
        if p > rec_end:
            raise _record_error(index, "record ends inside a header")
    return p


def _record_error(index: int, message: str) -> BatchError:
    return BatchError(f"Invalid record {index} in the batch: {message}", INVALID_RECORD)
