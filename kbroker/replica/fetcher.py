"""The follower side of replication: Kafka's ReplicaFetcherManager and ReplicaFetcherThread.

:class:`ReplicaFetchers` keeps the partitions this broker follows and runs one task per
source broker (the partitions' leader; ``num.replica.fetchers`` tasks and connections per
broker when above 1, partitions spread as Kafka does). Each task, over one
:class:`PeerConnection`:

- truncates partitions newly added (a new leader or epoch) with OffsetForLeaderEpoch,
  Kafka's pre-KIP-595 path: the log's latest epoch is sent, the follower truncates to the
  leader's end offset of that epoch (or of the largest epoch below it both sides know,
  asking again until the epochs agree); an undefined answer truncates to the high watermark;
- then fetches (Fetch v12, ``replica_id`` = this broker) from each log's end offset,
  appends whole batches as they are (``append_as_follower``), sets the follower's high
  watermark to ``min(leader HW, LEO)`` and moves its log start up to the leader's;
- handles OFFSET_OUT_OF_RANGE with ListOffsets (leader's end below ours: truncate to it;
  leader's start above ours: start over empty at it), parks a fenced partition
  (FENCED_LEADER_EPOCH) until :meth:`ReplicaFetchers.add` brings a new state, and backs off
  after connection failures and other errors (UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER:
  the leader has not learned of its leadership yet).

A slow or dead leader only stalls its own task. Log changes happen on the event loop,
between awaits, so a partition moving to another leader's task never sees a half-done one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
from construct import Container

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.config import ConfigHolder
from kbroker.log.errors import LogError
from kbroker.records.batch import BatchError, iter_headers
from kbroker.replica.peer import Connector, PeerConnection, PeerError, inter_broker_connector
from kbroker.replica.types import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

log = logging.getLogger(__name__)

FETCH, LIST_OFFSETS, OFFSET_FOR_LEADER_EPOCH = 1, 2, 23
FETCH_VERSION = 12
LIST_OFFSETS_VERSION = 9
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
#: A fetch without a session (KIP-227's FINAL_EPOCH with session id 0): every partition, every time.
NO_SESSION_EPOCH = -1
UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1
#: Errors after which a partition is retried after ``replica.fetch.backoff.ms``: the leader
#: (or its metadata) is behind this broker's view, or a transient fault.
RETRIABLE = frozenset({
    ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.REPLICA_NOT_AVAILABLE, ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.REQUEST_TIMED_OUT, ErrorCode.UNKNOWN_SERVER_ERROR,
})


class FollowerLog(Protocol):
    """What following needs of a partition's log (:class:`~kbroker.log.PartitionLog`)."""

    @property
    def log_start_offset(self) -> int: ...
    @property
    def log_end_offset(self) -> int: ...
    @property
    def high_watermark(self) -> int: ...
    @property
    def latest_epoch(self) -> int: ...
    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...
    def append_as_follower(self, records: bytes | memoryview) -> Any: ...
    def truncate_to(self, offset: int) -> None: ...
    def truncate_fully_and_start_at(self, offset: int) -> None: ...
    def update_high_watermark(self, offset: int) -> int: ...
    def detach_records_before(self, offset: int) -> tuple[int, list[Any]]: ...
    def delete_segments_async(self, segments: Sequence[Any]) -> int: ...


def whole_batches(records: bytes | memoryview) -> memoryview:
    """``records`` without a partial batch at its end (a fetch stops at its size limit)."""
    end = 0
    for pos, header in iter_headers(records):
        end = pos + header.size
    return memoryview(records)[:end]


