"""Consumer groups of the KIP-848 protocol: ConsumerGroupHeartbeat, ConsumerGroupDescribe.

Follows Kafka 4.x's GroupMetadataManager, ConsumerGroup and CurrentAssignmentBuilder. The
broker owns the assignment:

- the **group epoch** is bumped whenever the membership, a subscription or the metadata of
  a subscribed topic changes; the **target assignment** is then computed again by the
  group's server-side assignor (``uniform`` or ``range``) and stamped with that epoch (the
  **assignment epoch**);
- each member is reconciled towards its target one heartbeat at a time: partitions it
  must give up are **revoked** first (it keeps its member epoch until its heartbeat shows it
  no longer owns them, within its rebalance timeout), then it gets the new partitions that
  no other member still owns (the others stay **unreleased** until released) and the
  assignment epoch as its member epoch.

Everything runs on the broker's event loop. Session and revocation timeouts are timers on
the coordinator's :class:`~kbroker.groups.timers.Scheduler`. The groups' records
(:mod:`kbroker.groups.consumer_records`) are appended to ``__consumer_offsets`` through
:meth:`GroupMetadataManager.append` and replayed at load (:class:`ConsumerGroupCoordinator`
is a :class:`~kbroker.groups.manager.RecordReplayer`). Committed offsets stay with the
classic offset records, checked against member epochs here (:meth:`validate_offset_commit`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from kbroker.clock import Clock
from kbroker.groups import consumer_records as R
from kbroker.groups.assignors import ASSIGNORS, MemberSpec
from kbroker.groups.errors import Errors, GroupError
from kbroker.groups.manager import GroupMetadataManager
from kbroker.groups.model import GroupListing
from kbroker.groups.storage import KeyValue, StoredRecord
from kbroker.groups.timers import Scheduler, Timer
from kbroker.metadata.model import TopicInfo

log = logging.getLogger(__name__)

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
#: Member states as Kafka's MemberState stores them.
STABLE, UNREVOKED_PARTITIONS, UNRELEASED_PARTITIONS = 0, 1, 2
#: Longest subscribed regular expression accepted: the pattern comes from a client.
MAX_REGEX_LENGTH = 1000
#: Matching time one regex may take over all topic names.
REGEX_BUDGET_S = 0.05
#: Regexes are evaluated again at most this often per group while topics come and go.
REGEX_REFRESH_MS = 1000
#: Longest member id accepted from a client (v1 clients generate theirs).
MAX_MEMBER_ID_LENGTH = 256
#: Most bytes of topic names one member may subscribe to: its metadata record must fit one
#: ``__consumer_offsets`` batch (message.max.bytes, 1 MB by default) beside the group's others.
MAX_SUBSCRIBED_NAMES_BYTES = 512 * 1024

#: topic id -> partitions.
Partitions = dict[uuid.UUID, frozenset[int]]
EMPTY: Partitions = {}


def _diff(a: Mapping[uuid.UUID, frozenset[int]], b: Mapping[uuid.UUID, frozenset[int]]) -> Partitions:
    """Partitions of ``a`` not in ``b``."""
    out: Partitions = {}
    for t, ps in a.items():
        rest = ps - b.get(t, frozenset())
        if rest:
            out[t] = frozenset(rest)
    return out


def _union(a: Mapping[uuid.UUID, frozenset[int]], b: Mapping[uuid.UUID, frozenset[int]]) -> Partitions:
    out = dict(a)
    for t, ps in b.items():
        out[t] = out.get(t, frozenset()) | ps
    return {t: ps for t, ps in out.items() if ps}


def _normalize(parts: Mapping[uuid.UUID, Iterable[int]]) -> Partitions:
    return {t: frozenset(ps) for t, ps in parts.items() if ps}


@dataclass(frozen=True)
class ConsumerGroupConfig:
    """The broker settings of consumer groups (``group.consumer.*``)."""

    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 5000
    assignors: tuple[str, ...] = ("uniform", "range")
    max_size: int = 2**31 - 1
    migration_policy: str = "disabled"
    min_session_timeout_ms: int = 45000
    max_session_timeout_ms: int = 60000
    min_heartbeat_interval_ms: int = 5000
    max_heartbeat_interval_ms: int = 15000

    @classmethod
    def from_broker_config(cls, config: Any) -> ConsumerGroupConfig:
        """Read the ``group.consumer.*`` keys from a BrokerConfig."""
        def get(key: str, default: Any) -> Any:
            try:
                value = config.get(key)
            except KeyError:
                return default
            return default if value is None else value

        assignors = get("group.consumer.assignors", ["uniform", "range"])
        if isinstance(assignors, str):
            assignors = [a.strip() for a in assignors.split(",") if a.strip()]
        return cls(
            session_timeout_ms=int(get("group.consumer.session.timeout.ms", 45000)),
            heartbeat_interval_ms=int(get("group.consumer.heartbeat.interval.ms", 5000)),
            assignors=tuple(a for a in assignors if a in ASSIGNORS) or ("uniform",),
            max_size=int(get("group.consumer.max.size", 2**31 - 1)),
            migration_policy=str(get("group.consumer.migration.policy", "disabled")).lower(),
            min_session_timeout_ms=int(get("group.consumer.min.session.timeout.ms", 45000)),
            max_session_timeout_ms=int(get("group.consumer.max.session.timeout.ms", 60000)),
            min_heartbeat_interval_ms=int(get("group.consumer.min.heartbeat.interval.ms", 5000)),
            max_heartbeat_interval_ms=int(get("group.consumer.max.heartbeat.interval.ms", 15000)),
        )


@dataclass(eq=False)
class ConsumerMember:
    """One member of a consumer group (Kafka's ConsumerGroupMember)."""

    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    rebalance_timeout_ms: int = -1
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: int = STABLE
    assigned: Partitions = field(default_factory=dict)
    pending_revocation: Partitions = field(default_factory=dict)
    session_timer: Timer | None = None
    revocation_timer: Timer | None = None

    def metadata_value(self) -> R.MemberMetadataValue:
        """The member's ConsumerGroupMemberMetadataValue."""
        return R.MemberMetadataValue(self.instance_id, self.rack_id, self.client_id, self.client_host,
                                     self.subscribed_topic_names, self.subscribed_topic_regex,
                                     self.rebalance_timeout_ms, self.server_assignor)

    def assignment_value(self) -> R.CurrentAssignmentValue:
        """The member's ConsumerGroupCurrentMemberAssignmentValue."""
        return R.CurrentAssignmentValue(self.member_epoch, self.previous_member_epoch, self.state, self.assigned,
                                        self.pending_revocation)

    def cancel_timers(self) -> None:
        """Stop the member's session and revocation timers."""
        for timer in (self.session_timer, self.revocation_timer):
            if timer is not None:
                timer.cancel()
        self.session_timer = self.revocation_timer = None


@dataclass(eq=False)
class ConsumerGroup:
    """A consumer group (Kafka's ConsumerGroup)."""

    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    #: member id -> its target assignment at ``assignment_epoch``.
    target: dict[str, Partitions] = field(default_factory=dict)
    #: The subscribed topics as the target was computed: name -> (id, partition count).
    subscription_metadata: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)
    #: regex -> the topic names it matched (when it was last evaluated).
    resolved_regexes: dict[str, frozenset[str]] = field(default_factory=dict)
    #: (topic id, partition) -> the member owning it now (assigned or being revoked).
    owners: dict[tuple[uuid.UUID, int], str] = field(default_factory=dict)
    #: instance id -> member id of static members.
    static_members: dict[str, str] = field(default_factory=dict)
    #: When the regexes were last evaluated, and against which topic names.
    regex_refreshed_ms: int = -1
    regex_topics: frozenset[str] = frozenset()
    #: Every topic name some member subscribes to (by name or regex); None when to be computed again.
    subscribed_names: frozenset[str] | None = None

    @property
    def state(self) -> str:
        """Kafka's ConsumerGroupState name."""
        if not self.members:
            return "Empty"
        if self.group_epoch > self.assignment_epoch:
            return "Assigning"
        for m in self.members.values():
            if m.state != STABLE or m.member_epoch != self.assignment_epoch:
                return "Reconciling"
        return "Stable"

    def preferred_assignor(self, config: ConsumerGroupConfig) -> str:
        """The assignor most members ask for; the first configured one when none asks (as Kafka)."""
        counts: dict[str, int] = {}
        for m in self.members.values():
            # (an assignor no longer configured, named before a restart, does not count)
            name = m.server_assignor
            if name is not None and name in config.assignors:
                counts[name] = counts.get(name, 0) + 1
        if not counts:
            return config.assignors[0]
        return max(sorted(counts), key=lambda a: counts[a])

    def release(self, member: ConsumerMember) -> None:
        """Forget ``member``'s ownership of its partitions."""
        for parts in (member.assigned, member.pending_revocation):
            for t, ps in parts.items():
                for p in ps:
                    if self.owners.get((t, p)) == member.member_id:
                        del self.owners[(t, p)]

    def own(self, member: ConsumerMember) -> None:
        """Record ``member`` as the owner of its partitions."""
        for parts in (member.assigned, member.pending_revocation):
            for t, ps in parts.items():
                for p in ps:
                    self.owners[(t, p)] = member.member_id

    def add(self, member: ConsumerMember) -> None:
        self.subscribed_names = None
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self.own(member)

    def remove(self, member_id: str) -> ConsumerMember | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        self.subscribed_names = None
        self.release(member)
        self.target.pop(member_id, None)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        member.cancel_timers()
        return member


