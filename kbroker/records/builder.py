"""Building magic-2 record batches: data batches and transaction marker (control) batches."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from kbroker.clock import SYSTEM_CLOCK
from kbroker.records.batch import (
    COMPRESSION_MASK,
    CONTROL_BIT,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    seal_batch,
)
from kbroker.records.compression import compress
from kbroker.records.record import ControlType
from kbroker.records.varint import INT32_MAX, encode_varint, encode_varlong

NO_TIMESTAMP = -1
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")


class NewRecord(NamedTuple):
    """A record to write. Its offset is the one after the previous record's."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()
    #: Milliseconds since the epoch; None means now.
    timestamp: int | None = None


class RecordLike(Protocol):
    """Anything shaped like a decoded :class:`~kbroker.records.record.Record`."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


_Key = bytes | None
_Headers = Sequence[tuple[str, bytes | None]]
#: What :func:`build_batch` accepts: a :class:`NewRecord` or a plain
#: ``(key, value[, headers[, timestamp]])`` tuple, which takes the next offset; or a
#: record-like object with an ``offset`` (e.g. a decoded :class:`Record`), which keeps
#: its own offset so gaps survive compaction.
RecordInput = (
    NewRecord
    | tuple[_Key, bytes | None]
    | tuple[_Key, bytes | None, _Headers]
    | tuple[_Key, bytes | None, _Headers, int | None]
    | RecordLike
)


def _bytes_field(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out += b"\x01"  # zig-zag -1: null
    else:
        out += encode_varint(len(data))
        out += data


def build_batch(
    records: Iterable[RecordInput],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type_log_append: bool = False,
    last_offset_delta: int | None = None,
    max_timestamp: int | None = None,
) -> bytes:
    """Encode ``records`` as one magic-2 batch with a correct CRC-32C.

    ``compression`` is the codec id (0-4). The base timestamp is the first record's
    and the max timestamp the largest unless ``max_timestamp`` is given (e.g. the
    log-append time). ``last_offset_delta`` may extend the batch's offset range past
    its last record, as Kafka's cleaner does to keep producer sequences; with no
    records it must be given, which writes an empty batch.
    """
    now: int | None = None
    out = bytearray()
    base_ts: int | None = None
    max_ts = NO_TIMESTAMP
    delta = -1
    count = 0
    for rec in records:
        if isinstance(rec, tuple):
            key, value, headers, ts = rec if type(rec) is NewRecord else NewRecord(*rec)
            new_delta = delta + 1
        else:
            key, value, headers, ts = rec.key, rec.value, rec.headers, rec.timestamp
            new_delta = rec.offset - base_offset
            if new_delta <= delta:
                raise ValueError(f"record offset {rec.offset} is not after the previous one")
        if new_delta > INT32_MAX:
            raise ValueError("offset delta does not fit in an int32")
        delta = new_delta
        if ts is None:
            if now is None:
                now = SYSTEM_CLOCK.time_ms()
            ts = now
        if base_ts is None:
            base_ts = ts
        max_ts = max(max_ts, ts)

        body = bytearray(b"\x00")  # record attributes: always 0
        body += encode_varlong(ts - base_ts)
        body += encode_varint(delta)
        _bytes_field(body, key)
        _bytes_field(body, value)
        body += encode_varint(len(headers))
        for hkey, hval in headers:
            _bytes_field(body, hkey.encode())
            _bytes_field(body, hval)
        out += encode_varint(len(body))
        out += body
        count += 1

    if last_offset_delta is None:
        if count == 0:
            raise ValueError("an empty batch needs an explicit last_offset_delta")
        last_offset_delta = delta
    elif last_offset_delta < delta:
        raise ValueError("last_offset_delta is before the last record")
    if max_timestamp is not None:
        max_ts = max_timestamp

    attributes = compression & COMPRESSION_MASK
    if compression != attributes:
        raise ValueError(f"unknown compression codec {compression}")
    if timestamp_type_log_append:
        attributes |= TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= TRANSACTIONAL_BIT
    if control:
        attributes |= CONTROL_BIT
    payload = compress(compression, out) if compression else bytes(out)

    header = BatchHeader(
        base_offset=base_offset,
        batch_length=HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch=partition_leader_epoch,
        magic=MAGIC_V2,
        crc=0,
        attributes=attributes,
        last_offset_delta=last_offset_delta,
        base_timestamp=NO_TIMESTAMP if base_ts is None else base_ts,
        max_timestamp=max_ts,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        record_count=count,
    )
    return seal_batch(header, payload)


def build_control_batch(
    control_type: int,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    base_offset: int = 0,
    timestamp: int | None = None,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker batch (COMMIT or ABORT) as Kafka's coordinator writes it.

    One uncompressed record in a transactional control batch: key ``(version 0,
    type)`` as int16s, value ``(version 0, coordinator_epoch)`` as int16 + int32.
    """
    if control_type not in (ControlType.ABORT, ControlType.COMMIT):
        raise ValueError(f"not a transaction marker type: {control_type}")
    marker = NewRecord(
        key=_CONTROL_KEY.pack(0, control_type),
        value=_END_TXN_VALUE.pack(0, coordinator_epoch),
        timestamp=timestamp,
    )
    return build_batch(
        [marker],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        control=True,
        partition_leader_epoch=partition_leader_epoch,
    )
