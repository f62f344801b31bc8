"""Kafka's variable-length integers: zig-zag varint/varlong and unsigned varint.

Decoders read from ``bytes``/``bytearray``/``memoryview`` at ``pos`` and return
``(value, new_pos)``. Like Kafka's ``ByteUtils`` they reject encodings longer than
5 bytes (varint) or 10 bytes (varlong) and wrap overlong values to 32/64 bits.
"""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1

# Most lengths and deltas in a batch fit one byte; skip the loop for them.
_ONE_BYTE = tuple(bytes((i,)) for i in range(128))


class VarintError(ValueError):
    """A varint that is truncated or longer than its type allows."""


def _read(buf: Buffer, pos: int, max_bytes: int) -> tuple[int, int]:
    """The raw unsigned value (before zig-zag) at ``pos``."""
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        result = b & 0x7F
        shift = 7
        end = pos + max_bytes
        pos += 1
        while pos < end:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
    except IndexError:
        raise VarintError("truncated varint") from None
    raise VarintError(f"varint longer than {max_bytes} bytes")


def decode_varint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read a zig-zag int32 varint; returns ``(value, new_pos)``."""
    try:
        b = buf[pos]
    except IndexError:
        raise VarintError("truncated varint") from None
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read(buf, pos, 5)
    n &= _MASK32
    return (n >> 1) ^ -(n & 1), pos


def decode_varlong(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read a zig-zag int64 varlong; returns ``(value, new_pos)``."""
    try:
        b = buf[pos]
    except IndexError:
        raise VarintError("truncated varint") from None
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read(buf, pos, 10)
    n &= _MASK64
    return (n >> 1) ^ -(n & 1), pos


def decode_uvarint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read an unsigned 32-bit varint (compact lengths in flexible versions)."""
    n, pos = _read(buf, pos, 5)
    return n & _MASK32, pos


def _write(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_varint(value: int) -> bytes:
    """Encode an int32 as a zig-zag varint."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"varint out of int32 range: {value}")
    return _write((value << 1) ^ (value >> 31))


def encode_varlong(value: int) -> bytes:
    """Encode an int64 as a zig-zag varlong."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"varlong out of int64 range: {value}")
    return _write((value << 1) ^ (value >> 63))


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative int as an unsigned 32-bit varint."""
    if not 0 <= value <= _MASK32:
        raise ValueError(f"unsigned varint out of range: {value}")
    return _write(value)


def size_of_varint(value: int) -> int:
    """Bytes that :func:`encode_varint` / :func:`encode_varlong` would write for ``value``."""
    n = (value << 1) ^ (value >> 63)
    return max(1, (n.bit_length() + 6) // 7)
