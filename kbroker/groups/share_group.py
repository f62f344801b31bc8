"""Share groups (KIP-932): membership by ShareGroupHeartbeat, Kafka's SimpleAssignor, ShareGroupDescribe.

As Kafka's GroupMetadataManager for share groups: a member joins with epoch 0 and the topic
names it subscribes to, heartbeats with the epoch it was last given, and leaves with -1. A
change of members, subscriptions or the subscribed topics' partitions bumps the group epoch
and recomputes the target assignment; each member takes its target (and the new epoch) at its
next heartbeat: share groups never revoke, so there is nothing to wait for. A member that
does not heartbeat within the session timeout is removed by a timer on the broker clock.

The group's epoch and members are kept in ``__consumer_offsets`` (key versions 9-15, see
:mod:`kbroker.groups.share_records`) through :meth:`GroupMetadataManager.append`, and come
back at load through the manager's replayer hook.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.groups import share_records as rec
from kbroker.groups.errors import Errors
from kbroker.groups.model import GroupListing
from kbroker.groups.storage import KeyValue, StoredRecord
from kbroker.groups.timers import Scheduler, Timer

log = logging.getLogger(__name__)

#: (topic name) -> (topic id, partition count), None for a topic that does not exist.
TopicLookup = Callable[[str], tuple[uuid.UUID, int] | None]
Assignment = dict[uuid.UUID, frozenset[int]]
EMPTY = "Empty"
STABLE = "Stable"


class ShareGroupError(Exception):
    """A heartbeat refused with Kafka's error code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


@dataclass
class ShareMember:
    """One member of a share group."""

    member_id: str
    client_id: str = ""
    client_host: str = ""
    rack_id: str | None = None
    subscribed: tuple[str, ...] = ()
    member_epoch: int = 0
    assignment: Assignment = field(default_factory=dict)
    timer: Timer | None = None


@dataclass
class ShareGroup:
    """A share group: its epochs, members and target assignment."""

    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    #: The subscribed topics' (id, partitions) when the target was computed.
    topics_seen: tuple[tuple[str, uuid.UUID, int], ...] = ()

    @property
    def state(self) -> str:
        return STABLE if self.members else EMPTY


def simple_assign(members: dict[str, tuple[str, ...]], current: dict[str, Assignment],
                  lookup: TopicLookup) -> dict[str, Assignment]:
    """Kafka's SimpleAssignor: every partition of the subscribed topics goes to
    ``ceil(members / partitions)`` members (so members outnumbering partitions share them),
    members get counts that differ by at most one, and current assignments are kept where
    that balance allows. Members with different subscriptions are balanced topic by topic."""
    out: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in members}
    subscribers: dict[str, list[str]] = {}
    for m, topics in members.items():
        for t in topics:
            subscribers.setdefault(t, []).append(m)
    homogeneous = len({frozenset(t) for t in members.values()}) <= 1
    groups: list[tuple[list[str], list[tuple[uuid.UUID, int]]]] = []
    if homogeneous and members:
        topics = next(iter(members.values()))
        targets = []
        for t in sorted(set(topics)):
            found = lookup(t)
            if found is not None:
                targets += [(found[0], p) for p in range(found[1])]
        groups.append((sorted(members), targets))
    else:
        for t, ms in sorted(subscribers.items()):
            found = lookup(t)
            if found is not None:
                groups.append((sorted(ms), [(found[0], p) for p in range(found[1])]))
    for member_ids, targets in groups:
        _assign_group(member_ids, targets, current, out)
    return {m: {t: frozenset(ps) for t, ps in a.items() if ps} for m, a in out.items()}


def _assign_group(member_ids: list[str], targets: list[tuple[uuid.UUID, int]], current: dict[str, Assignment],
                  out: dict[str, dict[uuid.UUID, set[int]]]) -> None:
    """Balance ``targets`` over ``member_ids`` (one homogeneous set), sticky to ``current``."""
    n_members, n_parts = len(member_ids), len(targets)
    if not n_members or not n_parts:
        return
    sharing = math.ceil(n_members / n_parts)
    precise = sharing * n_parts / n_members
    desired = {m: math.ceil(precise * (i + 1)) - math.ceil(precise * i) for i, m in enumerate(member_ids)}
    holders: dict[tuple[uuid.UUID, int], list[str]] = {tp: [] for tp in targets}
    counts = dict.fromkeys(member_ids, 0)
    # Keep what members hold, within their desired counts and the partition's sharing.
    for m in member_ids:
        for t, ps in sorted(current.get(m, {}).items(), key=lambda kv: kv[0].int):
            for p in sorted(ps):
                tp = (t, p)
                if tp in holders and counts[m] < desired[m] and len(holders[tp]) < sharing:
                    holders[tp].append(m)
                    counts[m] += 1
    # Hand out what is left: the least shared partitions to the emptiest members.
    for tp in targets:
        while len(holders[tp]) < sharing:
            candidates = [m for m in member_ids if counts[m] < desired[m] and m not in holders[tp]]
            if not candidates:
                break
            m = min(candidates, key=lambda x: (counts[x], member_ids.index(x)))
            holders[tp].append(m)
            counts[m] += 1
    for tp, ms in holders.items():
        for m in ms:
            out[m].setdefault(tp[0], set()).add(tp[1])


