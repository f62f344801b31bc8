"""Incremental fetch sessions (KIP-227).

A consumer's first fetch (session id 0, epoch 0) is a full fetch that creates a
session remembering its partitions. Later fetches (same id, next epoch) list only the
partitions whose fetch position changed plus those to forget, and the response lists
only partitions with news: records, a moved high watermark, last stable offset or log
start offset, or an error. Epoch -1 is a sessionless full fetch (and closes any
session named).

Partitions are keyed by topic name before Fetch v13 and by topic id from v13 on.
"""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.replica.types import FetchResult, PartitionFetch

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
#: Kafka's max.incremental.fetch.session.cache.slots and min...eviction.ms defaults.
MAX_SESSIONS = 1000
EVICTION_AFTER_S = 120.0
#: Partitions all sessions may hold together. A request can name millions of partitions
#: (of topics that need not exist); past this budget clients fetch sessionless instead.
MAX_CACHED_PARTITIONS = 200_000

TopicKey = str | uuid.UUID
PartitionKey = tuple[TopicKey, int]


def next_epoch(epoch: int) -> int:
    """The epoch that follows ``epoch`` (wrapping to 1, never back to 0)."""
    return 1 if epoch >= 0x7FFFFFFF else epoch + 1


@dataclass(slots=True)
class CachedPartition:
    """A session's partition: the fetch parameters and what the client was last told."""

    fetch: PartitionFetch
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1

    def must_respond(self, result: FetchResult) -> bool:
        """Whether an incremental response lists this partition; remembers what it sends."""
        respond = len(result.records) > 0
        if result.error_code != ErrorCode.NONE:
            # Forget the watermark so the partition is sent again once the error clears.
            self.high_watermark = -1
            return True
        if result.high_watermark != self.high_watermark:
            self.high_watermark = result.high_watermark
            respond = True
        if result.last_stable_offset != self.last_stable_offset:
            self.last_stable_offset = result.last_stable_offset
            respond = True
        if result.log_start_offset != self.log_start_offset:
            self.log_start_offset = result.log_start_offset
            respond = True
        return respond


@dataclass
class FetchSession:
    """One client's session: its partitions in fetch order and the epoch expected next."""

    id: int
    epoch: int
    uses_topic_ids: bool
    partitions: OrderedDict[PartitionKey, CachedPartition] = field(default_factory=OrderedDict)
    last_used: float = 0.0


class ContextKind(Enum):
    SESSIONLESS = "sessionless"
    FULL = "full"
    INCREMENTAL = "incremental"
    ERROR = "error"


@dataclass
class FetchContext:
    """How to serve one fetch request: the partitions to read and how to shape the answer."""

    kind: ContextKind
    cache: FetchSessionCache
    partitions: list[tuple[PartitionKey, PartitionFetch]]
    error_code: int = ErrorCode.NONE
    session: FetchSession | None = None
    uses_topic_ids: bool = False

    def respond(self, results: Sequence[tuple[PartitionKey, FetchResult]]
                ) -> tuple[int, list[tuple[PartitionKey, FetchResult]]]:
        """``(session_id, partitions to send)`` for the read ``results`` (in read order)."""
        if self.kind is ContextKind.ERROR:
            return INVALID_SESSION_ID, []
        if self.kind is ContextKind.SESSIONLESS:
            return INVALID_SESSION_ID, list(results)
        if self.kind is ContextKind.FULL:
            session_id = self.cache.create(self.uses_topic_ids, self.partitions, results)
            return session_id, list(results)
        session = self.session
        assert session is not None
        out: list[tuple[PartitionKey, FetchResult]] = []
        for key, result in results:
            cached = session.partitions.get(key)
            if cached is None:
                continue
            if cached.must_respond(result):
                out.append((key, result))
                if len(result.records):
                    # Fairness, as Kafka: partitions that returned data go to the back.
                    session.partitions.move_to_end(key)
        return session.id, out


