"""The records of consumer groups (KIP-848) in ``__consumer_offsets``, in Kafka's byte format.

Keys (not flexible: an int16 version, then int16-length strings), by key version:
3 member metadata ``(group, member)``, 4 group metadata ``(group)``, 5 partition metadata
``(group)``, 6 target assignment of a member ``(group, member)``, 7 target assignment
metadata ``(group)``, 8 current member assignment ``(group, member)``, 16 resolved regular
expression ``(group, regex)``. Values are Kafka's flexible value version 0 (compact strings
and arrays, tagged fields at the end of each struct). A null value is a tombstone.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from kbroker.groups.records import FieldReader, FieldWriter, RecordFormatError

MEMBER_METADATA = 3
GROUP_METADATA = 4
PARTITION_METADATA = 5
TARGET_MEMBER = 6
TARGET_METADATA = 7
CURRENT_ASSIGNMENT = 8
REGULAR_EXPRESSION = 16
KEY_VERSIONS = frozenset({MEMBER_METADATA, GROUP_METADATA, PARTITION_METADATA, TARGET_MEMBER, TARGET_METADATA,
                          CURRENT_ASSIGNMENT, REGULAR_EXPRESSION})
#: Keys naming a member besides the group.
_MEMBER_KEYS = frozenset({MEMBER_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT})

#: topic id -> partitions.
Partitions = Mapping[uuid.UUID, frozenset[int]]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True)
class ConsumerKey:
    """A decoded key: its version, the group, and the member or regex where the key has one."""

    version: int
    group: str
    #: The member id (versions 3, 6, 8) or the regular expression (16); else "".
    name: str = ""


@dataclass(frozen=True)
class MemberMetadataValue:
    """ConsumerGroupMemberMetadataValue."""

    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True)
class TopicMetadataValue:
    """One topic of ConsumerGroupPartitionMetadataValue."""

    topic_id: uuid.UUID
    name: str
    num_partitions: int


@dataclass(frozen=True)
class CurrentAssignmentValue:
    """ConsumerGroupCurrentMemberAssignmentValue."""

    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: Partitions = field(default_factory=dict)
    pending_revocation: Partitions = field(default_factory=dict)


@dataclass(frozen=True)
class RegexValue:
    """ConsumerGroupRegularExpressionValue: the topics a regex matched, at which metadata version."""

    topics: tuple[str, ...]
    version: int
    timestamp: int


# ---------------------------------------------------------------------------------------- encoding


class _Writer(FieldWriter):
    """Adds the flexible versions' fields: int8, unsigned varints, compact strings and arrays, tags."""

    def i8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def uvarint(self, v: int) -> None:
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def key_string(self, s: str) -> None:
        b = s.encode()
        self.i16(len(b))
        self.buf += b

    def string(self, s: str | None) -> None:
        if s is None:
            self.uvarint(0)
            return
        b = s.encode()
        self.uvarint(len(b) + 1)
        self.buf += b

    def uid(self, u: uuid.UUID) -> None:
        self.buf += u.bytes

    def tags(self) -> None:
        self.uvarint(0)

    def partitions(self, parts: Partitions) -> None:
        """A []TopicPartitions: (topic id, []int32) structs, each with its tagged fields."""
        self.uvarint(len(parts) + 1)
        for topic_id, ps in sorted(parts.items()):
            self.uid(topic_id)
            self.uvarint(len(ps) + 1)
            for p in sorted(ps):
                self.i32(p)
            self.tags()


class _Reader(FieldReader):
    """Adds the flexible versions' fields: int8, unsigned varints, compact strings and arrays, tags."""

    def i8(self) -> int:
        return int(_I8.unpack(self._take(1))[0])

    def uvarint(self) -> int:
        shift = out = 0
        while True:
            b = self._take(1)[0]
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 28:
                raise RecordFormatError("varint too long")

    def key_string(self) -> str:
        return self._decode(self._take(self.i16()))

    def string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._decode(self._take(n - 1))

    def required_string(self) -> str:
        s = self.string()
        if s is None:
            raise RecordFormatError("null where a string is required")
        return s

    @staticmethod
    def _decode(b: bytes) -> str:
        try:
            return b.decode()
        except UnicodeDecodeError as e:
            raise RecordFormatError(str(e)) from None

    def uid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._take(16))

    def array_len(self) -> int:
        n = self.uvarint() - 1
        if n < 0:
            raise RecordFormatError("null array")
        return n

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def partitions(self) -> dict[uuid.UUID, frozenset[int]]:
        out: dict[uuid.UUID, frozenset[int]] = {}
        for _ in range(self.array_len()):
            topic_id = self.uid()
            out[topic_id] = frozenset(self.i32() for _ in range(self.array_len()))
            self.tags()
        return out

    def value_version(self) -> None:
        v = self.i16()
        if v != 0:
            raise RecordFormatError(f"unknown consumer group value version {v}")


