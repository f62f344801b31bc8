"""The cluster metadata records.

Plain data: a single broker leads every partition of its own; in a cluster the same
records come from etcd (:mod:`kbroker.metadata.cluster_state` encodes them there).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

#: Broker ids of each partition's replicas, by partition index.
Assignments = Mapping[int, Sequence[int]]


@dataclass(frozen=True)
class BrokerNode:
    """A broker as clients see it in Metadata and DescribeCluster."""

    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class PartitionInfo:
    """One partition's placement and leadership."""

    topic: str
    index: int
    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    offline_replicas: list[int] = field(default_factory=list)
    #: Bumped by every change of leader, ISR or replicas (Kafka's partition epoch): the
    #: version a compare-and-swap of this partition's state is made against.
    partition_epoch: int = 0
    #: A reassignment in progress: replicas being added (catching up) and to be removed.
    adding_replicas: list[int] = field(default_factory=list)
    removing_replicas: list[int] = field(default_factory=list)


@dataclass
class TopicInfo:
    """A topic: identity, partitions and its config overrides."""

    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionInfo]
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass(frozen=True)
class NewTopicRequest:
    """One topic of a batch creation (-1 partitions / replication factor: broker defaults)."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    configs: Mapping[str, str | None] = field(default_factory=dict)
    assignments: Assignments | None = None


def leadership_changes(changes: Iterable[tuple[PartitionInfo | None, PartitionInfo | None]], topic: str,
                       node_id: int) -> Iterator[tuple[int, int | None]]:
    """For each changed partition of ``topic``: ``(index, leader epoch)`` when ``node_id`` leads it
    now, ``(index, None)`` when it does not (any more) — what a coordinator of an internal topic's
    partitions loads and unloads by."""
    for old, new in changes:
        info = new if new is not None else old
        if info is None or info.topic != topic:
            continue
        yield info.index, (new.leader_epoch if new is not None and new.leader == node_id else None)
