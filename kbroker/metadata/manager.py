"""``MetadataManager``: the cluster's topics, partitions, leaders and identity.

Two modes. **Cluster** (``etcd.endpoints`` set): the topics, partitions and live brokers
come from etcd through a :class:`~kbroker.metadata.cluster.ClusterMetadata` (the
``cluster`` attribute), joined in :meth:`MetadataManager.start`. Every applied batch of
etcd changes updates the registry, opens the logs of new local replicas, tells the
``on_partitions_changed`` listeners and then deletes the logs of replicas that left this
node. Creations, growths, deletions and config changes are etcd transactions, answered
once this broker's image has applied them; the local topic store is not used.

**Single broker** (the rest of this docstring): this broker is the controller and leads every partition. Every
change is persisted through the log layer's topic store before it becomes visible,
and every partition's log is opened when its topic is created or loaded. The
operations are synchronous on purpose: they run on the event loop and touch only a
few small files, so there is no interleaving to reason about.

The exceptions are what request handlers do in bulk. CreateTopics and Metadata
auto-creation go through :meth:`MetadataManager.create_topics_async`: the directories of
every new topic and one write of the topic store happen in a worker thread, bounded by
``max.partitions.per.request``. Many new partitions of one topic
(:meth:`MetadataManager.create_partitions_async`) are prepared the same way, and
:meth:`MetadataManager.delete_topic` removes files there. Meanwhile the names are
reserved (a second create answers TOPIC_ALREADY_EXISTS) and nothing new is visible; the
topics or new partitions are registered on the loop once the directories exist, in one step.

Validation of a creation or growth lives in :mod:`kbroker.metadata.validation`, the
opening and preparing of the topics' logs in :mod:`kbroker.metadata.topic_logs`; this
module keeps the registry and orchestrates them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import ConfigError, ConfigHolder, generate_cluster_id
from kbroker.metadata import errors as E
from kbroker.metadata.cluster_id import load_or_create_cluster_id
from kbroker.metadata.dynamic_config import DynamicConfigStore
from kbroker.metadata.log_config import log_config_for
from kbroker.metadata.model import Assignments, BrokerNode, NewTopicRequest, PartitionInfo, TopicInfo
from kbroker.metadata.store import TopicStoreAdapter
from kbroker.metadata.topic_logs import OFF_LOOP_PARTITIONS, TopicLogs
from kbroker.metadata.topic_names import (
    CONSUMER_OFFSETS,
    SHARE_GROUP_STATE,
    TRANSACTION_STATE,
    collision_key,
    invalid_reason,
    is_internal,
)
from kbroker.metadata.validation import TOO_LARGE, TopicValidator, check_internal_topics, internal_topic_shape

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from kbroker.clock import Clock
    from kbroker.config import BrokerConfig
    from kbroker.etcd.client import KeyValue
    from kbroker.log.config import LogConfig
    from kbroker.log.manager import LogManager, PreparedLogs
    from kbroker.metadata.cluster import ClusterMetadata, ImageChanges
    from kbroker.metadata.cluster_state import ClusterKeys

log = logging.getLogger(__name__)

__all__ = ["BULK_PARTITIONS", "OFF_LOOP_PARTITIONS", "Assignments", "MetadataManager", "NewTopicRequest",
           "PartitionChange"]

TopicListener = Callable[[TopicInfo], None]
#: One partition's state before and after a change (None: absent).
PartitionChange = tuple[PartitionInfo | None, PartitionInfo | None]
PartitionsListener = Callable[[Sequence[PartitionChange]], None]

#: Created topics made visible between two yields to the event loop.
_FINISH_CHUNK = 200
#: From this many partitions created at once, ``on_bulk_create`` is called.
BULK_PARTITIONS = 1000


class MetadataManager:
    """Topics and partitions of the cluster, and how clients reach its brokers."""

    def __init__(self, config: ConfigHolder, log_manager: LogManager, log_dirs: Sequence[Path], *,
                 node_id: int, endpoints: Callable[[], Mapping[str, tuple[str, int]]],
                 on_bulk_create: Callable[[int], None] | None = None, clock: Clock | None = None) -> None:
        """``endpoints`` gives the advertised ``(host, port)`` per listener once bound;
        ``on_bulk_create`` is told how many partitions a large creation added.

        With ``etcd.endpoints`` set the broker is one of a cluster: topics come from etcd
        once :meth:`start` has joined it, and nothing is loaded from the local topic store.
        """
        self._config = config
        self._log_dirs = list(log_dirs)
        self._clock = clock
        #: Whether this broker is one of an etcd-coordinated cluster.
        self.clustered: bool = bool(config.current.get("etcd.endpoints"))
        #: The cluster's registration, image and etcd client (None on a single broker).
        self.cluster: ClusterMetadata | None = None
        #: The cluster's etcd keys, known once :meth:`resolve_identity` ran (cluster mode).
        self.cluster_keys: ClusterKeys | None = None
        #: Called on the loop after each applied cluster change, with every partition whose
        #: replicas include this node before or after it (cluster mode only).
        self.on_partitions_changed: list[PartitionsListener] = []
        #: Called on the loop with ``(key, KeyValue or None)`` for each changed key under the
        #: cluster's ``state/`` and ``configs/`` prefixes (cluster mode only).
        self.on_cluster_document: list[Callable[[str, KeyValue | None], None]] = []
        self._tg: TaskGroup | None = None
        self._controller_scope: anyio.CancelScope | None = None
        self._logs = TopicLogs(config, log_manager)
        self.validation = TopicValidator(config, topic=self.topic, reserved=self._reserved,
                                         collides_with=self._collides_with, live_broker_ids=self.live_broker_ids)
        self._endpoints = endpoints
        self._on_bulk_create = on_bulk_create
        self.node_id = node_id
        configured_id = config.current.cluster_id
        # A cluster without a configured id learns it from etcd at start.
        self.cluster_id: str = (load_or_create_cluster_id(log_dirs, node_id, configured_id)
                                if configured_id is not None or not self.clustered else "")
        self.topics: dict[str, TopicInfo] = {}
        self._by_id: dict[uuid.UUID, str] = {}
        self._by_collision_key: dict[str, str] = {}
        #: Names of topics being created off the loop (reserved, not yet visible).
        self._pending: set[str] = set()
        self._grow_lock: anyio.Lock | None = None
        #: Called with the TopicInfo after a topic is deleted (caches keyed by topic drop it).
        self.on_topic_deleted: list[TopicListener] = []
        #: Called with the TopicInfo after a topic is created or grows partitions.
        self.on_topic_changed: list[TopicListener] = []
        self._store = TopicStoreAdapter(log_dirs)
        self._dynamic_configs = DynamicConfigStore(log_dirs[0])
        #: Cluster mode: the config without dynamic broker configs, and those kept in etcd
        #: ("default": the cluster-wide defaults; "own": this broker's), applied on top in that order.
        self._static_config = config.current
        self._broker_config_layers: dict[str, dict[str, str]] = {"default": {}, "own": {}}
        if not self.clustered:
            # Dynamic broker configs from earlier runs apply before any log is opened (in a
            # cluster they come from etcd, with the image).
            config.replace(self._dynamic_configs.apply(config.current))
        config.subscribe(lambda _: self.reapply_broker_config())
        if not self.clustered:
            self._load()

    # ------------------------------------------------------------------ lookups

    @property
    def controller_id(self) -> int:
        """The controller clients see: this node on a single broker; in a cluster, the holder
        of the ``controller`` key while it is live, else the lowest live broker id.

        As in KRaft, where brokers answer a random live broker: clients send admin requests
        to it, and any broker of the cluster can serve them (they write etcd directly).
        """
        if self.cluster is not None:
            image = self.cluster.image
            if image.controller_id in image.brokers:
                return image.controller_id
            return min(image.brokers, default=self.node_id)
        return self.node_id

    def live_broker_ids(self) -> list[int]:
        """Ids of the brokers that can host replicas."""
        if self.cluster is not None:
            return self.cluster.image.live_broker_ids()
        return [] if self.clustered else [self.node_id]

    def brokers(self, listener: str | None = None) -> list[BrokerNode]:
        """Every live broker as reachable on ``listener`` (the one the client connected on);
        in a cluster, brokers without that listener are left out, as Kafka does."""
        if self.cluster is not None:
            out = []
            for node_id, reg in sorted(self.cluster.image.brokers.items()):
                endpoint = reg.listeners.get(listener) if listener else next(iter(reg.listeners.values()), None)
                if endpoint is not None:
                    out.append(BrokerNode(node_id, endpoint[0], endpoint[1], reg.rack))
            return out
        endpoints = self._endpoints()
        if not endpoints:
            return []
        host, port = endpoints.get(listener or "", next(iter(endpoints.values())))
        return [BrokerNode(self.node_id, host, port, self.rack_of(self.node_id))]

    def broker_endpoint(self, node_id: int, listener: str) -> tuple[str, int] | None:
        """``(host, port)`` of live broker ``node_id`` on ``listener``; None when unknown."""
        if self.cluster is not None:
            reg = self.cluster.image.brokers.get(node_id)
            return None if reg is None else reg.listeners.get(listener)
        return self._endpoints().get(listener) if node_id == self.node_id else None

    def rack_of(self, node_id: int) -> str | None:
        """The rack of a live broker (``broker.rack``), None when it has none or is unknown."""
        if self.cluster is not None:
            reg = self.cluster.image.brokers.get(node_id)
            return None if reg is None else reg.rack
        return self._config.current.get("broker.rack") if node_id == self.node_id else None

    def isr_eligible(self, node_id: int) -> bool:
        """Whether ``node_id`` may join an ISR: a live broker that is not shutting down (as Kafka
        keeps fenced and controlled-shutdown brokers out)."""
        if self.cluster is None:
            return node_id == self.node_id
        reg = self.cluster.image.brokers.get(node_id)
        return reg is not None and not reg.shutting_down

    def lease_valid(self) -> bool:
        """Whether this broker may acknowledge replicated writes: its etcd lease is known alive
        (always on a single broker)."""
        return self.cluster.lease_valid() if self.cluster is not None else not self.clustered

    async def alter_isr(self, expected: PartitionInfo, isr: list[int]) -> PartitionInfo | None:
        """Change a partition's ISR as its leader (compare-and-swap against ``expected``); the new
        state, or None when the race was lost or this node leads it no longer."""
        if self.cluster is None:
            return None
        return await self.cluster.alter_isr(expected, isr)

    def topic(self, name: str) -> TopicInfo | None:
        """The topic called ``name``, if it exists."""
        return self.topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        """The topic with ``topic_id``, if it exists."""
        name = self._by_id.get(topic_id)
        return None if name is None else self.topics.get(name)

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        """One partition's placement, or None if the topic or partition does not exist."""
        info = self.topics.get(topic)
        return None if info is None else info.partitions.get(index)

    def log_config(self, name: str) -> LogConfig:
        """The effective LogConfig of a topic (broker defaults when it does not exist)."""
        info = self.topics.get(name)
        return log_config_for(self._config.current, info.configs if info else {})

    def _reserved(self, name: str) -> bool:
        """Whether ``name`` is a topic's, or reserved by one being created or deleted."""
        return name in self.topics or name in self._pending

    def _collides_with(self, name: str) -> str | None:
        """The topic (or reserved name) that ``name`` collides with, differing only in '.' and '_'."""
        key = collision_key(name)
        other = self._by_collision_key.get(key)
        if other is None:
            other = next((p for p in self._pending if collision_key(p) == key), None)
        return other

    # ------------------------------------------------------------------ create

    def resolve_shape(self, num_partitions: int, replication_factor: int,
                      assignments: Assignments | None = None) -> tuple[int, int]:
        """(partitions, replication factor) after applying -1 defaults and assignments."""
        return self.validation.resolve_shape(num_partitions, replication_factor, assignments)

    def check_create(self, name: str, num_partitions: int, replication_factor: int,
                     configs: Mapping[str, str | None], assignments: Assignments | None = None,
                     *, internal: bool = False) -> E.Result:
        """Kafka's CreateTopics validation, without creating anything (see :class:`TopicValidator`)."""
        return self.validation.check_create(name, num_partitions, replication_factor, configs, assignments,
                                            internal=internal)

    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: Mapping[str, str | None] | None = None, assignments: Assignments | None = None,
                     validate_only: bool = False, *, internal: bool = False) -> E.Result:
        """Create one topic with Kafka's validation, on the caller's thread; returns (error_code, error_message).

        ``-1`` partitions / replication factor mean the broker defaults (``num.partitions``,
        ``default.replication.factor``); ``assignments`` maps partition index to broker ids.
        ``internal`` allows an internal topic's name (the broker's own creations).
        """
        request = NewTopicRequest(name, num_partitions, replication_factor, dict(configs or {}), assignments)
        results, topics = self._plan_create([request], internal=internal)
        if topics and not validate_only and self.clustered:
            # The etcd write runs in the background; meanwhile the topic is not ready, as Kafka's
            # auto-created topics are not (callers retry on LEADER_NOT_AVAILABLE).
            self._start_background_create(request, internal)
            return ErrorCode.LEADER_NOT_AVAILABLE, f"Topic {name} is being created."
        if topics and not validate_only:
            self._finish_create(topics, self._prepare_and_save(topics))
        return results[0]

    @property
    def max_partitions_per_request(self) -> int:
        """``max.partitions.per.request``: new partitions one request may create in all."""
        return self.validation.max_partitions_per_request

    async def create_topics_async(self, requests: Sequence[NewTopicRequest], *, validate_only: bool = False,
                                  internal: bool = False) -> list[E.Result]:
        """Create several topics as one operation; one result per request, in order.

        The log directories and the one metadata write happen in a worker thread; the
        topics become visible together afterwards.
        """
        results, topics = self._plan_create(requests, internal=internal)
        if validate_only or not topics:
            return results
        if self.clustered:
            return await self._create_in_cluster(requests, results, topics)
        names = [t.name for t in topics]
        self._pending.update(names)
        try:
            # Shielded: once started, the creation completes (or fails) as one step.
            with anyio.CancelScope(shield=True):
                try:
                    prepared = await anyio.to_thread.run_sync(self._prepare_and_save, topics)
                except Exception as e:
                    log.exception("creating %d topics failed", len(topics))
                    failed = ErrorCode.UNKNOWN_SERVER_ERROR, f"Creating the topic failed: {e}"
                    return [failed if r == E.OK else r for r in results]
                # Thousands of topics: registered a chunk at a time, letting other connections in.
                for start in range(0, len(topics), _FINISH_CHUNK):
                    if start:
                        await anyio.sleep(0)
                    self._finish_create(topics[start : start + _FINISH_CHUNK],
                                        prepared[start : start + _FINISH_CHUNK], settle=False)
                self._settle_heap(sum(len(t.partitions) for t in topics))
        finally:
            self._pending.difference_update(names)
        return results

    def _plan_create(self, requests: Sequence[NewTopicRequest], *,
                     internal: bool) -> tuple[list[E.Result], list[TopicInfo]]:
        """Check every request; one result each and the topics to create.

        Like Kafka's controller, a request whose new partitions exceed the per-request
        bound (``max.partitions.per.request``) creates nothing: every topic that was
        valid answers POLICY_VIOLATION.
        """
        results: list[E.Result] = []
        accepted: list[tuple[NewTopicRequest, int]] = []
        for req in requests:
            result = self.check_create(req.name, req.num_partitions, req.replication_factor, dict(req.configs),
                                       req.assignments, internal=internal)
            if result == E.OK and any(req.name == r.name for r, _ in accepted):
                result = ErrorCode.INVALID_REQUEST, f"Found multiple entries for topic {req.name}."
            results.append(result)
            if result == E.OK:
                accepted.append((req, self.resolve_shape(req.num_partitions, req.replication_factor,
                                                         req.assignments)[0]))
        if sum(n for _, n in accepted) > self.max_partitions_per_request:
            return [TOO_LARGE if r == E.OK else r for r in results], []
        return results, [self._new_topic(req.name, n, {k: v for k, v in req.configs.items() if v is not None},
                                         req.assignments) for req, n in accepted]

    def _prepare_and_save(self, topics: Sequence[TopicInfo]) -> list[PreparedLogs]:
        """Every topic's log directories, then one write of the topic store (a worker thread may run it)."""
        prepared = self._logs.prepare_all(topics)
        try:
            self._store.save_many(topics)
        except BaseException:
            self._logs.discard(prepared)
            raise
        return prepared

    def _finish_create(self, topics: Sequence[TopicInfo], prepared: Sequence[PreparedLogs], *,
                       settle: bool = True) -> None:
        """On the loop: make created topics visible, open their logs, tell the listeners."""
        for topic, prep in zip(topics, prepared, strict=True):
            self._register(topic)
            self._logs.open_prepared(topic, prep)
            log.info("created topic %s (%s) with %d partitions", topic.name, topic.topic_id, len(topic.partitions))
        if settle:
            self._settle_heap(sum(len(t.partitions) for t in topics))
        for topic in topics:
            self._notify(self.on_topic_changed, topic)

    def _settle_heap(self, added: int) -> None:
        """After a bulk creation, keep its state out of the collector's full passes."""
        if added >= BULK_PARTITIONS and self._on_bulk_create is not None:
            self._on_bulk_create(added)

    def _new_topic(self, name: str, num_partitions: int, configs: dict[str, str],
                   assignments: Assignments | None) -> TopicInfo:
        topic_id = uuid.uuid4()
        while topic_id in self._by_id or topic_id.int == 0:
            topic_id = uuid.uuid4()
        topic = TopicInfo(name, topic_id, {}, configs, is_internal(name))
        topic.partitions = {i: self._new_partition(name, i, assignments) for i in range(num_partitions)}
        return topic

    def _new_partition(self, topic: str, index: int, assignments: Assignments | None) -> PartitionInfo:
        replicas = list(assignments[index]) if assignments and index in assignments else [self.node_id]
        # The first live replica leads, as Kafka's preferred-leader rule has it.
        leader = next((b for b in replicas if b in self.live_broker_ids()), -1)
        return PartitionInfo(topic, index, leader, 0, replicas, [b for b in replicas if b == leader])

    def auto_create(self, name: str) -> E.Result:
        """Create ``name`` as auto-creation would (Metadata/Produce), if the broker allows it.

        Internal topics get their own partition counts and compaction; others get
        ``num.partitions`` and ``default.replication.factor``.
        """
        if name in self.topics:
            return E.OK
        if name in self._pending:
            return ErrorCode.LEADER_NOT_AVAILABLE, f"Topic {name} is being created."
        reason = invalid_reason(name)
        if reason is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
        if not self._config.current.auto_create_topics_enable:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist and auto-creation is disabled."
        if name in (CONSUMER_OFFSETS, TRANSACTION_STATE):
            return self.ensure_internal_topic(name)
        return self.create_topic(name, -1, -1, {})

    def ensure_topic(self, name: str) -> TopicInfo | None:
        """The topic ``name``, auto-creating it when ``auto.create.topics.enable`` allows."""
        self.auto_create(name)
        return self.topics.get(name)

    def ensure_internal_topic(self, name: str, num_partitions: int | None = None,
                              configs: Mapping[str, str] | None = None) -> E.Result:
        """Create an internal topic (``__consumer_offsets``, ``__transaction_state``) if missing.

        Not gated by ``auto.create.topics.enable``: coordinators need their topics.
        """
        if name in self.topics:
            return E.OK
        n, defaults = internal_topic_shape(self._config.current, name)
        defaults.update(configs or {})
        rf = 1
        if self.clustered:
            key = "offsets.topic.replication.factor" if name == CONSUMER_OFFSETS else \
                "share.coordinator.state.topic.replication.factor" if name == SHARE_GROUP_STATE else \
                "transaction.state.log.replication.factor"
            rf = int(self._config.current.get(key))
            live = len(self.live_broker_ids())
            if live < rf:
                # As Kafka: not created with fewer replicas than configured (COORDINATOR_NOT_AVAILABLE).
                return (ErrorCode.COORDINATOR_NOT_AVAILABLE,
                        f"Number of alive brokers '{live}' does not meet the required replication factor '{rf}' "
                        f"for the internal topic {name} (configured via '{key}').")
        return self.create_topic(name, num_partitions or n, rf, defaults, internal=True)

    # ------------------------------------------------------------------ delete

    async def delete_topic(self, name: str | None = None,
                                 topic_id: uuid.UUID | None = None) -> tuple[E.Result, str | None]:
        """Delete a topic by name or by id: its metadata, logs and directories.

        The topic disappears at once; its store entry and directories are removed in a
        worker thread, the name staying reserved until then. Returns the result and
        the topic's name (None when the id is unknown).
        """
        if not self._config.current.delete_topic_enable:
            known = name if name is not None else self._by_id.get(topic_id) if topic_id is not None else None
            return (ErrorCode.TOPIC_DELETION_DISABLED, "Topic deletion is disabled."), known
        if name is not None:
            topic = self.topics.get(name)
            if topic is None:
                return (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."), name
        else:
            topic = self.topic_by_id(topic_id) if topic_id is not None else None
            if topic is None:
                return (ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID."), None
        if self.cluster is not None:
            return await self._delete_in_cluster(topic), topic.name
        self._unregister(topic)
        self._pending.add(topic.name)
        # Closed here, so that no read on the loop can meet a descriptor the thread closes.
        self._logs.close(topic)
        result = E.OK
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._delete_files, topic)
        except Exception as e:
            # The topic is gone for clients already; what is left on disk is a stray at the next start.
            log.exception("removing the files of topic %s failed", topic.name)
            result = ErrorCode.UNKNOWN_SERVER_ERROR, f"Removing the topic's files failed: {e}"
        finally:
            self._pending.discard(topic.name)
        log.info("deleted topic %s (%s)", topic.name, topic.topic_id)
        self._notify(self.on_topic_deleted, topic)
        return result, topic.name

    def _delete_files(self, topic: TopicInfo) -> None:
        """Worker thread: forget the topic on disk, then remove its directories."""
        self._store.delete(topic)
        self._logs.delete(topic)

    # ------------------------------------------------------------------ partitions

    def create_partitions(self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None = None,
                          validate_only: bool = False) -> E.Result:
        """Grow a topic to ``new_total`` partitions (``assignments``: broker ids per new partition)."""
        result, new_assign = self.validation.check_grow(name, new_total, assignments)
        if result != E.OK or validate_only:
            return result
        topic = self.topics[name]
        added = {i: self._new_partition(name, i, new_assign) for i in range(len(topic.partitions), new_total)}
        self._grow(topic, added)
        return E.OK

    def _grow(self, topic: TopicInfo, added: dict[int, PartitionInfo], prepared: PreparedLogs | None = None) -> None:
        """Add partitions (their logs prepared already, or opened here), save, tell the listeners."""
        topic.partitions.update(added)
        self._store.save(topic)
        if prepared is None:
            self._logs.open(topic, added)
        else:
            self._logs.open_prepared(topic, prepared)
        log.info("topic %s now has %d partitions", topic.name, len(topic.partitions))
        self._settle_heap(len(added))
        self._notify(self.on_topic_changed, topic)

    async def create_partitions_async(self, name: str, new_total: int,
                                      assignments: Sequence[Sequence[int]] | None = None,
                                      validate_only: bool = False) -> E.Result:
        """:meth:`create_partitions` for request handlers: many new partitions have their
        log directories prepared in a worker thread. Grows are serialized; the new
        partitions become visible together once their logs exist."""
        if self._grow_lock is None:
            self._grow_lock = anyio.Lock()
        async with self._grow_lock:
            result, new_assign = self.validation.check_grow(name, new_total, assignments)
            if result != E.OK or validate_only:
                return result
            if self.cluster is not None:
                return await self._grow_in_cluster(name, new_total, assignments, new_assign)
            topic = self.topics[name]
            current = len(topic.partitions)
            if new_total - current < OFF_LOOP_PARTITIONS:
                return self.create_partitions(name, new_total, assignments)
            added = {i: self._new_partition(name, i, new_assign) for i in range(current, new_total)}
            with anyio.CancelScope(shield=True):
                prepared = await anyio.to_thread.run_sync(self._logs.prepare, topic, list(added))
                if self.topics.get(name) is not topic or len(topic.partitions) != current:
                    self._logs.discard([prepared])  # deleted (or changed) meanwhile
                    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                self._grow(topic, added, prepared)
        return E.OK

    # ------------------------------------------------------------------ configs

    def alter_topic_configs(self, name: str, updates: Mapping[str, str | None], *, incremental: bool = True,
                            validate_only: bool = False) -> E.Result:
        """Change a topic's config overrides and apply them to its open logs.

        ``incremental`` merges ``updates`` into the overrides (None removes a key);
        otherwise they replace the overrides wholesale, as AlterConfigs does.
        """
        topic = self.topics.get(name)
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
        merged = _merge_configs(topic.configs, updates, incremental)
        result = self.validation.check_configs(merged)
        if result != E.OK or validate_only:
            return result
        if self.clustered:
            # Written to etcd in the background; every broker applies it from its image.
            self._spawn(self._set_configs_in_cluster(name, {k: v for k, v in merged.items() if v is not None}))
            return E.OK
        topic.configs = {k: v for k, v in merged.items() if v is not None}
        self._store.save(topic)
        self._logs.apply_config(topic)
        return E.OK

    async def alter_topic_configs_async(self, name: str, updates: Mapping[str, str | None], *,
                                        incremental: bool = True, validate_only: bool = False) -> E.Result:
        """:meth:`alter_topic_configs` for request handlers: in a cluster, the change is a
        compare-and-swap of the topic's record in etcd, answered once this broker applied it."""
        if self.cluster is None:
            return self.alter_topic_configs(name, updates, incremental=incremental, validate_only=validate_only)
        for _attempt in range(5):
            topic = self.topics.get(name)
            if topic is None:
                return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
            merged = _merge_configs(topic.configs, updates, incremental)
            result = self.validation.check_configs(merged)
            if result != E.OK or validate_only:
                return result
            try:
                revision = await self.cluster.set_topic_configs(name, {k: v for k, v in merged.items() if v is not None})
            except Exception as e:
                return ErrorCode.UNKNOWN_SERVER_ERROR, f"Changing the topic's configs failed: {e}"
            if revision is not None:
                await self.cluster.wait_applied(revision)
                return E.OK
            # Another change of the topic won the race: merge into the fresh overrides once applied.
            await self.cluster.wait_applied(self.cluster.image.revision + 1, timeout=1.0)
        return ErrorCode.CONCURRENT_TRANSACTIONS, f"The topic '{name}' keeps changing; retry."

    def save_dynamic_config(self, config: BrokerConfig) -> None:
        """Persist ``config``'s dynamic broker configs (before they take effect)."""
        self._dynamic_configs.save(config.dynamic_values())

    def dynamic_broker_configs(self, node: int | None) -> dict[str, str]:
        """Cluster mode: the dynamic configs etcd holds for broker ``node`` (None: the cluster-wide defaults)."""
        return dict(self._broker_config_layers["default" if node is None else "own"])

    async def alter_dynamic_broker_configs(self, node: int | None, updates: Mapping[str, str | None]) -> E.Result:
        """Cluster mode: change the dynamic configs of broker ``node`` (this node) or, for None,
        the cluster-wide defaults in etcd (``None`` values remove keys); every broker concerned
        applies them from its image. A compare-and-swap on the key, answered once applied here."""
        import json

        from kbroker.etcd.client import Compare, Put

        cluster = self.cluster
        if cluster is None:
            return ErrorCode.UNKNOWN_SERVER_ERROR, "Not joined to the cluster yet."
        key = cluster.keys.broker_config(node)
        for _attempt in range(5):
            values = {**self.dynamic_broker_configs(node), **updates}
            doc = json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True).encode()
            try:
                result = await cluster.client.txn([Compare.mod_revision(key, cluster.image.mod_revision(key))],
                                                  [Put(key, doc)])
            except Exception as e:  # etcd unreachable: nothing changed
                return ErrorCode.UNKNOWN_SERVER_ERROR, f"Cannot persist the broker configs: {e}"
            if result.succeeded:
                await cluster.wait_applied(result.revision)
                return E.OK
            # Another broker changed them meanwhile: merge into theirs once applied.
            await cluster.wait_applied(cluster.image.revision + 1, timeout=1.0)
        return ErrorCode.CONCURRENT_TRANSACTIONS, "The broker configs keep changing; retry."

    def _broker_config_document(self, key: str, kv: KeyValue | None) -> None:
        """Apply the cluster-wide or this broker's dynamic configs when etcd's copy changed."""

        assert self.cluster is not None
        keys = self.cluster.keys
        layer = "default" if key == keys.broker_config(None) else "own" if key == keys.broker_config(self.node_id) \
            else None
        if layer is None:
            return
        values: dict[str, str] = {}
        if kv is not None:
            from kbroker.metadata.cluster_state import config_document  # cluster mode only

            try:
                values = config_document(kv.value)
            except ValueError as e:
                log.error("ignoring undecodable dynamic broker configs %s: %s", key, e)
                return
        if values == self._broker_config_layers[layer]:
            return
        self._broker_config_layers[layer] = values
        config = self._static_config
        for name, default in (("default", True), ("own", False)):
            for k, v in sorted(self._broker_config_layers[name].items()):
                try:
                    config = config.with_dynamic({k: v}, default=default)
                except ConfigError as e:  # saved by another version, or no longer valid here
                    log.warning("ignoring dynamic broker config %s=%s: %s", k, v, e)
        self._config.replace(config)  # subscribers (open logs, the replica manager) apply it

    def reapply_broker_config(self) -> None:
        """Push the current broker defaults into every open log (after a dynamic broker change)."""
        for topic in self.topics.values():
            self._logs.apply_config(topic)

    # ------------------------------------------------------------------ cluster mode

    async def start(self, tg: TaskGroup) -> None:
        """Join the cluster (cluster mode): learn the cluster id, load the image and open the
        local replicas' logs, delete strays, register under a lease, start the controller.
        A no-op on a single broker."""
        if not self.clustered:
            return
        # Imported here: a single broker never loads the etcd client (nor httpx).
        from kbroker.etcd.client import EtcdClient
        from kbroker.metadata.cluster import ClusterMetadata

        # httpx logs every request at INFO: one per heartbeat.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        cfg = self._config.current
        client = EtcdClient(list(cfg.get("etcd.endpoints")))
        try:
            keys = self.cluster_keys
            if keys is None:
                keys = await anyio.to_thread.run_sync(self.resolve_identity)
            cluster = ClusterMetadata(client, keys, self.node_id, self._config, self._clock or _system_clock(),
                                      listeners=self._endpoints, rack=cfg.get("broker.rack"))
            self.cluster = cluster
            self._tg = tg
            cluster.on_change = self._apply_image_async
            await cluster.applied(await cluster.load())
            # Only now is it known which local logs are this node's replicas.
            self._logs.delete_strays(self._is_local_replica)
            await cluster.join(tg)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        log.info("joined cluster %s as broker %d (%d live brokers, %d topics)", self.cluster_id, self.node_id,
                 len(self.live_broker_ids()), len(self.topics))
        self._start_controller(tg)

    def resolve_identity(self) -> ClusterKeys:
        """Cluster mode: the cluster id (``cluster.id``, else the one kept in etcd, created once
        from the local ``meta.properties`` or afresh) and the cluster's etcd keys. Blocking: the
        Broker calls it at start-up, before anything is served. The log dirs must agree with the id."""
        from kbroker.etcd.client import Compare, EtcdSyncClient, Put, Range
        from kbroker.metadata.cluster_state import ClusterKeys

        cfg = self._config.current
        prefix = cfg.get("etcd.prefix")
        configured = cfg.cluster_id
        if configured is None:
            key = (prefix.rstrip("/") + "/" if prefix else "/kbroker/default/") + "cluster-id"
            candidate = _stored_cluster_id(self._log_dirs) or generate_cluster_id()
            client = EtcdSyncClient(list(cfg.get("etcd.endpoints")))
            try:
                result = client.txn([Compare.absent(key)], [Put(key, candidate.encode())], [Range(key)])
            finally:
                client.close()
            configured = candidate if result.succeeded else result.ranges[0][0].value.decode()
        self.cluster_id = load_or_create_cluster_id(self._log_dirs, self.node_id, configured)
        self.cluster_keys = ClusterKeys.for_cluster(self.cluster_id, prefix)
        return self.cluster_keys

    def _start_controller(self, tg: TaskGroup) -> None:
        cluster = self.cluster
        assert cluster is not None
        try:
            from kbroker.metadata.controller import Controller  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            log.warning("no controller in this build: partition leaderships do not move on broker loss")
            return
        controller = Controller(cluster.client, cluster.keys, self.node_id, lease=lambda: cluster.lease_id,
                                config=self._config, clock=self._clock or _system_clock())
        self._controller_scope = anyio.CancelScope()

        async def run(scope: anyio.CancelScope) -> None:
            with scope:
                await controller.run()

        tg.start_soon(run, self._controller_scope)

    async def shutdown(self) -> None:
        """Leave the cluster (a no-op on a single broker): with ``controlled.shutdown.enable``,
        announce the shutdown and wait (at most ``controlled.shutdown.max.wait.ms``) until the
        partitions this node leads with another live ISR member have moved; then revoke the lease."""
        cluster = self.cluster
        if cluster is None:
            return
        cfg = self._config.current
        try:
            if cfg.get("controlled.shutdown.enable") and cluster.lease_valid():
                with anyio.move_on_after(int(cfg.get("controlled.shutdown.max.wait.ms")) / 1000) as waited:
                    await cluster.wait_applied(await cluster.mark_shutting_down())
                    while (left := self._movable_leaderships()) > 0:
                        log.info("controlled shutdown: waiting for %d leaderships to move", left)
                        await cluster.wait_applied(cluster.image.revision + 1)
                if waited.cancelled_caught:
                    log.warning("controlled shutdown: %d leaderships did not move within "
                                "controlled.shutdown.max.wait.ms; stopping anyway", self._movable_leaderships())
        except Exception as e:  # etcd away: the lease expires by itself
            log.warning("controlled shutdown failed: %s", e)
        if self._controller_scope is not None:
            self._controller_scope.cancel()
        with anyio.CancelScope(shield=True):
            await cluster.stop(revoke=True)
            await cluster.client.aclose()

    def _movable_leaderships(self) -> int:
        """Partitions this node leads that another live ISR member could lead."""
        assert self.cluster is not None
        image = self.cluster.image
        live = image.brokers
        return sum(1 for p in image.partitions.values()
                   if p.leader == self.node_id and any(b != self.node_id and b in live for b in p.isr))

    def _is_local_replica(self, topic: str, index: int) -> bool:
        info = self.partition(topic, index)
        return info is not None and _hosts(info, self.node_id)

    def _spawn(self, coro: Any) -> None:
        """Run a cluster write in the background (its outcome reaches everyone through the image)."""
        if self._tg is None:
            coro.close()
            return
        self._tg.start_soon(_logged, coro)

    def _start_background_create(self, request: NewTopicRequest, internal: bool) -> None:
        self._pending.add(request.name)

        async def create() -> None:
            # Validated again on the loop (no await in between), without its own reservation.
            self._pending.discard(request.name)
            (code, message), = await self._create_in_cluster([request], [E.OK], None, internal=internal)
            if code not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
                log.warning("creating topic %s failed: %s", request.name, message)

        self._spawn(create())

    def _assign(self, num_partitions: int, rf: int, explicit: Assignments | None,
                start_partition: int = 0) -> dict[int, list[int]]:
        """Explicit assignments as given, else Kafka's placement over the live brokers."""
        from kbroker.metadata.assignment import assign_replicas

        if explicit:
            return {i: list(explicit[i]) for i in range(start_partition, start_partition + num_partitions)}
        brokers = {b: self.rack_of(b) for b in self.live_broker_ids()}
        if None in brokers.values():
            # Kafka's RackAwareMode.Safe: racks count only when every broker has one.
            brokers = dict.fromkeys(brokers)
        return assign_replicas(brokers, num_partitions, rf, start_partition=start_partition)

    async def _create_in_cluster(self, requests: Sequence[NewTopicRequest], results: list[E.Result],
                                 topics: list[TopicInfo] | None, *, internal: bool = False) -> list[E.Result]:
        """Write each accepted topic to etcd (one guarded txn each); answer once the image shows them."""
        from kbroker.metadata.assignment import AssignmentError
        from kbroker.metadata.cluster_state import TopicRecord

        cluster = self.cluster
        if cluster is None:
            return [(ErrorCode.NOT_CONTROLLER, "The broker has not joined its cluster yet.") if r == E.OK else r
                    for r in results]
        if topics is None:  # the background path: validated just before
            results, topics = self._plan_create(requests, internal=internal)
            if not topics:
                return results
        by_name = {t.name: t for t in topics}
        out = list(results)
        names = [r.name for r, res in zip(requests, results, strict=True) if res == E.OK and r.name in by_name]
        self._pending.update(names)
        revision = 0
        try:
            for i, req in enumerate(requests):
                topic = by_name.get(req.name)
                if topic is None or out[i] != E.OK:
                    continue
                n, rf = self.resolve_shape(req.num_partitions, req.replication_factor, req.assignments)
                try:
                    assignment = self._assign(n, rf, req.assignments)
                    record = TopicRecord(req.name, topic.topic_id, n, dict(topic.configs))
                    written = await cluster.create_topic(record, assignment)
                except AssignmentError as e:
                    out[i] = e.code, str(e)
                    continue
                except Exception as e:
                    log.warning("creating topic %s in etcd failed: %s", req.name, e)
                    out[i] = ErrorCode.UNKNOWN_SERVER_ERROR, f"Creating the topic failed: {e}"
                    continue
                if written is None:
                    out[i] = ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{req.name}' already exists."
                else:
                    revision = max(revision, written)
            if revision and not await cluster.wait_applied(revision):
                out = [(ErrorCode.REQUEST_TIMED_OUT, "The topic was created but is not visible yet.")
                       if r == E.OK else r for r in out]
        finally:
            self._pending.difference_update(names)
        return out

    async def _grow_in_cluster(self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None,
                               new_assign: Mapping[int, Sequence[int]] | None) -> E.Result:
        """Add partitions in etcd (CAS on the topic's record); a lost race is re-decided on the fresh image."""
        from kbroker.metadata.assignment import AssignmentError

        cluster = self.cluster
        assert cluster is not None
        for _attempt in range(5):
            topic = self.topics[name]
            current = len(topic.partitions)
            first = topic.partitions.get(0)
            rf = len(first.replicas) if first is not None else 1
            try:
                assignment = self._assign(new_total - current, rf, new_assign, start_partition=current)
                revision = await cluster.grow_topic(name, new_total, assignment)
            except AssignmentError as e:
                return e.code, str(e)
            except Exception as e:
                return ErrorCode.UNKNOWN_SERVER_ERROR, f"Adding partitions failed: {e}"
            if revision is not None:
                await cluster.wait_applied(revision)
                return E.OK
            await cluster.wait_applied(cluster.image.revision + 1, timeout=1.0)
            result, new_assign = self.validation.check_grow(name, new_total, assignments)
            if result != E.OK:
                return result
        return ErrorCode.CONCURRENT_TRANSACTIONS, f"The topic '{name}' keeps changing; retry."

    async def _delete_in_cluster(self, topic: TopicInfo) -> E.Result:
        cluster = self.cluster
        assert cluster is not None
        try:
            revision = await cluster.delete_topic(topic.name)
        except Exception as e:
            return ErrorCode.UNKNOWN_SERVER_ERROR, f"Deleting the topic failed: {e}"
        if revision is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
        if not await cluster.wait_applied(revision):
            return ErrorCode.REQUEST_TIMED_OUT, "The topic was deleted but this broker has not seen it yet."
        return E.OK

    async def _set_configs_in_cluster(self, name: str, configs: Mapping[str, str]) -> None:
        assert self.cluster is not None
        if await self.cluster.set_topic_configs(name, configs) is None:
            log.warning("config change of topic %s lost a race with another change; not applied", name)

    async def _apply_image_async(self, changes: ImageChanges) -> None:
        """:meth:`_apply_image`, the logs of many new local replicas prepared in a worker thread
        first (a large creation must not stall the event loop). The next batch waits for it."""
        assert self.cluster is not None
        image = self.cluster.image
        lm = self._logs.log_manager
        for name in changes.topics:  # only a topic's record adds partitions
            record = image.topics.get(name)
            existing = self.topics.get(name)
            if record is None or (existing is not None and existing.topic_id != record.topic_id):
                continue  # gone, or recreated (its old logs go first, in _apply_image)
            missing = [i for i, p in image.topic_partitions(name).items()
                       if _hosts(p, self.node_id) and lm.get_log(name, i) is None]
            if len(missing) < OFF_LOOP_PARTITIONS:
                continue
            topic = TopicInfo(name, record.topic_id, {}, dict(record.configs), is_internal(name))
            # Shielded: prepared logs are registered, or removed, never left half-made.
            with anyio.CancelScope(shield=True):
                prepared = await anyio.to_thread.run_sync(self._logs.prepare, topic, missing)
                self._logs.open_prepared(topic, prepared)
        self._apply_image(changes)

    def _apply_image(self, changes: ImageChanges) -> None:
        """On the loop: bring the topic registry and local logs in line with an applied etcd batch."""
        assert self.cluster is not None
        for key, kv in changes.documents.items():
            self._broker_config_document(key, kv)
            for listener in self.on_cluster_document:
                try:
                    listener(key, kv)
                except Exception:  # one bad listener must not stop the others, nor the image
                    log.exception("cluster document listener %r failed for %s", listener, key)
        image = self.cluster.image
        local: list[PartitionChange] = []
        removed: list[tuple[TopicInfo, list[int]]] = []
        deleted_topics: list[TopicInfo] = []
        changed_topics: list[TopicInfo] = []
        added = 0
        for name in sorted(changes.touched_topics):
            record = image.topics.get(name)
            existing = self.topics.get(name)
            if existing is not None and (record is None or record.topic_id != existing.topic_id):
                self._unregister(existing)
                gone = [i for i, p in existing.partitions.items() if _hosts(p, self.node_id)]
                local += [(existing.partitions[i], None) for i in gone]
                if record is None:
                    removed.append((existing, gone))
                else:  # recreated under the same name: the old logs go before the new ones open
                    self._remove_local_logs(existing, gone)
                deleted_topics.append(existing)
                existing = None
            if record is None:
                continue
            topic = existing
            if topic is None:
                topic = TopicInfo(name, record.topic_id, {}, dict(record.configs), is_internal(name))
                self._register(topic)
                changed_topics.append(topic)
                log.info("topic %s (%s) with %d partitions", name, record.topic_id, record.partitions)
            elif dict(record.configs) != topic.configs:
                topic.configs = dict(record.configs)
                self._logs.apply_config(topic)
            if existing is None or name in changes.topics:
                # New topic or a changed record (growth): the whole topic from the image.
                old_parts = topic.partitions
                new_parts = image.topic_partitions(name)
                if len(new_parts) != len(old_parts) and topic not in changed_topics:
                    changed_topics.append(topic)
                added += max(0, len(new_parts) - len(old_parts))
                topic.partitions = new_parts
            else:
                # Only some partitions' states changed (an ISR, a leader): only those are looked at.
                touched = [i for (t, i) in changes.partitions if t == name and i < record.partitions]
                old_parts = {i: p for i in touched if (p := topic.partitions.get(i)) is not None}
                new_parts = {i: p for i in touched if (p := image.partition(name, i)) is not None}
                for i in touched:
                    if i in new_parts:
                        topic.partitions[i] = new_parts[i]
                    else:
                        topic.partitions.pop(i, None)
            lm = self._logs.log_manager
            opened = [i for i, p in new_parts.items() if _hosts(p, self.node_id) and lm.get_log(name, i) is None]
            if opened:
                self._logs.open(topic, opened)
            dropped = [i for i, p in old_parts.items() if _hosts(p, self.node_id)
                       and (i not in new_parts or not _hosts(new_parts[i], self.node_id))]
            if dropped:
                removed.append((topic, dropped))
            for i in sorted(set(old_parts) | set(new_parts)):
                before, after = old_parts.get(i), new_parts.get(i)
                if before != after and ((before is not None and _hosts(before, self.node_id))
                                        or (after is not None and _hosts(after, self.node_id))):
                    local.append((before, after))
        self._settle_heap(added)
        if local:
            for fn in self.on_partitions_changed:
                try:
                    fn(local)
                except Exception:  # the image is applied; one listener's fault must not undo it
                    log.exception("partition listener %r failed", fn)
        for topic, indices in removed:
            self._remove_local_logs(topic, indices)
        for topic in deleted_topics:
            log.info("deleted topic %s (%s)", topic.name, topic.topic_id)
            self._notify(self.on_topic_deleted, topic)
        for topic in changed_topics:
            self._notify(self.on_topic_changed, topic)

    def _remove_local_logs(self, topic: TopicInfo, indices: list[int]) -> None:
        """Delete the logs of replicas this node no longer hosts: closed and renamed now, their
        files removed by the log manager's background thread (Kafka's asynchronous delete)."""
        if indices:
            self._logs.log_manager.delete_partitions(topic.name, indices)

    # ------------------------------------------------------------------ internals

    def _load(self) -> None:
        for rec in self._store.records():
            topic = TopicInfo(rec.name, rec.topic_id, {}, dict(rec.configs), is_internal(rec.name))
            topic.partitions = {i: self._new_partition(rec.name, i, None) for i in range(rec.partitions)}
            self._register(topic)
            self._logs.open(topic, topic.partitions)
        self._logs.delete_strays(lambda name, index: self.partition(name, index) is not None)
        if self.topics:
            log.info("loaded %d topics", len(self.topics))
        check_internal_topics(self._config.current, self.topic)

    def _register(self, topic: TopicInfo) -> None:
        topic.internal = is_internal(topic.name)
        self.topics[topic.name] = topic
        self._by_id[topic.topic_id] = topic.name
        self._by_collision_key[collision_key(topic.name)] = topic.name

    def _unregister(self, topic: TopicInfo) -> None:
        self.topics.pop(topic.name, None)
        self._by_id.pop(topic.topic_id, None)
        if self._by_collision_key.get(collision_key(topic.name)) == topic.name:
            del self._by_collision_key[collision_key(topic.name)]

    @staticmethod
    def _notify(listeners: list[TopicListener], topic: TopicInfo) -> None:
        for fn in listeners:
            try:
                fn(topic)
            except Exception:  # one bad listener must not undo a committed change
                log.exception("topic listener %r failed for %s", fn, topic.name)

    def describe(self) -> dict[str, Any]:
        """A plain summary for logs and debugging."""
        return {"cluster_id": self.cluster_id, "controller": self.controller_id,
                "topics": {n: len(t.partitions) for n, t in sorted(self.topics.items())}}