def key(version: int, group: str, name: str = "") -> bytes:
    """The record key of ``version`` for ``group`` (and the member id or regex it names)."""
    w = _Writer()
    w.i16(version)
    w.key_string(group)
    if version in _MEMBER_KEYS or version == REGULAR_EXPRESSION:
        w.key_string(name)
    return bytes(w.buf)


def decode_key(data: bytes | memoryview) -> ConsumerKey:
    """Decode a key of one of :data:`KEY_VERSIONS`."""
    r = _Reader(data)
    version = r.i16()
    if version not in KEY_VERSIONS:
        raise RecordFormatError(f"not a consumer group key version: {version}")
    group = r.key_string()
    name = r.key_string() if version in _MEMBER_KEYS or version == REGULAR_EXPRESSION else ""
    return ConsumerKey(version, group, name)


def member_metadata_value(m: MemberMetadataValue) -> bytes:
    w = _Writer()
    w.i16(0)
    w.string(m.instance_id)
    w.string(m.rack_id)
    w.string(m.client_id)
    w.string(m.client_host)
    w.uvarint(len(m.subscribed_topic_names) + 1)
    for t in m.subscribed_topic_names:
        w.string(t)
    w.string(m.subscribed_topic_regex)
    w.i32(m.rebalance_timeout_ms)
    w.string(m.server_assignor)
    w.tags()
    return bytes(w.buf)


def decode_member_metadata(data: bytes | memoryview) -> MemberMetadataValue:
    r = _Reader(data)
    r.value_version()
    instance_id, rack_id = r.string(), r.string()
    client_id, client_host = r.required_string(), r.required_string()
    names = tuple(r.required_string() for _ in range(r.array_len()))
    regex = r.string()
    rebalance_timeout = r.i32()
    assignor = r.string()
    r.tags()  # a classic member's metadata (tag 0) is not kept: this broker does not mix protocols in a group
    return MemberMetadataValue(instance_id, rack_id, client_id, client_host, names, regex, rebalance_timeout, assignor)


def epoch_value(epoch: int) -> bytes:
    """ConsumerGroupMetadataValue and ConsumerGroupTargetAssignmentMetadataValue: one int32 epoch."""
    w = _Writer()
    w.i16(0)
    w.i32(epoch)
    w.tags()
    return bytes(w.buf)


def decode_epoch(data: bytes | memoryview) -> int:
    r = _Reader(data)
    r.value_version()
    return r.i32()


def partition_metadata_value(topics: Mapping[str, tuple[uuid.UUID, int]]) -> bytes:
    """ConsumerGroupPartitionMetadataValue: the subscribed topics' ids and partition counts."""
    w = _Writer()
    w.i16(0)
    w.uvarint(len(topics) + 1)
    for name, (topic_id, n) in sorted(topics.items()):
        w.uid(topic_id)
        w.string(name)
        w.i32(n)
        w.uvarint(1)  # PartitionMetadata (racks): not used since Kafka 4.0
        w.tags()
    w.tags()
    return bytes(w.buf)


def decode_partition_metadata(data: bytes | memoryview) -> dict[str, tuple[uuid.UUID, int]]:
    r = _Reader(data)
    r.value_version()
    out: dict[str, tuple[uuid.UUID, int]] = {}
    for _ in range(r.array_len()):
        topic_id = r.uid()
        name = r.required_string()
        n = r.i32()
        for _ in range(r.array_len()):  # partition racks, ignored
            r.i32()
            for _ in range(r.array_len()):
                r.required_string()
            r.tags()
        r.tags()
        out[name] = (topic_id, n)
    r.tags()
    return out


def target_member_value(parts: Partitions) -> bytes:
    w = _Writer()
    w.i16(0)
    w.partitions(parts)
    w.tags()
    return bytes(w.buf)


def decode_target_member(data: bytes | memoryview) -> dict[uuid.UUID, frozenset[int]]:
    r = _Reader(data)
    r.value_version()
    return r.partitions()


def current_assignment_value(v: CurrentAssignmentValue) -> bytes:
    w = _Writer()
    w.i16(0)
    w.i32(v.member_epoch)
    w.i32(v.previous_member_epoch)
    w.i8(v.state)
    w.partitions(v.assigned)
    w.partitions(v.pending_revocation)
    w.tags()
    return bytes(w.buf)


def decode_current_assignment(data: bytes | memoryview) -> CurrentAssignmentValue:
    r = _Reader(data)
    r.value_version()
    epoch, previous, state = r.i32(), r.i32(), r.i8()
    assigned = r.partitions()
    pending = r.partitions()
    return CurrentAssignmentValue(epoch, previous, state, assigned, pending)


def regex_value(v: RegexValue) -> bytes:
    w = _Writer()
    w.i16(0)
    w.uvarint(len(v.topics) + 1)
    for t in v.topics:
        w.string(t)
    w.i64(v.version)
    w.i64(v.timestamp)
    w.tags()
    return bytes(w.buf)


def decode_regex(data: bytes | memoryview) -> RegexValue:
    r = _Reader(data)
    r.value_version()
    topics = tuple(r.required_string() for _ in range(r.array_len()))
    return RegexValue(topics, r.i64(), r.i64())
