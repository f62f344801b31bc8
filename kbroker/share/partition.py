"""One share-partition (KIP-932): the in-flight records of a topic partition in a share group.

As Kafka's ``SharePartition``: records from the start offset up to the end offset are
in flight, each AVAILABLE, ACQUIRED by one member (under an acquisition lock that expires
after the lock duration), ACKNOWLEDGED or ARCHIVED, with the number of times it was
delivered. Records below the start offset are done with; the start offset moves past
records that are acknowledged or archived. A record delivered ``delivery.count.limit``
times and then released (or whose lock expires) is archived instead of offered again.

Kept per offset (bounded by ``group.share.partition.max.record.locks``): Kafka keeps
batches and splits them into per-offset state when acknowledgements cut through one; the
observable states and the state written to ``__share_group_state`` are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from kbroker.codec.error_codes import ErrorCode
from kbroker.groups.timers import Scheduler, Timer


class RecordState(IntEnum):
    """A record's delivery state, with Kafka's wire values (``RecordState``)."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AcknowledgeType(IntEnum):
    """The acknowledgement types of ShareFetch and ShareAcknowledge."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3


@dataclass(slots=True)
class InFlight:
    """One in-flight record."""

    state: RecordState
    delivery_count: int
    member_id: str | None = None
    #: The acquisition this record belongs to (its lock timer is shared by the batch acquired together).
    lock: Timer | None = None


@dataclass(frozen=True, slots=True)
class AcquiredRange:
    """Offsets acquired together with one delivery count (a ShareFetch ``AcquiredRecords`` entry)."""

    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(frozen=True, slots=True)
class StateBatch:
    """A run of offsets with one state and delivery count, as ``__share_group_state`` stores them."""

    first_offset: int
    last_offset: int
    state: int
    delivery_count: int


@dataclass(slots=True)
class PartitionState:
    """What is durable of a share-partition: its start offset, state epoch and in-flight batches."""

    start_offset: int
    state_epoch: int = 0
    batches: list[StateBatch] = field(default_factory=list)


class AcknowledgeError(Exception):
    """An acknowledgement the partition refuses (Kafka's error code in ``code``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ShareSettings:
    """The limits a share-partition applies, read afresh at each acquisition."""

    lock_duration_ms: int = 30000
    delivery_count_limit: int = 5
    max_record_locks: int = 2000


class SharePartition:
    """The in-flight records of one (group, topic partition)."""

    def __init__(self, group_id: str, topic: str, partition: int, start_offset: int, *,
                 scheduler: Scheduler, settings: Callable[[], ShareSettings],
                 on_change: Callable[[SharePartition], None] = lambda sp: None,
                 state_epoch: int = 0) -> None:
        """``on_change`` is told when locks expire (records become available or archived without
        a request): it persists the state and wakes waiting fetches."""
        self.group_id = group_id
        self.topic = topic
        self.partition = partition
        self.start_offset = start_offset
        #: The next offset never fetched: records from here on are not in flight yet.
        self.end_offset = start_offset
        self.state_epoch = state_epoch
        self._scheduler = scheduler
        self._settings = settings
        self._on_change = on_change
        self.records: dict[int, InFlight] = {}

    # ------------------------------------------------------------------ reading state

    def settings(self) -> ShareSettings:
        """The settings in force now (group overrides included)."""
        return self._settings()

    def next_fetch_offset(self) -> int:
        """Where the next read of the log starts: the first AVAILABLE in-flight record, else the end."""
        for offset in range(self.start_offset, self.end_offset):
            rec = self.records.get(offset)
            if rec is not None and rec.state == RecordState.AVAILABLE:
                return offset
        return self.end_offset

    def can_acquire(self) -> bool:
        """Whether any record may be acquired now: one available in flight, or room past the end."""
        if any(r.state == RecordState.AVAILABLE for r in self.records.values()):
            return True
        return self.end_offset - self.start_offset < self.settings().max_record_locks

    def state_of(self, offset: int) -> tuple[RecordState, int] | None:
        """(state, delivery count) of an in-flight offset; None outside the in-flight window."""
        rec = self.records.get(offset)
        return None if rec is None else (rec.state, rec.delivery_count)

    def acquired_count(self) -> int:
        """Records currently acquired by some member."""
        return sum(1 for r in self.records.values() if r.state == RecordState.ACQUIRED)

    # ------------------------------------------------------------------ acquisition

    def acquire(self, member_id: str, batches: Iterable[tuple[int, int, bool]], max_records: int,
                log_start_offset: int = 0) -> list[AcquiredRange]:
        """Acquire for ``member_id`` the records of ``batches`` (``(base_offset, last_offset,
        is_control)`` read from the log from :meth:`next_fetch_offset`) that are available or new.

        Whole batches are taken until ``max_records`` are acquired (as Kafka's batch-optimized
        acquisition, which may exceed the limit to keep batches whole); new records stop at the
        ``max_record_locks`` window. Control batches are archived, never delivered.
        """
        if log_start_offset > self.start_offset:
            self.move_start(log_start_offset)
        settings = self.settings()
        acquired: list[int] = []
        timer = self._scheduler.call_later(settings.lock_duration_ms, lambda: None)
        window_end = self.start_offset + settings.max_record_locks
        for base, last, is_control in batches:
            if len(acquired) >= max_records:
                break
            for offset in range(max(base, self.start_offset), last + 1):
                if offset < self.end_offset:
                    rec = self.records.get(offset)
                    if rec is None or rec.state != RecordState.AVAILABLE:
                        continue
                    if is_control:
                        rec.state = RecordState.ARCHIVED
                        continue
                else:
                    if offset >= window_end:
                        break
                    # Offsets skipped by the log (compaction) between the end and here are gone for good.
                    self.end_offset = offset + 1
                    if is_control:
                        continue
                    rec = self.records[offset] = InFlight(RecordState.AVAILABLE, 0)
                rec.state = RecordState.ACQUIRED
                rec.delivery_count += 1
                rec.member_id = member_id
                rec.lock = timer
                acquired.append(offset)
        if not acquired:
            timer.cancel()
            self._advance_start()
            return []
        timer.callback = lambda: self._lock_expired(timer)
        self._advance_start()
        return _ranges(acquired, self.records)

    def _lock_expired(self, timer: Timer) -> None:
        """An acquisition lock ran out: its records still acquired go back (or are archived)."""
        limit = self.settings().delivery_count_limit
        changed = False
        for rec in self.records.values():
            if rec.lock is timer and rec.state == RecordState.ACQUIRED:
                self._release_one(rec, limit)
                changed = True
        if changed:
            self._advance_start()
            self._on_change(self)

    @staticmethod
    def _release_one(rec: InFlight, limit: int) -> None:
        rec.state = RecordState.ARCHIVED if rec.delivery_count >= limit else RecordState.AVAILABLE
        rec.member_id = None
        rec.lock = None

    # ------------------------------------------------------------------ acknowledgement

    def acknowledge(self, member_id: str, batches: Sequence[tuple[int, int, Sequence[int]]]) -> None:
        """Apply ShareFetch/ShareAcknowledge acknowledgement batches ``(first, last, types)``
        atomically: all of them or, with :class:`AcknowledgeError` raised, none.

        As Kafka: every offset must be ACQUIRED by ``member_id`` (GAP: not a record at all),
        ``types`` holds one type for the whole range or one per offset, ranges must be
        ascending and must not overlap.
        """
        plan: list[tuple[int, int]] = []
        previous_last = -1
        for first, last, types in batches:
            if first > last or first < 0:
                raise AcknowledgeError(ErrorCode.INVALID_REQUEST, f"bad acknowledgement range {first}-{last}")
            if first <= previous_last:
                raise AcknowledgeError(ErrorCode.INVALID_REQUEST, "acknowledgement batches overlap or are not in order")
            previous_last = last
            if len(types) != 1 and len(types) != last - first + 1:
                raise AcknowledgeError(ErrorCode.INVALID_REQUEST,
                                       f"{len(types)} acknowledge types for {last - first + 1} offsets")
            if first < self.start_offset or last >= self.end_offset:
                # Outside the in-flight window (this also bounds the work a range can cause).
                raise AcknowledgeError(ErrorCode.INVALID_RECORD_STATE, f"offsets {first}-{last} are not in flight")
            for offset in range(first, last + 1):
                kind = types[0] if len(types) == 1 else types[offset - first]
                if kind not in (0, 1, 2, 3):
                    raise AcknowledgeError(ErrorCode.INVALID_REQUEST, f"unknown acknowledge type {kind}")
                rec = self.records.get(offset)
                if kind == AcknowledgeType.GAP:
                    if rec is not None and (rec.state != RecordState.ACQUIRED or rec.member_id != member_id):
                        raise AcknowledgeError(ErrorCode.INVALID_RECORD_STATE, f"offset {offset} is not acquired by the member")
                elif rec is None or rec.state != RecordState.ACQUIRED or rec.member_id != member_id:
                    raise AcknowledgeError(ErrorCode.INVALID_RECORD_STATE, f"offset {offset} is not acquired by the member")
                plan.append((offset, kind))
        limit = self.settings().delivery_count_limit
        for offset, kind in plan:
            rec = self.records.get(offset)
            if rec is None:
                if offset >= self.start_offset:
                    self.records[offset] = InFlight(RecordState.ARCHIVED, 0)
                continue
            if kind == AcknowledgeType.ACCEPT:
                rec.state = RecordState.ACKNOWLEDGED
            elif kind == AcknowledgeType.RELEASE:
                self._release_one(rec, limit)
                continue
            else:  # REJECT and GAP
                rec.state = RecordState.ARCHIVED
            rec.member_id = None
            rec.lock = None
        self._advance_start()

    def release_member(self, member_id: str) -> int:
        """Release every record ``member_id`` holds (it left or closed its share session)."""
        limit = self.settings().delivery_count_limit
        n = 0
        for rec in self.records.values():
            if rec.state == RecordState.ACQUIRED and rec.member_id == member_id:
                self._release_one(rec, limit)
                n += 1
        if n:
            self._advance_start()
        return n

    # ------------------------------------------------------------------ offsets and durability

    def move_start(self, offset: int) -> None:
        """Move the start offset to ``offset`` (the log start moved past it, or an admin reset)."""
        for o in [o for o in self.records if o < offset]:
            rec = self.records.pop(o)
            if rec.lock is not None and not any(r.lock is rec.lock for r in self.records.values()):
                rec.lock.cancel()
        self.start_offset = offset
        if self.end_offset < offset:
            self.end_offset = offset
        self._advance_start()

    def reset(self, offset: int) -> None:
        """Start over at ``offset`` with nothing in flight (AlterShareGroupOffsets on an empty group)."""
        for rec in self.records.values():
            if rec.lock is not None:
                rec.lock.cancel()
        self.records.clear()
        self.start_offset = self.end_offset = offset
        self.state_epoch += 1

    def _advance_start(self) -> None:
        start = self.start_offset
        while start < self.end_offset:
            rec = self.records.get(start)
            if rec is not None and rec.state not in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED):
                break
            self.records.pop(start, None)
            start += 1
        self.start_offset = start

    def snapshot(self) -> PartitionState:
        """The durable state: acquired records are written as available (a restart releases
        them), each with its delivery count, so no delivery is forgotten."""
        batches: list[StateBatch] = []
        for offset in range(self.start_offset, self.end_offset):
            rec = self.records.get(offset)
            state, count = (RecordState.ARCHIVED, 0) if rec is None else (rec.state, rec.delivery_count)
            if state == RecordState.ACQUIRED:
                state = RecordState.AVAILABLE
            last = batches[-1] if batches else None
            if last is not None and last.last_offset == offset - 1 and last.state == state \
                    and last.delivery_count == count:
                batches[-1] = StateBatch(last.first_offset, offset, int(state), count)
            else:
                batches.append(StateBatch(offset, offset, int(state), count))
        return PartitionState(self.start_offset, self.state_epoch, batches)

    def restore(self, state: PartitionState) -> None:
        """Take up a state read back from ``__share_group_state``: acquired records are available again."""
        self.start_offset = self.end_offset = state.start_offset
        self.state_epoch = state.state_epoch
        self.records.clear()
        for b in state.batches:
            if b.last_offset < state.start_offset:
                continue
            st = RecordState(b.state) if b.state in (0, 1, 2, 4) else RecordState.ARCHIVED
            if st == RecordState.ACQUIRED:
                st = RecordState.AVAILABLE
            for offset in range(max(b.first_offset, state.start_offset), b.last_offset + 1):
                self.records[offset] = InFlight(st, b.delivery_count)
            self.end_offset = max(self.end_offset, b.last_offset + 1)
        self._advance_start()


def _ranges(offsets: list[int], records: dict[int, InFlight]) -> list[AcquiredRange]:
    """Consecutive acquired offsets with one delivery count, merged into ranges."""
    out: list[AcquiredRange] = []
    for offset in offsets:
        count = records[offset].delivery_count
        if out and out[-1].last_offset == offset - 1 and out[-1].delivery_count == count:
            out[-1] = AcquiredRange(out[-1].first_offset, offset, count)
        else:
            out.append(AcquiredRange(offset, offset, count))
    return out