def _hosts(info: PartitionInfo, node_id: int) -> bool:
    """Whether ``node_id`` holds a replica of the partition (one being added included)."""
    return node_id in info.replicas or node_id in info.adding_replicas


def _stored_cluster_id(log_dirs: Sequence[Path]) -> str | None:
    """The cluster id of the first log dir's ``meta.properties``, if any."""
    from kbroker.config import load_properties
    from kbroker.fs import store_for
    from kbroker.metadata.cluster_id import META_PROPERTIES

    for d in log_dirs:
        path = d / META_PROPERTIES
        if store_for(path).exists(path):
            stored = load_properties(path).get("cluster.id")
            if stored:
                return stored.strip()
    return None


def _system_clock() -> Clock:
    from kbroker.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK


async def _logged(awaitable: Any) -> None:
    """Await a background cluster task; its failure is logged, never raised into the task group."""
    try:
        await awaitable
    except Exception:
        log.exception("background cluster metadata task failed")


def _merge_configs(current: Mapping[str, str], updates: Mapping[str, str | None],
                   incremental: bool) -> dict[str, str | None]:
    """``updates`` merged into ``current`` (None removes a key), or replacing it when not incremental."""
    merged: dict[str, str | None] = dict(current) if incremental else {}
    for key, value in updates.items():
        if value is None and incremental:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
