"""The cluster's metadata as it is kept in etcd: key layout and JSON documents.

Every broker of a cluster reads and writes the same keys, under ``etcd.prefix`` (by default
``/kbroker/<cluster.id>/``)::

    brokers/<id>              BrokerRegistration, attached to the broker's lease (liveness)
    controller                {"id": <broker id>}, attached to the controller's lease (the election)
    topics/<name>             TopicRecord: id, configs, partition count
    partitions/<name>/<i>     PartitionRecord: replicas, leader, leader epoch, ISR, partition epoch
    configs/broker/<id>       dynamic broker configs of one broker ("default": cluster-wide)
    state/<kind>              security documents (acls, scram, quotas), as a StateStore
    producer-ids              the next producer-id block, handed out by compare-and-swap

Each change of a partition's state is a compare-and-swap on its key's ``mod_revision``,
and bumps its ``partition_epoch`` (and ``leader_epoch`` when the leader changes), so two
writers can never both win. Documents are JSON with sorted keys.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.metadata.model import PartitionInfo
from kbroker.metadata.topic_names import invalid_reason

__all__ = ["NO_LEADER", "BrokerRegistration", "ClusterKeys", "TopicRecord", "UndecodableDocument", "config_document",
           "decode_partition", "encode_partition"]

#: A partition without a leader (Kafka's LeaderConstants.NO_LEADER).
NO_LEADER = -1


class ClusterKeys:
    """The etcd keys of one cluster, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.brokers = self.prefix + "brokers/"
        self.controller = self.prefix + "controller"
        self.topics = self.prefix + "topics/"
        self.partitions = self.prefix + "partitions/"
        self.configs = self.prefix + "configs/"
        self.state = self.prefix + "state/"
        self.producer_ids = self.prefix + "producer-ids"

    @classmethod
    def for_cluster(cls, cluster_id: str, prefix: str | None = None) -> ClusterKeys:
        """``prefix`` when given (``etcd.prefix``), else ``/kbroker/<cluster_id>/``."""
        return cls(prefix or f"/kbroker/{cluster_id}/")

    def broker(self, node_id: int) -> str:
        return f"{self.brokers}{node_id}"

    def topic(self, name: str) -> str:
        return self.topics + name

    def topic_partitions(self, name: str) -> str:
        """The prefix of every partition key of topic ``name``."""
        return f"{self.partitions}{name}/"

    def partition(self, name: str, index: int) -> str:
        return f"{self.partitions}{name}/{index}"

    def broker_config(self, node_id: int | None) -> str:
        """Dynamic configs of broker ``node_id`` (None: the cluster-wide defaults)."""
        return f"{self.configs}broker/{'default' if node_id is None else node_id}"

    def state_doc(self, kind: str) -> str:
        return self.state + kind

    def parse_partition(self, key: str) -> tuple[str, int] | None:
        """``(topic, index)`` of a partition key; None for any other key."""
        if not key.startswith(self.partitions):
            return None
        name, _, index = key[len(self.partitions):].rpartition("/")
        return (name, int(index)) if name and index.isdigit() else None

    def parse_broker(self, key: str) -> int | None:
        rest = key[len(self.brokers):] if key.startswith(self.brokers) else ""
        return int(rest) if rest.isdigit() else None


class UndecodableDocument(ValueError):
    """A document under the cluster's prefix that is not one kbroker wrote (bad JSON, a missing
    field, a value of the wrong type): whoever reads it skips it rather than fail."""


#: What decoding a foreign document may raise, whatever its shape.
_DECODE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def config_document(value: bytes) -> dict[str, str]:
    """A configs document of etcd (dynamic broker configs, a group's configs): a JSON object of
    names to values; ValueError when it is not one."""
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    return {str(k): str(v) for k, v in doc.items()}


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class BrokerRegistration:
    """A live broker: how clients and other brokers reach it."""

    node_id: int
    #: Advertised ``(host, port)`` per listener name.
    listeners: Mapping[str, tuple[str, int]]
    rack: str | None = None
    #: Changes at each start (and each new lease): tells a restarted broker from the old one.
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Set by a broker stopping cleanly: the controller moves its leaderships away first.
    shutting_down: bool = False

    def encode(self) -> bytes:
        return _dumps({"id": self.node_id, "listeners": {k: list(v) for k, v in self.listeners.items()},
                       "rack": self.rack, "incarnation": self.incarnation, "shutting_down": self.shutting_down})

    @classmethod
    def decode(cls, data: bytes) -> BrokerRegistration:
        """Raises :class:`UndecodableDocument`."""
        try:
            doc = json.loads(data)
            return cls(int(doc["id"]), {str(k): (str(v[0]), int(v[1])) for k, v in doc["listeners"].items()},
                       doc.get("rack"), str(doc.get("incarnation", "")), bool(doc.get("shutting_down", False)))
        except _DECODE_ERRORS as e:
            raise UndecodableDocument(f"broker registration: {e!r}") from None


@dataclass(frozen=True)
class TopicRecord:
    """A topic's identity, partition count and config overrides."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dumps({"id": str(self.topic_id), "partitions": self.partitions, "configs": dict(self.configs)})

    @classmethod
    def decode(cls, name: str, data: bytes) -> TopicRecord:
        """Raises :class:`UndecodableDocument` (also for an illegal name: it becomes a directory)."""
        try:
            _check_name(name)
            doc = json.loads(data)
            return cls(name, uuid.UUID(doc["id"]), int(doc["partitions"]),
                       {str(k): str(v) for k, v in doc["configs"].items()})
        except _DECODE_ERRORS as e:
            raise UndecodableDocument(f"topic {name}: {e!r}") from None


def encode_partition(info: PartitionInfo) -> bytes:
    """A partition's state document (the topic and index are in its key)."""
    return _dumps({"replicas": list(info.replicas), "isr": list(info.isr), "leader": info.leader,
                   "leader_epoch": info.leader_epoch, "partition_epoch": info.partition_epoch,
                   "adding": list(info.adding_replicas), "removing": list(info.removing_replicas)})


def decode_partition(topic: str, index: int, data: bytes) -> PartitionInfo:
    """The :class:`PartitionInfo` of a state document; raises :class:`UndecodableDocument` (also
    for an illegal topic name: the log directory is named after it)."""
    try:
        _check_name(topic)
        doc = json.loads(data)
        return PartitionInfo(topic, index, int(doc["leader"]), int(doc["leader_epoch"]), _ints(doc["replicas"]),
                             _ints(doc["isr"]), partition_epoch=int(doc.get("partition_epoch", 0)),
                             adding_replicas=_ints(doc.get("adding", [])),
                             removing_replicas=_ints(doc.get("removing", [])))
    except _DECODE_ERRORS as e:
        raise UndecodableDocument(f"partition {topic}-{index}: {e!r}") from None


def _check_name(name: str) -> None:
    """ValueError for a topic name kbroker never creates (``../x`` would name a directory
    outside ``log.dirs``)."""
    reason = invalid_reason(name)
    if reason is not None:
        raise ValueError(reason)


def _ints(values: Sequence[Any]) -> list[int]:
    return [int(v) for v in values]
