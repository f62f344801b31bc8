"""A classic consumer group's membership, protocol, generation and committed offsets.

This is Kafka's GroupMetadata: pure state and bookkeeping. The rebalance protocol
that drives it (barriers, timers, persistence) lives in the coordinator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from kbroker.common import TopicPartition
from kbroker.groups.consumer_protocol import CONSUMER_PROTOCOL_TYPE, subscribed_topics
from kbroker.groups.errors import Errors
from kbroker.groups.member import JoinGroupResult, MemberMetadata, Protocols, SyncGroupResult, Waiter
from kbroker.groups.records import OffsetAndMetadata
from kbroker.groups.state import GroupState, check_transition
from kbroker.groups.timers import Timer


class GroupMetadata:
    """One group's state; every state change goes through :meth:`transition_to`."""

    def __init__(self, group_id: str, state: GroupState = GroupState.EMPTY, now_ms: int = -1) -> None:
        self.group_id = group_id
        self.state = state
        self.state_timestamp_ms = now_ms
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation_id = 0
        self.leader_id: str | None = None
        #: Members in join order (the order a new leader is picked in).
        self.members: dict[str, MemberMetadata] = {}
        #: group.instance.id -> current member id of each static member.
        self.static_members: dict[str, str] = {}
        #: Member ids handed out with MEMBER_ID_REQUIRED and not yet used to join.
        self.pending_members: set[str] = set()
        #: Members of this generation that have not sent SyncGroup yet.
        self.pending_sync: set[str] = set()
        self._votes: Counter[str] = Counter()
        self.num_awaiting_join = 0
        #: A member joined during the initial delayed join; the delay is extended.
        self.new_member_added = False
        #: Topics the members subscribe to (consumer groups); None when unknown.
        self.subscribed_topics: set[str] | None = None
        self.offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        #: Timers of the current join barrier and of the wait for SyncGroups.
        self.join_timer: Timer | None = None
        self.sync_timer: Timer | None = None
        #: True while the join barrier is held for the initial rebalance delay.
        self.initial_delay = False

    def __repr__(self) -> str:
        return (f"GroupMetadata({self.group_id!r}, {self.state.value}, gen={self.generation_id}, "
                f"members={list(self.members)})")

    # --- state

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def transition_to(self, target: GroupState, now_ms: int) -> None:
        """Move to ``target``; raises IllegalStateTransition when the table forbids it."""
        check_transition(self.state, target)
        self.state = target
        self.state_timestamp_ms = now_ms

    # --- membership

    def has(self, member_id: str) -> bool:
        return member_id in self.members

    def get(self, member_id: str) -> MemberMetadata:
        return self.members[member_id]

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    @property
    def leader(self) -> MemberMetadata | None:
        return self.members.get(self.leader_id) if self.leader_id is not None else None

    def static_member_id(self, instance_id: str | None) -> str | None:
        return self.static_members.get(instance_id) if instance_id is not None else None

    def is_static_member_fenced(self, instance_id: str | None, member_id: str) -> bool:
        """A known instance id now held by a different member id (KIP-345)."""
        current = self.static_member_id(instance_id)
        return current is not None and current != member_id

    def add(self, member: MemberMetadata) -> None:
        """Add a member (awaiting join if it has a waiter); the first member leads."""
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if self.leader_id is None:
            self.leader_id = member.member_id
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        self._votes.update(member.protocol_names)
        if member.awaiting_join is not None:
            self.num_awaiting_join += 1
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> MemberMetadata | None:
        """Remove a member; a new leader is picked if it led."""
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        self._votes.subtract(member.protocol_names)
        self._votes += Counter()  # drop zero counts
        if member.awaiting_join is not None:
            self.num_awaiting_join -= 1
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        if member.session_timer is not None:
            member.session_timer.cancel()
        return member

    def update_member(self, member: MemberMetadata, protocols: Protocols, rebalance_timeout_ms: int,
                      session_timeout_ms: int, join_waiter: Waiter[JoinGroupResult] | None) -> None:
        """Replace a member's protocols and timeouts; ``join_waiter`` becomes its pending join."""
        self._votes.subtract(member.protocol_names)
        member.protocols = [(n, bytes(m)) for n, m in protocols]
        self._votes.update(member.protocol_names)
        self._votes += Counter()
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if join_waiter is not None and member.awaiting_join is None:
            self.num_awaiting_join += 1
        elif join_waiter is None and member.awaiting_join is not None:
            self.num_awaiting_join -= 1
        if member.awaiting_join is not None and join_waiter is not member.awaiting_join:
            # A retried join on another connection supersedes the first one.
            member.awaiting_join.set(JoinGroupResult(Errors.REBALANCE_IN_PROGRESS, member.member_id))
        member.awaiting_join = join_waiter

    def replace_static_member(self, instance_id: str, old_member_id: str, new_member_id: str) -> MemberMetadata:
        """Give a static member's slot a new member id, fencing whatever waits under the old one."""
        member = self.members.pop(old_member_id)
        self.complete_join(member, JoinGroupResult(Errors.FENCED_INSTANCE_ID, old_member_id))
        member.complete_sync(SyncGroupResult(Errors.FENCED_INSTANCE_ID))
        if member.session_timer is not None:
            member.session_timer.cancel()
        member.member_id = new_member_id
        self.members[new_member_id] = member
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[instance_id] = new_member_id
        if old_member_id in self.pending_sync:
            self.pending_sync.discard(old_member_id)
            self.pending_sync.add(new_member_id)
        return member

    def complete_join(self, member: MemberMetadata, result: JoinGroupResult) -> bool:
        """Answer the member's waiting JoinGroup, if any (Kafka's maybeInvokeJoinCallback)."""
        if member.complete_join(result):
            self.num_awaiting_join -= 1
            return True
        return False

    def has_all_members_joined(self) -> bool:
        return self.num_awaiting_join == len(self.members) and not self.pending_members

    def not_yet_rejoined(self) -> list[MemberMetadata]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep a leader that rejoined, else pick one that did; False when nobody rejoined."""
        leader = self.leader
        if leader is not None and leader.awaiting_join is not None:
            return True
        for m in self.members.values():
            if m.awaiting_join is not None:
                self.leader_id = m.member_id
                return True
        return False

    @property
    def rebalance_timeout_ms(self) -> int:
        """The longest rebalance timeout among the members."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def reset_membership(self, now_ms: int) -> None:
        """Forget every member and rebalance in flight: an Empty group of the next generation.

        Used when a transition failed half-way; committed offsets are kept.
        """
        for timer in (self.join_timer, self.sync_timer):
            if timer is not None:
                timer.cancel()
        self.join_timer = self.sync_timer = None
        for member in self.members.values():
            if member.session_timer is not None:
                member.session_timer.cancel()
        self.members.clear()
        self.static_members.clear()
        self.pending_members.clear()
        self.pending_sync.clear()
        self._votes.clear()
        self.num_awaiting_join = 0
        self.new_member_added = False
        self.initial_delay = False
        self.leader_id = None
        self.protocol_type = None
        self.protocol_name = None
        self.subscribed_topics = set()
        self.generation_id += 1
        # Bypasses the transition table: the state the failure left behind is not trusted.
        self.state = GroupState.EMPTY
        self.state_timestamp_ms = now_ms

    # --- protocols

    def supports_protocols(self, protocol_type: str, protocols: Iterable[str]) -> bool:
        """Whether a member with these protocols may join (Kafka's supportsProtocols)."""
        names = list(protocols)
        if self.is_in(GroupState.EMPTY) and not self.members:
            return bool(protocol_type) and bool(names)
        return self.protocol_type == protocol_type and any(
            self._votes[n] == len(self.members) for n in names)

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        n = len(self.members)
        return {p for p, count in self._votes.items() if count == n}

    def select_protocol(self) -> str:
        """The protocol all members support, chosen by the members' preference votes."""
        candidates = self.candidate_protocols()
        if not candidates:
            raise ValueError("no protocol is supported by every member")
        votes = Counter(m.vote(candidates) for m in self.members.values())
        # Ties go to the protocol voted for first, keeping the choice deterministic.
        return max(votes, key=lambda p: votes[p])

    def init_next_generation(self, now_ms: int) -> None:
        """Close the join barrier: bump the generation and pick the protocol."""
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync = set(self.members)

    def compute_subscribed_topics(self) -> set[str] | None:
        """The union of the members' subscriptions, for consumer groups whose metadata parses."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE or self.protocol_name is None:
            return None if self.members else set()
        out: set[str] = set()
        for m in self.members.values():
            topics = subscribed_topics(m.metadata(self.protocol_name))
            if topics is None:
                return None
            out |= topics
        return out

    def is_subscribed_to(self, topic: str) -> bool:
        """Whether a member consumes ``topic``; True when that cannot be known."""
        return True if self.subscribed_topics is None else topic in self.subscribed_topics

    def current_member_metadata(self) -> list[tuple[str, str | None, bytes]]:
        """The members' metadata for the selected protocol, as the leader receives it."""
        assert self.protocol_name is not None
        return [(m.member_id, m.group_instance_id, m.metadata(self.protocol_name)) for m in self.members.values()]

    @property
    def is_consumer_group(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE
