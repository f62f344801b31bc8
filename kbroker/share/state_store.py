"""Share-partition state in the compacted ``__share_group_state`` topic, in Kafka's formats.

Records, as Kafka's share coordinator writes them: key type 0 ``ShareSnapshotKey`` /
type 1 ``ShareUpdateKey`` (GroupId, TopicId, Partition; version-0, not flexible), value
version 0 ``ShareSnapshotValue`` (SnapshotEpoch, StateEpoch, LeaderEpoch, StartOffset,
CreateTimestamp, WriteTimestamp, StateBatches) / ``ShareUpdateValue`` (SnapshotEpoch,
LeaderEpoch, StartOffset, StateBatches), flexible. The key of a share-partition goes to
partition ``abs(hash("group:topicId:partition")) % partitions`` of the topic.

This broker writes a whole snapshot at every change (compaction keeps the last one);
replay also applies the updates another writer may have appended after a snapshot.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import java_string_hash
from kbroker.log import PartitionLog
from kbroker.metadata.internal_topic import AppendRecords, InternalTopic, InternalTopicSource, KeyValue
from kbroker.records.record import iter_records
from kbroker.records.varint import decode_uvarint, encode_uvarint
from kbroker.share.partition import PartitionState, StateBatch

log = logging.getLogger(__name__)

SHARE_GROUP_STATE = "__share_group_state"
SNAPSHOT_KEY = 0
UPDATE_KEY = 1

ShareKey = tuple[str, uuid.UUID, int]


class ShareRecordError(ValueError):
    """Bytes that are not a share state record this broker can read."""


def encode_key(kind: int, key: ShareKey) -> bytes:
    """ShareSnapshotKey (``kind`` 0) or ShareUpdateKey (1)."""
    group, topic_id, partition = key
    raw = group.encode()
    return struct.pack(">hh", kind, len(raw)) + raw + topic_id.bytes + struct.pack(">i", partition)


def decode_key(data: bytes) -> tuple[int, ShareKey]:
    """(kind, (group, topic id, partition)) of a share state key."""
    try:
        kind, n = struct.unpack_from(">hh", data)
        if kind not in (SNAPSHOT_KEY, UPDATE_KEY) or n < 0 or len(data) != 4 + n + 20:
            raise ShareRecordError(f"not a share state key: {bytes(data[:8])!r}")
        group = bytes(data[4:4 + n]).decode()
        topic_id = uuid.UUID(bytes=bytes(data[4 + n:20 + n]))
        (partition,) = struct.unpack_from(">i", data, 20 + n)
    except (struct.error, UnicodeDecodeError) as e:
        raise ShareRecordError(str(e)) from e
    return kind, (group, topic_id, partition)


def _batches_out(batches: list[StateBatch]) -> bytes:
    out = bytearray(encode_uvarint(len(batches) + 1))
    for b in batches:
        out += struct.pack(">qqbh", b.first_offset, b.last_offset, b.state, b.delivery_count)
        out += b"\x00"  # no tagged fields
    return bytes(out)


def encode_snapshot(state: PartitionState, *, snapshot_epoch: int, leader_epoch: int, create_ms: int,
                    write_ms: int) -> bytes:
    """ShareSnapshotValue v0."""
    head = struct.pack(">hiiiqqq", 0, snapshot_epoch, state.state_epoch, leader_epoch, state.start_offset,
                       create_ms, write_ms)
    return head + _batches_out(state.batches) + b"\x00"


def encode_update(state: PartitionState, *, snapshot_epoch: int, leader_epoch: int) -> bytes:
    """ShareUpdateValue v0 (used by tests and tools; this broker writes snapshots)."""
    head = struct.pack(">hiiq", 0, snapshot_epoch, leader_epoch, state.start_offset)
    return head + _batches_out(state.batches) + b"\x00"


def _skip_tags(data: bytes, pos: int) -> int:
    n, pos = decode_uvarint(data, pos)
    for _ in range(n):
        _, pos = decode_uvarint(data, pos)
        size, pos = decode_uvarint(data, pos)
        pos += size
    if pos > len(data):
        raise ShareRecordError("truncated tagged fields")
    return pos


def _batches_in(data: bytes, pos: int) -> tuple[list[StateBatch], int]:
    n, pos = decode_uvarint(data, pos)
    batches = []
    for _ in range(max(n - 1, 0)):
        first, last, state, count = struct.unpack_from(">qqbh", data, pos)
        pos = _skip_tags(data, pos + 19)
        batches.append(StateBatch(first, last, state, count))
    return batches, pos


def decode_value(kind: int, data: bytes) -> tuple[PartitionState, int]:
    """(state, snapshot epoch) of a snapshot (``kind`` 0) or update (1) value; an update's
    state epoch is 0 (it does not carry one)."""
    data = bytes(data)
    try:
        if kind == SNAPSHOT_KEY:
            _, snapshot_epoch, state_epoch, _, start, _, _ = struct.unpack_from(">hiiiqqq", data)
            batches, _ = _batches_in(data, 2 + 4 * 3 + 8 * 3)
            return PartitionState(start, state_epoch, batches), snapshot_epoch
        _, snapshot_epoch, _, start = struct.unpack_from(">hiiq", data)
        batches, _ = _batches_in(data, 2 + 4 * 2 + 8)
        return PartitionState(start, 0, batches), snapshot_epoch
    except (struct.error, ValueError) as e:
        raise ShareRecordError(str(e)) from e


def merge_update(base: PartitionState, update: PartitionState) -> PartitionState:
    """A snapshot with a later update applied (Kafka's share coordinator's combining of
    state batches: the update's batches replace the offsets they cover)."""
    start = max(base.start_offset, update.start_offset) if update.start_offset >= 0 else base.start_offset
    per: dict[int, tuple[int, int]] = {}
    for b in base.batches + update.batches:
        for o in range(max(b.first_offset, start), b.last_offset + 1):
            per[o] = (b.state, b.delivery_count)
    out: list[StateBatch] = []
    for o in sorted(per):
        s, c = per[o]
        if out and out[-1].last_offset == o - 1 and out[-1].state == s and out[-1].delivery_count == c:
            out[-1] = StateBatch(out[-1].first_offset, o, s, c)
        else:
            out.append(StateBatch(o, o, s, c))
    return PartitionState(start, base.state_epoch, out)


def state_partition(key: ShareKey, num_partitions: int) -> int:
    """The ``__share_group_state`` partition of a share-partition's records."""
    group, topic_id, partition = key
    return abs(java_string_hash(f"{group}:{topic_id}:{partition}")) % num_partitions


@dataclass
class StoredState:
    """A share-partition's durable state as replay found it."""

    state: PartitionState
    snapshot_epoch: int
    create_ms: int = -1


class ShareStateStore(Protocol):
    """Where share-partition states are written and read back."""

    async def write(self, key: ShareKey, state: PartitionState) -> ErrorCode:
        """Write ``state`` durably; NONE or the error to answer with."""
        ...

    async def delete(self, key: ShareKey) -> ErrorCode:
        """Forget a share-partition's state (tombstones)."""
        ...

    def load(self) -> dict[ShareKey, StoredState]:
        """Every state stored, by key (at start; may run in a worker thread)."""
        ...


class MemoryShareStateStore:
    """An in-memory :class:`ShareStateStore` for unit tests: the encoded records, kept in order."""

    def __init__(self) -> None:
        self.records: list[KeyValue] = []
        self.fail_with: ErrorCode | None = None

    async def write(self, key: ShareKey, state: PartitionState) -> ErrorCode:
        if self.fail_with is not None:
            return self.fail_with
        self.records.append((encode_key(SNAPSHOT_KEY, key),
                             encode_snapshot(state, snapshot_epoch=0, leader_epoch=0, create_ms=0, write_ms=0)))
        return ErrorCode.NONE

    async def delete(self, key: ShareKey) -> ErrorCode:
        self.records += [(encode_key(SNAPSHOT_KEY, key), None), (encode_key(UPDATE_KEY, key), None)]
        return ErrorCode.NONE

    def load(self) -> dict[ShareKey, StoredState]:
        return replay(iter(self.records))


def replay(records: Iterator[KeyValue]) -> dict[ShareKey, StoredState]:
    """Fold share state records, in log order, into each share-partition's latest state."""
    out: dict[ShareKey, StoredState] = {}
    for k, v in records:
        try:
            kind, key = decode_key(k)
            if v is None:
                out.pop(key, None)
                continue
            state, epoch = decode_value(kind, v)
        except ShareRecordError as e:
            log.warning("skipping a record of %s that does not parse: %s", SHARE_GROUP_STATE, e)
            continue
        if kind == SNAPSHOT_KEY:
            out[key] = StoredState(state, epoch)
        else:
            current = out.get(key)
            if current is not None and epoch == current.snapshot_epoch:
                current.state = merge_update(current.state, state)
    return out


class TopicShareStateStore:
    """:class:`ShareStateStore` over the ``__share_group_state`` internal topic."""

    def __init__(self, *, metadata: InternalTopicSource, append_records: AppendRecords,
                 logs: Callable[[str, int], PartitionLog | None], clock: Clock,
                 default_partitions: Callable[[], int], topic_configs: Callable[[], Mapping[str, str]]) -> None:
        self._topic = InternalTopic(SHARE_GROUP_STATE, metadata=metadata, append_records=append_records, logs=logs,
                                    clock=clock, default_partitions=default_partitions, topic_configs=topic_configs)
        self._clock = clock
        self._epochs: dict[ShareKey, int] = {}

    async def write(self, key: ShareKey, state: PartitionState) -> ErrorCode:
        now = self._clock.time_ms()
        epoch = self._epochs[key] = self._epochs.get(key, -1) + 1
        value = encode_snapshot(state, snapshot_epoch=epoch, leader_epoch=0, create_ms=now, write_ms=now)
        written = await self._topic.append(state_partition(key, self._topic.num_partitions),
                                           [(encode_key(SNAPSHOT_KEY, key), value)])
        return ErrorCode(written.error_code) if written.error_code in ErrorCode._value2member_map_ \
            else ErrorCode.UNKNOWN_SERVER_ERROR

    async def delete(self, key: ShareKey) -> ErrorCode:
        self._epochs.pop(key, None)
        written = await self._topic.append(state_partition(key, self._topic.num_partitions),
                                           [(encode_key(SNAPSHOT_KEY, key), None), (encode_key(UPDATE_KEY, key), None)])
        return ErrorCode.NONE if written.error_code == 0 else ErrorCode.UNKNOWN_SERVER_ERROR

    def _records(self) -> Iterator[KeyValue]:
        if not self._topic.exists():
            return
        for p in range(self._topic.num_partitions):
            for h, batch in self._topic.batches(p):
                if h.is_control:
                    continue
                for rec in iter_records(batch):
                    if rec.key is not None:
                        yield bytes(rec.key), None if rec.value is None else bytes(rec.value)

    def load(self) -> dict[ShareKey, StoredState]:
        states = replay(self._records())
        for key, stored in states.items():
            self._epochs[key] = stored.snapshot_epoch
        return states
