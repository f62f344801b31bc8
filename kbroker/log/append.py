"""Offset assignment for an append: the produce payload's batch headers patched with
their offsets and leader epoch (and LogAppendTime), ready for one write."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kbroker.records.batch import (
    LOG_OVERHEAD,
    BatchHeader,
    parse_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)

_new_header = tuple.__new__

#: Base offset, batch length and partition leader epoch: the batch bytes before the magic.
_PREFIX = struct.Struct(">qii")
#: pwritev takes at most IOV_MAX (1024) buffers, two per batch.
_MAX_IOV_BATCHES = 256


@dataclass
class AssignedBatches:
    """Batches with offsets assigned, as :func:`assign_offsets` returns them."""

    #: What the segment writes: one patched buffer, or buffers for one vectored write.
    data: bytearray | list[bytes | memoryview]
    #: Each batch's position in the payload and its patched header.
    positioned: list[tuple[int, BatchHeader]]
    #: The offset after the last record.
    next_offset: int
    record_count: int


def assign_offsets(records: bytes | bytearray | memoryview, headers: list[BatchHeader], base_offset: int,
                   leader_epoch: int, append_time_ms: int | None) -> AssignedBatches:
    """Give the validated batches ``headers`` of ``records`` offsets from ``base_offset``
    on; ``append_time_ms`` stamps them with LogAppendTime. The payload is patched in
    place if it is a bytearray, else copied once, or not at all (header prefixes only)."""
    next_offset = base_offset
    positioned: list[tuple[int, BatchHeader]] = []
    pos = 0
    record_count = 0
    data: bytearray | list[bytes | memoryview]
    stamp = append_time_ms is not None
    if stamp or isinstance(records, bytearray) or len(headers) > _MAX_IOV_BATCHES:
        # Patch the headers in place: in the caller's mutable buffer, else in one copy.
        buf = records if isinstance(records, bytearray) else bytearray(records)
        for h in headers:
            set_base_offset(buf, pos, next_offset)
            set_partition_leader_epoch(buf, pos, leader_epoch)
            if append_time_ms is not None:
                set_log_append_time(buf, pos, h.size, append_time_ms)
            positioned.append((pos, parse_header(buf, pos)))
            next_offset += h.last_offset_delta + 1
            record_count += h.record_count
            pos += h.size
        data = buf
    else:
        # No copy: each batch is written as a patched 16-byte prefix (base offset,
        # length, leader epoch; outside the CRC) followed by the rest of the payload.
        view = memoryview(records)
        data = []
        for h in headers:
            size = LOG_OVERHEAD + h.batch_length
            data.append(_PREFIX.pack(next_offset, h.batch_length, leader_epoch))
            data.append(view[pos + _PREFIX.size : pos + size])
            # h._replace(base_offset=..., partition_leader_epoch=...) without its Python frames.
            positioned.append((pos, _new_header(BatchHeader, (next_offset, h[1], leader_epoch, *h[3:]))))
            next_offset += h.last_offset_delta + 1
            record_count += h.record_count
            pos += size
    return AssignedBatches(data, positioned, next_offset, record_count)
