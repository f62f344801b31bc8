"""The share-partition manager (Kafka's ``SharePartitionManager``) and its share sessions.

It owns every :class:`SharePartition` of this broker, creates one at the first fetch of a
(group, partition) (from ``__share_group_state`` if the state is stored, else at the offset
``share.auto.offset.reset`` says), serves ShareFetch (acknowledge, then acquire, long-polling
until records can be acquired or ``max_wait_ms`` passes) and ShareAcknowledge, and writes
the state of each changed partition to ``__share_group_state`` before answering.

Share sessions (KIP-932's ``ShareSessionCache``) are keyed by (group, member): epoch 0
opens one (replacing the member's previous), -1 closes it (releasing the member's records),
anything else must be the session's next epoch (INVALID_SHARE_SESSION_EPOCH) of a session
that exists (SHARE_SESSION_NOT_FOUND).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.groups.timers import Scheduler
from kbroker.records.batch import BatchHeader, iter_headers
from kbroker.replica.notifier import PartitionNotifier
from kbroker.replica.types import READ_COMMITTED, READ_UNCOMMITTED, FetchParams, FetchResult, PartitionFetch
from kbroker.share.partition import (
    AcknowledgeError,
    AcquiredRange,
    SharePartition,
    ShareSettings,
)
from kbroker.share.state_store import ShareKey, ShareStateStore, StoredState

log = logging.getLogger(__name__)

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
#: Most acknowledgement batches one request may carry per partition (each is validated and applied).
MAX_ACK_BATCHES = 10_000

#: The replica manager's fetch (read the logs; long-poll for appends).
ReadLogs = Callable[[Sequence[tuple[TopicPartition, PartitionFetch]], FetchParams],
                    Awaitable[list[tuple[TopicPartition, FetchResult]]]]
#: (log start offset, high watermark) of a partition led here; None when it is not.
LogOffsets = Callable[[TopicPartition], tuple[int, int] | None]
#: (group id, key) -> the group's config override, or None.
GroupSetting = Callable[[str, str], str | None]

SessionKey = tuple[str, str]
_DURATION = re.compile(r"p(?:(\d+)d)?(?:t(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d{1,9})?)s)?)?")


def parse_duration_ms(text: str) -> int | None:
    """An ISO-8601 duration as ``share.auto.offset.reset=by_duration:`` takes it (Java's
    ``Duration.parse``: ``PnDTnHnMn.nS``), in milliseconds; None when it does not parse."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None or text.strip().lower() in ("p", "pt") or text.strip().lower().endswith("t"):
        return None
    days, hours, minutes, seconds = (m.group(i) for i in range(1, 5))
    total = (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60) * 1000
    return total + int(float(seconds or 0) * 1000)
PartitionRef = tuple[uuid.UUID, int]


@dataclass
class ShareSession:
    """A member's share session: its next epoch and the partitions it fetches."""

    epoch: int
    partitions: dict[PartitionRef, None] = field(default_factory=dict)


@dataclass
class PartitionAnswer:
    """One partition's part of a ShareFetch/ShareAcknowledge response."""

    error_code: int = ErrorCode.NONE
    error_message: str | None = None
    ack_error_code: int = ErrorCode.NONE
    ack_error_message: str | None = None
    records: bytes = b""
    acquired: list[AcquiredRange] = field(default_factory=list)
    #: Whether the response lists it (data, an error, or acknowledgements of this request).
    listed: bool = False


AckBatches = list[tuple[int, int, list[int]]]


