"""GroupCoordinator: the classic group membership protocol.

Follows Apache Kafka's GroupCoordinator. A rebalance is two barriers: JoinGroup
calls wait until every member has rejoined (or the rebalance timeout passes), then
the leader's SyncGroup hands each member its assignment. Everything runs on the
broker's event loop; waits are :class:`Waiter` events and :class:`Scheduler` timers,
and the only suspension points inside the protocol are writes to
``__consumer_offsets``, after which the group's state is checked again. Committed
offsets are served by :class:`OffsetsCoordinator`, to which the offset calls delegate.

A single broker coordinates every group and loads them all at start. In a cluster the
coordinator serves the groups of the ``__consumer_offsets`` partitions this broker leads
(Kafka's GroupMetadataManager onElection/onResignation): it is told of leadership changes
(:meth:`GroupCoordinator.on_partitions_changed`), loads a partition it now leads in a
worker thread (COORDINATOR_LOAD_IN_PROGRESS for its groups meanwhile) and unloads one it
no longer leads (blocked JoinGroup/SyncGroup calls answered NOT_COORDINATOR, timers
cancelled); any other group gets NOT_COORDINATOR.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from kbroker.clock import Clock
from kbroker.common import start_guarded
from kbroker.groups.consumer_group import ConsumerGroupConfig, ConsumerGroupCoordinator
from kbroker.groups.consumer_protocol import EMPTY_ASSIGNMENT
from kbroker.groups.errors import Errors, GroupError
from kbroker.groups.group import GroupMetadata, TopicPartition
from kbroker.groups.manager import GroupMetadataManager
from kbroker.groups.member import JoinGroupResult, MemberMetadata, SyncGroupResult, Waiter, unique_protocols
from kbroker.groups.model import GroupConfig, GroupListing, GroupSummary, JoinRequest, MemberSummary
from kbroker.groups.offsets import OffsetsCoordinator
from kbroker.groups.records import OffsetAndMetadata
from kbroker.groups.state import CAN_REBALANCE, GroupState
from kbroker.groups.storage import CONSUMER_OFFSETS, OffsetsLog
from kbroker.groups.timers import Scheduler, Timer
from kbroker.metadata.model import PartitionInfo, TopicInfo, leadership_changes

log = logging.getLogger(__name__)

#: A new member's JoinGroup is dropped after this long without the barrier completing.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000
UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1

S = GroupState


#: Member ids are strings on the wire: at most 32767 bytes, a UUID and a dash included.
_MEMBER_ID_PREFIX_BYTES = 0x7FFF - 37


def new_member_id(prefix: str) -> str:
    """Kafka's ``<client id or instance id>-<uuid>``, the prefix cut so the id stays encodable."""
    cut = prefix.encode("utf-8")[:_MEMBER_ID_PREFIX_BYTES].decode("utf-8", "ignore")
    return f"{cut}-{uuid.uuid4()}"


@dataclass(eq=False)
class _OwnedPartition:
    """A ``__consumer_offsets`` partition this broker leads (cluster mode)."""

    epoch: int
    loaded: bool = False
    #: Transaction markers that reached the partition while it was being read: the reader
    #: may have passed them, so they are applied again once it is loaded (a no-op if seen).
    completions: list[tuple[int, bool]] = field(default_factory=list)


class OtherGroupKind(Protocol):
    """A group type served beside classic groups (share groups): what ListGroups and DeleteGroups ask of it."""

    #: Its ListGroups type, e.g. ``share``.
    group_type: str

    def listings(self) -> list[GroupListing]: ...

    def has_group(self, group_id: str) -> bool: ...

    async def delete(self, group_id: str) -> Errors: ...


