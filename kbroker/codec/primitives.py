"""Kafka's primitive types as ``construct`` classes.

Fixed-width integers use construct's own compiled-friendly fields; the variable
length and nullable types are small ``Construct`` subclasses that read with one
``struct`` call where they can. Every failure raises a construct error that the
codec turns into :class:`kbroker.codec.errors.CodecError`.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from construct import (
    Construct,
    Flag,
    Float64b,
    Int8sb,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64sb,
    StreamError,
    stream_read,
    stream_write,
)

from kbroker.records.varint import VarintError, decode_uvarint, encode_uvarint

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
ZERO_UUID = uuid.UUID(int=0)
#: Kafka's readUnsignedVarint refuses longer encodings.
_UVARINT_MAX_BYTES = 5
#: The longest string Kafka reads or writes, compact or not.
_MAX_STRING = 0x7FFF


class ValueError_(StreamError):
    """A decoded value that is structurally impossible (negative length, bad UTF-8)."""


def read_uvarint(stream: Any, path: str) -> int:
    """Read an unsigned varint (compact lengths, tags) as Kafka does: at most 5 bytes."""
    b = stream_read(stream, 1, path)[0]
    if b < 0x80:
        return int(b)
    data = bytearray((b,))
    while b >= 0x80 and len(data) < _UVARINT_MAX_BYTES:
        b = stream_read(stream, 1, path)[0]
        data.append(b)
    try:
        return decode_uvarint(data)[0]
    except VarintError as e:
        raise ValueError_(str(e), path=path) from None


def write_uvarint(value: int, stream: Any, path: str) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError_(f"unsigned varint cannot hold {value}", path=path)
    data = encode_uvarint(value)
    stream_write(stream, data, len(data), path)


#: Encode ``value`` as an unsigned varint (compact lengths, tags).
uvarint_bytes = encode_uvarint


class UVarInt(Construct):
    """Unsigned varint (used for compact lengths and tags)."""

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        return read_uvarint(stream, path)

    def _build(self, obj: int, stream: Any, context: Any, path: str) -> int:
        write_uvarint(obj, stream, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise NotImplementedError


class ZigZagVarInt(Construct):
    """Signed zig-zag varint (varint for 32 bits, varlong for 64)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        v = read_uvarint(stream, path)
        return (v >> 1) ^ -(v & 1)

    def _build(self, obj: int, stream: Any, context: Any, path: str) -> int:
        write_uvarint((obj << 1) ^ (obj >> (self.bits - 1)), stream, path)
        return obj


class KString(Construct):
    """A UTF-8 string: int16 length (-1 null) or, compact, uvarint length+1 (0 null)."""

    def __init__(self, nullable: bool, compact: bool, *, truncate: bool = False) -> None:
        """``truncate``: cut a longer value to the limit when encoding (messages for people, which
        may quote a client's own long input) instead of refusing it."""
        super().__init__()
        self.nullable = nullable
        self.compact = compact
        self.truncate = truncate

    def _parse(self, stream: Any, context: Any, path: str) -> str | None:
        n = read_uvarint(stream, path) - 1 if self.compact else _I16.unpack(stream_read(stream, 2, path))[0]
        if n < 0:
            if n == -1 and self.nullable:
                return None
            raise ValueError_(f"invalid string length {n}", path=path)
        if n > _MAX_STRING:
            # Kafka refuses these in every version, compact ones included.
            raise ValueError_(f"invalid string length {n}", path=path)
        try:
            return stream_read(stream, n, path).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError_(f"string is not UTF-8: {e}", path=path) from e

    def _build(self, obj: str | None, stream: Any, context: Any, path: str) -> str | None:
        if obj is None:
            if not self.nullable:
                raise ValueError_("null given for a non-nullable string", path=path)
            stream_write(stream, b"\x00" if self.compact else b"\xff\xff", 1 if self.compact else 2, path)
            return obj
        data = obj.encode("utf-8")
        if len(data) > _MAX_STRING:
            if not self.truncate:
                raise ValueError_("string longer than 32767 bytes", path=path)
            data = data[:_MAX_STRING].decode("utf-8", "ignore").encode("utf-8")
        if self.compact:
            write_uvarint(len(data) + 1, stream, path)
        else:
            stream_write(stream, _I16.pack(len(data)), 2, path)
        stream_write(stream, data, len(data), path)
        return obj


