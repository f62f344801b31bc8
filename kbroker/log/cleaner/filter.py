"""What survives a cleaning, batch by batch (Kafka's ``MemoryRecords.filterTo`` with the
cleaner's ``RecordFilter``, and ``CleanedTransactionMetadata``).

A batch is first judged whole (:class:`BatchRetention`): aborted transactional data and
transaction markers whose transaction left nothing behind go, except the last batch of a
still-active producer and the last batch of the cleaning round, which stay (emptied if need
be) so producer state and the log's last offset survive. Then each record: kept if it is the
latest for its key in the offset map, a tombstone only until its batch's delete horizon
(KIP-534) passed. A batch keeping everything (and needing no horizon) is copied byte for byte;
otherwise the kept records are re-encoded into a batch with the same base offset, last
offset, codec, producer fields and flags, a new CRC, and the delete horizon stamped into the
base timestamp (attribute bit 6) when it holds tombstones or is a marker whose transaction is
gone. Records are walked in place without materialising them; only batches whose records
are looked at are decompressed, never past a cap.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, NamedTuple

from kbroker.log.cleaner.offset_map import SkimpyOffsetMap
from kbroker.log.txn_index import AbortedTxn
from kbroker.records.batch import (
    COMPRESSION_MASK,
    CONTROL_BIT,
    CORRUPT_MESSAGE,
    DELETE_HORIZON_BIT,
    HEADER_SIZE,
    INVALID_RECORD,
    LOG_OVERHEAD,
    MAGIC_V2,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchError,
    BatchHeader,
    seal_batch,
)
from kbroker.records.compression import CompressionError, compress, iter_decompress
from kbroker.records.record import ControlType
from kbroker.records.validation import MAX_DECOMPRESSED_BATCH_BYTES
from kbroker.records.varint import VarintError, decode_varint, decode_varlong, encode_varint, encode_varlong

NO_TIMESTAMP = -1
Buffer = bytes | bytearray | memoryview
_CONTROL_KEY = struct.Struct(">hh")
#: Attribute bits a re-encoded batch keeps (the delete-horizon bit is set anew).
_KEPT_ATTRIBUTES = COMPRESSION_MASK | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT


#: Where one record lies in its records section and what the cleaner needs of it:
#: ``(start: its length varint, body: its attributes byte, end, offset delta, key or None,
#: has a value)``. A plain tuple: the walk makes one per record, a NamedTuple costs twice that.
RecordSpan = tuple[int, int, int, int, "Buffer | None", bool]
START: Final = 0
BODY: Final = 1
END: Final = 2
OFFSET_DELTA: Final = 3
KEY: Final = 4
HAS_VALUE: Final = 5


def parse_records(buf: Buffer, pos: int, end: int, count: int) -> list[RecordSpan]:
    """Walk ``count`` records in ``buf[pos:end]`` (one batch's records section) without
    decoding values or headers. Raises BatchError(INVALID_RECORD) on framing errors.

    One- and two-byte varints (every length and delta of a record under 8 KiB in a batch of
    under 8192 records) are decoded inline: this loop is the cleaner's hot path."""
    out: list[RecordSpan] = []
    append = out.append
    dv, dl = decode_varint, decode_varlong
    try:
        for _ in range(count):
            start = pos
            b = buf[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif (b2 := buf[pos + 1]) < 0x80:
                raw = (b & 0x7F) | (b2 << 7)
                length = (raw >> 1) ^ -(raw & 1)
                pos += 2
            else:
                length, pos = dv(buf, pos)
            body = pos
            rec_end = body + length
            if length < 6 or rec_end > end:
                raise BatchError("record length runs past its batch", INVALID_RECORD)
            p = body + 1  # the attributes byte
            b = buf[p]
            if b < 0x80:
                p += 1
            elif buf[p + 1] < 0x80:
                p += 2
            else:
                _, p = dl(buf, p)
            b = buf[p]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                p += 1
            elif (b2 := buf[p + 1]) < 0x80:
                raw = (b & 0x7F) | (b2 << 7)
                offset_delta = (raw >> 1) ^ -(raw & 1)
                p += 2
            else:
                offset_delta, p = dv(buf, p)
            b = buf[p]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                n, p = dv(buf, p)
            if n >= 0:
                key: Buffer | None = buf[p : p + n]
                p += n
            else:
                key = None
            # A zig-zag varint's sign is the low bit of its first byte: -1 (null) is odd.
            has_value = not buf[p] & 1
            if p >= rec_end:
                raise BatchError("record fields run past the record", INVALID_RECORD)
            append((start, body, rec_end, offset_delta, key, has_value))
            pos = rec_end
    except (IndexError, VarintError) as e:
        raise BatchError(f"malformed record: {e}", INVALID_RECORD) from None
    if pos != end:
        raise BatchError(f"{end - pos} bytes left after the declared {count} records", INVALID_RECORD)
    return out


def batch_records(buf: Buffer, pos: int, h: BatchHeader,
                  limit: int = MAX_DECOMPRESSED_BATCH_BYTES) -> tuple[Buffer, list[RecordSpan]]:
    """The records section of the batch at ``buf[pos:]`` (``buf`` itself when uncompressed,
    else the decompressed bytes, at most ``limit``) and its records."""
    if h.magic != MAGIC_V2:
        raise BatchError(f"cannot clean records of magic {h.magic}", CORRUPT_MESSAGE)
    start, end = pos + HEADER_SIZE, pos + h.size
    if not h.compression:
        return buf, parse_records(buf, start, end, h.record_count)
    try:
        data = b"".join(iter_decompress(h.compression, memoryview(buf)[start:end], limit))
    except CompressionError as e:
        raise BatchError(f"cannot decompress record batch at offset {h.base_offset}: {e}", CORRUPT_MESSAGE) from None
    return data, parse_records(data, 0, len(data), h.record_count)


def control_type(records: Sequence[RecordSpan]) -> int | None:
    """The type in a control batch's first record key: None for an empty batch, -1 for a key
    too short to hold one (treated as an unknown control type: kept)."""
    if not records:
        return None
    key = records[0][KEY]
    if key is None or len(key) < _CONTROL_KEY.size:
        return -1
    return int(_CONTROL_KEY.unpack_from(key)[1])


@dataclass(slots=True)
class _AbortedState:
    txn: AbortedTxn
    last_observed_offset: int | None = None


@dataclass
class CleanedTransactionMetadata:
    """Transaction state while the cleaner walks the log (Kafka's ``CleanedTransactionMetadata``):
    which batches belong to aborted transactions and when a marker may go. Aborted
    transactions whose ABORT marker is kept are appended to :attr:`cleaned_index` (the
    ``.txnindex`` of the segment being written), when one is set."""

    _committed: set[int] = field(default_factory=set)
    _aborted: dict[int, _AbortedState] = field(default_factory=dict)
    _heap: list[tuple[int, int, AbortedTxn]] = field(default_factory=list)
    _seq: int = 0
    cleaned_index: list[AbortedTxn] | None = None

    def add_aborted_transactions(self, txns: Iterable[AbortedTxn]) -> None:
        """Aborted transactions of the range about to be walked (from the ``.txnindex`` files)."""
        for txn in txns:
            self._seq += 1
            heapq.heappush(self._heap, (txn.first_offset, self._seq, txn))

    def _consume_up_to(self, offset: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= offset:
            txn = heapq.heappop(heap)[2]
            self._aborted.setdefault(txn.producer_id, _AbortedState(txn))

    def on_control_batch_read(self, h: BatchHeader, ctype: int | None) -> bool:
        """A control batch was read (``ctype`` its control type, None if it is empty);
        True if it may be discarded."""
        self._consume_up_to(h.last_offset)
        if ctype is None:
            return True  # emptied by an earlier cleaning
        if ctype == ControlType.ABORT:
            state = self._aborted.pop(h.producer_id, None)
            # The marker stays as long as batches of its transaction do.
            if state is not None and state.last_observed_offset is not None:
                if self.cleaned_index is not None:
                    self.cleaned_index.append(state.txn)
                return False
            return True
        if ctype == ControlType.COMMIT:
            # Removable once no batch of the transaction was seen.
            if h.producer_id in self._committed:
                self._committed.discard(h.producer_id)
                return False
            return True
        return False

    def on_batch_read(self, h: BatchHeader) -> bool:
        """A data batch was read; True if it belongs to an aborted transaction."""
        self._consume_up_to(h.last_offset)
        if not h.is_transactional:
            return False
        state = self._aborted.get(h.producer_id)
        if state is not None:
            state.last_observed_offset = h.last_offset
            return True
        self._committed.add(h.producer_id)
        return False


class BatchRetention(Enum):
    """Kafka's ``RecordFilter.BatchRetention``."""

    DELETE = 0  # drop the batch without looking at its records
    RETAIN_EMPTY = 1  # keep the batch even if no record stays
    DELETE_EMPTY = 2  # drop the batch if no record stays


class LastRecord(NamedTuple):
    """An active producer's last data offset (-1: none, its last entry is a marker) and epoch."""

    last_data_offset: int
    producer_epoch: int


@dataclass
class FilterStats:
    """Counts of one cleaning (Kafka's ``CleanerStats`` fields the filter feeds)."""

    records_read: int = 0
    bytes_read: int = 0
    records_retained: int = 0
    bytes_retained: int = 0
    invalid_records: int = 0


def empty_batch(h: BatchHeader) -> bytes:
    """Kafka's ``DefaultRecordBatch.writeEmptyHeader``: the batch's offsets, producer fields,
    flags and max timestamp with no records (base timestamp -1, uncompressed)."""
    attributes = h.attributes & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT)
    header = h._replace(batch_length=HEADER_SIZE - LOG_OVERHEAD, crc=0, attributes=attributes,
                        base_timestamp=NO_TIMESTAMP, record_count=0)
    return seal_batch(header)


class BatchFilter:
    """The cleaner's filter over the batches of one cleaning round (Kafka's ``cleanInto``
    filter): :meth:`filter` returns what of a batch goes to the cleaned segment."""

    def __init__(self, offset_map: SkimpyOffsetMap, txn: CleanedTransactionMetadata,
                 last_records: dict[int, LastRecord], upper_bound_offset: int, now_ms: int,
                 delete_retention_ms: int, stats: FilterStats,
                 decompress_limit: int = MAX_DECOMPRESSED_BATCH_BYTES) -> None:
        self.map = offset_map
        self.txn = txn
        self.last_records = last_records
        #: The first uncleanable offset: the batch ending there is kept even if empty.
        self.upper_bound_offset = upper_bound_offset
        self.now_ms = now_ms
        self.delete_retention_ms = delete_retention_ms
        self.stats = stats
        self.decompress_limit = decompress_limit

    def _retention(self, h: BatchHeader, discard_records: bool) -> BatchRetention:
        last = self.last_records.get(h.producer_id) if h.producer_id >= 0 else None
        if last is not None:
            if last.last_data_offset >= 0:
                is_last = h.last_offset == last.last_data_offset
            else:
                is_last = h.is_control and h.producer_epoch == last.producer_epoch
            if is_last:
                return BatchRetention.RETAIN_EMPTY
        if h.next_offset == self.upper_bound_offset:
            return BatchRetention.RETAIN_EMPTY
        return BatchRetention.DELETE if discard_records else BatchRetention.DELETE_EMPTY

    def filter(self, buf: Buffer, pos: int, h: BatchHeader) -> Buffer | None:
        """The bytes to write for the batch at ``buf[pos:]``: a view of the original when it is
        kept whole, a re-encoded or empty batch, or None when nothing of it stays."""
        stats = self.stats
        stats.bytes_read += h.size
        has_horizon = bool(h.attributes & DELETE_HORIZON_BIT)
        horizon = h.base_timestamp if has_horizon else NO_TIMESTAMP
        data: Buffer | None = None
        records: list[RecordSpan] | None = None
        if h.is_control:
            data, records = batch_records(buf, pos, h, self.decompress_limit)
            can_discard = self.txn.on_control_batch_read(h, control_type(records))
            # A marker whose transaction is gone lives on until its delete horizon.
            discard_records = can_discard and has_horizon and horizon <= self.now_ms
        else:
            can_discard = self.txn.on_batch_read(h)
            discard_records = can_discard
        retention = self._retention(h, discard_records)
        if retention is BatchRetention.DELETE:
            stats.records_read += max(h.record_count, 0)
            return None
        marker_for_empty_txn = can_discard and h.is_control
        if discard_records:
            # Kept only for its producer fields: no record survives, none needs reading.
            stats.records_read += max(h.record_count, 0)
            kept: list[RecordSpan] = []
            total = h.record_count
        else:
            if records is None:
                data, records = batch_records(buf, pos, h, self.decompress_limit)
            total = len(records)
            stats.records_read += total
            kept = records if h.is_control else self._kept_records(h, records, has_horizon, horizon)
        if kept:
            stats.records_retained += len(kept)
            tombstones = not h.is_control and not all(r[HAS_VALUE] for r in kept)
            need_horizon = (tombstones or marker_for_empty_txn) and not has_horizon
            if len(kept) == total and not need_horizon:
                stats.bytes_retained += h.size
                return memoryview(buf)[pos : pos + h.size]
            assert data is not None
            new_horizon = self.now_ms + self.delete_retention_ms if need_horizon else horizon
            out = rebuild_batch(h, data, kept, new_horizon)
            stats.bytes_retained += len(out)
            return out
        if retention is BatchRetention.RETAIN_EMPTY:
            out = empty_batch(h)
            stats.bytes_retained += len(out)
            return out
        return None

    def _kept_records(self, h: BatchHeader, records: list[RecordSpan], has_horizon: bool,
                      horizon: int) -> list[RecordSpan]:
        """Kafka's ``Cleaner.shouldRetainRecord`` over a data batch's records."""
        latest = self.map.latest_offset
        base = h.base_offset
        if base > latest:  # past the map: every record stays
            return records
        entries = self.map.entries
        md5 = hashlib.md5
        retain_deletes = not has_horizon or self.now_ms < horizon
        kept: list[RecordSpan] = []
        append = kept.append
        for rec in records:
            offset = base + rec[OFFSET_DELTA]
            if offset > latest:
                append(rec)
                continue
            key = rec[KEY]
            if key is None:
                self.stats.invalid_records += 1
                continue
            if offset >= entries.get(md5(key).digest(), -1) and (rec[HAS_VALUE] or retain_deletes):
                append(rec)
        return kept


def rebuild_batch(h: BatchHeader, data: Buffer, kept: Sequence[RecordSpan], horizon: int) -> bytes:
    """The kept records of a batch as a new batch (Kafka's ``buildRetainedRecordsInto``):
    same base and last offset, codec, producer fields, leader epoch and flags; the base
    timestamp is the delete horizon when there is one (with attribute bit 6), else the
    first kept record's timestamp; the max timestamp is the kept records' (or the batch's
    log-append time)."""
    log_append = h.log_append_time
    stamped: list[tuple[int, int]] = []  # (timestamp, position after the timestamp delta)
    for rec in kept:
        ts_delta, after = decode_varlong(data, rec[BODY] + 1)
        stamped.append((h.max_timestamp if log_append else h.base_timestamp + ts_delta, after))
    new_base = horizon if horizon != NO_TIMESTAMP else stamped[0][0]
    mv = memoryview(data)
    if new_base == h.base_timestamp and not log_append:
        body = b"".join([mv[rec[START] : rec[END]] for rec in kept])
    else:
        parts: list[bytes | memoryview] = []
        for rec, (ts, after) in zip(kept, stamped, strict=True):
            head = b"\x00" + encode_varlong(ts - new_base)
            parts.append(encode_varint(len(head) + rec[END] - after))
            parts.append(head)
            parts.append(mv[after : rec[END]])
        body = b"".join(parts)
    max_ts = h.max_timestamp if log_append else max(ts for ts, _ in stamped)
    payload = compress(h.compression, body) if h.compression else body
    attributes = h.attributes & _KEPT_ATTRIBUTES
    if horizon != NO_TIMESTAMP:
        attributes |= DELETE_HORIZON_BIT
    header = BatchHeader(
        base_offset=h.base_offset,
        batch_length=HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch=h.partition_leader_epoch,
        magic=MAGIC_V2,
        crc=0,
        attributes=attributes,
        last_offset_delta=h.last_offset_delta,
        base_timestamp=new_base,
        max_timestamp=max_ts,
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
        record_count=len(kept),
    )
    return seal_batch(header, payload)