@dataclass
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat call, as decoded."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: Sequence[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    #: topic id -> partitions the member owns; None when unchanged since its last heartbeat.
    owned: Mapping[uuid.UUID, Sequence[int]] | None = None
    client_id: str = ""
    client_host: str = ""
    version: int = 1


@dataclass
class HeartbeatResult:
    """What a ConsumerGroupHeartbeat answers."""

    error: Errors = Errors.NONE
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    #: None: no assignment in the response.
    assignment: Partitions | None = None


@dataclass
class MemberDescription:
    """One member as ConsumerGroupDescribe shows it."""

    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    subscribed_topic_regex: str | None
    assignment: Partitions
    target: Partitions


@dataclass
class GroupDescription:
    """A consumer group as ConsumerGroupDescribe shows it."""

    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: list[MemberDescription]


def _invalid(message: str) -> GroupError:
    return GroupError(Errors.INVALID_REQUEST, message)


class ConsumerGroupCoordinator:
    """Every consumer group this broker coordinates, and their records."""

    key_versions = R.KEY_VERSIONS

    def __init__(self, manager: GroupMetadataManager, timers: Scheduler, clock: Clock, config: ConsumerGroupConfig,
                 topics: Callable[[], Mapping[str, TopicInfo]], *,
                 check_active: Callable[[str], None] = lambda g: None,
                 spawn: Callable[..., None] | None = None,
                 group_setting: Callable[[str, str], str | None] = lambda g, k: None) -> None:
        """``topics``: the cluster's topics by name now; ``check_active`` raises the error a
        request for a group gets while it is not served here; ``spawn`` runs a background
        coroutine (the writes of timer-driven changes); ``group_setting`` gives a group's
        override of a group config (``consumer.session.timeout.ms``, ...) or None."""
        self.manager = manager
        self.timers = timers
        self.clock = clock
        self.config = config
        self.topics = topics
        self._check_active = check_active
        self._spawn = spawn
        self.group_setting = group_setting
        #: Whether a group of another type (a share group) has this id: one namespace for all.
        self.foreign_group: Callable[[str], bool] = lambda g: False
        self.groups: dict[str, ConsumerGroup] = {}
        #: A compiled regex per pattern (bounded by the distinct patterns of live members).
        self._compiled: dict[str, Any] = {}
        self._stopped = False
        self._cleanup_interval_ms = 0
        #: ``__consumer_offsets`` partition -> the last write queued for it: the records reach
        #: the log in the order they were made (the tombstones of a member fenced by a timer,
        #: written by a spawned task, must not land after the records of its rejoin).
        self._last_write: dict[int, anyio.Event] = {}

    def _reserve(self, group_id: str) -> tuple[anyio.Event | None, anyio.Event]:
        """Take the next turn to write to ``group_id``'s partition; call when the records are made."""
        partition = self.manager.partition_for(group_id)
        done = anyio.Event()
        previous = self._last_write.get(partition)
        self._last_write[partition] = done
        return previous, done

    async def _append(self, group_id: str, records: list[KeyValue],
                      turn: tuple[anyio.Event | None, anyio.Event]) -> Errors:
        """Append ``records`` once the writes queued before them (``turn``) are done."""
        previous, done = turn
        try:
            if previous is not None:
                await previous.wait()
            return await self.manager.append(group_id, records)
        finally:
            done.set()
            partition = self.manager.partition_for(group_id)
            if self._last_write.get(partition) is done:
                del self._last_write[partition]

    # ------------------------------------------------------------------ cleanup

    def start(self, interval_ms: int) -> None:
        """Every ``interval_ms`` (``offsets.retention.check.interval.ms``), delete the empty
        consumer groups left without committed offsets, as Kafka does once their offsets expire."""
        self._cleanup_interval_ms = interval_ms
        self.timers.call_later(interval_ms, self._on_cleanup)

    def _on_cleanup(self) -> None:
        if self._stopped:
            return
        for group in [g for g in self.groups.values() if not g.members]:
            try:
                self._check_active(group.group_id)  # a partition being loaded or moved is left alone
            except GroupError:
                continue
            offsets = self.manager.get(group.group_id)
            if offsets is not None and (offsets.offsets or self.manager.has_open_transactions(group.group_id)):
                continue
            log.info("empty consumer group %s has no offsets left and is removed", group.group_id)
            self._drop(group)
            if self._spawn is not None:
                self._spawn(self._write, group.group_id, self._group_tombstones(group),
                            self._reserve(group.group_id))
        self.timers.call_later(self._cleanup_interval_ms, self._on_cleanup)

    # ------------------------------------------------------------------ settings

    def _group_int(self, group_id: str, key: str, default: int) -> int:
        try:
            value = self.group_setting(group_id, key)
        except Exception:
            log.exception("reading group config %s of %s failed", key, group_id)
            value = None
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            return default

    def session_timeout_ms(self, group_id: str) -> int:
        """The group's ``consumer.session.timeout.ms``, else the broker's."""
        return self._group_int(group_id, "consumer.session.timeout.ms", self.config.session_timeout_ms)

    def heartbeat_interval_ms(self, group_id: str) -> int:
        """The group's ``consumer.heartbeat.interval.ms``, else the broker's."""
        return self._group_int(group_id, "consumer.heartbeat.interval.ms", self.config.heartbeat_interval_ms)

    # ------------------------------------------------------------------ group kinds (ListGroups etc.)

    def has_group(self, group_id: str) -> bool:
        """Whether ``group_id`` is a consumer group here."""
        return group_id in self.groups

    def subscribed_topics(self, group_id: str) -> frozenset[str]:
        """The topics the members of consumer group ``group_id`` subscribe to (their offsets do not expire)."""
        group = self.groups.get(group_id)
        if group is None:
            return frozenset()
        if group.subscribed_names is None:
            self._subscription_metadata(group)
        return group.subscribed_names or frozenset()

    def get(self, group_id: str) -> ConsumerGroup | None:
        return self.groups.get(group_id)

    def listings(self) -> list[GroupListing]:
        """Every consumer group as ListGroups shows it."""
        return [GroupListing(g.group_id, "consumer", g.state, "consumer") for g in self.groups.values()]

    async def delete(self, group_id: str) -> Errors:
        """Delete an empty consumer group's records (DeleteGroups); its offsets are the caller's."""
        group = self.groups.get(group_id)
        if group is None:
            return Errors.GROUP_ID_NOT_FOUND
        if group.members:
            return Errors.NON_EMPTY_GROUP
        self._drop(group)
        return await self._append(group_id, self._group_tombstones(group), self._reserve(group_id))

    def _drop(self, group: ConsumerGroup) -> None:
        for m in group.members.values():
            m.cancel_timers()
        if self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]

    @staticmethod
    def _group_tombstones(group: ConsumerGroup) -> list[KeyValue]:
        gid = group.group_id
        out: list[KeyValue] = [(R.key(R.REGULAR_EXPRESSION, gid, rx), None) for rx in group.resolved_regexes]
        out += [(R.key(R.TARGET_METADATA, gid), None), (R.key(R.PARTITION_METADATA, gid), None),
                (R.key(R.GROUP_METADATA, gid), None)]
        return out

    def convert_empty_to_classic(self, group_id: str) -> tuple[Errors, list[KeyValue]]:
        """A classic JoinGroup found this consumer group: an empty one is dropped (its
        tombstones returned for the caller to write), whatever the migration policy, as Kafka."""
        group = self.groups.get(group_id)
        if group is None:
            return Errors.NONE, []
        if group.members:
            # Kafka would take the classic member into the consumer group (a mixed group);
            # not supported here: the protocols are inconsistent.
            return Errors.INCONSISTENT_GROUP_PROTOCOL, []
        log.info("empty consumer group %s becomes a classic group", group_id)
        self._drop(group)
        return Errors.NONE, self._group_tombstones(group)

    # ------------------------------------------------------------------ offsets

    def validate_offset_commit(self, group_id: str, member_id: str, instance_id: str | None, member_epoch: int,
                               api_version: int) -> None:
        """Raise what an OffsetCommit gets (Kafka's ConsumerGroup.validateOffsetCommit)."""
        group = self.groups[group_id]
        if member_epoch < 0 and not group.members:
            return  # an admin client, or a consumer outside group management
        member = group.members.get(member_id)
        if member is None:
            raise GroupError(Errors.UNKNOWN_MEMBER_ID)
        if api_version < 9:
            raise GroupError(Errors.UNSUPPORTED_VERSION,
                             "OffsetCommit version 9 or above must be used by members using the consumer group protocol")
        if member_epoch != member.member_epoch:
            raise GroupError(Errors.STALE_MEMBER_EPOCH)

    def validate_offset_fetch(self, group_id: str, member_id: str | None, member_epoch: int) -> None:
        """Raise what an OffsetFetch gets (Kafka's ConsumerGroup.validateOffsetFetch)."""
        group = self.groups[group_id]
        if member_id is None and member_epoch < 0:
            return
        member = group.members.get(member_id or "")
        if member is None:
            raise GroupError(Errors.UNKNOWN_MEMBER_ID)
        if member_epoch != member.member_epoch:
            raise GroupError(Errors.STALE_MEMBER_EPOCH)

    # ------------------------------------------------------------------ ConsumerGroupHeartbeat

    def _validate(self, req: HeartbeatRequest) -> None:
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid, in its order."""
        def empty(s: str | None) -> bool:
            return s is not None and not s.strip()

        if (req.member_epoch != 0 or req.version >= 1) and not req.member_id.strip():
            raise _invalid("MemberId can't be empty.")
        if len(req.member_id) > MAX_MEMBER_ID_LENGTH:
            raise _invalid("MemberId is too long.")
        if empty(req.group_id) or not req.group_id:
            raise _invalid("GroupId can't be empty.")
        if empty(req.instance_id):
            raise _invalid("InstanceId can't be empty.")
        if empty(req.rack_id):
            raise _invalid("RackId can't be empty.")
        if req.member_epoch == 0:
            if req.rebalance_timeout_ms == -1:
                raise _invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or len(req.owned) > 0:
                raise _invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise _invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when "
                               "(re-)joining.")
        elif req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if req.instance_id is None:
                raise _invalid("InstanceId can't be null.")
        elif req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise _invalid("MemberEpoch is invalid.")
        if req.server_assignor is not None and req.server_assignor not in self.config.assignors:
            raise GroupError(Errors.UNSUPPORTED_ASSIGNOR,
                             f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                             f"{', '.join(self.config.assignors)}.")
        if req.subscribed_topic_regex is not None:
            self._compile(req.subscribed_topic_regex)
        if req.subscribed_topic_names is not None and \
                sum(len(n.encode()) + 2 for n in set(req.subscribed_topic_names)) > MAX_SUBSCRIBED_NAMES_BYTES:
            # Kafka's write would fail (UNKNOWN_SERVER_ERROR) and its state be reverted; the
            # state here is changed before the write, so the request is refused beforehand.
            raise GroupError(Errors.UNKNOWN_SERVER_ERROR,
                             f"SubscribedTopicNames take over {MAX_SUBSCRIBED_NAMES_BYTES} bytes: the member's "
                             f"record would be too large.")

    def _compile(self, pattern: str) -> Any:
        """The compiled ``pattern``; INVALID_REGULAR_EXPRESSION for a bad or oversized one."""
        compiled = self._compiled.get(pattern)
        if compiled is not None:
            return compiled
        import regex  # only regex subscriptions need it; kept off start-up

        from kbroker.txn.coordinator import MAX_PATTERN_SIZE, _expanded_size

        if len(pattern) > MAX_REGEX_LENGTH or _expanded_size(pattern) > MAX_PATTERN_SIZE:
            raise GroupError(Errors.INVALID_REGULAR_EXPRESSION, "SubscribedTopicRegex is too long.")
        try:
            compiled = regex.compile(pattern)
        except (regex.error, RecursionError, OverflowError, ValueError, MemoryError) as e:
            raise GroupError(Errors.INVALID_REGULAR_EXPRESSION,
                             f"SubscribedTopicRegex `{pattern[:200]}` is not a valid regular expression: {e}.") from None
        if len(self._compiled) >= 1000:
            self._compiled.clear()
        self._compiled[pattern] = compiled
        return compiled

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResult:
        """Serve one ConsumerGroupHeartbeat: join, heartbeat or leave."""
        try:
            self._check_active(req.group_id)
            self._validate(req)
            if req.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                result, records = self._leave(req)
            else:
                result, records = self._heartbeat(req)
        except GroupError as e:
            return HeartbeatResult(e.code, str(e) if str(e) != e.code.name else None)
        if records:
            error = await self._append(req.group_id, records, self._reserve(req.group_id))
            if error != Errors.NONE:
                return HeartbeatResult(error)
        return result

    def _get_or_create(self, req: HeartbeatRequest) -> tuple[ConsumerGroup, list[KeyValue]]:
        group = self.groups.get(req.group_id)
        if group is not None:
            return group, []
        if self.foreign_group(req.group_id):
            raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group.")
        if req.member_epoch != 0:
            raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {req.group_id} not found.")
        records: list[KeyValue] = []
        classic = self.manager.get(req.group_id)
        if classic is not None and (classic.members or classic.protocol_type is not None):
            # Kafka converts an empty classic group whatever the migration policy, and (the
            # policy allowing) one with members online; the latter is not supported here.
            if classic.members:
                raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group.")
            log.info("empty classic group %s becomes a consumer group", req.group_id)
            from kbroker.groups.records import group_key
            records.append((group_key(req.group_id), None))
            classic.protocol_type = None
            classic.generation_id = 0
        group = ConsumerGroup(req.group_id)
        self.groups[req.group_id] = group
        return group, records

    def _heartbeat(self, req: HeartbeatRequest) -> tuple[HeartbeatResult, list[KeyValue]]:
        group, records = self._get_or_create(req)
        gid = group.group_id
        owned = None if req.owned is None else _normalize(req.owned)
        member = group.members.get(req.member_id) if req.member_id else None
        joining = req.member_epoch == 0
        new_member = member is None
        #: What the log holds for the member now: its record is written again when this differs.
        stored = None if member is None else member.assignment_value()
        if joining:
            if member is None and req.instance_id is not None and req.instance_id in group.static_members:
                member = self._replace_static_member(group, req, records)
                new_member = False
                stored = member.assignment_value()
            elif member is None:
                if len(group.members) >= self.config.max_size:
                    raise GroupError(Errors.GROUP_MAX_SIZE_REACHED,
                                     f"The consumer group has reached its maximum capacity of "
                                     f"{self.config.max_size} members.")
                member_id = req.member_id or str(uuid.uuid4())
                member = ConsumerMember(member_id, instance_id=req.instance_id)
            else:
                # A member rejoining with epoch 0 owns nothing (its request says so): it starts over.
                if req.instance_id != member.instance_id:
                    raise GroupError(Errors.FENCED_INSTANCE_ID)
                group.release(member)
                member.assigned, member.pending_revocation = {}, {}
                member.member_epoch = member.previous_member_epoch = 0
                member.state = STABLE
        else:
            if req.instance_id is not None:
                # As Kafka: a static member is found by its instance id; one held by another
                # member id now fences this one (a replaced instance must stop).
                holder = group.static_members.get(req.instance_id)
                if holder is None:
                    raise GroupError(Errors.UNKNOWN_MEMBER_ID, f"Instance id {req.instance_id} is unknown.")
                if holder != req.member_id:
                    raise GroupError(Errors.FENCED_INSTANCE_ID,
                                     f"Static member {req.member_id} with instance id {req.instance_id} was fenced "
                                     f"by member {holder}.")
            if member is None:
                raise GroupError(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {gid}.")
            self._check_epoch(member, req.member_epoch, owned)
        assert member is not None
        before_meta = member.metadata_value()
        before_assignment = member.assignment_value()
        # Update the member's subscription and attributes.
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.subscribed_topic_names is not None:
            member.subscribed_topic_names = tuple(sorted(set(req.subscribed_topic_names)))
        if req.subscribed_topic_regex is not None:
            member.subscribed_topic_regex = req.subscribed_topic_regex or None
        if req.server_assignor is not None:
            member.server_assignor = req.server_assignor
        member.client_id = req.client_id
        member.client_host = req.client_host
        if new_member:
            group.add(member)
        bump = new_member or (member.subscribed_topic_names != before_meta.subscribed_topic_names
                              or member.subscribed_topic_regex != before_meta.subscribed_topic_regex
                              or member.server_assignor != before_meta.server_assignor)
        if bump:
            group.subscribed_names = None
        if member.metadata_value() != before_meta or new_member:
            records.append((R.key(R.MEMBER_METADATA, gid, member.member_id),
                            R.member_metadata_value(member.metadata_value())))
        records += self._refresh_regexes(group, force=bump)
        metadata = self._subscription_metadata(group)
        if bump or metadata != group.subscription_metadata:
            records += self._bump(group, metadata)
        self._reconcile(group, member, owned)
        if member.assignment_value() != stored:
            records.append((R.key(R.CURRENT_ASSIGNMENT, gid, member.member_id),
                            R.current_assignment_value(member.assignment_value())))
        self._schedule_session(group, member)
        full = req.rebalance_timeout_ms != -1 and (req.subscribed_topic_names is not None
                                                   or req.subscribed_topic_regex is not None) and owned is not None
        changed = member.assigned != before_assignment.assigned
        result = HeartbeatResult(member_id=member.member_id, member_epoch=member.member_epoch,
                                 heartbeat_interval_ms=self.heartbeat_interval_ms(gid))
        if joining or full or changed:
            result.assignment = dict(member.assigned)
        return result, records

    def _replace_static_member(self, group: ConsumerGroup, req: HeartbeatRequest,
                               records: list[KeyValue]) -> ConsumerMember:
        """A static member rejoins under a new member id: it takes over its predecessor's
        epoch and assignment if that one left temporarily (epoch -2), else UNRELEASED_INSTANCE_ID."""
        assert req.instance_id is not None
        old = group.members[group.static_members[req.instance_id]]
        if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise GroupError(Errors.UNRELEASED_INSTANCE_ID,
                             f"Static member {old.member_id} with instance id {req.instance_id} is not released yet.")
        target = group.target.get(old.member_id, EMPTY)
        group.remove(old.member_id)
        records += self._member_tombstones(group.group_id, old.member_id)
        member_id = req.member_id or str(uuid.uuid4())
        # As Kafka: the predecessor's assignment under the new id, at epoch 0 (the joining
        # instance owns nothing yet, so nothing is waited for).
        member = ConsumerMember(member_id, instance_id=req.instance_id, assigned=old.assigned,
                                subscribed_topic_names=old.subscribed_topic_names,
                                subscribed_topic_regex=old.subscribed_topic_regex,
                                server_assignor=old.server_assignor, rack_id=old.rack_id,
                                rebalance_timeout_ms=old.rebalance_timeout_ms)
        group.add(member)
        group.target[member_id] = target
        records.append((R.key(R.MEMBER_METADATA, group.group_id, member_id),
                        R.member_metadata_value(member.metadata_value())))
        records.append((R.key(R.TARGET_MEMBER, group.group_id, member_id), R.target_member_value(target)))
        records.append((R.key(R.CURRENT_ASSIGNMENT, group.group_id, member_id),
                        R.current_assignment_value(member.assignment_value())))
        log.info("static member %s of group %s replaced %s", req.instance_id, group.group_id, old.member_id)
        return member

    @staticmethod
    def _check_epoch(member: ConsumerMember, received: int, owned: Partitions | None) -> None:
        """Kafka's throwIfMemberEpochIsInvalid."""
        if received > member.member_epoch:
            raise GroupError(Errors.FENCED_MEMBER_EPOCH,
                             f"The consumer group member has a greater member epoch ({received}) than the one known "
                             f"by the group coordinator ({member.member_epoch}). The member must abandon all its "
                             f"partitions and rejoin.")
        # A smaller epoch: the member may have missed the response bumping its epoch; it may
        # retry with the previous one as long as it owns nothing it was not given.
        if received < member.member_epoch and (received != member.previous_member_epoch or owned is None
                                               or _diff(owned, member.assigned)):
            raise GroupError(Errors.FENCED_MEMBER_EPOCH,
                                 f"The consumer group member has a smaller member epoch ({received}) than the one "
                                 f"known by the group coordinator ({member.member_epoch}). The member must abandon "
                                 f"all its partitions and rejoin.")

    def _leave(self, req: HeartbeatRequest) -> tuple[HeartbeatResult, list[KeyValue]]:
        group = self.groups.get(req.group_id)
        if group is None:
            raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {req.group_id} not found.")
        member = group.members.get(req.member_id)
        if member is None and req.instance_id is not None:
            current = group.static_members.get(req.instance_id)
            if current is not None and current != req.member_id:
                raise GroupError(Errors.FENCED_INSTANCE_ID)
        if member is None:
            raise GroupError(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group "
                                                       f"{req.group_id}.")
        if req.instance_id is not None and member.instance_id != req.instance_id:
            raise GroupError(Errors.FENCED_INSTANCE_ID)
        result = HeartbeatResult(member_id=member.member_id, member_epoch=req.member_epoch)
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # A static member leaving for a while (a restart) keeps its assignment until its
            # session times out; it comes back under a new member id (see _replace_static_member).
            log.info("static member %s (%s) of group %s leaves temporarily", member.member_id, member.instance_id,
                     group.group_id)
            if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                member.previous_member_epoch = member.member_epoch
            member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH
            self._schedule_session(group, member)
            return result, [(R.key(R.CURRENT_ASSIGNMENT, group.group_id, member.member_id),
                             R.current_assignment_value(member.assignment_value()))]
        log.info("member %s leaves consumer group %s", member.member_id, group.group_id)
        return result, self._remove_member(group, member)

    def _member_tombstones(self, group_id: str, member_id: str) -> list[KeyValue]:
        return [(R.key(R.CURRENT_ASSIGNMENT, group_id, member_id), None),
                (R.key(R.TARGET_MEMBER, group_id, member_id), None),
                (R.key(R.MEMBER_METADATA, group_id, member_id), None)]

    def _remove_member(self, group: ConsumerGroup, member: ConsumerMember) -> list[KeyValue]:
        """Fence ``member`` out: its partitions are free, the group epoch moves on."""
        group.remove(member.member_id)
        records = self._member_tombstones(group.group_id, member.member_id)
        records += self._refresh_regexes(group, force=True)
        records += self._bump(group, self._subscription_metadata(group))
        return records

    # ------------------------------------------------------------------ subscriptions and target

    def _refresh_regexes(self, group: ConsumerGroup, force: bool) -> list[KeyValue]:
        """Evaluate the members' regexes against the topics now (at most every
        :data:`REGEX_REFRESH_MS` unless ``force``); records of the resolutions that changed."""
        wanted = {m.subscribed_topic_regex for m in group.members.values() if m.subscribed_topic_regex}
        records: list[KeyValue] = []
        for gone in [rx for rx in group.resolved_regexes if rx not in wanted]:
            del group.resolved_regexes[gone]
            group.subscribed_names = None
            records.append((R.key(R.REGULAR_EXPRESSION, group.group_id, gone), None))
        if not wanted:
            return records
        now = self.clock.time_ms()
        missing = wanted - group.resolved_regexes.keys()
        if not force and not missing and 0 <= now - group.regex_refreshed_ms < REGEX_REFRESH_MS:
            return records
        topics = self.topics()
        names = frozenset(n for n, t in topics.items() if not t.internal)
        if not missing and names == group.regex_topics:
            group.regex_refreshed_ms = now
            return records
        group.regex_refreshed_ms = now
        # A name matches a pattern or not once and for all: a regex already resolved is
        # matched against the names new since then alone, and a new regex against all. Each
        # match may take REGEX_BUDGET_S, so matching every member's regex again on each
        # join or topic change would cost the event loop that much per member.
        added = names - group.regex_topics
        group.regex_topics = names
        for rx in sorted(wanted):
            before = group.resolved_regexes.get(rx)
            if before is None:
                matched = self._match(rx, names)
            else:
                matched = (before & names) | (self._match(rx, added) if added else frozenset())
            if before != matched:
                group.resolved_regexes[rx] = matched
                group.subscribed_names = None
                records.append((R.key(R.REGULAR_EXPRESSION, group.group_id, rx),
                                R.regex_value(R.RegexValue(tuple(sorted(matched)), 0, now))))
        return records

    def _match(self, pattern: str, names: Iterable[str]) -> frozenset[str]:
        try:
            compiled = self._compile(pattern)
        except GroupError:
            return frozenset()
        deadline = self.clock.monotonic() + REGEX_BUDGET_S
        out = set()
        for name in names:
            budget = deadline - self.clock.monotonic()
            try:
                if budget <= 0:
                    raise TimeoutError
                if compiled.fullmatch(name, timeout=budget):
                    out.add(name)
            except TimeoutError:
                log.warning("regex %r took over %.0f ms to match the topics; matching stopped", pattern[:200],
                            REGEX_BUDGET_S * 1000)
                break
        return frozenset(out)

    def _subscribed_names(self, group: ConsumerGroup, member: ConsumerMember) -> set[str]:
        names = set(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            names |= group.resolved_regexes.get(member.subscribed_topic_regex, frozenset())
        return names

    def _subscription_metadata(self, group: ConsumerGroup) -> dict[str, tuple[uuid.UUID, int]]:
        """Every subscribed topic that exists: name -> (id, partition count). Looked at on every
        heartbeat (a topic created, deleted or grown moves the group epoch), so the names are
        gathered from the members only when a subscription changed."""
        if group.subscribed_names is None:
            names: set[str] = set()
            for m in group.members.values():
                names |= self._subscribed_names(group, m)
            group.subscribed_names = frozenset(names)
        topics = self.topics()
        out: dict[str, tuple[uuid.UUID, int]] = {}
        for name in group.subscribed_names:
            info = topics.get(name)
            if info is not None:
                out[name] = (info.topic_id, len(info.partitions))
        return out

    def _bump(self, group: ConsumerGroup, metadata: dict[str, tuple[uuid.UUID, int]]) -> list[KeyValue]:
        """A new group epoch: the target assignment is computed again."""
        gid = group.group_id
        records: list[KeyValue] = []
        if metadata != group.subscription_metadata:
            group.subscription_metadata = metadata
            records.append((R.key(R.PARTITION_METADATA, gid), R.partition_metadata_value(metadata)))
        group.group_epoch += 1
        records.append((R.key(R.GROUP_METADATA, gid), R.epoch_value(group.group_epoch)))
        assignor = ASSIGNORS[group.preferred_assignor(self.config)]
        specs = {}
        for m in group.members.values():
            ids = frozenset(metadata[n][0] for n in self._subscribed_names(group, m) if n in metadata)
            specs[m.member_id] = MemberSpec(ids, group.target.get(m.member_id, EMPTY), m.instance_id, m.rack_id)
        target = assignor.assign(specs, {tid: n for tid, n in metadata.values()})
        for member_id, parts in target.items():
            if group.target.get(member_id) != parts:
                records.append((R.key(R.TARGET_MEMBER, gid, member_id), R.target_member_value(parts)))
        group.target = target
        group.assignment_epoch = group.group_epoch
        records.append((R.key(R.TARGET_METADATA, gid), R.epoch_value(group.assignment_epoch)))
        log.debug("group %s epoch %d: target %s", gid, group.group_epoch, target)
        return records

    # ------------------------------------------------------------------ reconciliation

    def _reconcile(self, group: ConsumerGroup, member: ConsumerMember, owned: Partitions | None) -> None:
        """Move ``member`` towards its target (Kafka's CurrentAssignmentBuilder)."""
        if member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            return
        target_epoch = group.assignment_epoch
        if member.state == STABLE:
            if member.member_epoch != target_epoch:
                self._next_assignment(group, member, member.member_epoch, owned)
        elif member.state == UNREVOKED_PARTITIONS:
            if not self._owns_any(owned, member.pending_revocation):
                self._next_assignment(group, member, min(member.member_epoch + 1, target_epoch), owned)
        else:
            self._next_assignment(group, member, member.member_epoch, owned)
        if member.state == UNREVOKED_PARTITIONS:
            if member.revocation_timer is None:
                self._schedule_revocation(group, member)
        elif member.revocation_timer is not None:
            member.revocation_timer.cancel()
            member.revocation_timer = None

    @staticmethod
    def _owns_any(owned: Partitions | None, partitions: Partitions) -> bool:
        if owned is None:
            return True  # unchanged since its last heartbeat: still owns them
        return any(owned.get(t, frozenset()) & ps for t, ps in partitions.items())

    def _next_assignment(self, group: ConsumerGroup, member: ConsumerMember, member_epoch: int,
                         owned: Partitions | None) -> None:
        """Kafka's CurrentAssignmentBuilder.computeNextAssignment."""
        target = group.target.get(member.member_id, EMPTY)
        current = member.assigned
        kept: Partitions = {}
        revoke: Partitions = {}
        add: dict[uuid.UUID, set[int]] = {}
        unreleased = False
        for t in set(target) | set(current):
            tgt, cur = target.get(t, frozenset()), current.get(t, frozenset())
            if tgt & cur:
                kept[t] = tgt & cur
            if cur - tgt:
                revoke[t] = cur - tgt
            for p in tgt - cur:
                owner = group.owners.get((t, p))
                if owner is not None and owner != member.member_id:
                    unreleased = True
                else:
                    add.setdefault(t, set()).add(p)
        group.release(member)
        member.previous_member_epoch = member.member_epoch
        if revoke and self._owns_any(owned, revoke):
            member.state = UNREVOKED_PARTITIONS
            member.member_epoch = member_epoch
            member.assigned, member.pending_revocation = kept, revoke
        else:
            member.state = UNRELEASED_PARTITIONS if unreleased else STABLE
            member.member_epoch = group.assignment_epoch
            member.assigned = _union(kept, _normalize(add))
            member.pending_revocation = {}
        group.own(member)

    # ------------------------------------------------------------------ timers

    def _schedule_session(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        delay = self.session_timeout_ms(group.group_id)
        timer = member.session_timer
        if timer is not None:
            if self.timers.extend(timer, delay):
                return
            timer.cancel()
        member.session_timer = self.timers.call_later(delay, lambda: self._expire(group, member, "session timeout"))

    def _schedule_revocation(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        epoch = member.member_epoch
        delay = member.rebalance_timeout_ms if member.rebalance_timeout_ms > 0 else self.session_timeout_ms(
            group.group_id)

        def expire() -> None:
            member.revocation_timer = None
            if member.state == UNREVOKED_PARTITIONS and member.member_epoch == epoch:
                self._expire(group, member, "rebalance timeout while revoking partitions")

        member.revocation_timer = self.timers.call_later(delay, expire)

    def _expire(self, group: ConsumerGroup, member: ConsumerMember, reason: str) -> None:
        if self.groups.get(group.group_id) is not group or group.members.get(member.member_id) is not member:
            return
        log.info("member %s of consumer group %s is fenced: %s", member.member_id, group.group_id, reason)
        records = self._remove_member(group, member)
        if self._spawn is not None:
            self._spawn(self._write, group.group_id, records, self._reserve(group.group_id))

    async def _write(self, group_id: str, records: list[KeyValue],
                     turn: tuple[anyio.Event | None, anyio.Event]) -> None:
        error = await self._append(group_id, records, turn)
        if error != Errors.NONE:
            log.warning("writing records of consumer group %s failed: %s", group_id, error.name)

    # ------------------------------------------------------------------ ConsumerGroupDescribe

    def describe(self, group_id: str) -> GroupDescription:
        """The group as ConsumerGroupDescribe shows it; GROUP_ID_NOT_FOUND when not a consumer group."""
        self._check_active(group_id)
        group = self.groups.get(group_id)
        if group is None:
            if self.manager.get(group_id) is not None:
                raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        members = [MemberDescription(m.member_id, m.instance_id, m.rack_id, m.member_epoch, m.client_id,
                                     m.client_host, list(m.subscribed_topic_names), m.subscribed_topic_regex,
                                     dict(m.assigned), dict(group.target.get(m.member_id, EMPTY)))
                   for m in group.members.values()]
        return GroupDescription(group.group_id, group.state, group.group_epoch, group.assignment_epoch,
                                group.preferred_assignor(self.config), members)

    # ------------------------------------------------------------------ loading (RecordReplayer)

    def install(self, partition: int, records: Sequence[StoredRecord]) -> None:
        """Rebuild the consumer groups of one ``__consumer_offsets`` partition from its records."""
        groups: dict[str, ConsumerGroup] = {}
        members: dict[str, dict[str, ConsumerMember]] = {}
        for stored in records:
            try:
                k = R.decode_key(stored.key)
                self._replay(groups, members, k, stored.value)
            except Exception as e:  # RecordFormatError and anything a damaged record raises
                log.warning("skipping unreadable consumer group record in __consumer_offsets-%d: %s", partition, e)
        for gid, group in groups.items():
            for m in members.get(gid, {}).values():
                group.add(m)
            group.target = {mid: t for mid, t in group.target.items() if mid in group.members}
            old = self.groups.get(gid)
            if old is not None:
                self._drop(old)
            self.groups[gid] = group
            for m in group.members.values():
                self._schedule_session(group, m)
        if groups:
            log.info("loaded %d consumer groups from __consumer_offsets-%d", len(groups), partition)

    @staticmethod
    def _replay(groups: dict[str, ConsumerGroup], members: dict[str, dict[str, ConsumerMember]],
                k: R.ConsumerKey, value: bytes | None) -> None:
        gid = k.group
        if k.version == R.GROUP_METADATA:
            if value is None:
                groups.pop(gid, None)
                members.pop(gid, None)
                return
            groups.setdefault(gid, ConsumerGroup(gid)).group_epoch = R.decode_epoch(value)
            return
        group = groups.setdefault(gid, ConsumerGroup(gid))
        by_id = members.setdefault(gid, {})
        if k.version == R.MEMBER_METADATA:
            if value is None:
                by_id.pop(k.name, None)
                return
            meta = R.decode_member_metadata(value)
            m = by_id.setdefault(k.name, ConsumerMember(k.name))
            m.instance_id, m.rack_id = meta.instance_id, meta.rack_id
            m.client_id, m.client_host = meta.client_id, meta.client_host
            m.subscribed_topic_names = meta.subscribed_topic_names
            m.subscribed_topic_regex = meta.subscribed_topic_regex
            m.rebalance_timeout_ms, m.server_assignor = meta.rebalance_timeout_ms, meta.server_assignor
        elif k.version == R.CURRENT_ASSIGNMENT:
            if value is None:
                return
            a = R.decode_current_assignment(value)
            m = by_id.setdefault(k.name, ConsumerMember(k.name))
            m.member_epoch, m.previous_member_epoch, m.state = a.member_epoch, a.previous_member_epoch, a.state
            m.assigned, m.pending_revocation = dict(a.assigned), dict(a.pending_revocation)
        elif k.version == R.TARGET_MEMBER:
            if value is None:
                group.target.pop(k.name, None)
            else:
                group.target[k.name] = R.decode_target_member(value)
        elif k.version == R.TARGET_METADATA:
            group.assignment_epoch = 0 if value is None else R.decode_epoch(value)
        elif k.version == R.PARTITION_METADATA:
            group.subscription_metadata = {} if value is None else R.decode_partition_metadata(value)
        elif k.version == R.REGULAR_EXPRESSION:
            if value is None:
                group.resolved_regexes.pop(k.name, None)
            else:
                group.resolved_regexes[k.name] = frozenset(R.decode_regex(value).topics)

    def unload(self, partition: int) -> None:
        """Forget the groups of ``partition`` (another broker coordinates them now)."""
        for group in [g for gid, g in self.groups.items() if self.manager.partition_for(gid) == partition]:
            self._drop(group)

    def shutdown(self) -> None:
        """Cancel every member timer."""
        self._stopped = True
        for group in self.groups.values():
            for m in group.members.values():
                m.cancel_timers()


__all__ = ["ConsumerGroup", "ConsumerGroupConfig", "ConsumerGroupCoordinator", "ConsumerMember", "GroupDescription",
           "HeartbeatRequest", "HeartbeatResult", "MemberDescription"]
