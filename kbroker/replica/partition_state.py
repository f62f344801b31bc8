"""The leader's view of one replicated partition (Kafka's ``Partition`` and ``Replica``, leader side).

A :class:`LeaderState` exists for each partition this broker leads in a cluster. Followers
report their log end offsets through their fetches; from those the leader decides:

- which followers are caught up (``last_caught_up_ms``: the last time a fetch reached the
  leader's log end offset as it was at the read, or as it was at the previous fetch);
- when the ISR grows (a follower reached the high watermark and the start of the leader's
  epoch) and shrinks (a member not caught up for ``replica.lag.time.max.ms``), both proposed
  through the cluster's compare-and-swap, one change in flight at a time;
- the high watermark: the smallest log end offset over the "maximal" ISR (the committed ISR
  plus a member being added) and the followers caught up enough to join it, moved forward only
  while the ISR is at least the effective ``min.insync.replicas`` and this broker's lease is valid.

acks=all produces wait here for the high watermark to pass their last offset (Kafka's
``DelayedProduce`` and ``Partition.checkEnoughReplicasReachOffset``): each waiter is woken by
the advance that satisfies it, or by the loss of the leadership.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition

if TYPE_CHECKING:
    from kbroker.log import LogConfig, PartitionLog
    from kbroker.metadata.model import PartitionInfo

#: ``replica.selector.class`` value that turns on rack-aware follower fetching (KIP-392).
RACK_AWARE_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
#: A time long before any other on the monotonic scale: "never" for caught-up and fetch times.
NEVER_MS = -(1 << 62)


def effective_min_isr(config: LogConfig, info: PartitionInfo) -> int:
    """``min.insync.replicas``, at most the number of replicas (Kafka's ``Partition.effectiveMinIsr``:
    a setting above the replication factor does not make a partition unwritable with acks=all)."""
    return min(config.min_insync_replicas, max(len(info.replicas), 1))


class FollowerFetchers(Protocol):
    """The follower side: fetch a partition from its leader, or stop doing so."""

    def add(self, tp: TopicPartition, leader: int, leader_epoch: int) -> None:
        """Follow ``leader`` at ``leader_epoch`` (restarting when either changed)."""
        ...

    def remove(self, tp: TopicPartition) -> None:
        """Stop fetching ``tp``."""
        ...


class ReplicationSeam(Protocol):
    """What the replica manager needs from the cluster when partitions are replicated."""

    @property
    def fetchers(self) -> FollowerFetchers:
        """The follower side of this broker."""
        ...

    def lease_valid(self) -> bool:
        """Whether this broker's registration lease is known to be alive right now."""
        ...

    def alter_isr(self, expected: PartitionInfo, isr: list[int]) -> Awaitable[PartitionInfo | None]:
        """Compare-and-swap the ISR of ``expected``'s partition; the new state, or None when the
        partition changed meanwhile or this broker no longer leads it."""
        ...

    def rack_of(self, node_id: int) -> str | None:
        """The ``broker.rack`` of a live broker (None: unknown or no rack)."""
        ...

    def isr_eligible(self, node_id: int) -> bool:
        """Whether ``node_id`` may join an ISR: registered and not shutting down."""
        ...


@dataclass(slots=True)
class FollowerState:
    """What the leader knows of one follower (Kafka's ``ReplicaState``)."""

    #: The follower's log end offset (its last fetch offset); -1 unknown.
    log_end_offset: int = -1
    log_start_offset: int = -1
    #: The leader's log end offset at the follower's previous fetch.
    last_fetch_leader_leo: int = -1
    last_fetch_ms: int = NEVER_MS
    last_caught_up_ms: int = NEVER_MS

    def update(self, fetch_offset: int, log_start_offset: int, now_ms: int, leader_leo: int) -> None:
        """Record a fetch at ``fetch_offset`` read while the leader's log ended at ``leader_leo``.

        Caught up now when the fetch reached the leader's end; else caught up as of the previous
        fetch when this one reached where the leader ended then (a follower behind a steady
        trickle of small appends never equals the moving end, yet does not lag)."""
        if fetch_offset >= leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.log_start_offset = log_start_offset
        self.last_fetch_leader_leo = max(leader_leo, self.last_fetch_leader_leo)
        self.last_fetch_ms = now_ms

    def is_caught_up(self, leader_leo: int, now_ms: int, max_lag_ms: int) -> bool:
        """At the leader's end, or caught up within the last ``max_lag_ms``."""
        return leader_leo == self.log_end_offset or now_ms - self.last_caught_up_ms <= max_lag_ms


