"""Producer state snapshot files: ``<20-digit offset>.snapshot`` in the partition directory.

A snapshot at offset N holds the state of every batch below N. Format (big-endian)::

    magic "KBPS" | version u16 | crc32c u32 of everything after it
    offset i64 | entry count i32 | entries
    entry: producer_id i64 | epoch i16 | coordinator_epoch i32 | last_timestamp i64
           | txn_first_offset i64 (-1 none) | batch count u8 | batches
    batch: last_seq i32 | last_offset i64 | offset_delta i32 | timestamp i64

Unlike Kafka's format every remembered batch is kept, so duplicates of any of the last
five batches are still recognised after a restart. ``txn_first_offset`` is Kafka's
``CurrentTxnFirstOffset``: the first offset of the producer's open transaction, -1 when
none is open; loading a snapshot reopens those transactions (the last stable offset).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path

from kbroker.fs import store_for
from kbroker.log.producer_state_entry import BatchMetadata, ProducerStateEntry
from kbroker.records.crc import crc32c

SNAPSHOT_SUFFIX = ".snapshot"
_MAGIC = b"KBPS"
_VERSION = 1
_HEAD = struct.Struct(">4sHI")
_BODY_HEAD = struct.Struct(">qi")
_ENTRY = struct.Struct(">qhiqqB")
_BATCH = struct.Struct(">iqiq")
_NAME_RE = re.compile(r"^(\d{20})\.snapshot$")


class SnapshotError(ValueError):
    """A snapshot file that is torn, corrupt or of an unknown version."""


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def list_snapshots(directory: Path) -> list[int]:
    """Offsets of the snapshot files in ``directory``, ascending."""
    try:
        names = store_for(directory).listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(m.group(1)) for n in names if (m := _NAME_RE.match(n)))


def encode(offset: int, entries: Iterable[ProducerStateEntry]) -> bytes:
    body = bytearray()
    count = 0
    for e in entries:
        count += 1
        txn = -1 if e.current_txn_first_offset is None else e.current_txn_first_offset
        body += _ENTRY.pack(e.producer_id, e.producer_epoch, e.coordinator_epoch, e.last_timestamp, txn,
                            len(e.batches))
        for b in e.batches:
            body += _BATCH.pack(b.last_seq, b.last_offset, b.offset_delta, b.timestamp)
    payload = _BODY_HEAD.pack(offset, count) + bytes(body)
    return _HEAD.pack(_MAGIC, _VERSION, crc32c(payload)) + payload


def decode(data: bytes, expected_offset: int | None = None) -> list[ProducerStateEntry]:
    """The entries of a snapshot; raises SnapshotError if it is not intact."""
    if len(data) < _HEAD.size + _BODY_HEAD.size:
        raise SnapshotError("snapshot shorter than its header")
    magic, version, crc = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise SnapshotError(f"not a version {_VERSION} producer snapshot")
    payload = memoryview(data)[_HEAD.size:]
    if crc32c(payload) != crc:
        raise SnapshotError("snapshot CRC mismatch")
    offset, count = _BODY_HEAD.unpack_from(payload)
    if expected_offset is not None and offset != expected_offset:
        raise SnapshotError(f"snapshot holds offset {offset}, its name says {expected_offset}")
    pos = _BODY_HEAD.size
    out: list[ProducerStateEntry] = []
    try:
        for _ in range(count):
            pid, epoch, coord, ts, txn, n = _ENTRY.unpack_from(payload, pos)
            pos += _ENTRY.size
            entry = ProducerStateEntry(pid, epoch, coord, ts, None if txn < 0 else txn)
            for _ in range(n):
                entry.batches.append(BatchMetadata(*_BATCH.unpack_from(payload, pos)))
                pos += _BATCH.size
            out.append(entry)
    except struct.error as e:
        raise SnapshotError(f"snapshot truncated: {e}") from e
    if pos != len(payload):
        raise SnapshotError("trailing bytes after the last snapshot entry")
    return out


def write_snapshot(directory: Path, offset: int, entries: Iterable[ProducerStateEntry]) -> Path:
    """Write a snapshot via a temporary file and rename.

    Not fsynced: a snapshot is only a shortcut. A torn one fails its CRC and one that
    outlives the log data it covers lies above the recovered log end; both are
    discarded on load and the state is rebuilt from an older snapshot and the log.
    """
    path = snapshot_path(directory, offset)
    store_for(path).replace(path, encode(offset, entries))
    return path


def read_snapshot(directory: Path, offset: int) -> list[ProducerStateEntry]:
    path = snapshot_path(directory, offset)
    return decode(store_for(path).read_bytes(path), offset)


def delete_snapshot(directory: Path, offset: int) -> None:
    path = snapshot_path(directory, offset)
    store_for(path).unlink(path, missing_ok=True)
