"""AlterPartitionReassignments (key 45): move partitions' replicas (``kafka-reassign-partitions.sh``).

As Kafka's ``ReplicationControlManager.alterPartitionReassignments``, per partition: an unknown
topic or partition is UNKNOWN_TOPIC_OR_PARTITION; a target replica list must be non-empty,
name registered brokers only, each once (INVALID_REPLICA_ASSIGNMENT), and keep the replication
factor when the request forbids changing it (v1, INVALID_REPLICATION_FACTOR). The partition's
replicas become the target followed by the replicas leaving it, with ``adding`` and ``removing``
set; the controller finishes the move once every adding replica is in the ISR (a move that adds
nothing finishes at once). Null replicas cancel the ongoing reassignment
(NO_REASSIGNMENT_IN_PROGRESS when there is none). ALTER on the cluster is required.

In a cluster the broker serving the request writes etcd itself (compare-and-swap on the
partition key); a single broker knows only itself as a registered broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext, response
from kbroker.metadata import election
from kbroker.metadata.model import PartitionInfo
from kbroker.security.model import AclOperation

if TYPE_CHECKING:
    from kbroker.metadata.controller import ClusterHandle

API_KEY = 45
VERSIONS = VersionRange(0, 1)

#: The error code and message of one partition, and the revision of its write (0: none).
Answer = tuple[ErrorCode, str | None, int]


def decide_change(info: PartitionInfo, replicas: list[int] | None, *, registered: set[int], allow_rf_change: bool,
                  unclean: bool, acceptable: election.Acceptable) -> PartitionInfo | None:
    """The partition's new state for one request entry; PartitionChangeError when refused."""
    if replicas is None:
        return election.cancel_reassignment(info, acceptable, unclean=unclean)
    election.validate_assignment(replicas, registered)
    if not allow_rf_change:
        current = election.replication_factor(info)
        if current != len(replicas):
            raise election.PartitionChangeError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"The replication factor is changed from {current} to {len(replicas)}")
    return election.reassign(info, replicas, acceptable)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    from kbroker.metadata.controller import wait_applied
    body = ctx.request.body
    allow_rf_change = bool(getattr(body, "allow_replication_factor_change", True))
    if not authz.cluster(ctx, AclOperation.ALTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        message = authz.MESSAGES[code]
        return response(0, throttle_time_ms=0, allow_replication_factor_change=allow_rf_change, error_code=code,
                        error_message=message, responses=[
                            {"name": t.name, "partitions": [
                                {"partition_index": p.partition_index, "error_code": code, "error_message": message}
                                for p in t.partitions]} for t in body.topics])
    cluster: ClusterHandle | None = getattr(ctx.broker.metadata, "cluster", None)
    out = []
    count = 0
    written = 0
    for t in body.topics:
        answers = []
        for p in t.partitions:
            replicas = None if p.replicas is None else [int(r) for r in p.replicas]
            if cluster is None:
                answer = _alter_single(ctx, t.name, p.partition_index, replicas, allow_rf_change)
            else:
                answer = await _alter_cluster(ctx, cluster, t.name, p.partition_index, replicas, allow_rf_change)
            written = max(written, answer[2])
            answers.append({"partition_index": p.partition_index, "error_code": answer[0], "error_message": answer[1]})
        count += len(answers)
        out.append({"name": t.name, "partitions": answers})
    if cluster is not None:
        await wait_applied(cluster, written, body.timeout_ms)
    return response(count, throttle_time_ms=0, allow_replication_factor_change=allow_rf_change,
                    error_code=ErrorCode.NONE, error_message=None, responses=out)


def _unknown(topic: str, index: int, topic_exists: bool) -> Answer:
    if not topic_exists:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {topic}.", 0
    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic}:{index}.", 0


def _alter_single(ctx: RequestContext, topic: str, index: int, replicas: list[int] | None,
                  allow_rf_change: bool) -> Answer:
    md = ctx.broker.metadata
    info = md.partition(topic, index)
    if info is None:
        return _unknown(topic, index, md.topic(topic) is not None)
    node = ctx.broker.node_id
    try:
        changed = decide_change(info, replicas, registered={node}, allow_rf_change=allow_rf_change, unclean=False,
                                acceptable=lambda b: b == node)
    except election.PartitionChangeError as e:
        return e.code, e.message, 0
    if changed is not None:
        # Only a partition whose replicas name another node id (a log dir from another
        # broker) gets here: a single broker has no second broker to move replicas with.
        return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Partition {topic}:{index} cannot be reassigned on a single broker.", 0)
    return ErrorCode.NONE, None, 0


async def _alter_cluster(ctx: RequestContext, cluster: ClusterHandle, topic: str, index: int,
                         replicas: list[int] | None, allow_rf_change: bool) -> Answer:
    from kbroker.etcd.client import EtcdError
    from kbroker.metadata.controller import cas_partition, read_brokers, read_topic
    client, keys = cluster.client, cluster.keys
    try:
        record = await read_topic(client, keys, topic)
        if record is None:
            return _unknown(topic, index, False)
        brokers = await read_brokers(client, keys)
        unclean = election.unclean_allowed(record.configs,
                                           bool(ctx.broker.configs.current.get("unclean.leader.election.enable")))

        def acceptable(broker: int) -> bool:
            registration = brokers.get(broker)
            return registration is not None and not registration.shutting_down

        def decide(info: PartitionInfo) -> PartitionInfo | None:
            return decide_change(info, replicas, registered=set(brokers), allow_rf_change=allow_rf_change,
                                 unclean=unclean, acceptable=acceptable)

        outcome = await cas_partition(client, keys, topic, index, decide)
    except election.PartitionChangeError as e:
        return e.code, e.message, 0
    except EtcdError as e:
        return ErrorCode.REQUEST_TIMED_OUT, str(e), 0
    if outcome.current is None:
        return _unknown(topic, index, True)
    return ErrorCode.NONE, None, outcome.revision
