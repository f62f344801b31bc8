"""Consumer group administration through the group coordinator."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from construct import Container

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import GROUP_ID_NOT_FOUND, KafkaError, check
from kbroker.codec.schema import load_message
from kbroker.codec.structs import message_struct
from kbroker.common import TopicPartition

OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
DELETE_GROUPS = 42
CONSUMER_GROUP_DESCRIBE = 69

COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1
#: Group states in which no member holds partitions (offsets may be changed).
INACTIVE_STATES = frozenset({"Empty", "Dead"})



@dataclass(frozen=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str | None = None
    #: ``classic``, ``consumer`` (KIP-848) or ``share`` (ListGroups v5+).
    group_type: str = "classic"


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: tuple[TopicPartition, ...]
    #: A consumer-protocol member's epoch and target assignment (None and empty for classic members).
    member_epoch: int | None = None
    target_assignment: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    coordinator: int
    members: tuple[MemberDescription, ...] = field(default=())
    #: ``classic`` or ``consumer`` (a KIP-848 group, described by ConsumerGroupDescribe).
    group_type: str = "classic"
    #: A consumer-protocol group's epoch and target assignment epoch (None for classic groups).
    group_epoch: int | None = None
    assignment_epoch: int | None = None

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES


@dataclass(frozen=True)
class CommittedOffset:
    offset: int
    metadata: str | None
    leader_epoch: int = -1


def decode_assignment(data: bytes | None) -> tuple[TopicPartition, ...]:
    """The partitions in a ConsumerProtocolAssignment (empty if it does not parse)."""
    if not data or len(data) < 2:
        return ()
    version = int.from_bytes(data[:2], "big", signed=True)
    spec = load_message("ConsumerProtocolAssignment")
    version = min(max(version, 0), spec.valid.high)
    try:
        body = message_struct(spec, version)._parse(io.BytesIO(data[2:]), Container(), "assignment")
    except Exception:  # foreign bytes from any client: best effort
        return ()
    return tuple(sorted(TopicPartition(t.topic, p) for t in body.assigned_partitions for p in t.partitions))


def find_coordinator(client: KafkaClient, key: str, key_type: int = COORDINATOR_GROUP) -> int:
    """The node id of the coordinator of ``key`` (a group id, or a transactional id with
    ``key_type`` :data:`COORDINATOR_TRANSACTION`), retrying while it loads."""
    def attempt() -> int:
        body = {"key": key, "key_type": key_type, "coordinator_keys": [key]}
        version, resp = client.request_versioned(FIND_COORDINATOR, body)
        if version >= 4:
            for c in resp.coordinators:
                if c.key == key:
                    check(c.error_code, c.error_message)
                    return int(c.node_id)
            raise KafkaError(-1, f"FindCoordinator did not answer for {key!r}.")
        check(resp.error_code, resp.get("error_message"))
        return int(resp.node_id)

    return client.retry(attempt)


def list_groups(client: KafkaClient) -> list[GroupListing]:
    """Every group known to any broker, sorted by id."""
    md = client.metadata([])
    nodes = sorted(md.brokers) or [-1]
    seen: dict[str, GroupListing] = {}
    for node in nodes:
        resp = client.request(LIST_GROUPS, {"states_filter": [], "types_filter": []}, node)
        check(resp.error_code)
        for g in resp.groups:
            seen[g.group_id] = GroupListing(g.group_id, g.protocol_type, g.get("group_state"),
                                            (g.get("group_type") or "classic").lower())
    return sorted(seen.values(), key=lambda g: g.group_id)


def describe_group(client: KafkaClient, group_id: str) -> GroupDescription:
    """State and members of ``group_id`` (state ``Dead`` when it does not exist, at any version)."""
    def attempt() -> GroupDescription:
        node = find_coordinator(client, group_id)
        resp = client.request(DESCRIBE_GROUPS, {"groups": [group_id],
                                                "include_authorized_operations": False}, node)
        for g in resp.groups:
            if g.group_id != group_id:
                continue
            if g.error_code == GROUP_ID_NOT_FOUND or (g.group_state == "Dead" and not g.members):
                # v6+ says "not found" or "not a classic group"; older versions answer state Dead.
                consumer = _describe_consumer_group(client, group_id, node)
                return consumer or GroupDescription(group_id, "Dead", "", "", node)
            check(g.error_code, g.get("error_message"))
            members = tuple(
                MemberDescription(m.member_id, m.get("group_instance_id"), m.client_id, m.client_host,
                                  decode_assignment(m.member_assignment) if g.protocol_type == "consumer"
                                  else ())
                for m in g.members)
            return GroupDescription(g.group_id, g.group_state, g.protocol_type, g.protocol_data, node,
                                    members)
        raise KafkaError(-1, "DescribeGroups did not answer for the group.")

    return client.retry(attempt)


def _describe_consumer_group(client: KafkaClient, group_id: str, node: int) -> GroupDescription | None:
    """``group_id`` as a KIP-848 consumer group, or None when it is none (or the broker lacks the API)."""
    try:
        resp = client.request(CONSUMER_GROUP_DESCRIBE, {"group_ids": [group_id],
                                                        "include_authorized_operations": False}, node)
    except KafkaError:
        return None
    for g in resp.groups:
        if g.group_id != group_id or g.error_code == GROUP_ID_NOT_FOUND:
            continue
        check(g.error_code, g.get("error_message"))
        def partitions(assignment: Container | None) -> tuple[TopicPartition, ...]:
            return tuple(sorted(TopicPartition(t.topic_name, p) for t in (assignment.topic_partitions
                                                                            if assignment else ())
                                for p in t.partitions))

        members = tuple(
            MemberDescription(m.member_id, m.get("instance_id"), m.client_id, m.client_host,
                              partitions(m.assignment), m.member_epoch, partitions(m.get("target_assignment")))
            for m in g.members)
        return GroupDescription(group_id, g.group_state, "consumer", g.assignor_name, node, members, "consumer",
                                g.group_epoch, g.assignment_epoch)
    return None


def delete_groups(client: KafkaClient, group_ids: Iterable[str]) -> dict[str, KafkaError | None]:
    """Delete groups; each group's result is None on success or its error."""
    out: dict[str, KafkaError | None] = {}
    for group_id in group_ids:
        try:
            node = find_coordinator(client, group_id)
            resp = client.request(DELETE_GROUPS, {"groups_names": [group_id]}, node)
        except KafkaError as e:
            out[group_id] = e
            continue
        for r in resp.results:
            if r.group_id == group_id:
                out[group_id] = KafkaError(r.error_code) if r.error_code else None
    return out


