"""``SkimpyOffsetMap``: the key digest -> latest offset map the cleaner deduplicates with.

Kafka hashes every key to a 16-byte MD5 digest and keeps ``digest -> offset`` in an
open-addressing table of ``memory // 24`` slots (16 digest bytes + 8 offset bytes a slot),
filled to at most ``slots * load_factor`` entries (``log.cleaner.io.buffer.load.factor``).
The capacity here follows that formula exactly, so a given ``log.cleaner.dedupe.buffer.size``
maps exactly as many keys per pass as Kafka's and the cleaner checkpoint advances the same way.

Memory is not what Kafka pays per entry: the table is a Python dict of 16-byte ``bytes``
digests to ``int`` offsets, which costs about :data:`PY_BYTES_PER_ENTRY` bytes per entry
(the bytes object, the int and the dict slot, measured with tracemalloc on CPython 3.11),
five times Kafka's 24. A full map of the default 128 MiB budget (5.0 million entries at the
default load factor) therefore takes about 0.6 GB of the cleaning process's memory;
:meth:`SkimpyOffsetMap.python_bytes` reports the honest figure for a map's current size.
(Kafka's digest collisions, as improbable as MD5's, are equally possible here.)
"""

from __future__ import annotations

import hashlib

#: Kafka's slot size: an MD5 digest and an 8-byte offset.
HASH_SIZE = 16
BYTES_PER_ENTRY = HASH_SIZE + 8
#: What one entry costs in CPython 3.11: the 16-byte bytes object (49 B), the offset int
#: (32 B) and the dict's entry and index, amortised over its fill (tracemalloc: about 123 B
#: per entry at a million entries).
PY_BYTES_PER_ENTRY = 120
DEFAULT_LOAD_FACTOR = 0.9


def key_digest(key: bytes | bytearray | memoryview) -> bytes:
    """The 16-byte MD5 digest a key is mapped by (Kafka's default ``hashAlgorithm``)."""
    return hashlib.md5(key).digest()


class SkimpyOffsetMap:
    """Key digest -> the latest offset seen for it, with a fixed capacity (Kafka's ``SkimpyOffsetMap``)."""

    def __init__(self, memory: int, load_factor: float = DEFAULT_LOAD_FACTOR) -> None:
        if memory < BYTES_PER_ENTRY:
            raise ValueError(f"offset map memory {memory} holds no slot of {BYTES_PER_ENTRY} bytes")
        #: Slots Kafka's table of ``memory`` bytes would have.
        self.slots = memory // BYTES_PER_ENTRY
        #: Entries the cleaner fills it with at most (``slots * load_factor``, as Kafka's
        #: ``maxDesiredMapSize``); at least one, or cleaning could never progress.
        self.max_entries = int(self.slots * load_factor)
        if self.max_entries < 1:
            raise ValueError("offset map too small to hold a single key: raise the dedupe buffer")
        #: digest -> offset. Public for the cleaner's hot loop (one attribute lookup per batch).
        self.entries: dict[bytes, int] = {}
        #: The last offset the map covers (-1 while empty): records above it are not deduplicated.
        self.latest_offset = -1

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def full(self) -> bool:
        """No further key may be added (Kafka stops building the map here)."""
        return len(self.entries) >= self.max_entries

    def put(self, key: bytes | bytearray | memoryview, offset: int) -> None:
        """Map ``key`` to ``offset`` (the caller checks :attr:`full` first, as Kafka's does)."""
        self.entries[hashlib.md5(key).digest()] = offset
        self.latest_offset = offset

    def get(self, key: bytes | bytearray | memoryview) -> int:
        """The offset mapped for ``key``; -1 if it has none."""
        return self.entries.get(hashlib.md5(key).digest(), -1)

    def update_latest_offset(self, offset: int) -> None:
        """Move :attr:`latest_offset` (Kafka's ``updateLatestOffset``: set, not maximised)."""
        self.latest_offset = offset

    def clear(self) -> None:
        self.entries.clear()
        self.latest_offset = -1

    @property
    def utilization(self) -> float:
        """Fraction of Kafka's slots in use (``CleanerStats.bufferUtilization``)."""
        return len(self.entries) / self.slots

    def python_bytes(self) -> int:
        """Approximate memory this map really holds in CPython."""
        return len(self.entries) * PY_BYTES_PER_ENTRY