class GroupCoordinator:
    """Serves the groups this broker coordinates (all of them on a single broker)."""

    def __init__(self, config: GroupConfig, clock: Clock, offsets_log: OffsetsLog, *, node_id: int = -1,
                 clustered: bool = False, consumer_config: ConsumerGroupConfig | None = None,
                 topics: Callable[[], Mapping[str, TopicInfo]] | None = None,
                 group_setting: Callable[[str, str], str | None] = lambda g, k: None) -> None:
        """``clustered``: serve only the groups of the partitions :meth:`on_partitions_changed`
        says broker ``node_id`` leads, instead of loading every partition at start.
        ``consumer_config``, ``topics`` (the cluster's topics by name) and ``group_setting``
        (a group's config override or None) serve the consumer groups of KIP-848."""
        self.config = config
        self.node_id = node_id
        self.clustered = clustered
        #: Cluster mode: the offsets partitions this broker leads (loading or loaded).
        self._owned: dict[int, _OwnedPartition] = {}
        self.clock = clock
        self.manager = GroupMetadataManager(offsets_log, clock)
        self.timers = Scheduler(clock)
        self._tg: TaskGroup | None = None
        self._loaded = False
        self._stopped = False
        self.offsets = OffsetsCoordinator(self.manager, config, self.timers, check_active=self.check_active,
                                          touch_member=self._schedule_session, spawn=self._spawn)
        #: KIP-848 consumer groups, beside the classic ones; their records replay through the manager.
        self.consumer = ConsumerGroupCoordinator(
            self.manager, self.timers, clock, consumer_config or ConsumerGroupConfig(), topics or dict,
            check_active=self.check_active, spawn=self._spawn, group_setting=group_setting)
        self.manager.add_replayer(self.consumer)
        self.manager.subscribed_elsewhere = self.consumer.subscribed_topics
        #: Other group types (share groups, ...) that ListGroups and DeleteGroups include.
        self.other_kinds: list[OtherGroupKind] = []
        self.consumer.foreign_group = self._foreign_group

    # ------------------------------------------------------------------ lifecycle

    async def start(self, tg: TaskGroup) -> None:
        """Load the groups from ``__consumer_offsets`` (single broker) and start the timers."""
        self._tg = tg
        if self.clustered:
            for partition, owned in self._owned.items():  # elected before the start
                self._spawn(self._load_partition, partition, owned)
        else:
            count = self.manager.load()
            for group in self.manager.groups.values():
                for member in group.members.values():
                    self._schedule_session(group, member)
            if count:
                log.info("loaded %d groups from __consumer_offsets", count)
        tg.start_soon(self.timers.run)
        self.offsets.start()
        self.consumer.start(self.config.retention_check_interval_ms)
        self._loaded = True

    async def shutdown(self) -> None:
        """Answer every blocked JoinGroup/SyncGroup with NOT_COORDINATOR and stop serving."""
        self._stopped = True
        self.offsets.stop()
        self.consumer.shutdown()
        for group in self.manager.groups.values():
            self._release_group(group)

    @staticmethod
    def _release_group(group: GroupMetadata) -> None:
        """Answer the group's blocked JoinGroup/SyncGroup calls with NOT_COORDINATOR and
        cancel its timers: this broker stops coordinating it."""
        for member in group.members.values():
            group.complete_join(member, JoinGroupResult(Errors.NOT_COORDINATOR, member.member_id))
            member.complete_sync(SyncGroupResult(Errors.NOT_COORDINATOR))
            if member.session_timer is not None:
                member.session_timer.cancel()
                member.session_timer = None
        for timer in (group.join_timer, group.sync_timer):
            if timer is not None:
                timer.cancel()
        group.join_timer = group.sync_timer = None

    @property
    def active(self) -> bool:
        return self._loaded and not self._stopped

    def check_active(self, group_id: str | None = None) -> None:
        """Raise the error a request (for ``group_id``, when given) gets while it is not served here.

        In a cluster a group whose partition this broker does not lead gets NOT_COORDINATOR,
        one whose partition is being loaded COORDINATOR_LOAD_IN_PROGRESS.
        """
        if self._stopped:
            raise GroupError(Errors.NOT_COORDINATOR)
        if not self._loaded:
            raise GroupError(Errors.COORDINATOR_LOAD_IN_PROGRESS)
        if self.clustered and group_id is not None:
            owned = self._owned.get(self.partition_for(group_id))
            if owned is None:
                raise GroupError(Errors.NOT_COORDINATOR)
            if not owned.loaded:
                raise GroupError(Errors.COORDINATOR_LOAD_IN_PROGRESS)

    def owns(self, group_id: str) -> bool:
        """Whether ``group_id`` is served here now (its partition led and loaded)."""
        try:
            self.check_active(group_id)
        except GroupError:
            return False
        return True

    # ------------------------------------------------------------------ partition leadership (cluster)

    def on_partitions_changed(self, changes: Sequence[tuple[PartitionInfo | None, PartitionInfo | None]]) -> None:
        """Leadership changes of this broker's replicas: load the ``__consumer_offsets``
        partitions it now leads, unload those it no longer leads. Sync, on the event loop."""
        if not self.clustered or self._stopped:
            return
        for partition, epoch in leadership_changes(changes, CONSUMER_OFFSETS, self.node_id):
            if epoch is None:
                self._resign(partition)
            else:
                self._elect(partition, epoch)

    def _elect(self, partition: int, epoch: int) -> None:
        owned = self._owned.get(partition)
        if owned is not None:
            if epoch <= owned.epoch:
                return  # still the leader, e.g. only the ISR changed
            # A new leader epoch: another broker may have led (and written) in between,
            # unseen in one batch of changes, so what is in memory may be stale: reload.
            self._resign(partition)
        log.info("elected group coordinator for %s-%d at epoch %d; loading", CONSUMER_OFFSETS, partition, epoch)
        owned = self._owned[partition] = _OwnedPartition(epoch)
        if self._tg is not None:  # else start() loads it (the metadata may speak first)
            self._spawn(self._load_partition, partition, owned)

    def _resign(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        if owned is None:
            return
        gone = self.manager.unload_partition(partition)
        now = self._now()
        for group in gone:
            self._release_group(group)
            group.transition_to(S.DEAD, now)  # anything still holding it (a write under way) lets go
        log.info("resigned as group coordinator for %s-%d; unloaded %d groups", CONSUMER_OFFSETS, partition,
                 len(gone))

    async def _load_partition(self, partition: int, owned: _OwnedPartition) -> None:
        try:
            contents = await anyio.to_thread.run_sync(self.manager.read_partition, partition,
                                                      abandon_on_cancel=True)
        except Exception:
            log.exception("loading %s-%d failed", CONSUMER_OFFSETS, partition)
            if self._owned.get(partition) is owned:
                del self._owned[partition]  # NOT_COORDINATOR: clients look for the coordinator again
            return
        if self._owned.get(partition) is not owned or self._stopped:
            return  # resigned while reading
        groups = self.manager.install(contents)
        for producer_id, commit in owned.completions:
            self.manager.complete_transaction(producer_id, {partition}, commit)
        owned.completions.clear()
        for group in groups:
            for member in group.members.values():
                self._schedule_session(group, member)
        owned.loaded = True
        log.info("loaded %d groups from %s-%d", len(groups), CONSUMER_OFFSETS, partition)

    def ensure_offsets_topic(self) -> bool:
        """Create ``__consumer_offsets`` if missing (FindCoordinator does, as Kafka's does)."""
        return self.manager.log.ensure()

    def partition_for(self, group_id: str) -> int:
        """The ``__consumer_offsets`` partition holding ``group_id``'s records."""
        return self.manager.partition_for(group_id)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._tg is not None, "coordinator not started"
        start_guarded(self._tg, log, "group coordinator", fn, *args)

    def _call_later(self, group: GroupMetadata, delay_ms: int, fn: Callable[[], None]) -> Timer:
        """A timer for ``group`` whose failure resets that group instead of wedging it."""
        def run() -> None:
            try:
                fn()
            except Exception as e:
                self._fail_group(group, e)

        return self.timers.call_later(delay_ms, run)

    def _fail_group(self, group: GroupMetadata, error: BaseException) -> None:
        """A transition of ``group`` raised: answer its blocked requests and start it afresh.

        Every member's pending JoinGroup/SyncGroup gets UNKNOWN_SERVER_ERROR and the
        members are dropped (clients rejoin); committed offsets stay. Other groups are
        untouched and this one accepts joins again at once.
        """
        log.error("group %s failed in state %s and is reset: %r", group.group_id, group.state.value, error,
                  exc_info=error)
        for member in list(group.members.values()):
            group.complete_join(member, JoinGroupResult(Errors.UNKNOWN_SERVER_ERROR, member.member_id))
            member.complete_sync(SyncGroupResult(Errors.UNKNOWN_SERVER_ERROR))
            group.remove(member.member_id)
        group.reset_membership(self._now())
        if self._tg is not None:
            self._spawn(self.manager.store_group, group, {})

    def _now(self) -> int:
        return self.clock.time_ms()

    # ------------------------------------------------------------------ JoinGroup

    async def join_group(self, req: JoinRequest) -> JoinGroupResult:
        """Join (or rejoin) a group; returns once the join barrier completes."""
        try:
            self.check_active(req.group_id)
        except GroupError as e:
            return JoinGroupResult(e.code, req.member_id)
        if not req.group_id:
            return JoinGroupResult(Errors.INVALID_GROUP_ID, req.member_id)
        if not (self.config.min_session_timeout_ms <= req.session_timeout_ms <= self.config.max_session_timeout_ms):
            return JoinGroupResult(Errors.INVALID_SESSION_TIMEOUT, req.member_id)
        req.protocols = unique_protocols(req.protocols)
        is_unknown = req.member_id == UNKNOWN_MEMBER_ID
        if self._foreign_group(req.group_id):
            return JoinGroupResult(Errors.INCONSISTENT_GROUP_PROTOCOL, req.member_id)  # a share group's id
        if self.consumer.has_group(req.group_id):
            # As Kafka: an empty consumer group becomes a classic one; joining a live one
            # as a classic member (a mixed group) is not supported here.
            error, tombstones = self.consumer.convert_empty_to_classic(req.group_id)
            if error != Errors.NONE:
                return JoinGroupResult(error, req.member_id)
            error = await self.manager.append(req.group_id, tombstones)
            if error != Errors.NONE:
                return JoinGroupResult(error, req.member_id)
        group = self.manager.get(req.group_id)
        if group is None:
            if not is_unknown:
                return JoinGroupResult(Errors.UNKNOWN_MEMBER_ID, req.member_id)
            group = self.manager.get_or_create(req.group_id)
        waiter: Waiter[JoinGroupResult] = Waiter()
        try:
            if is_unknown:
                self._join_new_member(group, req, waiter)
            else:
                self._join_current_member(group, req, waiter)
            self._try_complete_join(group)
        except Exception as e:
            self._fail_group(group, e)
            waiter.set(JoinGroupResult(Errors.UNKNOWN_SERVER_ERROR, req.member_id))
        return await waiter.wait()

    def _join_new_member(self, group: GroupMetadata, req: JoinRequest, waiter: Waiter[JoinGroupResult]) -> None:
        if group.is_in(S.DEAD):
            waiter.set(JoinGroupResult(Errors.COORDINATOR_NOT_AVAILABLE, req.member_id))
            return
        if not group.supports_protocols(req.protocol_type, (n for n, _ in req.protocols)):
            waiter.set(JoinGroupResult(Errors.INCONSISTENT_GROUP_PROTOCOL, req.member_id))
            return
        new_id = new_member_id(req.group_instance_id or req.client_id)
        if req.group_instance_id is not None:
            old_id = group.static_member_id(req.group_instance_id)
            if old_id is None:
                self._add_member_and_rebalance(group, req, new_id, waiter)
            else:
                self._replace_static_member(group, req, old_id, new_id, waiter)
        elif req.require_known_member_id:
            # KIP-394: hand out the id first, so a client that times out and retries
            # does not leave a trail of members the barrier waits for.
            group.pending_members.add(new_id)
            self._call_later(group, req.session_timeout_ms, lambda: self._expire_pending_member(group, new_id))
            waiter.set(JoinGroupResult(Errors.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member_and_rebalance(group, req, new_id, waiter)

    def _join_current_member(self, group: GroupMetadata, req: JoinRequest,
                             waiter: Waiter[JoinGroupResult]) -> None:
        member_id = req.member_id
        if group.is_in(S.DEAD):
            waiter.set(JoinGroupResult(Errors.COORDINATOR_NOT_AVAILABLE, member_id))
        elif not group.supports_protocols(req.protocol_type, (n for n, _ in req.protocols)):
            waiter.set(JoinGroupResult(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id))
        elif member_id in group.pending_members:
            self._add_member_and_rebalance(group, req, member_id, waiter)
        elif group.is_static_member_fenced(req.group_instance_id, member_id):
            waiter.set(JoinGroupResult(Errors.FENCED_INSTANCE_ID, member_id))
        elif not group.has(member_id) or (
                req.group_instance_id is not None and group.static_member_id(req.group_instance_id) is None):
            waiter.set(JoinGroupResult(Errors.UNKNOWN_MEMBER_ID, member_id))
        else:
            member = group.get(member_id)
            self._schedule_session(group, member)
            if group.is_in(S.PREPARING_REBALANCE):
                self._update_member_and_rebalance(group, member, req, waiter)
            elif group.is_in(S.COMPLETING_REBALANCE):
                if member.matches(req.protocols):
                    # A retry of a join whose answer was lost: answer it again.
                    waiter.set(self._join_result(group, member))
                else:
                    self._update_member_and_rebalance(group, member, req, waiter)
            elif group.is_in(S.STABLE):
                if group.is_leader(member_id) or not member.matches(req.protocols):
                    # The leader rejoins to have changes that the metadata does not show
                    # (e.g. new partitions) reassigned.
                    self._update_member_and_rebalance(group, member, req, waiter)
                else:
                    waiter.set(self._join_result(group, member, with_members=False))
            else:
                waiter.set(JoinGroupResult(Errors.UNKNOWN_MEMBER_ID, member_id))

    def _join_result(self, group: GroupMetadata, member: MemberMetadata, with_members: bool = True) -> JoinGroupResult:
        leader = group.is_leader(member.member_id)
        return JoinGroupResult(
            Errors.NONE, member.member_id, group.generation_id, group.protocol_type, group.protocol_name,
            group.leader_id or "", members=group.current_member_metadata() if leader and with_members else [])

    def _add_member_and_rebalance(self, group: GroupMetadata, req: JoinRequest, member_id: str,
                                  waiter: Waiter[JoinGroupResult]) -> None:
        member = MemberMetadata(
            member_id, req.group_instance_id, req.client_id, req.client_host, req.rebalance_timeout_ms,
            req.session_timeout_ms, req.protocol_type, [(n, bytes(m)) for n, m in req.protocols],
            awaiting_join=waiter, is_new=True)
        if group.is_in(S.PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member)
        # A new member cannot heartbeat before the barrier completes; bound its wait instead.
        self._schedule_session(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(group, f"member {member_id} joined")

    def _update_member_and_rebalance(self, group: GroupMetadata, member: MemberMetadata, req: JoinRequest,
                                     waiter: Waiter[JoinGroupResult]) -> None:
        group.update_member(member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, waiter)
        self._maybe_prepare_rebalance(group, f"member {member.member_id} rejoined")

    def _replace_static_member(self, group: GroupMetadata, req: JoinRequest, old_id: str, new_id: str,
                               waiter: Waiter[JoinGroupResult]) -> None:
        """KIP-345: a static member came back with a new member id; the old one is fenced."""
        assert req.group_instance_id is not None
        current_leader = group.leader_id or ""
        old_subscription = self._member_subscription(group, group.get(old_id))
        member = group.replace_static_member(req.group_instance_id, old_id, new_id)
        group.update_member(member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, waiter)
        self._schedule_session(group, member)
        log.info("static member %s of group %s rejoined as %s", req.group_instance_id, group.group_id, new_id)
        if group.is_in(S.STABLE):
            if (group.protocol_name == group.select_protocol()
                    and self._member_subscription(group, member) == old_subscription):
                # Same protocol, same subscription: keep the assignment, no rebalance.
                self._spawn(self._complete_static_rejoin, group, member, current_leader,
                            req.supports_skip_assignment)
            else:
                self._prepare_rebalance(group, f"static member {req.group_instance_id} changed its metadata")
        elif group.is_in(S.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"static member {req.group_instance_id} rejoined during sync")
        # PreparingRebalance: it joins the barrier under its new id.

    @staticmethod
    def _member_subscription(group: GroupMetadata, member: MemberMetadata) -> object:
        """What must be unchanged for a static rejoin to skip the rebalance.

        Consumer groups compare the subscribed topics: a restarted consumer's metadata
        differs in owned partitions and user data, which the leader's assignment
        does not depend on for a returning member.
        """
        from kbroker.groups.consumer_protocol import subscribed_topics

        data = member.metadata(group.protocol_name) if group.protocol_name else b""
        if group.is_consumer_group:
            topics = subscribed_topics(data)
            if topics is not None:
                return topics
        return data

    async def _complete_static_rejoin(self, group: GroupMetadata, member: MemberMetadata, current_leader: str,
                                      supports_skip: bool) -> None:
        error = await self.manager.store_group(group, {m.member_id: m.assignment for m in group.members.values()})
        if group.members.get(member.member_id) is not member:
            return  # fenced again or removed meanwhile; its join was answered then
        if error != Errors.NONE:
            group.complete_join(member, JoinGroupResult(error, member.member_id))
            return
        if group.is_leader(member.member_id) and supports_skip:
            # KIP-814: it learns it leads, but must not reassign a Stable group.
            result = JoinGroupResult(Errors.NONE, member.member_id, group.generation_id, group.protocol_type,
                                     group.protocol_name, member.member_id, True, group.current_member_metadata())
        else:
            # The old leader id (not this member's new id) keeps a returning leader from
            # computing an assignment a Stable group would not deliver.
            result = JoinGroupResult(Errors.NONE, member.member_id, group.generation_id, group.protocol_type,
                                     group.protocol_name, current_leader)
        group.complete_join(member, result)

    def _expire_pending_member(self, group: GroupMetadata, member_id: str) -> None:
        if member_id in group.pending_members:
            group.pending_members.discard(member_id)
            self._try_complete_join(group)

    # ------------------------------------------------------------------ rebalance

    def _maybe_prepare_rebalance(self, group: GroupMetadata, reason: str) -> None:
        if group.state in CAN_REBALANCE:
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: GroupMetadata, reason: str) -> None:
        if group.is_in(S.COMPLETING_REBALANCE):
            self._propagate_assignment_error(group, Errors.REBALANCE_IN_PROGRESS)
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None
        was = group.state
        was_empty = was is S.EMPTY
        group.transition_to(S.PREPARING_REBALANCE, self._now())
        log.info("preparing to rebalance group %s (was %s) with old generation %d (reason: %s)",
                 group.group_id, was.value, group.generation_id, reason)
        delay = self.config.initial_rebalance_delay_ms
        if was_empty and delay > 0:
            # Give the rest of a starting fleet a moment to join the first generation.
            group.initial_delay = True
            group.new_member_added = False
            self._initial_join_timer(group, delay, max(group.rebalance_timeout_ms - delay, 0))
        else:
            self._set_join_timer(group, group.rebalance_timeout_ms, lambda: self._complete_join(group))
        self._try_complete_join(group)

    def _set_join_timer(self, group: GroupMetadata, delay_ms: int, fn: Callable[[], None]) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = self._call_later(group, delay_ms, fn)

    def _initial_join_timer(self, group: GroupMetadata, delay_ms: int, remaining_ms: int) -> None:
        def fire() -> None:
            if not group.is_in(S.PREPARING_REBALANCE):
                return
            if group.new_member_added and remaining_ms > 0:
                group.new_member_added = False
                self._initial_join_timer(group, min(self.config.initial_rebalance_delay_ms, remaining_ms),
                                         max(remaining_ms - delay_ms, 0))
            else:
                self._complete_join(group)

        self._set_join_timer(group, delay_ms, fire)

    def _try_complete_join(self, group: GroupMetadata) -> None:
        if group.is_in(S.PREPARING_REBALANCE) and not group.initial_delay and group.has_all_members_joined():
            self._complete_join(group)

    def _complete_join(self, group: GroupMetadata) -> None:
        """The join barrier closes: drop absent dynamic members and start the next generation."""
        if not group.is_in(S.PREPARING_REBALANCE):
            return
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        group.initial_delay = False
        for member in group.not_yet_rejoined():
            if not member.is_static:  # static members keep their slot until their session expires
                log.info("member %s of group %s did not rejoin in time", member.member_id, group.group_id)
                group.remove(member.member_id)
        if group.members and not group.maybe_elect_new_joined_leader():
            # Only absent static members are left: wait for them (or their session expiry).
            self._set_join_timer(group, group.rebalance_timeout_ms, lambda: self._complete_join(group))
            return
        group.init_next_generation(self._now())
        if group.is_in(S.EMPTY):
            log.info("group %s with generation %d is now empty", group.group_id, group.generation_id)
            self._spawn(self.manager.store_group, group, {})
            return
        log.info("stabilized group %s generation %d (protocol %s) with %d members", group.group_id,
                 group.generation_id, group.protocol_name, len(group.members))
        for member in list(group.members.values()):
            group.complete_join(member, self._join_result(group, member))
            self._schedule_session(group, member)
            member.is_new = False
        generation = group.generation_id
        group.sync_timer = self._call_later(group, group.rebalance_timeout_ms,
                                            lambda: self._expire_pending_sync(group, generation))

    def _expire_pending_sync(self, group: GroupMetadata, generation: int) -> None:
        """Members that never sent SyncGroup within the rebalance timeout are dropped."""
        group.sync_timer = None
        if group.generation_id != generation or not group.is_in(S.COMPLETING_REBALANCE, S.STABLE):
            return
        if not group.pending_sync:
            return
        for member_id in list(group.pending_sync):
            member = group.members.get(member_id)
            if member is not None:
                member.complete_sync(SyncGroupResult(Errors.UNKNOWN_MEMBER_ID))
                group.remove(member_id)
        self._prepare_rebalance(group, "members did not send SyncGroup in time")

    def _remove_pending_sync(self, group: GroupMetadata, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _propagate_assignment_error(self, group: GroupMetadata, error: Errors) -> None:
        for member in group.members.values():
            member.assignment = b""
            member.complete_sync(SyncGroupResult(error))

    def _assignment_out(self, group: GroupMetadata, assignment: bytes) -> bytes:
        # Consumers always get a decodable assignment, even when the leader left them out.
        if not assignment and group.is_consumer_group:
            return EMPTY_ASSIGNMENT
        return assignment

    def _sync_result(self, group: GroupMetadata, member: MemberMetadata) -> SyncGroupResult:
        return SyncGroupResult(Errors.NONE, self._assignment_out(group, member.assignment), group.protocol_type,
                               group.protocol_name)

    # ------------------------------------------------------------------ sessions

    def _schedule_session(self, group: GroupMetadata, member: MemberMetadata, timeout_ms: int | None = None) -> None:
        delay = member.session_timeout_ms if timeout_ms is None else timeout_ms
        timer = member.session_timer
        if timer is not None:
            # The usual heartbeat: the pending timer (same group, same member) moves later in place.
            if self.timers.extend(timer, delay):
                return
            timer.cancel()
        member.session_timer = self._call_later(group, delay, lambda: self._expire_session(group, member))

    def _expire_session(self, group: GroupMetadata, member: MemberMetadata) -> None:
        if group.members.get(member.member_id) is not member:
            return
        if not member.is_new and (member.awaiting_join is not None or member.awaiting_sync is not None):
            # Blocked inside a rebalance counts as alive.
            self._schedule_session(group, member)
            return
        log.info("member %s of group %s expired after its session timeout", member.member_id, group.group_id)
        self._remove_member_and_update_group(group, member, "session timeout")

    def _remove_member_and_update_group(self, group: GroupMetadata, member: MemberMetadata, reason: str) -> None:
        group.complete_join(member, JoinGroupResult(Errors.UNKNOWN_MEMBER_ID, member.member_id))
        member.complete_sync(SyncGroupResult(Errors.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        if group.is_in(S.STABLE, S.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"removing member {member.member_id} ({reason})")
        elif group.is_in(S.PREPARING_REBALANCE):
            self._try_complete_join(group)

    # ------------------------------------------------------------------ SyncGroup

    async def sync_group(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                         protocol_type: str | None, protocol_name: str | None,
                         assignments: Mapping[str, bytes]) -> SyncGroupResult:
        """Deliver the leader's assignment (or fetch one's own); returns once it is known."""
        try:
            self.check_active(group_id)
        except GroupError as e:
            return SyncGroupResult(e.code)
        if not group_id:
            return SyncGroupResult(Errors.INVALID_GROUP_ID)
        group = self.manager.get(group_id)
        if group is None:
            return SyncGroupResult(Errors.UNKNOWN_MEMBER_ID)
        if group.is_in(S.DEAD):
            return SyncGroupResult(Errors.COORDINATOR_NOT_AVAILABLE)
        if group.is_static_member_fenced(group_instance_id, member_id):
            return SyncGroupResult(Errors.FENCED_INSTANCE_ID)
        if not group.has(member_id):
            return SyncGroupResult(Errors.UNKNOWN_MEMBER_ID)
        if generation_id != group.generation_id:
            return SyncGroupResult(Errors.ILLEGAL_GENERATION)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
                protocol_name is not None and protocol_name != group.protocol_name):
            return SyncGroupResult(Errors.INCONSISTENT_GROUP_PROTOCOL)
        if group.is_in(S.EMPTY):
            return SyncGroupResult(Errors.UNKNOWN_MEMBER_ID)
        if group.is_in(S.PREPARING_REBALANCE):
            return SyncGroupResult(Errors.REBALANCE_IN_PROGRESS)
        try:
            return await self._sync_member(group, group.get(member_id), assignments)
        except Exception as e:
            self._fail_group(group, e)
            return SyncGroupResult(Errors.UNKNOWN_SERVER_ERROR)

    async def _sync_member(self, group: GroupMetadata, member: MemberMetadata,
                           assignments: Mapping[str, bytes]) -> SyncGroupResult:
        member_id, group_id = member.member_id, group.group_id
        self._schedule_session(group, member)
        self._remove_pending_sync(group, member_id)
        if group.is_in(S.STABLE):
            return self._sync_result(group, member)
        # CompletingRebalance: wait for the leader's assignment.
        waiter: Waiter[SyncGroupResult] = Waiter()
        if member.awaiting_sync is not None:
            member.awaiting_sync.set(SyncGroupResult(Errors.REBALANCE_IN_PROGRESS))
        member.awaiting_sync = waiter
        if group.is_leader(member_id):
            full = {mid: bytes(assignments.get(mid, b"")) for mid in group.members}
            missing = [mid for mid in group.members if mid not in assignments]
            if missing:
                log.warning("leader of group %s gave no assignment to %s", group_id, missing)
            generation = group.generation_id
            error = await self.manager.store_group(group, full)
            # A member may have joined while the write was under way; act only if nothing moved.
            if group.is_in(S.COMPLETING_REBALANCE) and group.generation_id == generation:
                if error != Errors.NONE:
                    self._propagate_assignment_error(group, error)
                    self._maybe_prepare_rebalance(group, "storing the group assignment failed")
                else:
                    for m in group.members.values():
                        m.assignment = full.get(m.member_id, b"")
                    group.transition_to(S.STABLE, self._now())
                    for m in group.members.values():
                        if m.complete_sync(self._sync_result(group, m)):
                            self._schedule_session(group, m)
        return await waiter.wait()

    # ------------------------------------------------------------------ Heartbeat, LeaveGroup

    def heartbeat(self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int) -> Errors:
        """Keep a member's session alive; tells it when to rejoin."""
        try:
            self.check_active(group_id)
        except GroupError as e:
            # As Kafka: while the group is being loaded the member is answered blindly.
            return Errors.NONE if e.code == Errors.COORDINATOR_LOAD_IN_PROGRESS else e.code
        if not group_id:
            return Errors.INVALID_GROUP_ID
        group = self.manager.get(group_id)
        if group is None:
            return Errors.UNKNOWN_MEMBER_ID
        if group.is_in(S.DEAD):
            return Errors.COORDINATOR_NOT_AVAILABLE
        if group.is_static_member_fenced(group_instance_id, member_id):
            return Errors.FENCED_INSTANCE_ID
        if not group.has(member_id):
            return Errors.UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return Errors.ILLEGAL_GENERATION
        if group.is_in(S.EMPTY):
            return Errors.UNKNOWN_MEMBER_ID
        self._schedule_session(group, group.get(member_id))
        if group.is_in(S.PREPARING_REBALANCE):
            return Errors.REBALANCE_IN_PROGRESS
        return Errors.NONE

    def leave_group(self, group_id: str, members: Sequence[tuple[str, str | None]]
                    ) -> tuple[Errors, list[tuple[str, str | None, Errors]]]:
        """Remove members by member id or group instance id (batched, KIP-345)."""
        try:
            self.check_active(group_id)
        except GroupError as e:
            return e.code, []
        if not group_id:
            return Errors.INVALID_GROUP_ID, []
        group = self.manager.get(group_id)
        if group is None:
            return Errors.NONE, [(m, i, Errors.UNKNOWN_MEMBER_ID) for m, i in members]
        if group.is_in(S.DEAD):
            return Errors.COORDINATOR_NOT_AVAILABLE, []
        out = []
        for member_id, instance_id in members:
            out.append((member_id, instance_id, self._leave_one(group, member_id, instance_id)))
        return Errors.NONE, out

    def _leave_one(self, group: GroupMetadata, member_id: str, instance_id: str | None) -> Errors:
        if member_id == UNKNOWN_MEMBER_ID and instance_id is not None:
            current = group.static_member_id(instance_id)
            if current is None:
                return Errors.UNKNOWN_MEMBER_ID
            member_id = current
        elif member_id in group.pending_members:
            group.pending_members.discard(member_id)
            self._try_complete_join(group)
            return Errors.NONE
        elif group.is_static_member_fenced(instance_id, member_id):
            return Errors.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None:
            return Errors.UNKNOWN_MEMBER_ID
        log.info("member %s is leaving group %s", member_id, group.group_id)
        self._remove_member_and_update_group(group, member, "member left")
        return Errors.NONE

    # ------------------------------------------------------------------ admin

    def describe_group(self, group_id: str) -> GroupSummary | None:
        """The group's state and members; None when there is no such group."""
        self.check_active(group_id)
        group = self.manager.get(group_id)
        if group is None or group.is_in(S.DEAD) or self.consumer.has_group(group_id):
            return None
        summary = GroupSummary(group.group_id, group.state.value, group.protocol_type or "", "")
        stable = group.is_in(S.STABLE) and group.protocol_name is not None
        if stable:
            summary.protocol = group.protocol_name or ""
        for m in group.members.values():
            metadata = m.metadata(summary.protocol) if stable else b""
            assignment = self._assignment_out(group, m.assignment) if stable else b""
            summary.members.append(MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                                 metadata, assignment))
        return summary

    def list_groups(self) -> list[GroupListing]:
        """Every live group this broker coordinates."""
        self.check_active()
        if any(not owned.loaded for owned in self._owned.values()):
            raise GroupError(Errors.COORDINATOR_LOAD_IN_PROGRESS)  # as Kafka: the list would be partial
        # A consumer group's committed offsets sit in a classic entry of the same id: listed once, by its kind.
        return [GroupListing(g.group_id, g.protocol_type or "", g.state.value)
                for g in self.manager.groups.values()
                if not g.is_in(S.DEAD) and not self.consumer.has_group(g.group_id)] + self.consumer.listings() + \
            [listing for kind in self.other_kinds for listing in kind.listings()]

    def _foreign_group(self, group_id: str) -> bool:
        """Whether ``group_id`` is a group of another kind (a share group)."""
        return any(kind.has_group(group_id) for kind in self.other_kinds)

    def group_type(self, group_id: str) -> str | None:
        """``classic``, ``consumer`` or another kind's type (``share``) for a group served here,
        None when there is none: one namespace for every type, as in Kafka."""
        if self.consumer.has_group(group_id):
            return "consumer"
        for kind in self.other_kinds:
            if kind.has_group(group_id):
                return kind.group_type
        group = self.manager.get(group_id)
        return None if group is None or group.is_in(S.DEAD) else "classic"

    async def delete_groups(self, group_ids: Sequence[str]) -> dict[str, Errors]:
        """Delete Empty groups with their offsets."""
        self.check_active()
        out: dict[str, Errors] = {}
        for i, group_id in enumerate(group_ids):
            if i % 1000 == 999:
                await anyio.sleep(0)  # a request naming many groups lets other connections in
            try:
                self.check_active(group_id)
            except GroupError as e:
                out[group_id] = e.code  # in a cluster: coordinated elsewhere, or loading
                continue
            group = self.manager.get(group_id)
            if self.consumer.has_group(group_id):
                out[group_id] = error = await self.consumer.delete(group_id)
                if error == Errors.NONE and group is not None:
                    group.transition_to(S.DEAD, self._now())
                    out[group_id] = await self.manager.delete_group(group)  # its offsets
                log.info("deleted consumer group %s: %s", group_id, out[group_id].name)
            elif (other := next((k for k in self.other_kinds if k.has_group(group_id)), None)) is not None \
                    and (group is None or group.is_in(S.DEAD)):
                out[group_id] = await other.delete(group_id)
            elif group is None or group.is_in(S.DEAD):
                out[group_id] = Errors.GROUP_ID_NOT_FOUND
            elif not group.is_in(S.EMPTY):
                out[group_id] = Errors.NON_EMPTY_GROUP
            else:
                group.transition_to(S.DEAD, self._now())
                out[group_id] = await self.manager.delete_group(group)
                log.info("deleted group %s", group_id)
        return out

    # ------------------------------------------------------------------ offsets (see kbroker.groups.offsets)

    async def commit_offsets(self, group_id: str, generation_id: int, member_id: str,
                             group_instance_id: str | None,
                             offsets: Mapping[TopicPartition, OffsetAndMetadata], *,
                             api_version: int = 9) -> dict[TopicPartition, Errors]:
        """Commit offsets for a member of the current generation (the member epoch of a
        consumer group's member), or for a group without members."""
        if self.consumer.has_group(group_id):
            try:
                self.check_active(group_id)
                self.consumer.validate_offset_commit(group_id, member_id, group_instance_id, generation_id,
                                                     api_version)
            except GroupError as e:
                return dict.fromkeys(offsets, e.code)
            # Validated against the member epoch: stored as a commit from outside group management.
            return await self.offsets.commit_offsets(group_id, -1, "", None, offsets)
        return await self.offsets.commit_offsets(group_id, generation_id, member_id, group_instance_id, offsets)

    async def txn_commit_offsets(self, transactional_id: str, group_id: str, producer_id: int, producer_epoch: int,
                                 generation_id: int, member_id: str, group_instance_id: str | None,
                                 offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, Errors]:
        """TxnOffsetCommit: offsets written in the producer's transaction, pending until its marker."""
        if self.consumer.has_group(group_id):
            try:
                self.check_active(group_id)
                self.consumer.validate_offset_commit(group_id, member_id, group_instance_id, generation_id, 9)
            except GroupError as e:
                return dict.fromkeys(offsets, e.code)
            generation_id, member_id, group_instance_id = -1, "", None
        return await self.offsets.txn_commit_offsets(transactional_id, group_id, producer_id, producer_epoch,
                                                     generation_id, member_id, group_instance_id, offsets)

    def on_transaction_completed(self, producer_id: int, partitions: Iterable[int], commit: bool) -> None:
        """COMMIT or ABORT markers of ``producer_id`` were appended to these ``__consumer_offsets``
        partitions: materialise or drop its pending offsets of the groups there."""
        parts = set(partitions)
        for p in parts:
            owned = self._owned.get(p)
            if owned is not None and not owned.loaded:
                owned.completions.append((producer_id, commit))
        self.manager.complete_transaction(producer_id, parts, commit)

    def fetch_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None, require_stable: bool = False,
                      *, member_id: str | None = None, member_epoch: int = -1,
                      ) -> dict[TopicPartition, OffsetAndMetadata | Errors | None]:
        """Committed offsets of ``partitions`` (all of the group's when None); None where unknown,
        UNSTABLE_OFFSET_COMMIT where a transactional offset is pending and ``require_stable``.
        A consumer group's member (OffsetFetch v9+) must give its current member epoch."""
        if self.consumer.has_group(group_id):
            self.check_active(group_id)
            self.consumer.validate_offset_fetch(group_id, member_id, member_epoch)
        return self.offsets.fetch_offsets(group_id, partitions, require_stable)

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]
                             ) -> tuple[Errors, dict[TopicPartition, Errors]]:
        """OffsetDelete: drop committed offsets of topics the group no longer consumes."""
        if self.consumer.has_group(group_id):
            # As Kafka's ConsumerGroup: the offsets of a topic some member subscribes to stay.
            self.check_active(group_id)
            subscribed = self.consumer.subscribed_topics(group_id)
            refused = {tp: Errors.GROUP_SUBSCRIBED_TO_TOPIC for tp in partitions if tp[0] in subscribed}
            rest = [tp for tp in partitions if tp not in refused]
            if not rest:
                return Errors.NONE, refused
            error, out = await self.offsets.delete_offsets(group_id, rest)
            if error == Errors.GROUP_ID_NOT_FOUND:  # no offsets at all yet: nothing to delete
                error, out = Errors.NONE, dict.fromkeys(rest, Errors.NONE)
            return error, {**out, **refused}
        return await self.offsets.delete_offsets(group_id, partitions)

    async def expire_offsets(self) -> int:
        """Remove offsets past ``offsets.retention.minutes`` now; returns how many."""
        return await self.offsets.expire_offsets()