def truncation_offset(plog: FollowerLog, leader_epoch: int, leader_end_offset: int,
                      high_watermark: int) -> tuple[int, bool]:
    """Kafka's ``getOffsetTruncationState``: where to truncate after the leader answered
    ``(leader_epoch, leader_end_offset)`` for this log's latest epoch (or a diverging epoch),
    and whether the truncation is complete (False: ask again with the new latest epoch)."""
    leo = plog.log_end_offset
    if leader_end_offset == UNDEFINED_OFFSET:
        return high_watermark, True  # the leader knows nothing of the epoch: keep what is committed
    if leader_epoch == UNDEFINED_EPOCH:
        return min(leader_end_offset, leo), True
    follower_epoch, follower_end = plog.end_offset_for_epoch(leader_epoch)
    if follower_epoch == UNDEFINED_EPOCH or follower_end == UNDEFINED_OFFSET:
        # No epoch of ours at or below the leader's: the leader's offset is the safe bound.
        return min(leader_end_offset, leo), True
    if follower_epoch != leader_epoch:
        # We do not know the leader's epoch: cut to the end of our largest epoch below it and ask again.
        return min(follower_end, leo), False
    return min(follower_end, leader_end_offset, leo), True


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, as a signed 32-bit int)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def fetcher_id(tp: TopicPartition, num_fetchers: int) -> int:
    """Which of a leader's ``num_fetchers`` connections fetches ``tp`` (Kafka's
    ``AbstractFetcherManager.getFetcherId``: ``abs(31 * topic.hashCode + partition) % n``)."""
    h = (31 * java_string_hash(tp.topic) + tp.partition) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    # Kafka's Utils.abs maps Integer.MIN_VALUE to 0.
    return (0 if h == -(1 << 31) else abs(h)) % num_fetchers


@dataclass(eq=False)
class _Partition:
    """One followed partition's fetch state (Kafka's PartitionFetchState)."""

    tp: TopicPartition
    leader: int
    leader_epoch: int
    #: The task fetching it: (leader, fetcher id).
    source: tuple[int, int]
    fetch_offset: int = -1
    truncating: bool = True
    #: Fenced by the leader: waits for :meth:`ReplicaFetchers.add` with a new state.
    parked: bool = False
    #: Monotonic time before which the partition is not fetched (back-off after an error).
    delayed_until: float = 0.0


