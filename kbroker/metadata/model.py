"""The cluster metadata records.

They are plain data on purpose: today one broker leads every partition, but node
ids, leader epochs and replica lists are real values so several brokers can share
this model once replication arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
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