class LeaderState:
    """One partition led by this broker: its followers, ISR changes in flight, HW and acks waiters."""

    def __init__(self, tp: TopicPartition, info: PartitionInfo, plog: PartitionLog, node_id: int,
                 now_ms: int, lease_valid: Callable[[], bool],
                 isr_eligible: Callable[[int], bool] = lambda _: True) -> None:
        self.tp = tp
        self.info = info
        self.plog = plog
        self.node_id = node_id
        self.leader_epoch = info.leader_epoch
        #: The log end offset when this leadership epoch began: a follower must reach it to join the ISR.
        self.epoch_start_offset = plog.log_end_offset
        self._lease_valid = lease_valid
        self._isr_eligible = isr_eligible
        # As Kafka's resetReplicaState for a new leader: ISR members count as caught up now,
        # the others not at all (they must fetch before they hold the high watermark back).
        self.followers: dict[int, FollowerState] = {
            r: FollowerState(last_caught_up_ms=now_ms if r in info.isr else NEVER_MS)
            for r in info.replicas if r != node_id}
        #: The ISR proposed and not yet answered (one change in flight, as Kafka).
        self.pending_isr: list[int] | None = None
        #: acks=all waiters: (offset the high watermark must reach, event).
        self._waiters: list[tuple[int, anyio.Event]] = []
        #: DeleteRecords waiters: (offset the low watermark must reach, event).
        self._low_waiters: list[tuple[int, anyio.Event]] = []
        self.closed = False

    # -- partition state -------------------------------------------------------------------
    def update_info(self, info: PartitionInfo, now_ms: int) -> bool:
        """A newer state of the partition at the same leader epoch (ISR or replicas changed).

        Returns whether it was applied (an older partition epoch is ignored)."""
        if info.partition_epoch < self.info.partition_epoch:
            return False
        self.info = info
        for r in info.replicas:
            if r != self.node_id and r not in self.followers:
                self.followers[r] = FollowerState()
        for r in [r for r in self.followers if r not in info.replicas]:
            del self.followers[r]
        return True

    @property
    def isr(self) -> list[int]:
        """The committed ISR."""
        return self.info.isr

    def maximal_isr(self) -> set[int]:
        """The committed ISR plus a member being added (Kafka's maximalIsr: a pending shrink
        still counts the members it removes)."""
        isr = set(self.info.isr)
        if self.pending_isr is not None:
            isr.update(self.pending_isr)
        return isr

    def _replicas_in(self, members: list[int] | set[int]) -> int:
        """How many of ``members`` are replicas (this leader or a follower it tracks): an ISR
        member that is no replica (a broken or foreign partition state) holds no copy of the data."""
        return sum(1 for r in members if r == self.node_id or r in self.followers)

    def effective_min_isr(self) -> int:
        """``min.insync.replicas``, at most the number of replicas (as Kafka)."""
        return effective_min_isr(self.plog.config, self.info)

    # -- followers ---------------------------------------------------------------------------
    def update_follower(self, replica_id: int, fetch_offset: int, log_start_offset: int, now_ms: int,
                        leader_leo: int) -> bool:
        """Record a follower's fetch; returns whether its log end offset moved."""
        state = self.followers.get(replica_id)
        if state is None:
            return False
        before = state.log_end_offset
        start_before = state.log_start_offset
        state.update(fetch_offset, log_start_offset, now_ms, leader_leo)
        if self._low_waiters and state.log_start_offset != start_before:
            self.wake_low_waiters()
        return state.log_end_offset != before

    def isr_expansion(self, replica_id: int) -> list[int] | None:
        """The ISR with ``replica_id`` added, when it should join (Kafka's maybeExpandIsr): no
        change in flight, not a member, and its log end offset at the high watermark and at the
        start of this leader epoch (so it holds every committed record of earlier epochs)."""
        if self.pending_isr is not None or replica_id in self.info.isr:
            return None
        if not self._isr_eligible(replica_id):
            return None  # as Kafka: a fenced or shutting-down broker does not join an ISR
        state = self.followers.get(replica_id)
        if state is None:
            return None
        leo = state.log_end_offset
        if leo < self.plog.high_watermark or leo < self.epoch_start_offset:
            return None
        return self._ordered(set(self.info.isr) | {replica_id})

    def out_of_sync(self, now_ms: int, max_lag_ms: int) -> list[int]:
        """ISR members (the leader aside) not caught up within ``max_lag_ms``; none while a
        change is in flight."""
        if self.pending_isr is not None:
            return []
        leo = self.plog.log_end_offset
        out = []
        for r in self.info.isr:
            if r == self.node_id:
                continue
            state = self.followers.get(r)
            if state is None or not state.is_caught_up(leo, now_ms, max_lag_ms):
                out.append(r)
        return out

    def isr_shrink(self, now_ms: int, max_lag_ms: int) -> list[int] | None:
        """The ISR without its out-of-sync members, or None when none is out of sync."""
        out = self.out_of_sync(now_ms, max_lag_ms)
        if not out:
            return None
        return [r for r in self.info.isr if r not in out]

    def _ordered(self, members: set[int]) -> list[int]:
        """``members`` in replica order (any not among the replicas last)."""
        ordered = [r for r in self.info.replicas if r in members]
        ordered.extend(sorted(members.difference(ordered)))
        return ordered

    # -- high watermark ----------------------------------------------------------------------
    def maybe_increment_hw(self, now_ms: int, max_lag_ms: int) -> bool:
        """Move the high watermark to the smallest log end offset of the maximal ISR and of the
        followers caught up enough to join it; returns whether it moved (and wakes the waiters
        it satisfies). Never while under the effective min ISR, nor while the lease is not valid."""
        if self.closed or self._replicas_in(self.info.isr) < self.effective_min_isr() or not self._lease_valid():
            return False
        plog = self.plog
        leo = plog.log_end_offset
        new_hw = leo
        maximal = self.maximal_isr() if self.pending_isr is not None else self.info.isr
        for r, state in self.followers.items():
            # A follower caught up but not in the ISR yet is waited for too: else it could never
            # reach a high watermark that runs ahead of it (Kafka's shouldWaitForReplicaToJoinIsr).
            if state.log_end_offset < new_hw and (r in maximal or (state.is_caught_up(leo, now_ms, max_lag_ms)
                                                                   and self._isr_eligible(r))):
                new_hw = state.log_end_offset
        old = plog.high_watermark
        if new_hw <= old:
            return False
        hw = plog.update_high_watermark(new_hw)
        if hw <= old:
            return False
        self._wake(hw)
        return True

    # -- DeleteRecords ---------------------------------------------------------------------------
    def low_watermark(self) -> int:
        """The smallest log start offset of this replica and the followers on live brokers
        (Kafka's ``Partition.lowWatermarkIfLeader``; a follower that has not fetched yet: -1)."""
        low = self.plog.log_start_offset
        for r, state in self.followers.items():
            if state.log_start_offset < low and self._isr_eligible(r):
                low = state.log_start_offset
        return low

    def add_low_waiter(self, required_offset: int, event: anyio.Event) -> None:
        """Set ``event`` once the low watermark reaches ``required_offset`` (or leadership ends)."""
        self._low_waiters.append((required_offset, event))

    def remove_low_waiter(self, event: anyio.Event) -> None:
        """Forget ``event`` (its request answered or timed out)."""
        if self._low_waiters:
            self._low_waiters = [w for w in self._low_waiters if w[1] is not event]

    def wake_low_waiters(self) -> None:
        """Wake the DeleteRecords waiters the low watermark satisfies now."""
        low = self.low_watermark()
        keep = []
        for offset, event in self._low_waiters:
            if offset <= low:
                event.set()
            else:
                keep.append((offset, event))
        self._low_waiters = keep

    # -- acks=all ------------------------------------------------------------------------------
    def check_acks(self, required_offset: int) -> tuple[bool, int]:
        """Kafka's checkEnoughReplicasReachOffset: ``(done, error)``. Done once the high
        watermark reached ``required_offset`` (and the lease is valid): with the maximal ISR under
        the effective min ISR the write is in, but answered NOT_ENOUGH_REPLICAS_AFTER_APPEND."""
        if self.closed:
            return True, ErrorCode.NOT_LEADER_OR_FOLLOWER
        if self.plog.high_watermark < required_offset or not self._lease_valid():
            return False, ErrorCode.NONE
        if self._replicas_in(self.maximal_isr()) < self.effective_min_isr():
            return True, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return True, ErrorCode.NONE

    def add_waiter(self, required_offset: int, event: anyio.Event) -> None:
        """Set ``event`` once the high watermark reaches ``required_offset`` (or leadership ends)."""
        self._waiters.append((required_offset, event))

    def remove_waiter(self, event: anyio.Event) -> None:
        """Forget ``event`` (its request answered or timed out)."""
        if self._waiters:
            self._waiters = [w for w in self._waiters if w[1] is not event]

    def _wake(self, hw: int) -> None:
        if not self._waiters:
            return
        keep = []
        for offset, event in self._waiters:
            if offset <= hw:
                event.set()
            else:
                keep.append((offset, event))
        self._waiters = keep

    def close(self) -> None:
        """Leadership ended: every waiter wakes (and finds NOT_LEADER_OR_FOLLOWER, or a new state)."""
        self.closed = True
        waiters, self._waiters = self._waiters + self._low_waiters, []
        self._low_waiters = []
        for _, event in waiters:
            event.set()

    @property
    def waiting(self) -> int:
        """Number of acks=all waiters (for tests and metrics)."""
        return len(self._waiters)


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A replica a consumer could read from (Kafka's ``ReplicaView``)."""

    node_id: int
    rack: str | None
    log_end_offset: int
    time_since_caught_up_ms: int


def rack_aware_select(client_rack: str | None, leader: ReplicaView, replicas: list[ReplicaView]) -> ReplicaView:
    """Kafka's RackAwareReplicaSelector: the leader when the client has no rack or the leader is in
    it; else the most caught-up replica in the client's rack (highest log end offset, then the
    most recently caught up, then the highest id); the leader when none is."""
    if not client_rack:
        return leader
    same = [r for r in replicas if r.rack == client_rack]
    if not same or any(r.node_id == leader.node_id for r in same):
        return leader
    return max(same, key=lambda r: (r.log_end_offset, -r.time_since_caught_up_ms, r.node_id))
