"""``__transaction_state`` records: TransactionLogKey v0 and TransactionLogValue v0/v1.

The key is a 2-byte record type (0) then the v0 key; the value a 2-byte version then
the value at that version; a tombstone (null value) removes an expired id. Kafka picks
the value version from the cluster's finalized ``transaction.version``: v1 from version 2
on, v0 below it. This broker finalizes no ``transaction.version`` (its clients use
transaction version 1), so it writes v0, as Kafka does then; v1 (the flexible version with
the tagged previous/next producer ids) is read as well.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from kbroker.common import TopicPartition
from kbroker.txn.state import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TransactionState, TxnTransitMetadata

KEY_VERSION = 0
VALUE_VERSION = 0


class TransactionRecordError(ValueError):
    """A record that is not a TransactionLog key or value this broker can read."""


def encode_key(transactional_id: str) -> bytes:
    """TransactionLogKey: type 0, then the transactional id as an int16-length string."""
    raw = transactional_id.encode()
    return struct.pack(">hh", KEY_VERSION, len(raw)) + raw


def decode_key(key: bytes) -> str:
    """The transactional id of a TransactionLog key."""
    if len(key) < 4:
        raise TransactionRecordError(f"short transaction log key {key!r}")
    version, n = struct.unpack_from(">hh", key)
    if version != KEY_VERSION:
        raise TransactionRecordError(f"unknown transaction log key version {version}")
    if n < 0 or 4 + n > len(key):
        raise TransactionRecordError("bad transactional id length")
    return key[4:4 + n].decode()


def _grouped(partitions: Iterable[TopicPartition]) -> list[tuple[str, list[int]]]:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return list(by_topic.items())


def encode_value(t: TxnTransitMetadata, version: int = VALUE_VERSION) -> bytes:
    """TransactionLogValue at ``version`` (0 or 1); Empty carries a null partition list, as in Kafka."""
    if t.state == TransactionState.EMPTY and t.partitions:
        raise ValueError(f"an Empty transaction has no partitions: {t}")
    groups = None if t.state == TransactionState.EMPTY else _grouped(t.partitions)
    out = bytearray(struct.pack(">hqhib", version, t.producer_id, t.producer_epoch, t.timeout_ms, int(t.state)))
    if version == 0:
        if groups is None:
            out += struct.pack(">i", -1)
        else:
            out += struct.pack(">i", len(groups))
            for topic, parts in groups:
                raw = topic.encode()
                out += struct.pack(">h", len(raw)) + raw + struct.pack(f">i{len(parts)}i", len(parts), *parts)
        out += struct.pack(">qq", t.last_update_timestamp, t.start_timestamp)
        return bytes(out)
    if version != 1:
        raise ValueError(f"unsupported transaction log value version {version}")
    if groups is None:
        out += _uvarint(0)
    else:
        out += _uvarint(len(groups) + 1)
        for topic, parts in groups:
            raw = topic.encode()
            out += _uvarint(len(raw) + 1) + raw + _uvarint(len(parts) + 1) + struct.pack(f">{len(parts)}i", *parts)
            out += _uvarint(0)  # the partition entry's tagged fields
    out += struct.pack(">qq", t.last_update_timestamp, t.start_timestamp)
    tags: list[tuple[int, bytes]] = []
    if t.last_producer_id != NO_PRODUCER_ID:
        tags.append((0, struct.pack(">q", t.last_producer_id)))
    out += _uvarint(len(tags))
    for tag, data in tags:
        out += _uvarint(tag) + _uvarint(len(data)) + data
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Reader:
    data: bytes

    def take(self, pos: int, n: int) -> tuple[bytes, int]:
        if n < 0 or pos + n > len(self.data):
            raise TransactionRecordError("truncated transaction log value")
        return self.data[pos:pos + n], pos + n


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise TransactionRecordError("bad varint in transaction log value")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def decode_value(value: bytes) -> TxnTransitMetadata:
    """The metadata a TransactionLogValue (v0 or v1) holds; the last epoch is unknown (-1), as in Kafka."""
    r = _Reader(bytes(value))
    head, pos = r.take(0, 17)
    version, pid, epoch, timeout, status = struct.unpack(">hqhib", head)
    if version not in (0, 1):
        raise TransactionRecordError(f"unknown transaction log value version {version}")
    try:
        state = TransactionState(status)
    except ValueError as e:
        raise TransactionRecordError(f"unknown transaction state {status}") from e
    parts: set[TopicPartition] = set()
    last_pid = NO_PRODUCER_ID
    data = r.data
    if version == 0:
        raw, pos = r.take(pos, 4)
        (count,) = struct.unpack(">i", raw)
        for _ in range(max(count, 0)):
            raw, pos = r.take(pos, 2)
            (n,) = struct.unpack(">h", raw)
            name, pos = r.take(pos, n)
            raw, pos = r.take(pos, 4)
            (m,) = struct.unpack(">i", raw)
            raw, pos = r.take(pos, 4 * max(m, 0))
            topic = name.decode()
            parts.update(TopicPartition(topic, p) for p in struct.unpack(f">{max(m, 0)}i", raw))
        raw, pos = r.take(pos, 16)
        updated, started = struct.unpack(">qq", raw)
    else:
        count, pos = _read_uvarint(data, pos)
        for _ in range(max(count - 1, 0)):
            n, pos = _read_uvarint(data, pos)
            name, pos = r.take(pos, n - 1)
            m, pos = _read_uvarint(data, pos)
            raw, pos = r.take(pos, 4 * max(m - 1, 0))
            topic = name.decode()
            parts.update(TopicPartition(topic, p) for p in struct.unpack(f">{max(m - 1, 0)}i", raw))
            pos = _skip_tags(data, pos)
        raw, pos = r.take(pos, 16)
        updated, started = struct.unpack(">qq", raw)
        ntags, pos = _read_uvarint(data, pos)
        for _ in range(ntags):
            tag, pos = _read_uvarint(data, pos)
            size, pos = _read_uvarint(data, pos)
            field, pos = r.take(pos, size)
            if tag == 0 and size == 8:
                (last_pid,) = struct.unpack(">q", field)
    if state == TransactionState.EMPTY:
        parts = set()  # Kafka ignores any partitions an Empty record lists
    return TxnTransitMetadata(pid, last_pid, epoch, NO_PRODUCER_EPOCH, timeout, state, frozenset(parts),
                              started, updated)


def _skip_tags(data: bytes, pos: int) -> int:
    n, pos = _read_uvarint(data, pos)
    for _ in range(n):
        _, pos = _read_uvarint(data, pos)
        size, pos = _read_uvarint(data, pos)
        pos += size
    if pos > len(data):
        raise TransactionRecordError("truncated tagged fields")
    return pos