class SharePartitionManager:
    """Share-partitions and share sessions of this broker."""

    def __init__(self, config: Callable[[str], Any], clock: Clock, store: ShareStateStore, *,
                 read: ReadLogs, log_offsets: LogOffsets, topic_name: Callable[[uuid.UUID], str | None],
                 group_setting: GroupSetting = lambda g, k: None,
                 offset_for_time: Callable[[TopicPartition, int], int] | None = None) -> None:
        """``config(key)`` reads a broker setting; ``topic_name`` resolves a topic id;
        ``offset_for_time`` finds a partition's first offset at or after a timestamp (-1: none)."""
        self._offset_for_time = offset_for_time
        self._config = config
        self.clock = clock
        self.store = store
        self.timers = Scheduler(clock)
        self._read = read
        self._log_offsets = log_offsets
        self._topic_name = topic_name
        #: The group's config overrides (``share.*`` group configs); the broker's settings otherwise.
        self.group_setting = group_setting
        self.partitions: dict[ShareKey, SharePartition] = {}
        self.sessions: dict[SessionKey, ShareSession] = {}
        self._stored: dict[ShareKey, StoredState] = {}
        self._changed = PartitionNotifier()
        self._tg: Any = None
        #: Whether the stored states were read; requests before then wait (see :meth:`_until_loaded`).
        self._loaded = False
        self._loaded_event: anyio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> int:
        """Read the stored states back (at start); returns how many there are."""
        self._stored = self.store.load()
        self._loaded = True
        return len(self._stored)

    async def start(self, tg: Any) -> None:
        """Load ``__share_group_state`` and run the lock timers."""
        self._tg = tg
        count = await anyio.to_thread.run_sync(self.load)
        if self._loaded_event is not None:
            self._loaded_event.set()
        if count:
            log.info("loaded the state of %d share-partitions from __share_group_state", count)
        tg.start_soon(self.timers.run)

    async def _until_loaded(self) -> None:
        """Wait until the stored states are read: the listeners answer before that, and a
        share-partition created meanwhile would start at the reset offset (the records in flight
        lost) and its first snapshot would replace the stored state."""
        if self._loaded:
            return
        if self._loaded_event is None:
            self._loaded_event = anyio.Event()
        await self._loaded_event.wait()

    # ------------------------------------------------------------------ settings

    def _int(self, group_id: str, group_key: str | None, broker_key: str) -> int:
        if group_key is not None:
            override = self.group_setting(group_id, group_key)
            if override is not None:
                try:
                    return int(override)
                except ValueError:
                    pass
        return int(self._config(broker_key))

    def settings(self, group_id: str) -> ShareSettings:
        """The limits in force for ``group_id``'s share-partitions."""
        return ShareSettings(
            lock_duration_ms=self.lock_duration_ms(group_id),
            delivery_count_limit=self._int(group_id, "share.delivery.count.limit", "group.share.delivery.count.limit"),
            max_record_locks=self._int(group_id, None, "group.share.partition.max.record.locks"))

    def lock_duration_ms(self, group_id: str) -> int:
        """``share.record.lock.duration.ms`` of the group, else the broker's."""
        return self._int(group_id, "share.record.lock.duration.ms", "group.share.record.lock.duration.ms")

    # ------------------------------------------------------------------ share-partitions

    def partition(self, group_id: str, topic_id: uuid.UUID, index: int) -> SharePartition | None:
        """The share-partition, created (from its stored state or the reset policy) on first use;
        None when the topic is unknown or the partition is not led here."""
        key = (group_id, topic_id, index)
        sp = self.partitions.get(key)
        if sp is not None:
            return sp
        name = self._topic_name(topic_id)
        if name is None:
            return None
        offsets = self._log_offsets(TopicPartition(name, index))
        if offsets is None:
            return None
        log_start, high_watermark = offsets
        stored = self._stored.pop(key, None)
        reset = (self.group_setting(group_id, "share.auto.offset.reset") or "latest").lower()
        start = log_start if reset == "earliest" else high_watermark
        if reset.startswith("by_duration:") and self._offset_for_time is not None:
            duration = parse_duration_ms(reset[len("by_duration:"):])
            if duration is not None:
                found = self._offset_for_time(TopicPartition(name, index), self.clock.time_ms() - duration)
                start = found if found >= 0 else high_watermark  # as Kafka: no record that recent: the end
        sp = SharePartition(group_id, name, index, start, scheduler=self.timers,
                            settings=lambda: self.settings(group_id), on_change=self._lock_released)
        if stored is not None:
            sp.restore(stored.state)
            if sp.start_offset < log_start:
                sp.move_start(log_start)
        self.partitions[key] = sp
        return sp

    def _key_of(self, sp: SharePartition) -> ShareKey | None:
        for key, value in self.partitions.items():
            if value is sp:
                return key
        return None

    def _lock_released(self, sp: SharePartition) -> None:
        """Locks expired: persist (in the background) and wake fetches waiting for records."""
        key = self._key_of(sp)
        if key is None:
            return
        self._changed.notify(key)
        if self._tg is not None:
            self._tg.start_soon(self._persist, key, sp)

    async def _persist(self, key: ShareKey, sp: SharePartition) -> ErrorCode:
        code = await self.store.write(key, sp.snapshot())
        if code != ErrorCode.NONE:
            log.warning("writing the state of share-partition %s failed: %s", key, code)
        return code

    def stored_or_live(self) -> dict[ShareKey, tuple[int, int]]:
        """(start offset, state epoch) of every share-partition known, live or only stored."""
        out = {k: (s.state.start_offset, s.state.state_epoch) for k, s in self._stored.items()}
        out.update({k: (sp.start_offset, sp.state_epoch) for k, sp in self.partitions.items()})
        return out

    # ------------------------------------------------------------------ admin

    def start_offset(self, group_id: str, topic_id: uuid.UUID, index: int) -> int:
        """The share-partition's start offset; -1 when it was never initialized."""
        key = (group_id, topic_id, index)
        sp = self.partitions.get(key)
        if sp is not None:
            return sp.start_offset
        stored = self._stored.get(key)
        return stored.state.start_offset if stored is not None else -1

    def initialized(self, group_id: str) -> dict[uuid.UUID, list[int]]:
        """The share-partitions of ``group_id`` that have a state, by topic id."""
        out: dict[uuid.UUID, list[int]] = {}
        for g, topic_id, index in sorted({*self.partitions, *self._stored}, key=lambda k: (k[1].int, k[2])):
            if g == group_id:
                out.setdefault(topic_id, []).append(index)
        return out

    async def alter_start(self, group_id: str, topic_id: uuid.UUID, index: int, offset: int) -> ErrorCode:
        """AlterShareGroupOffsets of one partition (the group has no members): start over at
        ``offset`` (clamped to the log), nothing in flight, a new state epoch."""
        await self._until_loaded()
        sp = self.partition(group_id, topic_id, index)
        if sp is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        offsets = self._log_offsets(TopicPartition(sp.topic, sp.partition))
        if offsets is not None:
            offset = min(max(offset, offsets[0]), offsets[1])
        sp.reset(offset)
        return await self._persist((group_id, topic_id, index), sp)

    async def delete_topic(self, group_id: str, topic_id: uuid.UUID) -> ErrorCode:
        """DeleteShareGroupOffsets of one topic: its share-partitions' states go."""
        await self._until_loaded()
        keys = [k for k in {*self.partitions, *self._stored} if k[0] == group_id and k[1] == topic_id]
        code = ErrorCode.NONE
        for key in keys:
            sp = self.partitions.pop(key, None)
            if sp is not None:
                sp.reset(sp.start_offset)
            self._stored.pop(key, None)
            written = await self.store.delete(key)
            if written != ErrorCode.NONE:
                code = written
        return code

    def topic_deleted(self, topic_id: uuid.UUID) -> None:
        """A topic was deleted: its share-partitions go, their states are tombstoned (in the background)."""
        keys = [k for k in {*self.partitions, *self._stored} if k[1] == topic_id]
        for key in keys:
            sp = self.partitions.pop(key, None)
            if sp is not None:
                sp.reset(sp.start_offset)  # cancels its locks
            self._stored.pop(key, None)
            if self._tg is not None:
                self._tg.start_soon(self.store.delete, key)
        for session in self.sessions.values():
            for ref in [r for r in session.partitions if r[0] == topic_id]:
                del session.partitions[ref]

    async def forget_group(self, group_id: str) -> None:
        """The group was deleted: tombstone its share-partition states."""
        for key in self.group_deleted(group_id):
            await self.store.delete(key)

    # ------------------------------------------------------------------ sessions

    def _session(self, group_id: str, member_id: str, epoch: int, acknowledge_only: bool) -> ShareSession | ErrorCode:
        key = (group_id, member_id)
        if epoch == INITIAL_EPOCH:
            if acknowledge_only:
                return ErrorCode.INVALID_SHARE_SESSION_EPOCH  # ShareAcknowledge cannot open a session
            old = self.sessions.pop(key, None)
            if old is not None:
                self._release(group_id, member_id, old.partitions)
            limit = max(int(self._config("group.share.max.share.sessions")), 1)
            while len(self.sessions) >= limit:
                # Full: the least recently used session goes (its client opens a new one when told
                # SHARE_SESSION_NOT_FOUND); sessions of clients that vanished do not pile up.
                (g, m), stale = next(iter(self.sessions.items()))
                del self.sessions[(g, m)]
                self._release(g, m, stale.partitions)
            session = self.sessions[key] = ShareSession(epoch=1)
            return session
        found = self.sessions.pop(key, None)
        if found is None:
            return ErrorCode.SHARE_SESSION_NOT_FOUND
        session = self.sessions[key] = found  # most recently used last
        if epoch == FINAL_EPOCH:
            return session
        if epoch != session.epoch:
            return ErrorCode.INVALID_SHARE_SESSION_EPOCH
        session.epoch = epoch + 1 if epoch < 0x7FFFFFFF else 1
        return session

    def _release(self, group_id: str, member_id: str, refs: Any) -> list[ShareKey]:
        changed = []
        for topic_id, index in list(refs):
            key = (group_id, topic_id, index)
            sp = self.partitions.get(key)
            if sp is not None and sp.release_member(member_id):
                changed.append(key)
                self._changed.notify(key)
        return changed

    def member_left(self, group_id: str, member_id: str) -> None:
        """A member's group session timed out: its acquired records are released now rather than
        at their locks' expiry, and its share session goes."""
        self.sessions.pop((group_id, member_id), None)
        refs = [(k[1], k[2]) for k in self.partitions if k[0] == group_id]
        for key in self._release(group_id, member_id, set(refs)):
            if self._tg is not None:
                self._tg.start_soon(self._persist, key, self.partitions[key])

    def group_deleted(self, group_id: str) -> list[ShareKey]:
        """Drop the share-partitions of a deleted group; returns their keys (to tombstone)."""
        keys = [k for k in self.partitions if k[0] == group_id] + [k for k in self._stored if k[0] == group_id]
        for key in keys:
            sp = self.partitions.pop(key, None)
            if sp is not None:
                sp.reset(sp.start_offset)
            self._stored.pop(key, None)
        for skey in [s for s in self.sessions if s[0] == group_id]:
            del self.sessions[skey]
        return keys

    # ------------------------------------------------------------------ acknowledgement

    def _acknowledge(self, group_id: str, member_id: str, topic_id: uuid.UUID, index: int,
                     batches: AckBatches, answer: PartitionAnswer, changed: set[ShareKey]) -> None:
        answer.listed = True
        if len(batches) > MAX_ACK_BATCHES:
            answer.ack_error_code = ErrorCode.INVALID_REQUEST
            answer.ack_error_message = f"more than {MAX_ACK_BATCHES} acknowledgement batches"
            return
        if self._topic_name(topic_id) is None:
            answer.ack_error_code = ErrorCode.UNKNOWN_TOPIC_ID
            return
        sp = self.partitions.get((group_id, topic_id, index))
        if sp is None:
            sp = self.partition(group_id, topic_id, index)
            if sp is None:
                answer.ack_error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                return
        try:
            sp.acknowledge(member_id, batches)
        except AcknowledgeError as e:
            answer.ack_error_code = e.code
            answer.ack_error_message = str(e)
            return
        key = (group_id, topic_id, index)
        changed.add(key)
        self._changed.notify(key)

    async def _write(self, changed: set[ShareKey], answers: dict[PartitionRef, PartitionAnswer]) -> None:
        """Persist the changed share-partitions before the answer goes out."""
        for key in sorted(changed, key=lambda k: (k[1].int, k[2])):
            sp = self.partitions.get(key)
            if sp is None:
                continue  # dropped while the request waited (topic or group deleted): its state is tombstoned
            code = await self._persist(key, sp)
            answer = answers.get((key[1], key[2]))
            if code != ErrorCode.NONE and answer is not None and answer.ack_error_code == ErrorCode.NONE:
                answer.ack_error_code = ErrorCode.COORDINATOR_NOT_AVAILABLE

    async def acknowledge(self, group_id: str, member_id: str, epoch: int,
                          acks: dict[PartitionRef, AckBatches]) -> tuple[ErrorCode, dict[PartitionRef, PartitionAnswer]]:
        """ShareAcknowledge: (request error, per-partition answers)."""
        if not member_id:
            return ErrorCode.UNKNOWN_MEMBER_ID, {}
        await self._until_loaded()
        session = self._session(group_id, member_id, epoch, acknowledge_only=True)
        if isinstance(session, ErrorCode):
            return session, {}
        answers: dict[PartitionRef, PartitionAnswer] = {}
        changed: set[ShareKey] = set()
        for (topic_id, index), batches in acks.items():
            answer = answers[(topic_id, index)] = PartitionAnswer()
            self._acknowledge(group_id, member_id, topic_id, index, batches, answer, changed)
        if epoch == FINAL_EPOCH:
            self.sessions.pop((group_id, member_id), None)
            changed.update(self._release(group_id, member_id, session.partitions))
        await self._write(changed, answers)
        return ErrorCode.NONE, answers

    # ------------------------------------------------------------------ fetch

    async def fetch(self, group_id: str, member_id: str, epoch: int, *, fetch: list[PartitionRef],
                    forget: list[PartitionRef], acks: dict[PartitionRef, AckBatches], max_wait_ms: int,
                    min_bytes: int, max_bytes: int, max_records: int
                    ) -> tuple[ErrorCode, str | None, dict[PartitionRef, PartitionAnswer]]:
        """ShareFetch: acknowledge, then acquire from the session's partitions.

        Returns (request error, its message, per-partition answers in response order).
        """
        if not member_id:
            return ErrorCode.UNKNOWN_MEMBER_ID, None, {}
        if epoch == FINAL_EPOCH and fetch:
            return ErrorCode.INVALID_REQUEST, "a final ShareFetch must not fetch partitions", {}
        if epoch == INITIAL_EPOCH and acks:
            # As Kafka: nothing can be acquired before the session opens, so nothing to acknowledge.
            return ErrorCode.INVALID_REQUEST, "acknowledgements in the ShareFetch opening a share session", {}
        await self._until_loaded()
        session = self._session(group_id, member_id, epoch, acknowledge_only=False)
        if isinstance(session, ErrorCode):
            return session, None, {}
        for ref in fetch:
            session.partitions[ref] = None
        for ref in forget:
            session.partitions.pop(ref, None)
        answers: dict[PartitionRef, PartitionAnswer] = {}
        changed: set[ShareKey] = set()
        for ref, batches in acks.items():
            answer = answers.setdefault(ref, PartitionAnswer())
            self._acknowledge(group_id, member_id, ref[0], ref[1], batches, answer, changed)
        if epoch == FINAL_EPOCH:
            self.sessions.pop((group_id, member_id), None)
            changed.update(self._release(group_id, member_id, session.partitions))
            await self._write(changed, answers)
            return ErrorCode.NONE, None, answers
        # As Kafka: no bytes or records to fetch (MaxBytes or MaxRecords 0) is an acknowledge-only request.
        refs = list(session.partitions) if max_bytes > 0 and max_records > 0 else []
        for ref in refs:
            answers.setdefault(ref, PartitionAnswer())
        deadline = self.clock.monotonic() + max(max_wait_ms, 0) / 1000.0
        timed_out = False
        while True:
            got = await self._acquire_all(group_id, member_id, refs, answers, max_bytes, max_records, changed)
            remaining = deadline - self.clock.monotonic()
            # The time-out is checked apart from the clock too: a manual clock's wait may end in real time.
            if got or remaining <= 0 or not refs or timed_out:
                break
            timed_out = await self._wait(group_id, refs, remaining)
        await self._write(changed, answers)
        return ErrorCode.NONE, None, answers

    async def _acquire_all(self, group_id: str, member_id: str, refs: list[PartitionRef],
                           answers: dict[PartitionRef, PartitionAnswer], max_bytes: int, max_records: int,
                           changed: set[ShareKey]) -> int:
        """One pass over the session's partitions: read each from its next fetch offset and
        acquire what can be; returns the records acquired."""
        reads: list[tuple[TopicPartition, PartitionFetch]] = []
        parts: list[tuple[PartitionRef, SharePartition]] = []
        for ref in refs:
            answer = answers[ref]
            if self._topic_name(ref[0]) is None:
                answer.error_code, answer.listed = ErrorCode.UNKNOWN_TOPIC_ID, True
                continue
            sp = self.partition(group_id, ref[0], ref[1])
            if sp is None:
                answer.error_code, answer.listed = ErrorCode.NOT_LEADER_OR_FOLLOWER, True
                continue
            if not sp.can_acquire():
                continue
            reads.append((TopicPartition(sp.topic, sp.partition), PartitionFetch(sp.next_fetch_offset(), max_bytes)))
            parts.append((ref, sp))
        if not reads:
            return 0
        results = await self._read(reads, FetchParams(max_wait_ms=0, min_bytes=0, max_bytes=max_bytes,
                                                      isolation_level=self._isolation(group_id)))
        total = 0
        budget = max(max_records, 1)
        for (ref, sp), (_, result) in zip(parts, results, strict=True):
            answer = answers[ref]
            if result.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                sp.move_start(result.log_start_offset if result.log_start_offset >= 0 else sp.start_offset)
                continue
            if result.error_code != ErrorCode.NONE:
                answer.error_code, answer.listed = result.error_code, True
                continue
            data = bytes(result.records)
            if not data or budget - total <= 0:
                continue
            headers = [(pos, h) for pos, h in iter_headers(data)]
            skipped = _aborted_batches([h for _, h in headers], result.aborted_transactions or [])
            acquired = sp.acquire(member_id, [(h.base_offset, h.base_offset + h.last_offset_delta,
                                               h.is_control or i in skipped) for i, (_, h) in enumerate(headers)],
                                  budget - total, log_start_offset=result.log_start_offset)
            if not acquired:
                continue
            first, last = acquired[0].first_offset, acquired[-1].last_offset
            keep = bytearray()
            for i, (pos, h) in enumerate(headers):
                if h.base_offset + h.last_offset_delta >= first and h.base_offset <= last and not h.is_control \
                        and i not in skipped:
                    keep += data[pos:pos + h.size]
            answer.records += bytes(keep)
            answer.acquired += acquired
            answer.listed = True
            total += sum(a.last_offset - a.first_offset + 1 for a in acquired)
            changed.add((group_id, ref[0], ref[1]))
        return total

    def _isolation(self, group_id: str) -> int:
        committed = (self.group_setting(group_id, "share.isolation.level") or "").lower() == "read_committed"
        return READ_COMMITTED if committed else READ_UNCOMMITTED

    async def _wait(self, group_id: str, refs: list[PartitionRef], remaining: float) -> bool:
        """Sleep until an append to a watched partition, a lock released or ``remaining`` seconds
        pass; whether the time ran out."""
        keys = [(group_id, topic_id, index) for topic_id, index in refs]
        tails: list[tuple[TopicPartition, PartitionFetch]] = []
        for key in keys:
            sp = self.partitions.get(key)
            if sp is not None and sp.can_acquire():
                tails.append((TopicPartition(sp.topic, sp.partition), PartitionFetch(sp.end_offset, 1)))
        with self._changed.watch(keys) as event, self.clock.move_on_after(remaining) as scope:
            async with anyio.create_task_group() as tg:
                async def appended() -> None:
                    # At the isolation level records are acquired at: a read_committed group
                    # waits for the stable offset to move, not for an open transaction's records.
                    await self._read(tails, FetchParams(max_wait_ms=int(remaining * 1000) + 1, min_bytes=1,
                                                        isolation_level=self._isolation(group_id)))
                    tg.cancel_scope.cancel()

                async def released() -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                if tails:
                    tg.start_soon(appended)
                tg.start_soon(released)
        return scope.cancelled_caught


def _aborted_batches(headers: Sequence[BatchHeader], aborted: Sequence[tuple[int, int]]) -> set[int]:
    """Indexes of the batches of aborted transactions (read_committed share groups archive them,
    as Kafka does, instead of delivering them): a producer's transactional batches from an
    aborted transaction's first offset up to that producer's next control marker."""
    starts = sorted(aborted, key=lambda a: a[1])
    open_aborted: set[int] = set()
    out: set[int] = set()
    k = 0
    for i, h in enumerate(headers):
        while k < len(starts) and starts[k][1] <= h.base_offset:
            open_aborted.add(starts[k][0])
            k += 1
        if h.is_control:
            open_aborted.discard(h.producer_id)
        elif h.is_transactional and h.producer_id in open_aborted:
            out.add(i)
    return out
