"""ListPartitionReassignments (key 46): the reassignments in progress (``kafka-reassign-partitions.sh --list``).

As Kafka's ``ReplicationControlManager.listPartitionReassignments``: a null topic list means
every partition being reassigned; otherwise only the named partitions that are (unknown topics
and partitions, and partitions not being reassigned, are left out, as are topics left with no
partition). Each entry gives the replicas, adding and removing replicas. DESCRIBE on the cluster
is required. In a cluster the state is read from etcd; a single broker never reassigns.
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

API_KEY = 46
VERSIONS = VersionRange(0, 0)


def _entry(info: PartitionInfo) -> dict[str, Any]:
    return {"partition_index": info.index, "replicas": list(info.replicas),
            "adding_replicas": list(info.adding_replicas), "removing_replicas": list(info.removing_replicas)}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    from kbroker.etcd.client import EtcdError
    requested = ctx.request.body.topics
    if not authz.cluster(ctx, AclOperation.DESCRIBE):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return response(0, throttle_time_ms=0, error_code=code, error_message=authz.MESSAGES[code], topics=[
            {"name": t.name, "partitions": [{"partition_index": i, "replicas": [], "adding_replicas": [],
                                             "removing_replicas": []} for i in t.partition_indexes]}
            for t in requested or []])
    cluster: ClusterHandle | None = getattr(ctx.broker.metadata, "cluster", None)
    partitions: dict[str, dict[int, PartitionInfo]] = {}
    if cluster is None:
        md = ctx.broker.metadata
        for name, topic in md.topics.items():
            partitions[name] = dict(topic.partitions)
    else:
        try:
            kvs, _ = await cluster.client.get_prefix(cluster.keys.partitions)
        except EtcdError as e:
            return response(0, throttle_time_ms=0, error_code=ErrorCode.REQUEST_TIMED_OUT, error_message=str(e),
                            topics=[])
        for kv in kvs:
            tp = cluster.keys.parse_partition(kv.key)
            if tp is not None:
                try:
                    partitions.setdefault(tp[0], {})[tp[1]] = decode_partition(tp[0], tp[1], kv.value)
                except UndecodableDocument:
                    continue  # a foreign document: no reassignment to list
    topics = []
    count = 0
    if requested is None:
        wanted = [(name, sorted(parts)) for name, parts in sorted(partitions.items())]
    else:
        wanted = [(t.name, list(t.partition_indexes)) for t in requested]
    for name, indexes in wanted:
        parts = partitions.get(name, {})
        ongoing = [_entry(info) for i in indexes
                   if (info := parts.get(i)) is not None and election.reassignment_in_progress(info)]
        if ongoing:
            count += len(ongoing)
            topics.append({"name": name, "partitions": ongoing})
    return response(count, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None, topics=topics)