class FetchSessionCache:
    """Every live fetch session, least recently used first."""

    def __init__(self, clock: Clock, max_sessions: int = MAX_SESSIONS,
                 eviction_after_s: float = EVICTION_AFTER_S,
                 max_partitions: int = MAX_CACHED_PARTITIONS) -> None:
        self.clock = clock
        self.max_sessions = max_sessions
        self.eviction_after_s = eviction_after_s
        self.max_partitions = max_partitions
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        #: Partitions held by all sessions together.
        self.partition_count = 0
        self._rng = random.Random()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: int) -> FetchSession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self.partition_count -= len(session.partitions)
        return session

    def _touch(self, session: FetchSession) -> None:
        session.last_used = self.clock.monotonic()
        self._sessions.move_to_end(session.id)

    def create(self, uses_topic_ids: bool, partitions: Sequence[tuple[PartitionKey, PartitionFetch]],
               results: Iterable[tuple[PartitionKey, FetchResult]]) -> int:
        """A new session holding ``partitions`` as just answered; 0 when the cache is full."""
        if self.partition_count + len(partitions) > self.max_partitions:
            return INVALID_SESSION_ID
        if len(self._sessions) >= self.max_sessions and not self._evict_one():
            return INVALID_SESSION_ID
        session_id = self._new_id()
        session = FetchSession(session_id, next_epoch(INITIAL_EPOCH), uses_topic_ids)
        for key, fetch in partitions:
            session.partitions[key] = CachedPartition(fetch)
        for key, result in results:
            cached = session.partitions.get(key)
            if cached is not None:
                cached.must_respond(result)
        self._sessions[session_id] = session
        self.partition_count += len(session.partitions)
        self._touch(session)
        return session_id

    def _evict_one(self) -> bool:
        # Kafka evicts stale sessions first; a busy cache refuses new ones rather than churn.
        oldest = next(iter(self._sessions.values()), None)
        if oldest is None or self.clock.monotonic() - oldest.last_used < self.eviction_after_s:
            return False
        self.remove(oldest.id)
        return True

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randint(1, 0x7FFFFFFF)
            if session_id not in self._sessions:
                return session_id

    # -- the per-request decision (Kafka's FetchManager.newContext) ------------------------
    def new_context(self, session_id: int, epoch: int, requested: Sequence[tuple[PartitionKey, PartitionFetch]],
                    forgotten: Iterable[PartitionKey], uses_topic_ids: bool) -> FetchContext:
        """Decide how to serve a fetch; incremental requests update their session here."""
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)  # a full fetch closes the session it names
            kind = ContextKind.FULL if epoch == INITIAL_EPOCH else ContextKind.SESSIONLESS
            return FetchContext(kind, self, list(requested), uses_topic_ids=uses_topic_ids)
        if epoch < 0:
            return FetchContext(ContextKind.ERROR, self, [], ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        session = self.get(session_id)
        if session is None:
            return FetchContext(ContextKind.ERROR, self, [], ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            return FetchContext(ContextKind.ERROR, self, [], ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        if session.uses_topic_ids != uses_topic_ids:
            return FetchContext(ContextKind.ERROR, self, [], ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR)
        before = len(session.partitions)
        for key, fetch in requested:
            cached = session.partitions.get(key)
            if cached is None:
                session.partitions[key] = CachedPartition(fetch)
            else:
                cached.fetch = fetch
        for key in forgotten:
            session.partitions.pop(key, None)
        self.partition_count += len(session.partitions) - before
        if self.partition_count > self.max_partitions:
            # Over budget: drop the session; the client's next full fetch goes sessionless.
            self.remove(session.id)
            return FetchContext(ContextKind.ERROR, self, [], ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if not session.partitions:
            # As Kafka: an emptied session is closed and the fetch answered sessionless.
            self.remove(session.id)
            return FetchContext(ContextKind.SESSIONLESS, self, [], uses_topic_ids=uses_topic_ids)
        session.epoch = next_epoch(session.epoch)
        self._touch(session)
        return FetchContext(ContextKind.INCREMENTAL, self, [(k, c.fetch) for k, c in session.partitions.items()],
                            session=session, uses_topic_ids=uses_topic_ids)
