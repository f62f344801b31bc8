"""Decoding the records inside one magic-2 batch, and control (transaction marker) batches.

Record layout (after the 61-byte header, compressed as a whole if the batch is)::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
    | keyLength varint | key | valueLength varint | value
    | headerCount varint | [keyLength varint | key utf-8 | valueLength varint | value]

A negative key/value length means null. Header keys are never null.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from kbroker.records.batch import (
    CORRUPT_MESSAGE,
    HEADER_SIZE,
    INVALID_RECORD,
    LOG_OVERHEAD,
    MAGIC_V2,
    BatchError,
    BatchHeader,
    parse_header,
)
from kbroker.records.compression import CompressionError, decompress
from kbroker.records.varint import VarintError, decode_varint, decode_varlong

Header = tuple[str, bytes | None]

_CONTROL_KEY = struct.Struct(">hh")  # version, type
_END_TXN_VALUE = struct.Struct(">hi")  # version, coordinator epoch


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


class ControlType(IntEnum):
    """The ``type`` in a control record's key."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4


class EndTxnMarker(NamedTuple):
    """A decoded transaction marker: COMMIT or ABORT, and the coordinator epoch that wrote it."""

    control_type: int
    coordinator_epoch: int


def _invalid(msg: str) -> BatchError:
    return BatchError(msg, INVALID_RECORD)


def records_data(batch: bytes | bytearray | memoryview) -> tuple[BatchHeader, bytes | memoryview]:
    """The header of the batch at the start of ``batch`` and its records section, decompressed.

    Raises BatchError(CORRUPT_MESSAGE) if the batch is not magic 2, is cut short or
    does not decompress. An uncompressed section is a view into ``batch``, not a copy.
    """
    mv = memoryview(batch)
    h = parse_header(mv)
    if h.magic != MAGIC_V2:
        raise BatchError(f"cannot read records of magic {h.magic}", CORRUPT_MESSAGE)
    if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or h.size > len(mv):
        raise BatchError("record batch length does not match the buffer", CORRUPT_MESSAGE)
    data = mv[HEADER_SIZE : h.size]
    if h.compression:
        try:
            return h, decompress(h.compression, data)
        except CompressionError as e:
            raise BatchError(f"cannot decompress record batch: {e}", CORRUPT_MESSAGE) from None
    return h, data


def iter_records(batch: bytes | bytearray | memoryview) -> Iterator[Record]:
    """Yield the records of the batch at the start of ``batch`` (the CRC is not checked here).

    LogAppendTime batches give every record the batch's max timestamp, as Kafka does.
    Malformed records raise BatchError(INVALID_RECORD) when reached.
    """
    h, buf = records_data(batch)
    if h.record_count < 0:
        raise _invalid(f"negative record count {h.record_count}")
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    append_ts = h.max_timestamp if h.log_append_time else None
    end = len(buf)
    pos = 0
    dv, dl = decode_varint, decode_varlong
    for _ in range(h.record_count):
        try:
            length, pos = dv(buf, pos)
            start = pos
            if length < 0 or start + length > end:
                raise _invalid("record length runs past the batch")
            pos += 1  # record attributes: unused by Kafka
            ts_delta, pos = dl(buf, pos)
            offset_delta, pos = dv(buf, pos)
            n, pos = dv(buf, pos)
            key = None
            if n >= 0:
                key = bytes(buf[pos : pos + n])
                pos += n
            n, pos = dv(buf, pos)
            value = None
            if n >= 0:
                value = bytes(buf[pos : pos + n])
                pos += n
            count, pos = dv(buf, pos)
            if count < 0:
                raise _invalid(f"negative header count {count}")
            headers: list[Header] = []
            for _ in range(count):
                n, pos = dv(buf, pos)
                if n < 0:
                    raise _invalid("null header key")
                hkey = str(buf[pos : pos + n], "utf-8")
                pos += n
                n, pos = dv(buf, pos)
                hval = None
                if n >= 0:
                    hval = bytes(buf[pos : pos + n])
                    pos += n
                headers.append((hkey, hval))
            if pos - start != length:
                raise _invalid(f"record declared {length} bytes but holds {pos - start}")
        except (VarintError, UnicodeDecodeError) as e:
            raise _invalid(f"malformed record: {e}") from None
        yield Record(
            base_offset + offset_delta,
            base_ts + ts_delta if append_ts is None else append_ts,
            key,
            value,
            tuple(headers),
        )
    if pos != end:
        raise _invalid(f"{end - pos} bytes left after the declared {h.record_count} records")


def _first_control_record(batch: bytes | bytearray | memoryview) -> Record | None:
    h = parse_header(batch)
    if not h.is_control:
        return None
    rec = next(iter_records(batch), None)
    if rec is None or rec.key is None or len(rec.key) < _CONTROL_KEY.size:
        raise _invalid("control record key is missing or too short")
    return rec


def control_record_type(batch: bytes | bytearray | memoryview) -> int | None:
    """The control type (see :class:`ControlType`) of a control batch, or None for a data batch."""
    rec = _first_control_record(batch)
    if rec is None:
        return None
    assert rec.key is not None
    version, ctype = _CONTROL_KEY.unpack_from(rec.key)
    if version < 0:
        raise _invalid(f"negative control record key version {version}")
    return int(ctype)


def end_txn_marker(batch: bytes | bytearray | memoryview) -> EndTxnMarker | None:
    """The transaction marker in a COMMIT/ABORT control batch; None if it is not one."""
    rec = _first_control_record(batch)
    if rec is None:
        return None
    assert rec.key is not None
    key_version, ctype = _CONTROL_KEY.unpack_from(rec.key)
    if ctype not in (ControlType.ABORT, ControlType.COMMIT):
        return None
    if key_version < 0 or rec.value is None or len(rec.value) < _END_TXN_VALUE.size:
        raise _invalid("transaction marker value is missing or too short")
    version, epoch = _END_TXN_VALUE.unpack_from(rec.value)
    if version < 0:
        raise _invalid(f"negative transaction marker version {version}")
    return EndTxnMarker(int(ctype), epoch)