class ReplicaFetchers:
    """The partitions this broker follows and one fetching task per leader broker."""

    def __init__(self, *, node_id: int, config: ConfigHolder, clock: Clock,
                 endpoint: Callable[[int], tuple[str, int] | None],
                 logs: Callable[[str, int], FollowerLog | None],
                 on_change: Callable[[TopicPartition], None],
                 connect: Connector | None = None) -> None:
        """``endpoint``: a broker's inter-broker ``(host, port)`` (None: unknown or not alive);
        ``logs``: the local log of a partition; ``on_change``: called after appends,
        truncations and high watermark moves; ``connect``: opens a stream to a broker
        (default: as the inter-broker listener's security protocol says, see
        :func:`~kbroker.replica.peer.inter_broker_connector`; a ConfigError here when its
        TLS or SASL settings cannot work)."""
        self.node_id = node_id
        self.config = config
        self.clock = clock
        self._endpoint = endpoint
        self._logs = logs
        self._on_change = on_change
        self._connect = connect or inter_broker_connector(config.current)
        self.client_id = f"kbroker-replica-{node_id}"
        self._partitions: dict[TopicPartition, _Partition] = {}
        #: By (leader, fetcher id): ``num.replica.fetchers`` connections per leader.
        self._sources: dict[tuple[int, int], _SourceFetcher] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopped = False

    # -- the seam the replica manager uses ------------------------------------------------------
    def add(self, tp: TopicPartition, leader: int, leader_epoch: int) -> None:
        """Follow ``tp`` from ``leader`` at ``leader_epoch``; a new leader or epoch truncates
        first, the same ones keep the current state (even a parked one)."""
        tp = TopicPartition(*tp)
        current = self._partitions.get(tp)
        if current is not None and current.leader == leader and current.leader_epoch == leader_epoch:
            return
        if current is not None:
            self._detach(current)
        key = (leader, fetcher_id(tp, int(self._setting("num.replica.fetchers"))))
        state = _Partition(tp, leader, leader_epoch, key)
        self._partitions[tp] = state
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = _SourceFetcher(self, *key)
            if self._tg is not None and not self._stopped:
                self._tg.start_soon(source.run, name=source.name)
        source.partitions[tp] = state
        source.wake()

    def remove(self, tp: TopicPartition) -> None:
        """Stop following ``tp`` (this broker leads it now, or is no replica of it)."""
        state = self._partitions.pop(TopicPartition(*tp), None)
        if state is not None:
            self._detach(state)

    def following(self, tp: TopicPartition) -> tuple[int, int] | None:
        """``(leader, leader epoch)`` ``tp`` is followed from, or None."""
        state = self._partitions.get(TopicPartition(*tp))
        return None if state is None else (state.leader, state.leader_epoch)

    def parked(self, tp: TopicPartition) -> bool:
        """True while ``tp`` was fenced by its leader and waits for a new leader epoch."""
        state = self._partitions.get(TopicPartition(*tp))
        return state is not None and state.parked

    def fetch_offset(self, tp: TopicPartition) -> int | None:
        """The offset ``tp`` is fetched from next (None: not fetching: truncating or not followed)."""
        state = self._partitions.get(TopicPartition(*tp))
        return None if state is None or state.truncating else state.fetch_offset

    @property
    def sources(self) -> set[tuple[int, int]]:
        """``(leader, fetcher id)`` of each fetching task (an idle task retires)."""
        return set(self._sources)

    def _detach(self, state: _Partition) -> None:
        source = self._sources.get(state.source)
        if source is not None and source.partitions.get(state.tp) is state:
            del source.partitions[state.tp]
            source.wake()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start fetching in ``tg`` (partitions added before are fetched from now on)."""
        self._tg = tg
        for source in self._sources.values():
            tg.start_soon(source.run, name=source.name)

    async def stop(self) -> None:
        """Stop every fetching task and close their connections; waits for them to end."""
        self._stopped = True
        sources = list(self._sources.values())
        for source in sources:
            source.cancel()
        for source in sources:
            await source.wait_done()

    # -- helpers for the per-leader tasks -----------------------------------------------------------
    def _setting(self, key: str) -> Any:
        return self.config.current.get(key)

    def _log(self, tp: TopicPartition) -> FollowerLog | None:
        return self._logs(tp.topic, tp.partition)

    def _changed(self, tp: TopicPartition) -> None:
        try:
            self._on_change(tp)
        except Exception:  # a listener's bug must not stop replication
            log.exception("partition change listener failed for %s", tp)


def _by_topic(items: Iterable[tuple[TopicPartition, dict[str, Any]]], key: str) -> list[dict[str, Any]]:
    """Request topics: ``[{key: topic, "partitions": [...]}]`` in first-seen order."""
    topics: dict[str, list[dict[str, Any]]] = {}
    for tp, part in items:
        topics.setdefault(tp.topic, []).append(part)
    return [{key: topic, "partitions": parts} for topic, parts in topics.items()]


class _SourceFetcher:
    """The task fetching every partition led by one broker (Kafka's ReplicaFetcherThread)."""

    def __init__(self, owner: ReplicaFetchers, leader: int, fetcher: int) -> None:
        self.owner = owner
        self.leader = leader
        self.key = (leader, fetcher)
        self.name = f"replica fetcher {fetcher} from broker {leader}"
        self.partitions: dict[TopicPartition, _Partition] = {}
        self._wake = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False
        self._done = anyio.Event()
        self._started = False
        self.peer: PeerConnection | None = None

    def wake(self) -> None:
        self._wake.set()

    def cancel(self) -> None:
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait_done(self) -> None:
        if self._started:
            await self._done.wait()

    async def run(self) -> None:
        """Fetch until no partition is left or the fetchers stop."""
        self._started = True
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:
                    scope.cancel()
                await self._loop()
        finally:
            if self.owner._sources.get(self.key) is self:
                del self.owner._sources[self.key]
            if self.peer is not None:
                await self.peer.aclose()
            self._done.set()

    async def _sleep(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: without limit) or until :meth:`wake`."""
        event = self._wake
        with anyio.move_on_after(seconds if seconds is not None else float("inf")):
            await event.wait()
        if event.is_set():
            self._wake = anyio.Event()

    def _backoff_s(self) -> float:
        return float(self.owner._setting("replica.fetch.backoff.ms")) / 1000.0

    def _delay(self, states: Iterable[_Partition]) -> None:
        until = self.owner.clock.monotonic() + self._backoff_s()
        for state in states:
            state.delayed_until = until

    def _current(self, state: _Partition) -> bool:
        """Whether ``state`` is still what this task follows (nothing replaced or removed it)."""
        return self.partitions.get(state.tp) is state

    async def _peer(self) -> PeerConnection | None:
        """The connection to the leader's current endpoint (a moved endpoint gets a new one)."""
        address = self.owner._endpoint(self.leader)
        if address is None:
            return None
        host, port = address
        if self.peer is not None:
            if (self.peer.host, self.peer.port) == (host, port):
                return self.peer
            await self.peer.aclose()
        self.peer = PeerConnection(
            host, port, client_id=self.owner.client_id,
            timeout_s=float(self.owner._setting("replica.socket.timeout.ms")) / 1000.0,
            backoff_s=self._backoff_s(), connect=self.owner._connect, monotonic=self.owner.clock.monotonic)
        return self.peer

    async def _loop(self) -> None:
        while True:
            if not self.partitions:
                # Idle: retire now (nothing awaited since the check), a later add starts a new task.
                if self.owner._sources.get(self.key) is self:
                    del self.owner._sources[self.key]
                return
            try:
                await self._step()
            except Exception:
                # As Kafka's fetcher thread: a fault (a log that cannot be written, a bug) costs
                # this leader's partitions a back-off, never the broker.
                log.exception("replica fetcher %s failed; retrying after the back-off", self.name)
                self._delay(self.partitions.values())

    async def _step(self) -> None:
        """One round: truncate what needs it, else fetch what is ready, else wait."""
        peer = await self._peer()
        if peer is None:
            log.debug("no endpoint for broker %d; %d partitions wait", self.leader, len(self.partitions))
            await self._sleep(self._backoff_s())
            return
        now = self.owner.clock.monotonic()
        ready = [s for s in self.partitions.values() if not s.parked and s.delayed_until <= now]
        truncating = [s for s in ready if s.truncating]
        if truncating:
            await self._truncate(peer, truncating)
        elif ready:
            await self._fetch(peer, ready)
        else:
            delays = [s.delayed_until - now for s in self.partitions.values() if not s.parked]
            await self._sleep(max(0.0, min(delays)) if delays else None)

    # -- truncation (OffsetForLeaderEpoch) --------------------------------------------------------
    async def _truncate(self, peer: PeerConnection, states: list[_Partition]) -> None:
        asked: dict[TopicPartition, tuple[_Partition, int]] = {}
        for state in states:
            plog = self.owner._log(state.tp)
            if plog is None:
                log.warning("no local log for %s; retrying", state.tp)
                self._delay([state])
                continue
            epoch = plog.latest_epoch
            if epoch == UNDEFINED_EPOCH:
                # No epochs (Kafka's partitionsWithoutEpochs): keep only what was committed.
                self._truncate_log(state.tp, plog, plog.high_watermark)
                self._start_fetching(state, plog)
                continue
            asked[state.tp] = (state, epoch)
        if not asked:
            return
        body = {"replica_id": self.owner.node_id, "topics": _by_topic(
            ((tp, {"partition": tp.partition, "current_leader_epoch": state.leader_epoch, "leader_epoch": epoch})
             for tp, (state, epoch) in asked.items()), "topic")}
        try:
            resp = await peer.request(OFFSET_FOR_LEADER_EPOCH, OFFSET_FOR_LEADER_EPOCH_VERSION, body)
        except PeerError as e:
            log.warning("OffsetForLeaderEpoch to broker %d failed: %s", self.leader, e)
            self._delay(state for state, _ in asked.values())
            return
        answered: set[TopicPartition] = set()
        for topic in resp.topics:
            for part in topic.partitions:
                tp = TopicPartition(topic.topic, part.partition)
                entry = asked.get(tp)
                if entry is None:
                    continue
                answered.add(tp)
                state, epoch = entry
                if not self._current(state) or not state.truncating:
                    continue
                if part.error_code != ErrorCode.NONE:
                    self._partition_error(state, part.error_code, "OffsetForLeaderEpoch")
                    continue
                if part.end_offset < UNDEFINED_OFFSET:
                    # A broken answer: truncating to it would wipe the log and restart it below 0.
                    log.warning("%s: broker %d answered the end offset %d for epoch %d; retrying after the "
                                "back-off", tp, self.leader, part.end_offset, part.leader_epoch)
                    self._delay([state])
                    continue
                plog = self.owner._log(tp)
                if plog is None:
                    self._delay([state])
                    continue
                offset, complete = truncation_offset(plog, part.leader_epoch, part.end_offset, plog.high_watermark)
                self._truncate_log(tp, plog, offset)
                if not complete and plog.latest_epoch >= epoch:
                    complete = True  # no progress possible: the epochs cannot get closer
                if complete:
                    self._start_fetching(state, plog)
        missing = [state for tp, (state, _) in asked.items() if tp not in answered]
        if missing:
            log.warning("broker %d did not answer OffsetForLeaderEpoch for %s", self.leader,
                        [s.tp for s in missing])
            self._delay(missing)

    def _start_fetching(self, state: _Partition, plog: FollowerLog) -> None:
        state.truncating = False
        state.fetch_offset = plog.log_end_offset

    def _truncate_log(self, tp: TopicPartition, plog: FollowerLog, offset: int) -> None:
        if offset < plog.log_end_offset:
            if offset < plog.high_watermark:
                log.warning("truncating %s to %d, below its high watermark %d", tp, offset, plog.high_watermark)
            else:
                log.info("truncating %s from %d to %d", tp, plog.log_end_offset, offset)
            plog.truncate_to(offset)
            self.owner._changed(tp)

    # -- fetching -------------------------------------------------------------------------------
    async def _fetch(self, peer: PeerConnection, states: list[_Partition]) -> None:
        owner = self.owner
        partition_max = int(owner._setting("replica.fetch.max.bytes"))
        requested: dict[TopicPartition, tuple[_Partition, int]] = {}
        parts: list[tuple[TopicPartition, dict[str, Any]]] = []
        for state in states:
            plog = owner._log(state.tp)
            if plog is None:
                log.warning("no local log for %s; retrying", state.tp)
                self._delay([state])
                continue
            state.fetch_offset = plog.log_end_offset
            requested[state.tp] = (state, state.fetch_offset)
            parts.append((state.tp, {
                "partition": state.tp.partition, "current_leader_epoch": state.leader_epoch,
                "fetch_offset": state.fetch_offset, "last_fetched_epoch": plog.latest_epoch,
                "log_start_offset": plog.log_start_offset, "partition_max_bytes": partition_max}))
        if not requested:
            return
        wait_ms = int(owner._setting("replica.fetch.wait.max.ms"))
        body = {
            "replica_id": owner.node_id, "max_wait_ms": wait_ms,
            "min_bytes": int(owner._setting("replica.fetch.min.bytes")),
            "max_bytes": int(owner._setting("replica.fetch.response.max.bytes")),
            "isolation_level": 0, "session_id": 0, "session_epoch": NO_SESSION_EPOCH,
            "topics": _by_topic(parts, "topic"), "forgotten_topics_data": [], "rack_id": "",
        }
        # The socket timeout bounds the answer, but never below the leader's own wait.
        timeout_s = max(float(owner._setting("replica.socket.timeout.ms")), wait_ms + 1000.0) / 1000.0
        started = owner.clock.monotonic()
        try:
            resp = await peer.request(FETCH, FETCH_VERSION, body, timeout_s=timeout_s)
        except PeerError as e:
            log.warning("fetch from broker %d failed: %s", self.leader, e)
            self._delay(state for state, _ in requested.values())
            return
        if resp.error_code != ErrorCode.NONE:
            log.warning("broker %d refused the fetch: error %d", self.leader, resp.error_code)
            self._delay(state for state, _ in requested.values())
            return
        answered: set[TopicPartition] = set()
        for topic in resp.responses:
            for part in topic.partitions:
                tp = TopicPartition(topic.topic, part.partition_index)
                entry = requested.get(tp)
                if entry is None or tp in answered:
                    continue
                answered.add(tp)
                state, offset = entry
                if not self._current(state) or state.truncating or state.fetch_offset != offset:
                    continue  # added again, removed or truncated while the fetch was out
                await self._process(peer, state, offset, part)
        missing = [state for tp, (state, _) in requested.items() if tp not in answered and self._current(state)]
        if missing:
            # A sessionless fetch is answered for every partition: a leader leaving some out at
            # once would otherwise be asked again in a tight loop.
            log.warning("broker %d did not answer the fetch for %s", self.leader, [s.tp for s in missing])
            self._delay(missing)
        if not any(part.records for topic in resp.responses for part in topic.partitions):
            # A leader holds a fetch with nothing to read for max_wait_ms: one answering empty at
            # once (broken) is asked again only when that time has passed, or a partition is added.
            rest = wait_ms / 1000.0 - (owner.clock.monotonic() - started)
            if rest > 0:
                await self._sleep(rest)

    async def _process(self, peer: PeerConnection, state: _Partition, offset: int, part: Container) -> None:
        tp = state.tp
        plog = self.owner._log(tp)
        if plog is None or plog.log_end_offset != offset:
            self._delay([state])
            return
        error = part.error_code
        if error == ErrorCode.NONE:
            diverging = part.diverging_epoch
            if diverging is not None and diverging.epoch >= 0 and diverging.end_offset >= 0:
                # As Kafka: records of a diverging answer are ignored; the next fetch brings them.
                target, complete = truncation_offset(plog, diverging.epoch, diverging.end_offset,
                                                     plog.high_watermark)
                self._truncate_log(tp, plog, target)
                state.truncating = not complete
                if plog.log_end_offset == offset:
                    # Nothing to cut (a leader's true divergence always is below our end): a leader
                    # answering so again and again would be asked in a tight loop.
                    log.warning("%s: broker %d answered a divergence at epoch %d offset %d, at or past our "
                                "end %d; retrying after the back-off", tp, self.leader, diverging.epoch,
                                diverging.end_offset, offset)
                    self._delay([state])
                state.fetch_offset = plog.log_end_offset
                return
            await self._append(state, plog, part)
        elif error == ErrorCode.OFFSET_OUT_OF_RANGE:
            await self._out_of_range(peer, state, plog)
        else:
            self._partition_error(state, error, "fetch")

    async def _append(self, state: _Partition, plog: FollowerLog, part: Container) -> None:
        tp = state.tp
        records = part.records or b""
        changed = False
        if records:
            batches = whole_batches(records)
            if not batches:
                # Not one whole batch: a corrupt answer, or a batch above our fetch size.
                log.warning("fetch of %s at %d returned %d bytes without a whole batch", tp,
                            state.fetch_offset, len(records))
                self._delay([state])
                return
            try:
                plog.append_as_follower(batches)
            except (LogError, BatchError, OSError) as e:
                log.error("cannot append fetched records to %s at %d: %s", tp, state.fetch_offset, e)
                self._delay([state])
                return
            changed = True
        state.fetch_offset = plog.log_end_offset
        hw = min(part.high_watermark, plog.log_end_offset)
        if hw >= 0 and hw != plog.high_watermark:
            plog.update_high_watermark(hw)
            changed = True
        leader_start = part.log_start_offset
        detached: list[Any] = []
        if plog.log_start_offset < leader_start <= plog.high_watermark:
            try:
                _, detached = plog.detach_records_before(leader_start)
            except LogError as e:
                log.warning("cannot move the log start of %s to %d: %s", tp, leader_start, e)
            else:
                changed = True
        if changed:
            self.owner._changed(tp)
        if detached:
            # Renaming many segments' files is disk work: off the event loop.
            await anyio.to_thread.run_sync(plog.delete_segments_async, detached)

    async def _out_of_range(self, peer: PeerConnection, state: _Partition, plog: FollowerLog) -> None:
        """Kafka's ``fetchOffsetAndTruncate``: the leader's end below ours truncates to it; its
        start above ours starts the log over at it."""
        tp = state.tp
        leader_end = await self._list_offset(peer, state, LATEST_TIMESTAMP)
        if leader_end is None or not self._current(state):
            return
        replica_end = plog.log_end_offset
        if leader_end < replica_end:
            log.warning("%s: leader %d ends at %d, below our end %d: truncating", tp, self.leader, leader_end,
                        replica_end)
            self._truncate_log(tp, plog, leader_end)
            state.fetch_offset = plog.log_end_offset
            return
        leader_start = await self._list_offset(peer, state, EARLIEST_TIMESTAMP)
        if leader_start is None or not self._current(state):
            return
        if leader_start > plog.log_end_offset:
            log.warning("%s: leader %d starts at %d, above our end %d: starting over there", tp, self.leader,
                        leader_start, plog.log_end_offset)
            plog.truncate_fully_and_start_at(leader_start)
            self.owner._changed(tp)
        state.fetch_offset = plog.log_end_offset

    async def _list_offset(self, peer: PeerConnection, state: _Partition, timestamp: int) -> int | None:
        body = {"replica_id": self.owner.node_id, "isolation_level": 0, "topics": [{
            "name": state.tp.topic, "partitions": [{
                "partition_index": state.tp.partition, "current_leader_epoch": state.leader_epoch,
                "timestamp": timestamp}]}]}
        try:
            resp = await peer.request(LIST_OFFSETS, LIST_OFFSETS_VERSION, body)
        except PeerError as e:
            log.warning("ListOffsets to broker %d failed: %s", self.leader, e)
            self._delay([state])
            return None
        for topic in resp.topics:
            for part in topic.partitions:
                if topic.name == state.tp.topic and part.partition_index == state.tp.partition:
                    if part.error_code != ErrorCode.NONE:
                        if self._current(state):
                            self._partition_error(state, part.error_code, "ListOffsets")
                        return None
                    if part.offset < 0:
                        # A broken answer: truncating or starting over at it would leave a log below 0.
                        log.warning("%s: ListOffsets from broker %d answered the offset %d; retrying after the "
                                    "back-off", state.tp, self.leader, part.offset)
                        self._delay([state])
                        return None
                    return int(part.offset)
        self._delay([state])
        return None

    def _partition_error(self, state: _Partition, error: int, what: str) -> None:
        if error == ErrorCode.FENCED_LEADER_EPOCH:
            # Our epoch is stale: the metadata will bring the new state through add().
            log.info("%s: %s fenced at leader epoch %d by broker %d; waiting for a new epoch", state.tp, what,
                     state.leader_epoch, self.leader)
            state.parked = True
            return
        level = logging.INFO if error in RETRIABLE else logging.WARNING
        log.log(level, "%s: %s from broker %d answered error %d; retrying", state.tp, what, self.leader, error)
        self._delay([state])


__all__ = ["FollowerLog", "ReplicaFetchers", "truncation_offset", "whole_batches"]
