"""A tiny magic-2 record batch builder for the log tests (uncompressed, correct CRC-32C)."""

from __future__ import annotations

import struct

from kbroker.records.batch import HEADER_SIZE, BatchHeader, compute_crc, pack_header


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _record(offset_delta: int, ts_delta: int, key: bytes | None, value: bytes | None) -> bytes:
    body = bytearray(b"\x00")
    body += _zigzag_varint(ts_delta) + _zigzag_varint(offset_delta)
    for field in (key, value):
        if field is None:
            body += _zigzag_varint(-1)
        else:
            body += _zigzag_varint(len(field)) + field
    body += _zigzag_varint(0)  # no headers
    return _zigzag_varint(len(body)) + bytes(body)


def build_batch(
    values: list[bytes],
    *,
    base_offset: int = 0,
    timestamps: list[int] | None = None,
    base_timestamp: int = 1_000,
    attributes: int = 0,
    producer_id: int = -1,
) -> bytes:
    """One valid batch holding ``values`` (timestamps default to base_timestamp + i)."""
    ts = timestamps or [base_timestamp + i for i in range(len(values))]
    records = b"".join(_record(i, t - ts[0], None, v) for i, (t, v) in enumerate(zip(ts, values, strict=True)))
    size = HEADER_SIZE + len(records)
    h = BatchHeader(
        base_offset=base_offset, batch_length=size - 12, partition_leader_epoch=-1, magic=2, crc=0,
        attributes=attributes, last_offset_delta=len(values) - 1, base_timestamp=ts[0],
        max_timestamp=max(ts), producer_id=producer_id, producer_epoch=-1, base_sequence=-1,
        record_count=len(values),
    )
    buf = bytearray(pack_header(h) + records)
    struct.pack_into(">I", buf, 17, compute_crc(buf, 0, size))
    return bytes(buf)


def batch_of_size(size: int, *, timestamp: int = 1_000, count: int = 1) -> bytes:
    """A batch of ``count`` records padded so the whole batch is about ``size`` bytes."""
    overhead = len(build_batch([b""] * count, base_timestamp=timestamp))
    pad = max(0, size - overhead)
    values = [b"x" * pad] + [b""] * (count - 1)
    return build_batch(values, base_timestamp=timestamp)


def batch_offsets(data: bytes) -> list[tuple[int, int]]:
    """``(base_offset, last_offset)`` of each whole batch in ``data``."""
    from kbroker.records.batch import iter_headers

    return [(h.base_offset, h.last_offset) for _, h in iter_headers(data)]
