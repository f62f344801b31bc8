"""Membership of a consumer group through the consumer group protocol (KIP-848).

The broker assigns the partitions (ConsumerGroupHeartbeat carries the subscription one
way and the assignment back), so a member needs no client-side assignor and no
JoinGroup/SyncGroup rounds: one request, sent every heartbeat interval from the fetch
loop. Offsets are committed with the member's id and epoch, as Kafka's consumer does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import (
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
    RETRIABLE,
    KafkaError,
    check,
)
from kbroker.client.groups import OFFSET_COMMIT, find_coordinator
from kbroker.common import TopicPartition

CONSUMER_GROUP_HEARTBEAT = 68
UNKNOWN_MEMBER_ID = 25
FENCED_MEMBER_EPOCH = 110
STALE_MEMBER_EPOCH = 113
#: Member epoch of a heartbeat that leaves the group.
LEAVE_EPOCH = -1
_COORDINATOR_MOVED = frozenset({COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR})
_FENCED = frozenset({UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH})
#: A commit retries retriable errors (a moved coordinator, a timeout) this long, as Kafka's
#: commitSync does within its timeout: the last commit before leaving has no next one.
COMMIT_RETRY_S = 5.0
RETRY_BACKOFF_S = 0.1


@dataclass
class AssignmentChange:
    """What one heartbeat changed: partitions gained and partitions lost."""

    added: set[TopicPartition] = field(default_factory=set)
    revoked: set[TopicPartition] = field(default_factory=set)
    #: True when the member was fenced: its partitions are gone without a commit.
    fenced: bool = False


class GroupMember:
    """One member of a consumer group, subscribed to ``topics``.

    Call :meth:`poll` from the consuming loop: it heartbeats when due and returns the
    assignment changes. :meth:`commit` commits offsets as this member; :meth:`leave`
    leaves the group.
    """

    def __init__(self, client: KafkaClient, group_id: str, topics: list[str], *,
                 rebalance_timeout_ms: int = 300000) -> None:
        if not client.supports(CONSUMER_GROUP_HEARTBEAT):
            raise KafkaError(35, "The broker does not offer the consumer group protocol (ConsumerGroupHeartbeat, "
                                 "KIP-848; Apache Kafka 4.0 or later), which consuming with --group needs.")
        self.client = client
        self.group_id = group_id
        self.topics = sorted(topics)
        self.rebalance_timeout_ms = rebalance_timeout_ms
        # v1 lets the client choose its id; v0 gets one from the broker on the first heartbeat.
        self.member_id = str(uuid.uuid4()) if client.version_for(CONSUMER_GROUP_HEARTBEAT) >= 1 else ""
        self.member_epoch = 0
        self.interval_s = 0.0
        self.next_heartbeat = 0.0
        self.owned: set[TopicPartition] = set()
        self.coordinator: int | None = None
        #: Topic ids of the subscribed topics, from the last metadata read.
        self.topic_ids: dict[str, object] = {}

    def _coordinator(self) -> int:
        if self.coordinator is None:
            self.coordinator = find_coordinator(self.client, self.group_id)
        return self.coordinator

    def _topic_names(self) -> dict[object, str]:
        md = self.client.metadata(self.topics)
        self.topic_ids = {name: t.topic_id for name, t in md.topics.items() if t.topic_id is not None}
        return {topic_id: name for name, topic_id in self.topic_ids.items()}

    def _owned_by_id(self) -> list[dict[str, object]]:
        by_topic: dict[object, list[int]] = {}
        for tp in self.owned:  # owned partitions came from an assignment, so their ids are known
            by_topic.setdefault(self.topic_ids[tp.topic], []).append(tp.partition)
        return [{"topic_id": t, "partitions": sorted(ps)} for t, ps in by_topic.items()]

    def poll(self, *, force: bool = False) -> AssignmentChange:
        """Heartbeat if one is due (or ``force``); the partitions gained and lost."""
        now = time.monotonic()
        if not force and now < self.next_heartbeat:
            return AssignmentChange()
        body = {
            "group_id": self.group_id, "member_id": self.member_id, "member_epoch": self.member_epoch,
            "instance_id": None, "rack_id": None,
            "rebalance_timeout_ms": self.rebalance_timeout_ms if self.member_epoch == 0 else -1,
            # A full request every time: the broker takes it as the member's whole state.
            "subscribed_topic_names": self.topics, "subscribed_topic_regex": None, "server_assignor": None,
            "topic_partitions": self._owned_by_id(),
        }
        resp = self.client.request(CONSUMER_GROUP_HEARTBEAT, body, self._coordinator())
        code = resp.error_code
        if code in RETRIABLE:  # Kafka's consumer heartbeats again after a backoff
            if code in _COORDINATOR_MOVED:
                self.coordinator = None
            self.next_heartbeat = now + RETRY_BACKOFF_S
            return AssignmentChange()
        if code in _FENCED:
            # Kafka's consumer drops its partitions without committing and joins again at epoch 0.
            lost = set(self.owned)
            self.owned.clear()
            self.member_epoch = 0
            self.next_heartbeat = now
            return AssignmentChange(revoked=lost, fenced=True)
        check(code, resp.error_message)
        if resp.member_id:
            self.member_id = resp.member_id
        self.member_epoch = resp.member_epoch
        self.interval_s = max(resp.heartbeat_interval_ms, 100) / 1000
        self.next_heartbeat = now + self.interval_s
        if resp.assignment is None:
            return AssignmentChange()
        names = self._topic_names()
        target = {TopicPartition(names[t.topic_id], p)
                  for t in resp.assignment.topic_partitions if t.topic_id in names for p in t.partitions}
        change = AssignmentChange(added=target - self.owned, revoked=self.owned - target)
        self.owned = target
        if change.added or change.revoked:
            self.next_heartbeat = now  # acknowledge the new assignment at once
        return change

    def commit(self, offsets: Mapping[TopicPartition, int]) -> set[TopicPartition]:
        """Commit ``offsets`` (the next offset to read per partition) as this member; the partitions committed.

        A stale epoch (the assignment moved on meanwhile) is not an error: those partitions are
        left out, and the next commit carries them again. A retriable error (a moved coordinator,
        a timeout) is retried for up to :data:`COMMIT_RETRY_S` seconds.
        """
        done: set[TopicPartition] = set()
        pending = dict(offsets)
        deadline = time.monotonic() + COMMIT_RETRY_S
        while pending:
            retry = self._commit_once(pending, done)
            if not retry or time.monotonic() >= deadline:
                break
            pending = {tp: pending[tp] for tp in retry}
            time.sleep(RETRY_BACKOFF_S)
        return done

    def _commit_once(self, offsets: Mapping[TopicPartition, int], done: set[TopicPartition]) -> set[TopicPartition]:
        """One OffsetCommit of ``offsets``: adds the committed partitions to ``done`` and
        returns those that failed with a retriable error."""
        retry: set[TopicPartition] = set()
        by_topic: dict[str, list[dict[str, object]]] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append({
                "partition_index": partition, "committed_offset": offset, "committed_leader_epoch": -1,
                "commit_timestamp": -1, "committed_metadata": ""})
        body = {"group_id": self.group_id, "generation_id_or_member_epoch": self.member_epoch,
                "member_id": self.member_id, "group_instance_id": None, "retention_time_ms": -1,
                "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
        resp = self.client.request(OFFSET_COMMIT, body, self._coordinator())
        for t in resp.topics:
            for p in t.partitions:
                tp = TopicPartition(t.name, p.partition_index)
                if p.error_code in (STALE_MEMBER_EPOCH, *_FENCED):
                    continue
                if p.error_code in RETRIABLE:
                    if p.error_code in _COORDINATOR_MOVED:
                        self.coordinator = None
                    retry.add(tp)
                    continue
                check(p.error_code)
                done.add(tp)
        return retry

    def leave(self) -> None:
        """Leave the group (epoch -1), so its partitions move to other members at once."""
        if not self.member_id or self.member_epoch <= 0:
            return
        body = {"group_id": self.group_id, "member_id": self.member_id, "member_epoch": LEAVE_EPOCH,
                "instance_id": None, "rack_id": None, "rebalance_timeout_ms": -1,
                "subscribed_topic_names": None, "subscribed_topic_regex": None, "server_assignor": None,
                "topic_partitions": None}
        deadline = time.monotonic() + COMMIT_RETRY_S
        while True:
            resp = self.client.request(CONSUMER_GROUP_HEARTBEAT, body, self._coordinator())
            if resp.error_code not in RETRIABLE or time.monotonic() >= deadline:
                break
            if resp.error_code in _COORDINATOR_MOVED:  # leave through the new coordinator
                self.coordinator = None
            time.sleep(RETRY_BACKOFF_S)
        if resp.error_code not in _FENCED:
            check(resp.error_code, resp.error_message)
        self.owned.clear()
        self.member_epoch = 0
