"""The parts of the embedded consumer protocol the coordinator reads or writes.

Members of ``consumer`` groups carry a ConsumerProtocolSubscription as their
protocol metadata and get a ConsumerProtocolAssignment back; both start with an
int16 version and the v0 fields stay a prefix of every later version.
"""

from __future__ import annotations

import struct

CONSUMER_PROTOCOL_TYPE = "consumer"

#: ConsumerProtocolAssignment v0 with no partitions and null user data.
EMPTY_ASSIGNMENT = struct.pack(">hii", 0, 0, -1)


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription, or None if it does not parse."""
    try:
        (version,) = struct.unpack_from(">h", metadata, 0)
        if version < 0:
            return None
        (count,) = struct.unpack_from(">i", metadata, 2)
        pos = 6
        topics: set[str] = set()
        for _ in range(count):
            (n,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if n < 0 or pos + n > len(metadata):
                return None
            topics.add(metadata[pos:pos + n].decode())
            pos += n
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
