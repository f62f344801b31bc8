"""Share group records in ``__consumer_offsets`` (key versions 9-15), in Kafka's formats.

A key is its 2-byte record type then the version-0 key (not flexible); a value its 2-byte
version (0) then the flexible value. This broker writes ``ShareGroupMetadata`` (11: the
group's epoch) and ``ShareGroupMemberMetadata`` (10) so a share group, with its epoch,
outlives a restart; members come back by heartbeating again (their sessions restart).
"""

from __future__ import annotations

import struct

from kbroker.records.varint import decode_uvarint, encode_uvarint

MEMBER_METADATA = 10
GROUP_METADATA = 11
#: The key versions share groups own (Kafka's CoordinatorRecordType 9-15).
KEY_VERSIONS = frozenset(range(9, 16))


class ShareRecordFormatError(ValueError):
    """A share group record this broker cannot read."""


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _compact(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    raw = s.encode()
    return encode_uvarint(len(raw) + 1) + raw


def group_metadata_key(group_id: str) -> bytes:
    """ShareGroupMetadataKey: type 11, GroupId."""
    return struct.pack(">h", GROUP_METADATA) + _string(group_id)


def group_metadata_value(epoch: int, metadata_hash: int = 0) -> bytes:
    """ShareGroupMetadataValue v0: Epoch, MetadataHash, no tagged fields."""
    return struct.pack(">hiq", 0, epoch, metadata_hash) + b"\x00"


def member_metadata_key(group_id: str, member_id: str) -> bytes:
    """ShareGroupMemberMetadataKey: type 10, GroupId, MemberId."""
    return struct.pack(">h", MEMBER_METADATA) + _string(group_id) + _string(member_id)


def member_metadata_value(rack_id: str | None, client_id: str, client_host: str, topics: list[str]) -> bytes:
    """ShareGroupMemberMetadataValue v0: RackId, ClientId, ClientHost, SubscribedTopicNames."""
    out = bytearray(struct.pack(">h", 0))
    out += _compact(rack_id) + _compact(client_id) + _compact(client_host)
    out += encode_uvarint(len(topics) + 1)
    for t in topics:
        out += _compact(t)
    return bytes(out + b"\x00")


def decode_key(data: bytes) -> tuple[int, str, str | None]:
    """(record type, group id, member id or None) of a share group record key."""
    try:
        kind, n = struct.unpack_from(">hh", data)
        group = bytes(data[4:4 + n]).decode()
        member = None
        pos = 4 + n
        if kind in (MEMBER_METADATA, 13, 14):
            (m,) = struct.unpack_from(">h", data, pos)
            member = bytes(data[pos + 2:pos + 2 + m]).decode()
    except (struct.error, UnicodeDecodeError) as e:
        raise ShareRecordFormatError(str(e)) from e
    if kind not in KEY_VERSIONS or n < 0:
        raise ShareRecordFormatError(f"not a share group key (type {kind})")
    return kind, group, member


def decode_group_epoch(value: bytes) -> int:
    """The Epoch of a ShareGroupMetadataValue."""
    try:
        _, epoch = struct.unpack_from(">hi", value)
    except struct.error as e:
        raise ShareRecordFormatError(str(e)) from e
    return int(epoch)


def decode_member_value(value: bytes) -> tuple[str | None, str, str, list[str]]:
    """(rack, client id, client host, subscribed topics) of a ShareGroupMemberMetadataValue."""
    data = bytes(value)
    pos = 2

    def compact(pos: int) -> tuple[str | None, int]:
        n, pos = decode_uvarint(data, pos)
        if n == 0:
            return None, pos
        return data[pos:pos + n - 1].decode(), pos + n - 1

    try:
        rack, pos = compact(pos)
        client_id, pos = compact(pos)
        host, pos = compact(pos)
        count, pos = decode_uvarint(data, pos)
        topics = []
        for _ in range(max(count - 1, 0)):
            t, pos = compact(pos)
            topics.append(t or "")
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        raise ShareRecordFormatError(str(e)) from e
    return rack, client_id or "", host or "", topics
