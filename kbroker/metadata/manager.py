"""``MetadataManager``: the cluster's topics, partitions, leaders and identity.

Single node today: this broker is the controller and leads every partition. Every
change is persisted through the log layer's topic store before it becomes visible,
and every partition's log is opened when its topic is created or loaded. The
operations are synchronous on purpose: they run on the event loop and touch only a
few small files, so there is no interleaving to reason about.

The exceptions are what request handlers do in bulk. CreateTopics and Metadata
auto-creation go through :meth:`MetadataManager.create_topics_async`: the directories of
every new topic and one write of the topic store happen in a worker thread, bounded by
``max.partitions.per.request``. Many new partitions of one topic
(:meth:`MetadataManager.create_partitions_async`) are prepared the same way, and
:meth:`MetadataManager.delete_topic_async` removes files there. Meanwhile the names are
reserved (a second create answers TOPIC_ALREADY_EXISTS) and nothing new is visible; the
topics or new partitions are registered on the loop once the directories exist, in one step.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import ConfigError, ConfigHolder, validate_topic_configs
from kbroker.log.errors import KafkaStorageError
from kbroker.metadata import errors as E
from kbroker.metadata.cluster_id import load_or_create_cluster_id
from kbroker.metadata.dynamic_config import DynamicConfigStore
from kbroker.metadata.log_config import log_config_for
from kbroker.metadata.model import BrokerNode, PartitionInfo, TopicInfo
from kbroker.metadata.store import TopicStoreAdapter
from kbroker.metadata.topic_names import (
    CONSUMER_OFFSETS,
    TRANSACTION_STATE,
    collision_key,
    invalid_reason,
    is_internal,
)

if TYPE_CHECKING:
    from kbroker.config import BrokerConfig
    from kbroker.log.config import LogConfig
    from kbroker.log.manager import LogManager, PreparedLogs

log = logging.getLogger(__name__)

#: From this many new partitions on, the async operations prepare logs off the event loop.
OFF_LOOP_PARTITIONS = 64

Assignments = Mapping[int, Sequence[int]]
TopicListener = Callable[[TopicInfo], None]


@dataclass(frozen=True)
class NewTopicRequest:
    """One topic of a batch creation (-1 partitions / replication factor: broker defaults)."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    configs: Mapping[str, str | None] = field(default_factory=dict)
    assignments: Assignments | None = None


#: From this many partitions created at once, ``on_bulk_create`` is called.
BULK_PARTITIONS = 1000