class ShareGroupCoordinator:
    """The share groups this broker coordinates."""

    key_versions = rec.KEY_VERSIONS
    #: ListGroups' type of these groups.
    group_type = "share"

    def __init__(self, clock: Clock, config: Callable[[str], Any], *, lookup: TopicLookup,
                 topic_name: Callable[[uuid.UUID], str | None],
                 append: Callable[[str, list[KeyValue]], Any],
                 group_setting: Callable[[str, str], str | None] = lambda g, k: None,
                 partition_for: Callable[[str], int] = lambda g: 0,
                 classic_group_exists: Callable[[str], bool] = lambda g: False) -> None:
        """``append(group_id, records)`` writes to the group's ``__consumer_offsets`` partition
        (an awaitable giving an error code); ``lookup`` finds a topic's id and partition count."""
        self.clock = clock
        self._config = config
        self._lookup = lookup
        self._topic_name = topic_name
        self._append = append
        #: The group's config overrides (``share.*`` group configs); the broker's settings otherwise.
        self.group_setting = group_setting
        self._partition_for = partition_for
        self._classic_exists = classic_group_exists
        self.timers = Scheduler(clock)
        self.groups: dict[str, ShareGroup] = {}
        #: Told (group id, member id) when a member's session times out (its records are released).
        #: A member leaving on its own closes its share session itself, with its last acknowledgements,
        #: which may reach the broker after the leave: its records are not released on the leave.
        self.on_member_expired: list[Callable[[str, str], None]] = []
        #: Told a deleted group's id (its share-partition states go).
        self.on_group_deleted: list[Callable[[str], Any]] = []
        self._spawn: Callable[..., Any] | None = None

    def start(self, spawn: Callable[..., Any]) -> None:
        """Run the timers through ``spawn`` (a task group's ``start_soon``)."""
        self._spawn = spawn
        spawn(self.timers.run)

    # ------------------------------------------------------------------ settings

    def _ms(self, group_id: str, key: str) -> int:
        override = self.group_setting(group_id, key)
        if override is not None:
            try:
                return int(override)
            except ValueError:
                pass
        return int(self._config("group." + key))

    def session_timeout_ms(self, group_id: str) -> int:
        return self._ms(group_id, "share.session.timeout.ms")

    def heartbeat_interval_ms(self, group_id: str) -> int:
        return self._ms(group_id, "share.heartbeat.interval.ms")

    # ------------------------------------------------------------------ replay (RecordReplayer)

    def install(self, partition: int, records: Sequence[StoredRecord]) -> None:
        """Take up the share groups of a loaded ``__consumer_offsets`` partition."""
        for r in records:
            try:
                kind, group_id, member_id = rec.decode_key(r.key)
                if kind == rec.GROUP_METADATA:
                    if r.value is None:
                        self._drop(group_id)
                    else:
                        group = self.groups.setdefault(group_id, ShareGroup(group_id))
                        group.group_epoch = group.assignment_epoch = rec.decode_group_epoch(r.value)
                elif kind == rec.MEMBER_METADATA and member_id is not None:
                    group = self.groups.setdefault(group_id, ShareGroup(group_id))
                    if r.value is None:
                        group.members.pop(member_id, None)
                    else:
                        rack, client_id, host, topics = rec.decode_member_value(r.value)
                        group.members[member_id] = ShareMember(member_id, client_id, host, rack, tuple(topics))
            except rec.ShareRecordFormatError as e:
                log.warning("skipping a share group record that does not parse: %s", e)
        for group in self.groups.values():
            if self._partition_for(group.group_id) != partition:
                continue
            for member in group.members.values():
                # As Kafka: members come back with their sessions restarted; they must heartbeat.
                member.member_epoch = group.group_epoch
                self._schedule(group, member)

    def unload(self, partition: int) -> None:
        """Stop coordinating the share groups of ``partition``."""
        for group_id in [g for g in self.groups if self._partition_for(g) == partition]:
            self._drop(group_id)

    def _drop(self, group_id: str) -> None:
        group = self.groups.pop(group_id, None)
        if group is not None:
            for m in group.members.values():
                if m.timer is not None:
                    m.timer.cancel()

    # ------------------------------------------------------------------ heartbeat

    async def heartbeat(self, group_id: str, member_id: str, member_epoch: int, rack_id: str | None,
                        topics: list[str] | None, client_id: str, client_host: str) -> dict[str, Any]:
        """Serve one ShareGroupHeartbeat; returns the response body's fields (errors included)."""
        try:
            return await self._heartbeat(group_id, member_id, member_epoch, rack_id, topics, client_id, client_host)
        except ShareGroupError as e:
            return {"error_code": e.code, "error_message": e.message, "member_id": None, "member_epoch": 0,
                    "heartbeat_interval_ms": 0, "assignment": None}

    async def _heartbeat(self, group_id: str, member_id: str, member_epoch: int, rack_id: str | None,
                         topics: list[str] | None, client_id: str, client_host: str) -> dict[str, Any]:
        if not group_id:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
        if not member_id:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
        if len(member_id) > 36 * 4:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST, "MemberId is too long.")
        if member_epoch < -1:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST, "MemberEpoch is invalid.")
        if member_epoch == 0 and not topics:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST, "SubscribedTopicNames must be set in first request.")
        if self._classic_exists(group_id):
            raise ShareGroupError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                                  f"Group {group_id} is not a share group.")
        if member_epoch == -1:
            return await self._leave(group_id, member_id)
        group = self.groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        group_created = False
        if member_epoch == 0:
            if group is None:
                group_created = True
                group = self.groups[group_id] = ShareGroup(group_id)
            if member is None:
                max_size = int(self._config("group.share.max.size"))
                if len(group.members) >= max_size:
                    raise ShareGroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                          f"The share group has reached its maximum capacity of {max_size} members.")
        else:
            if group is None or member is None:
                raise ShareGroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                      f"Member {member_id} is not a member of group {group_id}.")
            if member_epoch != member.member_epoch:
                raise ShareGroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                                      f"The share group member has a smaller member epoch ({member_epoch}) than the "
                                      f"one known by the group coordinator ({member.member_epoch}).")
        records: list[KeyValue] = []
        new_member = member is None
        if member is None:
            member = ShareMember(member_id)
        changed = new_member
        if topics is not None and tuple(topics) != member.subscribed:
            member.subscribed = tuple(topics)
            changed = True
        if (rack_id, client_id, client_host) != (member.rack_id, member.client_id, member.client_host):
            member.rack_id, member.client_id, member.client_host = rack_id, client_id, client_host
            changed = True
        if changed:
            records.append((rec.member_metadata_key(group_id, member_id),
                            rec.member_metadata_value(member.rack_id, member.client_id, member.client_host,
                                                      list(member.subscribed))))
        group.members[member_id] = member
        seen = self._topics_seen(group)
        if new_member or seen != group.topics_seen or (changed and topics is not None):
            self._bump(group, seen, records)
        if records:
            code = await self._append(group_id, records)
            if code != Errors.NONE:
                if new_member:
                    group.members.pop(member_id, None)
                if group_created:
                    self.groups.pop(group_id, None)
                raise ShareGroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        send = member_epoch == 0 or member.member_epoch != group.assignment_epoch
        member.member_epoch = group.assignment_epoch
        member.assignment = group.target.get(member_id, {})
        self._schedule(group, member)
        assignment = None
        if send:
            assignment = {"topic_partitions": [{"topic_id": t, "partitions": sorted(ps)}
                                               for t, ps in sorted(member.assignment.items(), key=lambda kv: kv[0].int)]}
        return {"error_code": ErrorCode.NONE, "error_message": None, "member_id": member_id,
                "member_epoch": member.member_epoch,
                "heartbeat_interval_ms": self.heartbeat_interval_ms(group_id), "assignment": assignment}

    def _topics_seen(self, group: ShareGroup) -> tuple[tuple[str, uuid.UUID, int], ...]:
        names = sorted({t for m in group.members.values() for t in m.subscribed})
        out = []
        for name in names:
            found = self._lookup(name)
            if found is not None:
                out.append((name, found[0], found[1]))
        return tuple(out)

    def _bump(self, group: ShareGroup, seen: tuple[tuple[str, uuid.UUID, int], ...], records: list[KeyValue]) -> None:
        """A new group epoch with a new target assignment."""
        group.group_epoch += 1
        group.topics_seen = seen
        group.target = simple_assign({m.member_id: m.subscribed for m in group.members.values()},
                                     {m: a for m, a in group.target.items() if m in group.members}, self._lookup)
        group.assignment_epoch = group.group_epoch
        records.append((rec.group_metadata_key(group.group_id), rec.group_metadata_value(group.group_epoch)))

    async def _leave(self, group_id: str, member_id: str) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None or member_id not in group.members:
            raise ShareGroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                  f"Member {member_id} is not a member of group {group_id}.")
        records = self._remove(group, member_id)
        await self._append(group_id, records)
        return {"error_code": ErrorCode.NONE, "error_message": None, "member_id": member_id, "member_epoch": -1,
                "heartbeat_interval_ms": 0, "assignment": None}

    def _remove(self, group: ShareGroup, member_id: str) -> list[KeyValue]:
        member = group.members.pop(member_id)
        if member.timer is not None:
            member.timer.cancel()
        records: list[KeyValue] = [(rec.member_metadata_key(group.group_id, member_id), None)]
        self._bump(group, self._topics_seen(group), records)
        return records

    def _schedule(self, group: ShareGroup, member: ShareMember) -> None:
        timeout = self.session_timeout_ms(group.group_id)
        if member.timer is not None and self.timers.extend(member.timer, timeout):
            return
        if member.timer is not None:
            member.timer.cancel()
        member.timer = self.timers.call_later(timeout, lambda: self._expire(group.group_id, member.member_id))

    def _expire(self, group_id: str, member_id: str) -> None:
        group = self.groups.get(group_id)
        if group is None or member_id not in group.members:
            return
        log.info("share group %s: member %s timed out", group_id, member_id)
        records = self._remove(group, member_id)
        for cb in self.on_member_expired:
            cb(group_id, member_id)
        if self._spawn is not None:
            self._spawn(self._append, group_id, records)

    # ------------------------------------------------------------------ admin (ListGroups, DescribeGroups, DeleteGroups)

    def listings(self) -> list[GroupListing]:
        """Every share group, as ListGroups shows it."""
        return [GroupListing(g.group_id, "share", g.state, "share") for g in self.groups.values()]

    def has_group(self, group_id: str) -> bool:
        return group_id in self.groups

    async def delete(self, group_id: str) -> Errors:
        """DeleteGroups of a share group: only an empty one (NON_EMPTY_GROUP otherwise)."""
        group = self.groups.get(group_id)
        if group is None:
            return Errors.GROUP_ID_NOT_FOUND
        if group.members:
            return Errors.NON_EMPTY_GROUP
        records: list[KeyValue] = [(rec.group_metadata_key(group_id), None)]
        code: Errors = await self._append(group_id, records)
        if code != Errors.NONE:
            return code
        self._drop(group_id)
        for cb in self.on_group_deleted:
            result = cb(group_id)
            if hasattr(result, "__await__"):
                await result
        return Errors.NONE

    async def ensure_group(self, group_id: str) -> Errors:
        """Create an empty share group (AlterShareGroupOffsets of a group not seen yet)."""
        if group_id in self.groups:
            return Errors.NONE
        self.groups[group_id] = ShareGroup(group_id)
        code: Errors = await self._append(group_id, [(rec.group_metadata_key(group_id), rec.group_metadata_value(0))])
        if code != Errors.NONE:
            self.groups.pop(group_id, None)
        return code

    def describe(self, group_id: str) -> dict[str, Any]:
        """One ShareGroupDescribe entry."""
        group = self.groups.get(group_id)
        if group is None:
            return {"error_code": ErrorCode.GROUP_ID_NOT_FOUND, "error_message": f"Group {group_id} not found.",
                    "group_id": group_id, "group_state": "Dead", "group_epoch": -1, "assignment_epoch": -1,
                    "assignor_name": "", "members": [], "authorized_operations": -2147483648}
        members = []
        for m in group.members.values():
            members.append({
                "member_id": m.member_id, "rack_id": m.rack_id, "member_epoch": m.member_epoch,
                "client_id": m.client_id, "client_host": m.client_host, "subscribed_topic_names": list(m.subscribed),
                "assignment": {"topic_partitions": [
                    {"topic_id": t, "topic_name": self._topic_name(t) or "", "partitions": sorted(ps)}
                    for t, ps in sorted(m.assignment.items(), key=lambda kv: kv[0].int)]},
            })
        return {"error_code": ErrorCode.NONE, "error_message": None, "group_id": group_id,
                "group_state": group.state, "group_epoch": group.group_epoch,
                "assignment_epoch": group.assignment_epoch, "assignor_name": "simple", "members": members,
                "authorized_operations": -2147483648}
