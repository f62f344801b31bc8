"""Keys and values of the ``__consumer_offsets`` records, in Kafka's own byte format.

Keys: offset commit key v1 ``(group, topic, partition)`` and group metadata key v2
``(group)``. Values: offset commit v3 ``(offset, leader epoch, metadata, commit
timestamp)`` (v1 when an explicit expiry is set) and group metadata v3. A null value
is a tombstone. Older value versions are read too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16_I16 = struct.Struct(">hh")
#: Offset value v3 up to its metadata: version, offset, leader epoch, metadata length.
_V3_HEAD = struct.Struct(">hqih")


class RecordFormatError(ValueError):
    """A ``__consumer_offsets`` record this broker cannot read."""


@dataclass(frozen=True)
class OffsetKey:
    """Key of a committed offset."""

    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    """Key of a group's metadata."""

    group: str


@dataclass(frozen=True)
class OffsetAndMetadata:
    """A committed offset (Kafka's OffsetAndMetadata)."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    #: Explicit expiry from a v2-4 OffsetCommit's retention time; -1 means by policy.
    expire_timestamp: int = -1
    #: Where the commit's record sits in ``__consumer_offsets`` (-1 before it is written):
    #: of a transactional and a plain commit of one partition, the later record wins.
    record_offset: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class MemberRecord:
    """One member as stored in the group metadata value."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupRecord:
    """A group's stored metadata (Kafka's GroupMetadataValue)."""

    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberRecord, ...]


class FieldWriter:
    """Big-endian fields of a ``__consumer_offsets`` key or value, appended to ``buf``; each
    record family adds its string types."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def i16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def i32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def i64(self, v: int) -> None:
        self.buf += _I64.pack(v)


class _Writer(FieldWriter):

    def string(self, s: str | None) -> None:
        if s is None:
            self.i16(-1)
            return
        data = s.encode()
        self.i16(len(data))
        self.buf += data

    def bytes_(self, b: bytes | None) -> None:
        if b is None:
            self.i32(-1)
            return
        self.i32(len(b))
        self.buf += b


class FieldReader:
    """Big-endian fields of a ``__consumer_offsets`` key or value, read in order; a record that
    ends early raises :class:`RecordFormatError`. Each record family adds its string types."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RecordFormatError("record ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])


class _Reader(FieldReader):

    def nullable_string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def string(self) -> str:
        s = self.nullable_string()
        if s is None:
            raise RecordFormatError("null where a string is required")
        return s

    def bytes_(self) -> bytes:
        n = self.i32()
        return b"" if n < 0 else self._take(n)


def offset_key(group: str, topic: str, partition: int) -> bytes:
    """The record key of a committed offset."""
    # One join rather than a _Writer: this runs for every committed partition.
    g = group.encode()
    t = topic.encode()
    return b"".join((_I16_I16.pack(OFFSET_KEY_VERSION, len(g)), g, _I16.pack(len(t)), t, _I32.pack(partition)))


def group_key(group: str) -> bytes:
    """The record key of a group's metadata."""
    w = _Writer()
    w.i16(GROUP_KEY_VERSION)
    w.string(group)
    return bytes(w.buf)


def key_version(data: bytes | memoryview) -> int:
    """The version of a record key: 0-2 are classic groups' and offsets', higher ones other
    group types' (Kafka's ``CoordinatorRecordType``)."""
    if len(data) < 2:
        raise RecordFormatError("record key shorter than its version")
    return int(_I16.unpack_from(data)[0])


def decode_key(data: bytes | memoryview) -> OffsetKey | GroupKey | None:
    """Decode a key; None for key versions this broker does not use."""
    r = _Reader(data)
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string(), r.string(), r.i32())
    if version == 2:
        return GroupKey(r.string())
    return None


def offset_value(om: OffsetAndMetadata) -> bytes:
    """The record value of a committed offset (v1 if it has an explicit expiry, else v3)."""
    w = _Writer()
    if om.expire_timestamp >= 0:
        w.i16(1)
        w.i64(om.offset)
        w.string(om.metadata)
        w.i64(om.commit_timestamp)
        w.i64(om.expire_timestamp)
        return bytes(w.buf)
    # v3, every commit without an explicit expiry: packed directly (it runs per committed partition).
    metadata = om.metadata.encode()
    return b"".join((_V3_HEAD.pack(OFFSET_VALUE_VERSION, om.offset, om.leader_epoch, len(metadata)), metadata,
                     _I64.pack(om.commit_timestamp)))


def decode_offset_value(data: bytes | memoryview) -> OffsetAndMetadata:
    """Decode an offset commit value, versions 0-3."""
    r = _Reader(data)
    version = r.i16()
    if version not in (0, 1, 2, 3):
        raise RecordFormatError(f"offset commit value version {version} is not supported")
    offset = r.i64()
    epoch = r.i32() if version >= 3 else -1
    metadata = r.string()
    commit_ts = r.i64()
    expire_ts = r.i64() if version == 1 else -1
    return OffsetAndMetadata(offset, epoch, metadata, commit_ts, expire_ts)


def group_value(g: GroupRecord) -> bytes:
    """The record value of a group's metadata (v3)."""
    w = _Writer()
    w.i16(GROUP_VALUE_VERSION)
    w.string(g.protocol_type)
    w.i32(g.generation)
    w.string(g.protocol)
    w.string(g.leader)
    w.i64(g.current_state_timestamp)
    w.i32(len(g.members))
    for m in g.members:
        w.string(m.member_id)
        w.string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        w.i32(m.rebalance_timeout_ms)
        w.i32(m.session_timeout_ms)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
    return bytes(w.buf)


def decode_group_value(data: bytes | memoryview) -> GroupRecord:
    """Decode a group metadata value, versions 0-3."""
    r = _Reader(data)
    version = r.i16()
    if version not in (0, 1, 2, 3):
        raise RecordFormatError(f"group metadata value version {version} is not supported")
    protocol_type = r.string()
    generation = r.i32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    state_ts = r.i64() if version >= 2 else -1
    members = []
    for _ in range(r.i32()):
        member_id = r.string()
        instance_id = r.nullable_string() if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        session_timeout = r.i32()
        rebalance_timeout = session_timeout
        if version >= 1:
            rebalance_timeout, session_timeout = session_timeout, r.i32()
        members.append(MemberRecord(member_id, instance_id, client_id, client_host, rebalance_timeout,
                                    session_timeout, r.bytes_(), r.bytes_()))
    return GroupRecord(protocol_type, generation, protocol, leader, state_ts, tuple(members))
