"""ElectLeaders (key 43): preferred or unclean leader elections on demand (``kafka-leader-election.sh``).

As Kafka's ``ReplicationControlManager.electLeaders``, per partition: an unknown topic or
partition is UNKNOWN_TOPIC_OR_PARTITION; a PREFERRED election where the first replica already
leads, or an UNCLEAN one where a leader exists, is ELECTION_NOT_NEEDED; an election that finds
nobody able to lead is PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE. A null
partition list means every partition of every topic, and then the partitions that need no
election are left out. ALTER on the cluster is required.

In a cluster the broker serving the request writes the new state to etcd itself, by
compare-and-swap on the partition key (a lost race is decided again on the fresh state); on a
single broker every partition is led by its only (preferred) replica, so nothing is ever
elected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.metadata import election
from kbroker.metadata.cluster_state import UndecodableDocument, decode_partition
from kbroker.metadata.model import PartitionInfo
from kbroker.security.model import AclOperation

if TYPE_CHECKING:
    from kbroker.metadata.controller import ClusterHandle

API_KEY = 43
VERSIONS = VersionRange(0, 2)

#: Kafka's default messages of the per-partition errors (``ApiError(Errors.X)``).
MESSAGES = {
    ErrorCode.ELECTION_NOT_NEEDED: "Leader election not needed for topic partition.",
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE: "The preferred leader was not available.",
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE: "Eligible topic partition leaders are not available.",
}

Result = tuple[int, ErrorCode, str | None]


def _result(index: int, code: ErrorCode, message: str | None = None) -> Result:
    return index, code, message if message is not None or code == ErrorCode.NONE else MESSAGES.get(code)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    from kbroker.metadata.controller import wait_applied
    body = ctx.request.body
    requested = body.topic_partitions
    if not authz.cluster(ctx, AclOperation.ALTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return _refuse(requested, code, authz.MESSAGES[code])
    election_type = getattr(body, "election_type", 0) or 0
    try:
        kind = election.ElectionType(election_type)
    except ValueError:
        return _refuse(requested, ErrorCode.INVALID_REQUEST, f"Unknown election type {election_type}")
    cluster: ClusterHandle | None = getattr(ctx.broker.metadata, "cluster", None)
    if cluster is None:
        by_topic = _elect_single(ctx, kind, requested)
    else:
        by_topic, revision = await _elect_cluster(cluster, kind, requested)
        await wait_applied(cluster, revision, body.timeout_ms)
    count = 0
    results = []
    for topic, answers in by_topic:
        count += len(answers)
        results.append({"topic": topic, "partition_result": [
            {"partition_id": index, "error_code": code, "error_message": message}
            for index, code, message in answers]})
    return response(count, throttle_time_ms=0, error_code=ErrorCode.NONE, replica_election_results=results)


def _refuse(requested: Any, code: ErrorCode, message: str) -> Mapping[str, Any]:
    """The whole request refused (Kafka's ``ElectLeadersRequest.getErrorResponse``): the error at
    the top and on every partition named."""
    results = [{"topic": t.topic, "partition_result": [
        {"partition_id": p, "error_code": code, "error_message": message} for p in t.partitions]}
        for t in requested or []]
    return response(0, throttle_time_ms=0, error_code=code, replica_election_results=results)


def _elect_single(ctx: RequestContext, kind: election.ElectionType, requested: Any) -> list[tuple[str, list[Result]]]:
    md = ctx.broker.metadata
    node = ctx.broker.node_id

    def decide(info: PartitionInfo) -> ErrorCode:
        # The only broker leads every partition as its only replica: nothing to elect.
        code, _ = election.elect_for_request(info, kind, lambda b: b == node)
        return code

    out: list[tuple[str, list[Result]]] = []
    if requested is None:
        for name in sorted(md.topics):
            infos = md.topics[name].partitions
            out.append((name, [_result(i, c) for i in sorted(infos)
                               if (c := decide(infos[i])) != ErrorCode.ELECTION_NOT_NEEDED]))
        return out
    for t in requested:
        answers = []
        for index in t.partitions:
            info = md.partition(t.topic, index)
            if md.topic(t.topic) is None:
                answers.append(_result(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such topic as {t.topic}"))
            elif info is None:
                answers.append(_result(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                       f"No such partition as {t.topic}-{index}"))
            else:
                answers.append(_result(index, decide(info)))
        out.append((t.topic, answers))
    return out


async def _elect_cluster(cluster: ClusterHandle, kind: election.ElectionType,
                         requested: Any) -> tuple[list[tuple[str, list[Result]]], int]:
    """The answers, and the revision of the last write (0: none)."""
    from kbroker.etcd.client import EtcdError
    from kbroker.metadata.controller import cas_partition, read_brokers
    client, keys = cluster.client, cluster.keys
    written = 0
    try:
        brokers = await read_brokers(client, keys)
    except EtcdError as e:
        error = (ErrorCode.REQUEST_TIMED_OUT, str(e))
        return [(t.topic, [(p, *error) for p in t.partitions]) for t in requested or []], 0

    def acceptable(broker: int) -> bool:
        registration = brokers.get(broker)
        return registration is not None and not registration.shutting_down

    async def elect(topic: str, index: int, known: tuple[PartitionInfo, int] | None) -> Result:
        code = ErrorCode.NONE

        def decide(info: PartitionInfo) -> PartitionInfo | None:
            nonlocal code
            code, changed = election.elect_for_request(info, kind, acceptable)
            return changed

        nonlocal written
        try:
            outcome = await cas_partition(client, keys, topic, index, decide, known=known)
        except EtcdError as e:
            return index, ErrorCode.REQUEST_TIMED_OUT, str(e)
        written = max(written, outcome.revision)
        if outcome.current is None:
            topic_kv = await client.get(keys.topic(topic))
            if topic_kv is None:
                return _result(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such topic as {topic}")
            return _result(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {topic}-{index}")
        return _result(index, code)

    out: list[tuple[str, list[Result]]] = []
    if requested is None:
        try:
            topic_kvs, _ = await client.get_prefix(keys.topics)
            part_kvs, _ = await client.get_prefix(keys.partitions)
        except EtcdError:
            return [], 0
        parts: dict[str, dict[int, tuple[PartitionInfo, int]]] = {kv.key[len(keys.topics):]: {} for kv in topic_kvs}
        for kv in part_kvs:
            tp = keys.parse_partition(kv.key)
            if tp is not None and tp[0] in parts:
                try:
                    parts[tp[0]][tp[1]] = (decode_partition(tp[0], tp[1], kv.value), kv.mod_revision)
                except UndecodableDocument:
                    continue  # a foreign document: no partition state to elect from
        for name in sorted(parts):
            answers = []
            for index in sorted(parts[name]):
                result = await elect(name, index, parts[name][index])
                if result[1] != ErrorCode.ELECTION_NOT_NEEDED:
                    answers.append(result)
            out.append((name, answers))
        return out, written
    for t in requested:
        out.append((t.topic, [await elect(t.topic, index, None) for index in t.partitions]))
    return out, written