def fetch_offsets(client: KafkaClient, group_id: str,
                  partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, CommittedOffset]:
    """Committed offsets of ``group_id`` (all of them when ``partitions`` is None).

    Partitions without a committed offset are left out.
    """
    topics = None
    if partitions is not None:
        by_topic: dict[str, list[int]] = {}
        for t, p in partitions:
            by_topic.setdefault(t, []).append(p)
        topics = [{"name": t, "partition_indexes": sorted(ps)} for t, ps in by_topic.items()]

    def attempt() -> dict[TopicPartition, CommittedOffset]:
        node = find_coordinator(client, group_id)
        body = {"group_id": group_id, "topics": topics, "require_stable": False,
                "groups": [{"group_id": group_id, "member_id": None, "member_epoch": -1, "topics": topics}]}
        version, resp = client.request_versioned(OFFSET_FETCH, body, node)
        if version >= 8:
            group = next((g for g in resp.groups if g.group_id == group_id), None)
            if group is None:
                raise KafkaError(-1, "OffsetFetch did not answer for the group.")
            check(group.error_code)
            result_topics = group.topics
        else:
            check(resp.get("error_code", 0))
            result_topics = resp.topics
        out: dict[TopicPartition, CommittedOffset] = {}
        for t in result_topics:
            for p in t.partitions:
                check(p.error_code)
                if p.committed_offset >= 0:
                    out[TopicPartition(t.name, p.partition_index)] = CommittedOffset(
                        p.committed_offset, p.metadata, p.get("committed_leader_epoch", -1))
        return out

    return client.retry(attempt)


def commit_offsets(client: KafkaClient, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Commit ``offsets`` for a group with no active members (as an admin client does)."""
    by_topic: dict[str, list[dict[str, object]]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic.setdefault(topic, []).append({
            "partition_index": partition, "committed_offset": offset, "committed_leader_epoch": -1,
            "commit_timestamp": -1, "committed_metadata": "",
        })
    body = {"group_id": group_id, "generation_id_or_member_epoch": -1, "member_id": "",
            "group_instance_id": None, "retention_time_ms": -1,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}

    def attempt() -> None:
        node = find_coordinator(client, group_id)
        resp = client.request(OFFSET_COMMIT, body, node)
        for t in resp.topics:
            for p in t.partitions:
                check(p.error_code)

    client.retry(attempt)


__all__ = [
    "CommittedOffset", "GroupDescription", "GroupListing", "MemberDescription",
    "commit_offsets", "decode_assignment", "delete_groups", "describe_group", "fetch_offsets",
    "find_coordinator", "list_groups",
]
