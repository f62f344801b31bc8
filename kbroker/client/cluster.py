"""The client: bootstrap, cluster metadata and one connection per broker."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from construct import Container

from kbroker.client.connection import BrokerConnection
from kbroker.client.errors import (
    LEADER_NOT_AVAILABLE,
    UNKNOWN_TOPIC_OR_PARTITION,
    BrokerConnectionError,
    KafkaError,
)

METADATA = 3
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
T = TypeVar("T")


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``"h1:p1,h2:p2"`` as ``[(h1, p1), (h2, p2)]``; ValueError if malformed."""
    out: list[tuple[str, int]] = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bootstrap server {item!r} is not HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("no bootstrap server given")
    return out


def uuid_to_str(value: uuid.UUID | None) -> str:
    """A topic id as Kafka prints it: URL-safe base64 without padding."""
    if value is None:
        return ""
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0
    leader_epoch: int = -1


@dataclass(frozen=True)
class TopicInfo:
    name: str
    error_code: int
    topic_id: uuid.UUID | None
    is_internal: bool
    partitions: tuple[PartitionInfo, ...]

    def partition(self, index: int) -> PartitionInfo:
        for p in self.partitions:
            if p.partition == index:
                return p
        raise KafkaError(UNKNOWN_TOPIC_OR_PARTITION, f"Partition {self.name}-{index} does not exist.")


@dataclass
class ClusterMetadata:
    """One Metadata response, indexed."""

    cluster_id: str | None
    controller_id: int
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)

    def topic(self, name: str) -> TopicInfo:
        """The topic's metadata; KafkaError if the broker reported an error for it."""
        t = self.topics.get(name)
        if t is None:
            raise KafkaError(UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
        if t.error_code:
            msg = f"Topic '{name}' does not exist." if t.error_code == UNKNOWN_TOPIC_OR_PARTITION else None
            raise KafkaError(t.error_code, msg)
        return t


def _parse_metadata(body: Container) -> ClusterMetadata:
    if body.get("error_code"):
        raise KafkaError(body.error_code)
    md = ClusterMetadata(body.get("cluster_id"), body.get("controller_id", -1))
    for b in body.brokers:
        md.brokers[b.node_id] = BrokerInfo(b.node_id, b.host, b.port, b.get("rack"))
    for t in body.topics:
        parts = tuple(sorted(
            (PartitionInfo(p.partition_index, p.leader_id, tuple(p.replica_nodes), tuple(p.isr_nodes),
                           p.error_code, p.get("leader_epoch", -1)) for p in t.partitions),
            key=lambda p: p.partition))
        tid = t.get("topic_id")
        md.topics[t.name] = TopicInfo(t.name, t.error_code, tid if tid and tid.int else None,
                                      bool(t.get("is_internal", False)), parts)
    return md


class KafkaClient:
    """A small synchronous Kafka client: one connection per broker, opened on demand."""

    def __init__(self, bootstrap_servers: str = DEFAULT_BOOTSTRAP, *, client_id: str = "kbroker-cli",
                 timeout: float = 30.0) -> None:
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.client_id = client_id
        self.timeout = timeout
        self._bootstrap_conn: BrokerConnection | None = None
        self._conns: dict[int, BrokerConnection] = {}
        self.cluster: ClusterMetadata | None = None

    # -- connections -----------------------------------------------------------

    def _new_connection(self, host: str, port: int) -> BrokerConnection:
        return BrokerConnection(host, port, client_id=self.client_id, timeout=self.timeout)

    def any_connection(self) -> BrokerConnection:
        """A connected broker: a known one, else the first bootstrap server that answers."""
        for conn in self._conns.values():
            return conn
        if self._bootstrap_conn is not None:
            return self._bootstrap_conn
        last: BrokerConnectionError | None = None
        for host, port in self.bootstrap:
            conn = self._new_connection(host, port)
            try:
                conn.connect()
            except BrokerConnectionError as e:
                last = e
                continue
            self._bootstrap_conn = conn
            return conn
        assert last is not None
        raise last

    def connection(self, node_id: int | None = None) -> BrokerConnection:
        """The connection to broker ``node_id`` (any broker when None or negative)."""
        if node_id is None or node_id < 0:
            return self.any_connection()
        conn = self._conns.get(node_id)
        if conn is not None:
            return conn
        if self.cluster is None or node_id not in self.cluster.brokers:
            self.metadata([])
        assert self.cluster is not None
        broker = self.cluster.brokers.get(node_id)
        if broker is None:
            raise KafkaError(LEADER_NOT_AVAILABLE, f"Broker {node_id} is not in the cluster metadata.")
        boot = self._bootstrap_conn
        if boot is not None and (boot.host, boot.port) == (broker.host, broker.port):
            conn, self._bootstrap_conn = boot, None
        else:
            conn = self._new_connection(broker.host, broker.port)
        conn.connect()
        self._conns[node_id] = conn
        return conn

    def request(self, api_key: int, body: Mapping[str, Any], node_id: int | None = None) -> Container:
        """Send ``body`` to a broker and return the response body."""
        _, resp = self.connection(node_id).request(api_key, body)
        assert resp is not None
        return resp

    def request_versioned(self, api_key: int, body: Mapping[str, Any],
                          node_id: int | None = None) -> tuple[int, Container]:
        """Like :meth:`request`, also returning the version used."""
        version, resp = self.connection(node_id).request(api_key, body)
        assert resp is not None
        return version, resp

    def version_for(self, api_key: int, node_id: int | None = None) -> int:
        return self.connection(node_id).version_for(api_key)

    def supports(self, api_key: int, node_id: int | None = None) -> bool:
        return self.connection(node_id).supports(api_key)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        if self._bootstrap_conn is not None:
            self._bootstrap_conn.close()
            self._bootstrap_conn = None

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ----------------------------------------------------------------

    def metadata(self, topics: Iterable[str] | None = None, *,
                 allow_auto_topic_creation: bool = False) -> ClusterMetadata:
        """Fetch metadata for ``topics`` (all topics when None) and remember the brokers."""
        body = {
            "topics": None if topics is None else [{"name": t} for t in topics],
            "allow_auto_topic_creation": allow_auto_topic_creation,
        }
        md = _parse_metadata(self.request(METADATA, body))
        self.cluster = md
        return md

    def topic(self, name: str, *, auto_create: bool = False) -> TopicInfo:
        """Metadata of one topic, waiting briefly for leaders to be elected.

        With ``auto_create`` the broker may create a missing topic (as producers ask).
        """
        return self.retry(lambda: self._topic_with_leaders(name, auto_create))

    def _topic_with_leaders(self, name: str, auto_create: bool) -> TopicInfo:
        t = self.metadata([name], allow_auto_topic_creation=auto_create).topic(name)
        for p in t.partitions:
            if p.error_code == LEADER_NOT_AVAILABLE or p.leader < 0:
                raise KafkaError(LEADER_NOT_AVAILABLE, f"Partition {name}-{p.partition} has no leader.")
        return t

    def controller(self) -> int:
        """The controller's node id (-1 if unknown, meaning any broker)."""
        md = self.cluster or self.metadata([])
        return md.controller_id

    def retry(self, fn: Callable[[], T], *, attempts: int = 20, backoff: float = 0.1) -> T:
        """Call ``fn`` until it succeeds or raises a non-retriable error."""
        for i in range(attempts):
            try:
                return fn()
            except KafkaError as e:
                if not e.retriable or i == attempts - 1:
                    raise
            time.sleep(backoff)
        raise AssertionError("unreachable")
