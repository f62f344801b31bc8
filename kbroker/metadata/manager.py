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
from kbroker.config import ConfigHolder
from kbroker.metadata import errors as E
from kbroker.metadata.cluster_id import load_or_create_cluster_id
from kbroker.metadata.dynamic_config import DynamicConfigStore
from kbroker.metadata.log_config import log_config_for
from kbroker.metadata.model import Assignments, BrokerNode, NewTopicRequest, PartitionInfo, TopicInfo
from kbroker.metadata.store import TopicStoreAdapter
from kbroker.metadata.topic_logs import OFF_LOOP_PARTITIONS, TopicLogs
from kbroker.metadata.topic_names import (
    CONSUMER_OFFSETS,
    TRANSACTION_STATE,
    collision_key,
    invalid_reason,
    is_internal,
)
from kbroker.metadata.validation import TOO_LARGE, TopicValidator, check_internal_topics, internal_topic_shape

if TYPE_CHECKING:
    from kbroker.config import BrokerConfig
    from kbroker.log.config import LogConfig
    from kbroker.log.manager import LogManager, PreparedLogs

log = logging.getLogger(__name__)

__all__ = ["BULK_PARTITIONS", "OFF_LOOP_PARTITIONS", "Assignments", "MetadataManager", "NewTopicRequest"]

TopicListener = Callable[[TopicInfo], None]

#: Created topics made visible between two yields to the event loop.
_FINISH_CHUNK = 200
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
        self._logs = TopicLogs(config, log_manager)
        self.validation = TopicValidator(config, topic=self.topic, reserved=self._reserved,
                                         collides_with=self._collides_with, live_broker_ids=self.live_broker_ids)
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
        return self.create_topic(name, num_partitions or n, 1, defaults, internal=True)

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
        merged: dict[str, str | None] = dict(topic.configs) if incremental else {}
        for key, value in updates.items():
            if value is None and incremental:
                merged.pop(key, None)
            else:
                merged[key] = value
        result = self.validation.check_configs(merged)
        if result != E.OK or validate_only:
            return result
        topic.configs = {k: v for k, v in merged.items() if v is not None}
        self._store.save(topic)
        self._logs.apply_config(topic)
        return E.OK

    def save_dynamic_config(self, config: BrokerConfig) -> None:
        """Persist ``config``'s dynamic broker configs (before they take effect)."""
        self._dynamic_configs.save(config.dynamic_values())

    def reapply_broker_config(self) -> None:
        """Push the current broker defaults into every open log (after a dynamic broker change)."""
        for topic in self.topics.values():
            self._logs.apply_config(topic)

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