class MetadataManager:
    """Topics and partitions of the cluster, and how clients reach its brokers."""

    def __init__(self, config: ConfigHolder, log_manager: LogManager, log_dirs: Sequence[Path], *,
                 node_id: int, endpoints: Callable[[], Mapping[str, tuple[str, int]]],
                 on_bulk_create: Callable[[int], None] | None = None) -> None:
        """``endpoints`` gives the advertised ``(host, port)`` per listener once bound;
        ``on_bulk_create`` is told how many partitions a large creation added."""
        self._config = config
        self._logs = log_manager
        self._endpoints = endpoints
        self._on_bulk_create = on_bulk_create
        self.node_id = node_id
        self.cluster_id: str = load_or_create_cluster_id(log_dirs, node_id, config.current.cluster_id)
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
        # Dynamic broker configs from earlier runs apply before any log is opened.
        config.replace(self._dynamic_configs.apply(config.current))
        config.subscribe(lambda _: self.reapply_broker_config())
        self._load()

    # ------------------------------------------------------------------ lookups

    @property
    def controller_id(self) -> int:
        """The active controller: always this node."""
        return self.node_id

    def live_broker_ids(self) -> list[int]:
        """Ids of the brokers that can host replicas."""
        return [self.node_id]

    def brokers(self, listener: str | None = None) -> list[BrokerNode]:
        """Every broker as reachable on ``listener`` (the one the client connected on)."""
        endpoints = self._endpoints()
        if not endpoints:
            return []
        host, port = endpoints.get(listener or "", next(iter(endpoints.values())))
        return [BrokerNode(self.node_id, host, port, None)]

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

    # ------------------------------------------------------------------ create

    def resolve_shape(self, num_partitions: int, replication_factor: int,
                      assignments: Assignments | None = None) -> tuple[int, int]:
        """(partitions, replication factor) after applying -1 defaults and assignments."""
        if assignments:
            first = next(iter(assignments.values()))
            return len(assignments), len(first)
        cfg = self._config.current
        n = cfg.num_partitions if num_partitions == -1 else num_partitions
        rf = cfg.default_replication_factor if replication_factor == -1 else replication_factor
        return n, rf

    def check_create(self, name: str, num_partitions: int, replication_factor: int,
                     configs: Mapping[str, str | None], assignments: Assignments | None = None,
                     *, internal: bool = False) -> E.Result:
        """Kafka's CreateTopics validation, without creating anything.

        Only the broker itself (``internal``) creates internal topics: a client-made
        ``__consumer_offsets`` with another partition count would move every group.
        """
        reason = invalid_reason(name)
        if reason is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
        if is_internal(name) and not internal:
            return ErrorCode.INVALID_REQUEST, f"Creation of internal topic {name} is prohibited."
        if name in self.topics or name in self._pending:
            return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
        other = self._by_collision_key.get(collision_key(name))
        if other is None:
            key = collision_key(name)
            other = next((p for p in self._pending if collision_key(p) == key), None)
        if other is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{name}' collides with existing topic: {other}"
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                return (ErrorCode.INVALID_REQUEST, "Both numPartitions or replicationFactor and replicasAssignments "
                        "were set. Both cannot be used at the same time.")
            if sorted(assignments) != list(range(len(assignments))):
                return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        "Partitions should be a consecutive 0-based integer sequence")
            sizes = {len(b) for b in assignments.values()}
            if len(sizes) != 1:
                return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "All partitions should have the same number of replicas"
            for index, brokers in assignments.items():
                result = self._check_replicas(index, brokers)
                if result != E.OK:
                    return result
        else:
            n, rf = self.resolve_shape(num_partitions, replication_factor)
            if n <= 0:
                return ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value."
            if rf <= 0:
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        "Replication factor must be larger than 0, or -1 to use the default value.")
            live = len(self.live_broker_ids())
            if rf > live:
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        f"Unable to replicate the partition {rf} time(s): The target replication factor of "
                        f"{rf} cannot be reached because only {live} broker(s) are registered.")
        n, _ = self.resolve_shape(num_partitions, replication_factor, assignments)
        if n > self.max_partitions_per_request:
            return ErrorCode.POLICY_VIOLATION, "Unable to perform excessively large batch operation."
        return self._check_configs(configs)

    def _check_replicas(self, index: int, brokers: Sequence[int]) -> E.Result:
        if not brokers:
            return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"The manual partition assignment for partition {index} is empty."
        if len(set(brokers)) != len(brokers):
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment for partition {index} includes a duplicate broker id.")
        unknown = [b for b in brokers if b not in self.live_broker_ids()]
        if unknown:
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes broker {unknown[0]}, but no such broker is registered.")
        return E.OK

    def _check_configs(self, configs: Mapping[str, str | None]) -> E.Result:
        try:
            validate_topic_configs(configs)
            log_config_for(self._config.current, configs)
        except (ConfigError, ValueError) as e:
            return ErrorCode.INVALID_CONFIG, str(e)
        return E.OK

    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: Mapping[str, str | None] | None = None, assignments: Assignments | None = None,
                     validate_only: bool = False, *, internal: bool = False) -> E.Result:
        """Create a topic with Kafka's validation; returns (error_code, error_message).

        ``-1`` partitions / replication factor mean the broker defaults (``num.partitions``,
        ``default.replication.factor``); ``assignments`` maps partition index to broker ids.
        ``internal`` allows an internal topic's name (the broker's own creations).
        """
        configs = dict(configs or {})
        result = self.check_create(name, num_partitions, replication_factor, configs, assignments,
                                   internal=internal)
        if result != E.OK or validate_only:
            return result
        n, _ = self.resolve_shape(num_partitions, replication_factor, assignments)
        self._create(name, n, {k: v for k, v in configs.items() if v is not None}, assignments)
        return E.OK

    @property
    def max_partitions_per_request(self) -> int:
        """``max.partitions.per.request``: new partitions one request may create in all."""
        return int(self._config.current.get("max.partitions.per.request"))

    async def create_topics_async(self, requests: Sequence[NewTopicRequest], *, validate_only: bool = False,
                                  internal: bool = False) -> list[E.Result]:
        """Create several topics as one operation; one result per request, in order.

        Like Kafka's controller, a request whose new partitions exceed the per-request
        bound (``max.partitions.per.request``) creates nothing: every topic that was
        valid answers POLICY_VIOLATION. The log directories and the one metadata write
        happen in a worker thread; the topics become visible together afterwards.
        """
        results: list[E.Result] = []
        accepted: list[tuple[int, NewTopicRequest, int]] = []
        total = 0
        for i, req in enumerate(requests):
            configs = dict(req.configs)
            result = self.check_create(req.name, req.num_partitions, req.replication_factor, configs,
                                       req.assignments, internal=internal)
            if result == E.OK and any(req.name == r.name for _, r, _ in accepted):
                result = ErrorCode.INVALID_REQUEST, f"Found multiple entries for topic {req.name}."
            results.append(result)
            if result == E.OK:
                n, _ = self.resolve_shape(req.num_partitions, req.replication_factor, req.assignments)
                accepted.append((i, req, n))
                total += n
        if total > self.max_partitions_per_request:
            for i, _, _ in accepted:
                results[i] = ErrorCode.POLICY_VIOLATION, "Unable to perform excessively large batch operation."
            return results
        if validate_only or not accepted:
            return results
        topics = [self._new_topic(req.name, n, {k: v for k, v in req.configs.items() if v is not None},
                                  req.assignments) for _, req, n in accepted]
        names = [t.name for t in topics]
        self._pending.update(names)
        try:
            # Shielded: once started, the creation completes (or fails) as one step.
            with anyio.CancelScope(shield=True):
                try:
                    prepared = await anyio.to_thread.run_sync(self._prepare_and_save, topics)
                except Exception as e:
                    log.exception("creating %d topics failed", len(topics))
                    for i, _, _ in accepted:
                        results[i] = ErrorCode.UNKNOWN_SERVER_ERROR, f"Creating the topic failed: {e}"
                    return results
                for topic, prep in zip(topics, prepared, strict=True):
                    self._register(topic)
                    self._open_prepared(topic, prep)
        finally:
            self._pending.difference_update(names)
        for topic in topics:
            log.info("created topic %s (%s) with %d partitions", topic.name, topic.topic_id, len(topic.partitions))
        self._settle_heap(total)
        for topic in topics:
            self._notify(self.on_topic_changed, topic)
        return results

    def _prepare_and_save(self, topics: Sequence[TopicInfo]) -> list[PreparedLogs]:
        """Worker thread: every topic's log directories, then one write of the topic store."""
        lm = self._logs
        prepared: list[PreparedLogs] = []
        try:
            for topic in topics:
                prepared.append(lm.prepare_logs(topic.name, range(len(topic.partitions)), topic.topic_id,
                                                log_config_for(self._config.current, topic.configs)))
            self._store.save_many(topics)
        except BaseException:
            for prep in prepared:
                lm.discard_prepared(prep)
            raise
        return prepared

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

    def _create(self, name: str, num_partitions: int, configs: dict[str, str],
                assignments: Assignments | None = None) -> TopicInfo:
        topic = self._new_topic(name, num_partitions, configs, assignments)
        self._store.save(topic)
        self._register(topic)
        self._open_logs(topic, topic.partitions)
        log.info("created topic %s (%s) with %d partitions", name, topic.topic_id, num_partitions)
        self._notify(self.on_topic_changed, topic)
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
        cfg = self._config.current
        if name == CONSUMER_OFFSETS:
            n = cfg.offsets_topic_num_partitions
            defaults = {"cleanup.policy": "compact", "compression.type": "producer", "segment.bytes": "104857600"}
        elif name == TRANSACTION_STATE:
            n = int(cfg.get("transaction.state.log.num.partitions"))
            defaults = {"cleanup.policy": "compact", "compression.type": "uncompressed",
                        "segment.bytes": "104857600", "unclean.leader.election.enable": "false"}
        else:
            n, defaults = cfg.num_partitions, {}
        defaults.update(configs or {})
        return self.create_topic(name, num_partitions or n, 1, defaults, internal=True)

    # ------------------------------------------------------------------ delete

    def delete_topic(self, name: str) -> E.Result:
        """Delete a topic by name: its metadata, logs and directories."""
        if not self._config.current.delete_topic_enable:
            return ErrorCode.TOPIC_DELETION_DISABLED, "Topic deletion is disabled."
        topic = self.topics.get(name)
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
        self._delete(topic)
        return E.OK

    def delete_topic_by_id(self, topic_id: uuid.UUID) -> tuple[E.Result, str | None]:
        """Delete a topic by id; returns the result and the topic's name (None if unknown)."""
        if not self._config.current.delete_topic_enable:
            return (ErrorCode.TOPIC_DELETION_DISABLED, "Topic deletion is disabled."), self._by_id.get(topic_id)
        topic = self.topic_by_id(topic_id)
        if topic is None:
            return (ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID."), None
        self._delete(topic)
        return E.OK, topic.name

    async def delete_topic_async(self, name: str | None = None,
                                 topic_id: uuid.UUID | None = None) -> tuple[E.Result, str | None]:
        """:meth:`delete_topic` (by name) or :meth:`delete_topic_by_id` for request handlers.

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
        self._unregister(topic)
        self._pending.add(topic.name)
        lm = self._logs
        # Closed here, so that no read on the loop can meet a descriptor the thread closes.
        for index in topic.partitions:
            plog = lm.get_log(topic.name, index)
            if plog is not None:
                plog.close(snapshot=False)
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
        self._logs.delete_partitions(topic.name, topic.partitions)

    def _delete(self, topic: TopicInfo) -> None:
        # Forget first so concurrent readers see UNKNOWN rather than a half-deleted topic.
        self._unregister(topic)
        self._store.delete(topic)
        self._logs.delete_partitions(topic.name, topic.partitions)
        log.info("deleted topic %s (%s)", topic.name, topic.topic_id)
        self._notify(self.on_topic_deleted, topic)

    # ------------------------------------------------------------------ partitions

    def create_partitions(self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None = None,
                          validate_only: bool = False) -> E.Result:
        """Grow a topic to ``new_total`` partitions (``assignments``: broker ids per new partition)."""
        result, new_assign = self._check_grow(name, new_total, assignments)
        if result != E.OK or validate_only:
            return result
        topic = self.topics[name]
        added = {i: self._new_partition(name, i, new_assign) for i in range(len(topic.partitions), new_total)}
        topic.partitions.update(added)
        self._store.save(topic)
        self._open_logs(topic, added)
        log.info("topic %s now has %d partitions", name, new_total)
        self._settle_heap(len(added))
        self._notify(self.on_topic_changed, topic)
        return E.OK

    async def create_partitions_async(self, name: str, new_total: int,
                                      assignments: Sequence[Sequence[int]] | None = None,
                                      validate_only: bool = False) -> E.Result:
        """:meth:`create_partitions` for request handlers: many new partitions have their
        log directories prepared in a worker thread. Grows are serialized; the new
        partitions become visible together once their logs exist."""
        if self._grow_lock is None:
            self._grow_lock = anyio.Lock()
        async with self._grow_lock:
            result, new_assign = self._check_grow(name, new_total, assignments)
            if result != E.OK or validate_only:
                return result
            topic = self.topics[name]
            current = len(topic.partitions)
            if new_total - current < OFF_LOOP_PARTITIONS:
                return self.create_partitions(name, new_total, assignments)
            added = {i: self._new_partition(name, i, new_assign) for i in range(current, new_total)}
            with anyio.CancelScope(shield=True):
                lm = self._logs
                prepared = await anyio.to_thread.run_sync(lm.prepare_logs, name, list(added), topic.topic_id,
                                                          log_config_for(self._config.current, topic.configs))
                if self.topics.get(name) is not topic or len(topic.partitions) != current:
                    lm.discard_prepared(prepared)  # deleted (or changed) meanwhile
                    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."
                topic.partitions.update(added)
                self._store.save(topic)
                self._open_prepared(topic, prepared)
        log.info("topic %s now has %d partitions", name, new_total)
        self._settle_heap(new_total - current)
        self._notify(self.on_topic_changed, topic)
        return E.OK

    def _check_grow(self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None
                    ) -> tuple[E.Result, dict[int, Sequence[int]] | None]:
        topic = self.topics.get(name)
        if topic is None:
            return (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."), None
        if topic.internal:
            # Coordinators hash keys over the partition count: growing it would move them.
            return (ErrorCode.INVALID_REQUEST, f"Adding partitions to internal topic {name} is prohibited."), None
        current = len(topic.partitions)
        if new_total < current:
            return (ErrorCode.INVALID_PARTITIONS,
                    f"The topic {name} currently has {current} partition(s); {new_total} would not be an increase."), None
        if new_total == current:
            return (ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."), None
        if new_total - current > self.max_partitions_per_request:
            return (ErrorCode.POLICY_VIOLATION, "Unable to perform excessively large batch operation."), None
        new_assign: dict[int, Sequence[int]] | None = None
        if assignments is not None:
            if len(assignments) != new_total - current:
                return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {new_total - current} additional partition(s), but only "
                        f"{len(assignments)} assignment(s) were specified."), None
            new_assign = {}
            for offset, brokers in enumerate(assignments):
                result = self._check_replicas(current + offset, brokers)
                if result != E.OK:
                    return result, None
                new_assign[current + offset] = brokers
        return E.OK, new_assign

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
        merged: dict[str, str | None] = dict(topic.configs) if incremental else {}
        for key, value in updates.items():
            if value is None and incremental:
                merged.pop(key, None)
            else:
                merged[key] = value
        result = self._check_configs(merged)
        if result != E.OK or validate_only:
            return result
        topic.configs = {k: v for k, v in merged.items() if v is not None}
        self._store.save(topic)
        config = log_config_for(self._config.current, topic.configs)
        for index in topic.partitions:
            plog = self._logs.get_log(topic.name, index)
            if plog is not None:
                plog.update_config(config)
        return E.OK

    def save_dynamic_config(self, config: BrokerConfig) -> None:
        """Persist ``config``'s dynamic broker configs (before they take effect)."""
        self._dynamic_configs.save(config.dynamic_values())

    def reapply_broker_config(self) -> None:
        """Push the current broker defaults into every open log (after a dynamic broker change)."""
        for topic in self.topics.values():
            config = log_config_for(self._config.current, topic.configs)
            for index in topic.partitions:
                plog = self._logs.get_log(topic.name, index)
                if plog is not None:
                    plog.update_config(config)

    # ------------------------------------------------------------------ internals

    def _load(self) -> None:
        for rec in self._store.records():
            topic = TopicInfo(rec.name, rec.topic_id, {}, dict(rec.configs), is_internal(rec.name))
            topic.partitions = {i: self._new_partition(rec.name, i, None) for i in range(rec.partitions)}
            self._register(topic)
            self._open_logs(topic, topic.partitions)
        # Logs of topics the store does not know (a delete interrupted by a crash) are
        # strays, as in KRaft; keeping them would resurrect data under a reused name.
        lm = self._logs
        for name, index in list(lm.all_logs()):
            if self.partition(name, index) is None:
                log.warning("deleting stray log %s-%d: its topic does not exist", name, index)
                lm.delete_partition(name, index)
        if self.topics:
            log.info("loaded %d topics", len(self.topics))
        self._check_internal_topics()

    def _check_internal_topics(self) -> None:
        """Warn when an internal topic's partition count differs from its setting.

        The topic's own count is the one used (coordinators hash over the partitions
        that exist), so records written before the setting changed stay findable.
        """
        cfg = self._config.current
        for name, key in ((CONSUMER_OFFSETS, "offsets.topic.num.partitions"),
                          (TRANSACTION_STATE, "transaction.state.log.num.partitions")):
            topic = self.topics.get(name)
            if topic is not None and len(topic.partitions) != int(cfg.get(key)):
                log.warning("%s has %d partitions but %s is %s; using the %d partitions that exist",
                            name, len(topic.partitions), key, cfg.get(key), len(topic.partitions))

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

    def _open_logs(self, topic: TopicInfo, partitions: Mapping[int, PartitionInfo]) -> None:
        lm = self._logs
        missing = [i for i in partitions if lm.get_log(topic.name, i) is None]
        if len(missing) >= OFF_LOOP_PARTITIONS:
            # New partitions in bulk (creation, or a restart after a crash mid-creation).
            prepared = lm.prepare_logs(topic.name, missing, topic.topic_id,
                                       log_config_for(self._config.current, topic.configs))
            self._open_prepared(topic, prepared, partitions)
        else:
            self._open_each(topic, partitions)

    def _open_prepared(self, topic: TopicInfo, prepared: PreparedLogs,
                       partitions: Iterable[int] = ()) -> None:
        """Register prepared logs, then open the rest of ``partitions`` and the leftovers."""
        lm = self._logs
        others = lm.register_prepared(prepared, log_config_for(self._config.current, topic.configs))
        rest = [i for i in partitions if i not in prepared.created]
        self._open_each(topic, sorted(set(rest) | set(others)))

    def _open_each(self, topic: TopicInfo, partitions: Iterable[int]) -> None:
        config = log_config_for(self._config.current, topic.configs)
        lm = self._logs
        for index in partitions:
            try:
                lm.get_or_create_log(topic.name, index, config, topic_id=topic.topic_id)
            except KafkaStorageError:
                # The directory belongs to an earlier topic of the same name: a stray.
                log.warning("replacing stray log %s-%d of another topic id", topic.name, index)
                lm.delete_partition(topic.name, index)
                lm.get_or_create_log(topic.name, index, config, topic_id=topic.topic_id)

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
