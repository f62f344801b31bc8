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

    # -- searches across segments ------------------------------------------------------------
    def read(self, offset: int, max_bytes: int, min_one_message: bool, bound: int,
             log_end_offset: int) -> bytes | memoryview:
        """Whole batches from the segment holding ``offset`` on, none starting at or after
        ``bound`` (<= ``log_end_offset``), at most ``max_bytes`` (except a first batch with
        ``min_one_message``); empty if there are none."""
        segs = self.from_index(self.floor_index(offset))
        for i, seg in enumerate(segs):
            nxt = segs[i + 1] if i + 1 < len(segs) else None
            if nxt is None:
                # Everything in the active segment starts below the LEO.
                max_position = None if bound == log_end_offset else seg.position_bound(bound)
            else:
                max_position = seg.position_bound(bound) if bound < nxt.base_offset else None
            data = seg.read(offset, max_bytes, max_position, min_one_message)
            if data is not None:
                return data
            if nxt is None or bound <= nxt.base_offset:
                break
        return b""

    def fetch_position(self, offset: int) -> tuple[int, int] | None:
        """``(segment base offset, position)`` of the batch holding ``offset`` or the first
        after it; None if no segment has one."""
        for seg in self.from_index(self.floor_index(offset)):
            pos = seg.fetch_position(offset)
            if pos is not None:
                return seg.base_offset, pos
        return None

    def fetch_upper_bound_offset(self, offset: int, fetch_size: int, log_end_offset: int) -> int:
        """The bound below which a read_committed fetch of ``fetch_size`` bytes from ``offset``
        reports aborted transactions, as Kafka's ``LocalLog.addAbortedTransactions``: the first
        offset-index entry past the data read in the segment read from, else the next segment's
        base offset, else the log end offset. Coarser than the data read: the index has an
        entry every ``index.interval.bytes``."""
        segs = self.from_index(self.floor_index(offset))
        for i, seg in enumerate(segs):
            pos = seg.fetch_position(offset)
            if pos is None:
                continue
            found = seg.offset_index.fetch_upper_bound_offset(pos, fetch_size)
            if found is not None:
                return found
            return segs[i + 1].base_offset if i + 1 < len(segs) else log_end_offset
        return log_end_offset

    def find_offset_by_timestamp(self, timestamp: int, log_start_offset: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record at or after ``log_start_offset``
        with a timestamp >= ``timestamp``; None if there is none."""
        for seg in self:
            if seg.max_timestamp < timestamp or seg.next_offset <= log_start_offset:
                continue
            found = seg.find_offset_by_timestamp(timestamp, log_start_offset)
            if found is not None:
                return found
        return None

    def max_timestamp(self) -> tuple[int, int]:
        """``(timestamp, offset)`` of the first record with the largest timestamp in the retained
        segments; (-1, -1) if there is none.

        As Kafka's ``UnifiedLog.fetchOffsetByTimestamp(MAX_TIMESTAMP)``, the log start offset
        does not bound the search: a record DeleteRecords put below it still counts while its
        segment is kept (the active one, or one that still holds records at or after the start).
        """
        best: LogSegment | None = None
        for seg in self:
            if seg.max_timestamp < 0:
                continue
            if best is None or seg.max_timestamp > best.max_timestamp:
                best = seg
        if best is None:
            return -1, -1
        found = best.find_offset_by_timestamp(best.max_timestamp, best.base_offset)
        if found is None:
            return -1, -1
        offset, ts = found
        return ts, offset
