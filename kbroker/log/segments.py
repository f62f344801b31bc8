"""``LogSegments``: the ordered set of a partition's segments, keyed by base offset."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from kbroker.log.segment import LogSegment


class LogSegments:
    """Segments sorted by base offset with floor/higher lookups (Kafka's ``LogSegments``)."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._segments: list[LogSegment] = []

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[LogSegment]:
        return iter(list(self._segments))

    def __bool__(self) -> bool:
        return bool(self._segments)

    def add(self, segment: LogSegment) -> None:
        """Insert (or replace the segment with the same base offset)."""
        i = bisect_right(self._bases, segment.base_offset)
        if i and self._bases[i - 1] == segment.base_offset:
            self._segments[i - 1] = segment
            return
        self._bases.insert(i, segment.base_offset)
        self._segments.insert(i, segment)

    def remove(self, segment: LogSegment) -> None:
        i = self._bases.index(segment.base_offset)
        del self._bases[i]
        del self._segments[i]

    def clear(self) -> None:
        self._bases.clear()
        self._segments.clear()

    @property
    def first(self) -> LogSegment:
        return self._segments[0]

    @property
    def active(self) -> LogSegment:
        """The last segment, the only one appended to."""
        return self._segments[-1]

    def floor_index(self, offset: int) -> int:
        """Index of the last segment whose base offset is <= ``offset`` (-1 if none)."""
        return bisect_right(self._bases, offset) - 1

    def floor(self, offset: int) -> LogSegment | None:
        """The segment that would contain ``offset``."""
        i = self.floor_index(offset)
        return self._segments[i] if i >= 0 else None

    def higher(self, base_offset: int) -> LogSegment | None:
        """The segment after the one at ``base_offset``."""
        i = bisect_right(self._bases, base_offset)
        return self._segments[i] if i < len(self._segments) else None

    def from_index(self, i: int) -> list[LogSegment]:
        return self._segments[max(i, 0):]

    def to_list(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)