class KBytes(Construct):
    """Bytes (also ``records``): int32 length (-1 null) or compact uvarint length+1."""

    def __init__(self, nullable: bool, compact: bool) -> None:
        super().__init__()
        self.nullable = nullable
        self.compact = compact

    def _parse(self, stream: Any, context: Any, path: str) -> bytes | None:
        n = read_uvarint(stream, path) - 1 if self.compact else _I32.unpack(stream_read(stream, 4, path))[0]
        if n < 0:
            if n == -1 and self.nullable:
                return None
            raise ValueError_(f"invalid bytes length {n}", path=path)
        return stream_read(stream, n, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            if not self.nullable:
                raise ValueError_("null given for non-nullable bytes", path=path)
            stream_write(stream, b"\x00" if self.compact else b"\xff\xff\xff\xff", 1 if self.compact else 4, path)
            return obj
        n = len(obj)
        if self.compact:
            write_uvarint(n + 1, stream, path)
        else:
            stream_write(stream, _I32.pack(n), 4, path)
        stream.write(obj)  # bytes, bytearray or memoryview: written without a copy
        return obj


class KArray(Construct):
    """An array: int32 count (-1 null) or compact uvarint count+1 (0 null)."""

    def __init__(self, subcon: Construct, nullable: bool, compact: bool) -> None:
        super().__init__()
        self.subcon = subcon
        self.nullable = nullable
        self.compact = compact

    def _parse(self, stream: Any, context: Any, path: str) -> list[Any] | None:
        n = read_uvarint(stream, path) - 1 if self.compact else _I32.unpack(stream_read(stream, 4, path))[0]
        if n < 0:
            if n == -1 and self.nullable:
                return None
            raise ValueError_(f"invalid array length {n}", path=path)
        # Every element takes at least one byte: a huge count in a short frame is an error,
        # not an allocation.
        remaining = _remaining(stream)
        if remaining is not None and n > remaining:
            raise ValueError_(f"array of {n} elements in {remaining} bytes", path=path)
        parse = self.subcon._parsereport
        return [parse(stream, context, path) for _ in range(n)]

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            if not self.nullable:
                raise ValueError_("null given for a non-nullable array", path=path)
            stream_write(stream, b"\x00" if self.compact else b"\xff\xff\xff\xff", 1 if self.compact else 4, path)
            return obj
        if self.compact:
            write_uvarint(len(obj) + 1, stream, path)
        else:
            stream_write(stream, _I32.pack(len(obj)), 4, path)
        build = self.subcon._build
        for item in obj:
            build(item, stream, context, path)
        return obj


def _remaining(stream: Any) -> int | None:
    # seek/tell rather than getbuffer(): exporting the buffer of a BytesIO built on a
    # bytes object makes it copy the whole frame (and slows later reads), per array.
    try:
        pos = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(pos)
        return int(end - pos)
    except (AttributeError, OSError, ValueError):
        return None


class Uuid(Construct):
    """A 16-byte UUID as :class:`uuid.UUID`."""

    def _parse(self, stream: Any, context: Any, path: str) -> uuid.UUID:
        return uuid.UUID(bytes=stream_read(stream, 16, path))

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if not isinstance(obj, uuid.UUID):
            obj = uuid.UUID(str(obj)) if obj else ZERO_UUID
        stream_write(stream, obj.bytes, 16, path)
        return obj


FIXED: dict[str, Construct] = {
    "int8": Int8sb,
    "int16": Int16sb,
    "uint16": Int16ub,
    "int32": Int32sb,
    "uint32": Int32ub,
    "int64": Int64sb,
    "float64": Float64b,
    "bool": Flag,
}
