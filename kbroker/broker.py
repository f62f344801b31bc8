"""The broker: wires config, clock, storage, metadata and the listeners together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup

from kbroker import heap
from kbroker.clock import SYSTEM_CLOCK, Clock, ManualClock
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigError, ConfigHolder
from kbroker.fs import MEMORY_LOG_DIRS, is_memory_path, new_memory_root
from kbroker.handlers import registry
from kbroker.security.listener import ListenerSecurity
from kbroker.security.model import Authorizer
from kbroker.security.quotas import QuotaManager
from kbroker.security.scram import CredentialStore
from kbroker.security.store import FileStateStore

if TYPE_CHECKING:
    from kbroker.etcd.client import KeyValue
    from kbroker.groups.group_configs import GroupConfigs
    from kbroker.handlers.api import BrokerServices
    from kbroker.metadata.cluster_state import ClusterKeys
    from kbroker.metadata.manager import MetadataManager
    from kbroker.metadata.model import PartitionInfo
    from kbroker.replica.fetcher import ReplicaFetchers
    from kbroker.replica.markers import ClusterMarkerWriter, RemoteTxnVerifier
    from kbroker.replica.partition_state import ReplicationSeam
    from kbroker.security.sasl.authenticator import SaslMetrics
    from kbroker.security.store import StateStore
    from kbroker.server.http import HttpEndpoint
    from kbroker.server.metrics import BrokerMetrics, MetricsSources
    from kbroker.server.recorder import Recorder
    from kbroker.txn.markers import MarkerResults, TxnMarker, WriteMarkers
from kbroker.server.connection import Connection, peer_address
from kbroker.server.emulation import ApiVersionEmulation
from kbroker.server.faults import FaultInjector
from kbroker.server.intercept import Interceptors
from kbroker.server.limits import ConnectionQuotas, RequestMemory

log = logging.getLogger("kbroker")
#: Security protocols the listeners can serve.
SERVED_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
#: Pause after a failed accept() (EMFILE and the like), doubling up to the maximum.
_ACCEPT_BACKOFF = (0.05, 1.0)


class Broker:
    """One broker process's state; handlers reach everything through it."""

    def __init__(self, config: BrokerConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        from kbroker.groups import GroupConfig, GroupCoordinator
        from kbroker.groups.consumer_group import ConsumerGroupConfig
        from kbroker.groups.storage import TopicOffsetsLog
        from kbroker.handlers.write_txn_markers import write_markers
        from kbroker.log import LogManager
        from kbroker.log.cleaner.manager import CleanerConfig
        from kbroker.metadata.manager import MetadataManager
        from kbroker.replica.manager import ReplicaManager
        from kbroker.txn.coordinator import TransactionCoordinator
        from kbroker.txn.log import TopicTransactionLog
        from kbroker.txn.producer_ids import ProducerIdManager

        #: The config in force; dynamic changes replace it (read ``config`` for the current one).
        self.configs = ConfigHolder(config)
        self.clock = clock
        self.node_id: int = config.node_id
        self.stopping = False
        #: Whether this broker is its process's only tenant (``kbroker serve``): it may then
        #: tune process-wide state such as the garbage collector (see :mod:`kbroker.heap`).
        self.owns_process = False
        #: Each listener's protocol, TLS context and SASL set-up, by listener name (TLS
        #: stores are read first: a bad one stops start-up before the data is loaded).
        self.listener_security: dict[str, ListenerSecurity] = {
            ls.name: listener_security(config, ls.name) for ls in config.listeners}
        self.log_dirs = resolve_log_dirs(config.log_dirs)
        check_log_dirs(self.log_dirs)
        #: Advertised (host, port) per listener name, known once the listeners are bound.
        self.endpoints: dict[str, tuple[str, int]] = {}
        #: Whether this broker is one of an etcd-coordinated cluster (``etcd.endpoints``).
        self.clustered = bool(config.get("etcd.endpoints"))
        if self.clustered:
            check_inter_broker_listener(config)
        self.log_manager = LogManager(
            self.log_dirs, clock, self.default_log_config(),
            retention_check_interval_ms=int(config.get("log.retention.check.interval.ms")),
            cleaner_config=CleanerConfig.from_broker_config(config), replicated=self.clustered,
            high_watermark_checkpoint_interval_ms=int(config.get("replica.high.watermark.checkpoint.interval.ms")))
        # Dynamic log.cleaner.* changes (and those stored by an earlier run) reach the cleaner.
        self.configs.subscribe(lambda c: self.log_manager.reconfigure_cleaner(CleanerConfig.from_broker_config(c)))
        try:
            self.metadata = MetadataManager(self.configs, self.log_manager, self.log_dirs, node_id=self.node_id,
                                            endpoints=lambda: self.endpoints, on_bulk_create=self._settle_heap,
                                            clock=clock)
            #: The cluster's etcd keys (None on a single broker), resolved before anything is served.
            self.cluster_keys = self._resolve_cluster() if self.clustered else None
            #: Followers' fetching from leaders, and markers to other brokers (cluster mode only).
            self.fetchers: ReplicaFetchers | None = None
            self._marker_writer: ClusterMarkerWriter | None = None
            self._txn_verifier: RemoteTxnVerifier | None = None
            self.replica_manager = ReplicaManager(node_id=self.node_id, config=self.configs, partitions=self.metadata,
                                                  logs=self.log_manager.get_log, clock=clock,
                                                  replication=self._replication() if self.clustered else None)
            self.metadata.on_topic_deleted.append(self.replica_manager.on_topic_deleted)
            offsets_log = TopicOffsetsLog(
                metadata=self.metadata, append_records=self.replica_manager.append_records, logs=self.log_manager.get_log,
                clock=clock, default_partitions=lambda: self.config.offsets_topic_num_partitions)
            #: Per-group config overrides (the GROUP config resource); coordinators read them
            #: through ``group_configs.get``.
            self.group_configs = self._group_configs()
            self.groups = GroupCoordinator(GroupConfig.from_broker_config(self.config), clock, offsets_log,
                                           node_id=self.node_id, clustered=self.clustered,
                                           consumer_config=ConsumerGroupConfig.from_broker_config(self.config),
                                           topics=lambda: self.metadata.topics,
                                           group_setting=self.group_configs.get)
            self._wire_share_groups()
            self.producer_ids = ProducerIdManager(self.log_dirs[0],
                                                  block_source=self._producer_id_block if self.clustered else None)
            txn_log = TopicTransactionLog(
                metadata=self.metadata, append_records=self.replica_manager.append_records,
                logs=self.log_manager.get_log, clock=clock, topic_configs=self._transaction_topic_configs,
                default_partitions=lambda: int(self.config.get("transaction.state.log.num.partitions")))
            self.transactions = TransactionCoordinator(
                self.configs, clock, self.producer_ids, txn_log, self._markers_writer(write_markers),
                offsets_partition=self.groups.partition_for, partition_exists=self._partition_exists,
                node_id=self.node_id, clustered=self.clustered)
            self.transactions.verify_elsewhere = self._txn_verifier
            if self.clustered:
                # Leaderships and replicas as the cluster's image changes: the data path first, then
                # the coordinators of the internal topics' partitions.
                self.metadata.on_partitions_changed += [self.replica_manager.apply_partitions,
                                                        self.groups.on_partitions_changed,
                                                        self.transactions.on_partitions_changed]
        except BaseException:
            self.log_manager.release_dir_locks()  # a failed start leaves the dirs usable
            raise
        #: Where ACLs, SCRAM credentials and client quotas are kept (etcd in a cluster).
        self.security_store: StateStore = self._security_store()
        #: The ACL authorizer (None: ``authorizer.class.name`` is unset and everything is allowed).
        self.authorizer: Authorizer | None = self._build_authorizer(config)
        try:
            #: Users' SCRAM credentials: SASL/SCRAM logins and Describe/AlterUserScramCredentials.
            self.credentials = CredentialStore(self.security_store)
            #: Client quota configs (durable) and the usage measured against them.
            self.client_quotas = QuotaManager.from_config(self.security_store, clock, config)
        except OSError as e:
            self.log_manager.release_dir_locks()
            raise StartupError(str(e)) from e
        if self.clustered:
            self._follow_security_changes()
        #: Broker-wide SASL authentication counts (Kafka's (re)authentication metrics); None
        #: without a SASL listener (the SASL modules are then not even imported).
        self.sasl_metrics: SaslMetrics | None = None
        try:
            for name, security in self.listener_security.items():
                if security.uses_sasl:
                    self.listener_security[name] = self._with_sasl(config, security)
        except BaseException:
            self.log_manager.release_dir_locks()
            raise
        self._connections: set[Connection] = set()
        self.quotas = ConnectionQuotas(clock, samples=int(config.get("quota.window.num")),
                                       window_seconds=int(config.get("quota.window.size.seconds")),
                                       ip_rate=self.client_quotas.ip_connection_rate)
        self.configs.subscribe(lambda _: self.quotas.wake())  # raised connection limits take effect at once
        self.request_memory = RequestMemory(int(config.get("queued.max.request.bytes")))
        #: What wraps the serving of every request (fault rules, the flight recorder, metrics).
        self.interceptors = Interceptors()
        emulate = config.get("emulate.version")
        if emulate is not None:  # first in: interceptors added later run inside it
            self.interceptors.add(ApiVersionEmulation.for_release(str(emulate)))
        #: Fault rules (in the request path only while it holds one, or serves ``faults.port``).
        self.faults = FaultInjector(self.interceptors, clock, topic_name=self._topic_name)
        #: The flight recorder while one records (record.file, :meth:`start_recording`).
        self.recorder: Recorder | None = None
        #: Whether start-up is done and requests are served (the health check says so).
        self.serving = False
        #: Prometheus metrics and the health check (``metrics.port``; None, and nothing of them
        #: imported, when it is unset).
        self.metrics: BrokerMetrics | None = None
        if config.get("metrics.port") is not None:
            from kbroker.server.metrics import BrokerMetrics

            metrics = self.metrics = BrokerMetrics(self._metrics_sources(), config.get("metrics.host"),
                                                   config.get("metrics.port"))
            # Outermost: it counts what the client gets, whatever the inner interceptors did.
            self.interceptors.add(metrics, outermost=True)
            self.metadata.on_topic_deleted.append(lambda topic: metrics.topic_deleted(topic.name))
        #: The web console's HTTP endpoint while it serves (``console.port``; its code is imported
        #: only then).
        self.console: HttpEndpoint | None = None
        #: ``time.time()`` when this broker object was made (the console's uptime).
        self.started_at = time.time()

    # -- flight recorder ---------------------------------------------------------------------------
    def start_recording(self, path: str | Path, payloads: bool = False) -> None:
        """Record every request served from now on to ``path`` (JSON lines, appended; read them
        with ``kbroker trace``), replacing a recording under way. OSError when ``path`` cannot be
        opened."""
        from kbroker.server.recorder import Recorder

        recorder = Recorder(path, payloads=payloads, clock=self.clock, topic_name=self._topic_name)
        self.stop_recording()
        self.recorder = recorder
        self.interceptors.add(recorder, outermost=True)  # outermost: what clients get, faults included

    def stop_recording(self) -> None:
        """Stop the recording under way (if any): queued lines are written and the file closed."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            self.interceptors.remove(recorder)
            recorder.close()

    def _metrics_sources(self) -> MetricsSources:
        """What the metrics read from this broker when scraped."""
        from kbroker.groups.state import GroupState
        from kbroker.server.metrics import GroupOffset, MetricsSources

        logs, metadata = self.log_manager, self.metadata

        def partitions() -> Iterator[tuple[str, int, int, bool]]:
            for tp, plog in logs.all_logs().items():
                info = metadata.partition(tp.topic, tp.partition)
                yield tp.topic, tp.partition, plog.size_in_bytes, info is not None and info.leader == self.node_id

        def connections() -> dict[str, int]:
            out = dict.fromkeys(self.listener_security, 0)
            for conn in self._connections:
                out[conn.security.name] = out.get(conn.security.name, 0) + 1
            return out

        def committed() -> Iterator[GroupOffset]:
            for group in list(self.groups.manager.groups.values()):
                if not group.is_in(GroupState.DEAD):
                    for tp, o in list(group.offsets.items()):
                        yield GroupOffset(group.group_id, tp.topic, tp.partition, o.offset)

        def high_watermark(topic: str, partition: int) -> int | None:
            plog = logs.get_log(topic, partition)
            return None if plog is None or plog.closed else plog.high_watermark

        def topic_name(topic_id: uuid.UUID) -> str | None:
            info = metadata.topic_by_id(topic_id)
            return None if info is None else info.name

        def status() -> str:
            return "stopping" if self.stopping else "serving" if self.serving else "starting"

        return MetricsSources(node_id=self.node_id, status=status, partitions=partitions, connections=connections,
                              committed_offsets=committed, high_watermark=high_watermark, topic_name=topic_name)

    # -- cluster mode ------------------------------------------------------------------------------
    def _resolve_cluster(self) -> ClusterKeys:
        """The cluster id and etcd keys; StartupError when etcd cannot be reached or the log dirs
        belong to another cluster."""
        from kbroker.etcd.client import EtcdError
        from kbroker.metadata.cluster_id import MetaPropertiesError

        try:
            return self.metadata.resolve_identity()
        except (EtcdError, MetaPropertiesError, OSError) as e:
            raise StartupError(f"cannot join the cluster: {e}") from e

    def _replication(self) -> ReplicationSeam:
        """The replica manager's view of the cluster: the metadata's lease, ISR writes and racks,
        and the fetchers that copy the partitions this broker follows."""
        from kbroker.replica.fetcher import ReplicaFetchers
        from kbroker.replica.peer import inter_broker_listener

        listener = inter_broker_listener(self.config)
        metadata = self.metadata
        self.fetchers = ReplicaFetchers(
            node_id=self.node_id, config=self.configs, clock=self.clock,
            endpoint=lambda node: metadata.broker_endpoint(node, listener), logs=self.log_manager.get_log,
            on_change=lambda tp: self.replica_manager.notify_partition_changed(tp))
        return _Replication(metadata, self.fetchers)

    async def _producer_id_block(self, block_size: int) -> int:
        """A block of producer ids unique in the cluster (from etcd)."""
        from kbroker.txn.producer_id_blocks import EtcdProducerIdBlocks

        cluster = self.metadata.cluster
        if cluster is None:
            raise OSError("not joined to the cluster yet")
        return await EtcdProducerIdBlocks(cluster.client, cluster.keys, self.node_id)(block_size)

    def _markers_writer(self, local: Callable[[BrokerServices, Sequence[TxnMarker]], Awaitable[MarkerResults]],
                        ) -> WriteMarkers:
        """The transaction coordinator's way to its markers' partitions: this broker's log alone, or
        in a cluster each partition's leader."""
        def write_here(markers: Sequence[TxnMarker]) -> Awaitable[MarkerResults]:
            return local(self, markers)

        if not self.clustered:
            return write_here
        from kbroker.replica.markers import ClusterMarkerWriter, RemoteTxnVerifier
        from kbroker.replica.peer import inter_broker_connector, inter_broker_listener

        listener = inter_broker_listener(self.config)
        metadata = self.metadata

        def leader_of(tp: TopicPartition) -> int | None:
            info = metadata.partition(tp.topic, tp.partition)
            return None if info is None else info.leader

        self._marker_writer = ClusterMarkerWriter(
            node_id=self.node_id, leader_of=leader_of, endpoint=lambda node: metadata.broker_endpoint(node, listener),
            local=write_here, connect=inter_broker_connector(self.config),
            timeout_s=int(self.config.get("replica.socket.timeout.ms")) / 1000,
            backoff_s=int(self.config.get("replica.fetch.backoff.ms")) / 1000, monotonic=self.clock.monotonic)
        # KIP-890: partition leaders verify transactions with coordinators on other brokers.
        self._txn_verifier = RemoteTxnVerifier(
            node_id=self.node_id, leader_of=leader_of, endpoint=lambda node: metadata.broker_endpoint(node, listener),
            connect=inter_broker_connector(self.config),
            timeout_s=int(self.config.get("replica.socket.timeout.ms")) / 1000,
            backoff_s=int(self.config.get("replica.fetch.backoff.ms")) / 1000, monotonic=self.clock.monotonic)
        return self._marker_writer

    def _group_configs(self) -> GroupConfigs:
        """Group configs kept next to the dynamic broker configs: a local file on a single broker,
        etcd documents in a cluster (followed from the cluster's image, loaded with it at start)."""
        from kbroker.groups.group_configs import EtcdGroupConfigStore, FileGroupConfigStore, GroupConfigs

        if not self.clustered:
            return GroupConfigs(FileGroupConfigStore(self.log_dirs[0]), lambda: self.configs.current)
        store = EtcdGroupConfigStore(self.metadata)
        self.metadata.on_cluster_document.append(store.document_changed)
        return GroupConfigs(store, lambda: self.configs.current)

    def _security_store(self) -> StateStore:
        if self.cluster_keys is None:
            return FileStateStore(self.log_dirs[0])
        from kbroker.etcd.client import EtcdSyncClient
        from kbroker.security.etcd_store import EtcdStateStore

        return EtcdStateStore(EtcdSyncClient(list(self.config.get("etcd.endpoints"))), self.cluster_keys.state)

    def _follow_security_changes(self) -> None:
        """ACLs, SCRAM credentials and quotas changed on another broker take effect here too."""
        from kbroker.security.authorizer import STORE_KIND as ACLS
        from kbroker.security.authorizer import StandardAuthorizer
        from kbroker.security.etcd_store import EtcdStateStore
        from kbroker.security.quotas import STORE_KIND as QUOTAS
        from kbroker.security.scram import KIND as SCRAM

        store = self.security_store
        assert isinstance(store, EtcdStateStore)
        authorizer = self.authorizer
        if isinstance(authorizer, StandardAuthorizer):
            store.on_reload(ACLS, lambda _: authorizer.reload())
        store.on_reload(SCRAM, lambda _: self.credentials.reload())
        store.on_reload(QUOTAS, lambda _: self.client_quotas.reload())
        prefix = store.prefix

        def changed(key: str, kv: KeyValue | None) -> None:
            if key.startswith(prefix):
                store.remember(key[len(prefix):], kv)

        self.metadata.on_cluster_document.append(changed)

    def _build_authorizer(self, config: BrokerConfig) -> Authorizer | None:
        from kbroker.config import ConfigError
        from kbroker.security.authorizer import build_authorizer

        try:
            return build_authorizer(config, self.security_store)
        except (ConfigError, OSError) as e:
            self.log_manager.release_dir_locks()  # a failed start leaves the dirs usable
            raise StartupError(str(e)) from e

    def _with_sasl(self, config: BrokerConfig, security: ListenerSecurity) -> ListenerSecurity:
        """A SASL listener's security with its authenticator; :class:`StartupError` naming the key at fault."""
        # Imported here: a broker without SASL listeners (the default) does not pay for them at start-up.
        from kbroker.security.sasl.authenticator import SaslAuthenticator, SaslMetrics
        from kbroker.security.sasl.mechanisms import sasl_settings
        from kbroker.security.sasl.scram import scram_factories

        if self.sasl_metrics is None:
            self.sasl_metrics = SaslMetrics()
        try:
            settings = sasl_settings(config, security.name, clock=self.clock, metrics=self.sasl_metrics,
                                     extra=scram_factories(self.credentials))
        except ConfigError as e:
            raise StartupError(str(e)) from e  # the message names the listener or its key
        return dataclasses.replace(security, new_authenticator=lambda host, port: SaslAuthenticator(settings, host, port))

    async def _close_cluster_clients(self) -> None:
        """Stop following leaders and close the connections to other brokers and to etcd."""
        if self.fetchers is not None:
            await self.fetchers.stop()
        if self._marker_writer is not None:
            await self._marker_writer.aclose()
        if self._txn_verifier is not None:
            await self._txn_verifier.aclose()
        if self.clustered:
            from kbroker.security.etcd_store import EtcdStateStore

            if isinstance(self.security_store, EtcdStateStore):
                self.security_store.close()

    @property
    def config(self) -> BrokerConfig:
        """The broker config in force now."""
        return self.configs.current

    def _wire_share_groups(self) -> None:
        """Share groups (KIP-932): membership in ``__consumer_offsets`` beside the other groups,
        share-partition states in ``__share_group_state``."""
        from kbroker.groups.share_group import ShareGroupCoordinator
        from kbroker.metadata.validation import internal_topic_shape
        from kbroker.share.manager import SharePartitionManager
        from kbroker.share.state_store import SHARE_GROUP_STATE, TopicShareStateStore

        def lookup(name: str) -> tuple[uuid.UUID, int] | None:
            info = self.metadata.topic(name)
            return None if info is None else (info.topic_id, len(info.partitions))

        def topic_name(topic_id: uuid.UUID) -> str | None:
            info = self.metadata.topic_by_id(topic_id)
            return None if info is None else info.name

        def log_offsets(tp: TopicPartition) -> tuple[int, int] | None:
            info = self.metadata.partition(tp.topic, tp.partition)
            plog = self.log_manager.get_log(tp.topic, tp.partition)
            if info is None or info.leader != self.node_id or plog is None or plog.closed:
                return None
            return plog.log_start_offset, plog.high_watermark

        def setting(key: str) -> Any:
            return self.config.get(key)

        self.share_groups = ShareGroupCoordinator(
            self.clock, setting, lookup=lookup, topic_name=topic_name, append=self.groups.manager.append,
            partition_for=self.groups.partition_for, group_setting=self.group_configs.get,
            classic_group_exists=lambda g: self.groups.group_type(g) in ("classic", "consumer"))
        self.groups.manager.add_replayer(self.share_groups)
        self.groups.other_kinds.append(self.share_groups)
        store = TopicShareStateStore(
            metadata=self.metadata, append_records=self.replica_manager.append_records, logs=self.log_manager.get_log,
            clock=self.clock, default_partitions=lambda: int(self.config.get("share.coordinator.state.topic.num.partitions")),
            topic_configs=lambda: internal_topic_shape(self.config, SHARE_GROUP_STATE)[1])
        def offset_for_time(tp: TopicPartition, timestamp: int) -> int:
            return self.replica_manager.fetch_offset_for_timestamp(tp, timestamp).offset

        self.shares = SharePartitionManager(setting, self.clock, store, read=self.replica_manager.fetch,
                                            log_offsets=log_offsets, topic_name=topic_name,
                                            offset_for_time=offset_for_time, group_setting=self.group_configs.get)
        self.share_groups.on_member_expired.append(self.shares.member_left)
        self.metadata.on_topic_deleted.append(lambda topic: self.shares.topic_deleted(topic.topic_id))
        self.share_groups.on_group_deleted.append(self.shares.forget_group)

    def _transaction_topic_configs(self) -> dict[str, str]:
        from kbroker.metadata.validation import TRANSACTION_STATE, internal_topic_shape

        return internal_topic_shape(self.config, TRANSACTION_STATE)[1]

    def _topic_name(self, topic_id: uuid.UUID) -> str | None:
        info = self.metadata.topic_by_id(topic_id)
        return None if info is None else info.name

    def _partition_exists(self, tp: tuple[str, int]) -> bool:
        topic = self.metadata.topic(tp[0])
        return topic is not None and tp[1] in topic.partitions

    def _settle_heap(self, added: int) -> None:
        # After a bulk creation, keep what it built out of the collector's full passes.
        if self.owns_process:
            heap.settle(f"{added} partitions created")

    def default_log_config(self):  # type: ignore[no-untyped-def]
        from kbroker.metadata.log_config import log_config_for

        return log_config_for(self.config, {})

    async def advance_clock(self, ms: int, settle_timeout: float = 10.0) -> None:
        """Move the broker's :class:`~kbroker.clock.ManualClock` forward by ``ms`` milliseconds
        and let what came due happen: group and share session, rebalance and lock timeouts,
        transaction timeouts, offsets expiry, long polls and acks waits ending, and the
        retention check when its interval passed. Returns once the woken work settled (the
        retention check done, the tasks woken on this loop blocked again), waiting at most
        ``settle_timeout`` seconds of real time for that.

        TypeError on a broker running on the system clock; ValueError for a negative ``ms``.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance_clock needs a broker started with a ManualClock")
        clock.advance(ms)  # on this loop: the waits it ends are woken at once
        with anyio.move_on_after(settle_timeout):
            await anyio.to_thread.run_sync(self.log_manager.wait_periodic_checks, settle_timeout,
                                           abandon_on_cancel=True)
            # Timers and parked requests woken run now, and what they start (records written,
            # answers sent) until every task waits again.
            await anyio.wait_all_tasks_blocked()

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the first listener, for clients."""
        host, port = next(iter(self.endpoints.values()))
        return f"{host}:{port}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Broker]:
        """Bind every listener and serve until the block exits, then stop cleanly.

        Raises :class:`StartupError` when a listener cannot be bound.
        """
        try:
            registry()  # import every handler now: a missing one fails start-up, not a request
            record_file = self.config.get("record.file")
            if record_file:
                try:
                    self.start_recording(record_file, payloads=bool(self.config.get("record.payloads")))
                except OSError as e:
                    raise StartupError(f"cannot open the record file {record_file}: {e}") from e
            bound = await self._bind()
        except BaseException:
            self.stop_recording()
            self.log_manager.shutdown()  # flushes nothing new; releases the log dir locks
            raise
        join_error: Exception | None = None
        http_error: StartupError | None = None
        async with anyio.create_task_group() as tg:
            for name, listener in bound:
                tg.start_soon(self._accept_loop, listener, name, tg)
            self.log_manager.on_log_start_moved = self._log_start_mover()
            self.log_manager.start()  # background flush (flush.ms), checkpoints, deletes, retention
            # The data path first: joining applies the image, which makes this broker lead or follow.
            await self.replica_manager.start(tg)
            if self.fetchers is not None:
                await self.fetchers.start(tg)
            try:
                if self.metrics is not None:  # up while starting, so the health check can say so
                    await self._start_metrics(tg)
                # A cluster member joins now that its endpoints are known: image, local replicas, lease.
                await self.metadata.start(tg)
            except Exception as e:  # metrics port taken; etcd unreachable, log dirs of another cluster
                join_error = e
                tg.cancel_scope.cancel()  # the accept loops close their listeners
            if join_error is None:
                http_error = await self._start_http(tg)
            if join_error is None and http_error is None:
                await self.groups.start(tg)
                await self.transactions.start(tg)
                self.share_groups.start(tg.start_soon)
                await self.shares.start(tg)
                self.serving = True
                try:
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.shutdown()
                    tg.cancel_scope.cancel()
        if http_error is not None:
            raise http_error
        if join_error is not None:
            with anyio.CancelScope(shield=True):
                await self._close_cluster_clients()
            self.stop_recording()
            self.log_manager.shutdown()
            if isinstance(join_error, StartupError):
                raise join_error
            raise StartupError(f"cannot join the cluster: {join_error}") from join_error

    async def _start_http(self, tg: TaskGroup) -> StartupError | None:
        """Serve the HTTP endpoints configured; on failure stop the broker and say why."""
        port = self.config.get("faults.port")
        try:
            await self.faults.start(tg, str(self.config.get("faults.host")), None if port is None else int(port))
        except OSError as e:
            with anyio.CancelScope(shield=True):
                await self.shutdown()
            tg.cancel_scope.cancel()
            return StartupError(f"cannot serve fault rules on port {port}: {e.strerror or e}")
        if self.config.get("console.port") is not None:
            try:
                await self._start_console(tg)
            except OSError as e:
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
                tg.cancel_scope.cancel()
                return StartupError(f"cannot serve the console on {self.config.get('console.host')}:"
                                    f"{self.config.get('console.port')}: {e.strerror or e}")
        return None

    async def _start_console(self, tg: TaskGroup) -> None:
        """Serve the web console (``console.port``): its pages read this broker in-process."""
        from kbroker import __version__
        from kbroker.console.app import build_middleware, build_routes
        from kbroker.console.backend import ConsoleBackend, ConsoleSettings
        from kbroker.console.context import Console
        from kbroker.server.http import HttpEndpoint

        settings = ConsoleSettings(
            host=str(self.config.get("console.host")), port=int(self.config.get("console.port")),
            read_only=bool(self.config.get("console.read.only")),
            login_required=any(s.uses_sasl for s in self.listener_security.values()))
        backend = ConsoleBackend(cast("BrokerServices", self), self.interceptors, version=__version__,
                                 started_at=self.started_at, extras=self._console_extras())
        console = Console(backend, settings)
        endpoint = HttpEndpoint(settings.host, settings.port, build_routes(console), build_middleware(console))
        await endpoint.start(tg)
        self.console = endpoint

    def _console_extras(self) -> dict[str, Callable[[], Any]]:
        """What the console shows that BrokerServices does not give."""

        def brokers() -> list[dict[str, Any]]:
            listener = next(iter(self.endpoints), None)
            return [{"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                     "controller": b.node_id == self.metadata.controller_id, "local": b.node_id == self.node_id}
                    for b in self.metadata.brokers(listener)]

        def listeners() -> list[str]:
            return [describe_endpoint(self.listener_security[n].protocol, n, h, p)
                    for n, (h, p) in self.endpoints.items()]

        def disk_use() -> dict[str, int]:
            logs = sum(log.size_in_bytes for log in self.log_manager.all_logs().values())
            out = {"logs": logs, "free": 0, "total": 0}
            for d in self.log_dirs:
                if is_memory_path(d):
                    continue
                with contextlib.suppress(OSError):
                    usage = shutil.disk_usage(d)
                    out["free"] += usage.free
                    out["total"] += usage.total
            return out

        return {"brokers": brokers, "listeners": listeners, "disk_use": disk_use, "stopping": lambda: self.stopping}

    async def _start_metrics(self, tg: TaskGroup) -> None:
        """Serve the metrics and health endpoint (StartupError when its port is taken)."""
        assert self.metrics is not None
        try:
            await self.metrics.start(tg)
        except OSError as e:
            raise StartupError(f"cannot serve metrics on {self.metrics.host}:{self.metrics.requested_port}: "
                               f"{e.strerror or e}") from e

    def _log_start_mover(self) -> Callable[[str, int], None]:
        """For the log manager's retention thread: wake the fetches parked on a partition whose
        log start moved (they answer OFFSET_OUT_OF_RANGE), on this event loop, without waiting."""
        loop = asyncio.get_running_loop()
        notify = self.replica_manager.notify_partition_changed

        def moved(topic: str, partition: int) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is parked any more
                loop.call_soon_threadsafe(notify, TopicPartition(topic, partition))

        return moved

    async def _bind(self) -> list[tuple[str, SocketListener]]:
        """Bind every listener and note its advertised endpoint; on failure none stays bound."""
        advertised = {ls.name: ls for ls in self.config.advertised_listeners}
        bound: list[tuple[str, SocketListener]] = []
        try:
            for ls in self.config.listeners:
                protocol = self.config.security_protocol(ls.name)
                if protocol not in SERVED_PROTOCOLS:
                    raise StartupError(f"listener {ls.name} uses security protocol {protocol}, which this "
                                       "broker cannot serve yet")
                listeners = await _listen(ls.host, ls.port)
                bound += [(ls.name, listener) for listener in listeners]
                port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
                adv = advertised.get(ls.name)
                # As Kafka: a listener on every interface advertises this machine's name.
                adv_host = adv.host if adv and adv.host else ls.host or host_name()
                adv_port = adv.port if adv and adv.port else port
                self.endpoints[ls.name] = (adv_host, adv_port)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for _, listener in bound:
                    await listener.aclose()
            raise
        return bound

    async def _accept_loop(self, listener: SocketListener, name: str, tg: TaskGroup) -> None:
        """Accept connections until the listener closes; a failing accept() (out of file
        descriptors, say) pauses accepting instead of ending the broker."""
        delay = _ACCEPT_BACKOFF[0]
        failing = False
        async with listener:
            while True:
                await self.quotas.wait_for_slot(self.config, name)
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except ConnectionError:
                    continue  # that one connection went away before it was accepted
                except Exception as e:  # EMFILE, ENFILE, ENOBUFS...: wait for resources to free up
                    if not failing:
                        log.error("cannot accept connections on listener %s: %s; retrying until it recovers",
                                  name, (e.strerror if isinstance(e, OSError) else None) or e)
                        failing = True
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _ACCEPT_BACKOFF[1])
                    continue
                if failing:
                    log.info("accepting connections on listener %s again", name)
                    failing, delay = False, _ACCEPT_BACKOFF[0]
                host = peer_address(stream)[0]
                delay = self.quotas.creation_delay_ms(self.config, name)
                if delay > 0:  # max.connection.creation.rate: as Kafka's acceptor, wait before taking it
                    await anyio.sleep(delay / 1000)
                throttled = self.quotas.ip_throttle_ms(host, name)
                if throttled > 0:
                    log.info("throttled connection from %s for %d ms: over its connection_creation_rate quota; "
                             "closing it", host, throttled)
                    tg.start_soon(_close_later, stream, throttled / 1000)
                    continue
                await self.quotas.refresh(self.config)
                over = self.quotas.admit(self.config, host, name)
                if over is not None:
                    log.info("rejected connection from %s: it already has the maximum of %d connections",
                             host, over)
                    with anyio.CancelScope(shield=True):
                        await stream.aclose()
                    continue
                tg.start_soon(self._serve_connection, stream, name, host)

    async def _serve_connection(self, stream: SocketStream, name: str, host: str) -> None:
        try:
            conn = Connection(self, stream, self.listener_security[name], memory=self.request_memory,
                              stopping=lambda: self.stopping, interceptors=self.interceptors)
            self._connections.add(conn)
            try:
                await conn.run()
            finally:
                self._connections.discard(conn)
        except Exception:  # Connection.run handles its own faults; this is the last guard
            log.exception("connection from %s failed", host)
        finally:
            self.quotas.release(host, name)

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop taking requests, let in-flight ones finish, then flush and close the logs."""
        if self.stopping:
            return
        self.stopping = True
        # Controlled shutdown first, while followers can still catch up and leaderships move.
        await self.metadata.shutdown()
        await self.groups.shutdown()  # answer blocked JoinGroup/SyncGroup calls so connections drain
        await self.transactions.shutdown()
        # Release long-polling fetches so they answer now instead of at their max wait.
        await self.replica_manager.stop()
        await self._close_cluster_clients()
        await self.faults.stop()
        with anyio.move_on_after(grace_seconds):
            while True:
                for conn in list(self._connections):
                    if not conn.busy:
                        conn.close_when_idle()
                if not any(c.busy for c in self._connections):
                    break
                await anyio.sleep(0.01)
        self.stop_recording()  # after the last request served
        if self.console is not None:
            await self.console.stop()
        if self.metrics is not None:
            await self.metrics.stop()  # last: the health check says "stopping" until here
        self.log_manager.shutdown()


class _Replication:
    """:class:`~kbroker.replica.partition_state.ReplicationSeam` over the cluster metadata."""

    def __init__(self, metadata: MetadataManager, fetchers: ReplicaFetchers) -> None:
        self._metadata = metadata
        self.fetchers = fetchers

    def lease_valid(self) -> bool:
        return self._metadata.lease_valid()

    def alter_isr(self, expected: PartitionInfo, isr: list[int]) -> Awaitable[PartitionInfo | None]:
        return self._metadata.alter_isr(expected, isr)

    def rack_of(self, node_id: int) -> str | None:
        return self._metadata.rack_of(node_id)

    def isr_eligible(self, node_id: int) -> bool:
        return self._metadata.isr_eligible(node_id)


def check_inter_broker_listener(config: BrokerConfig) -> None:
    """A cluster member's inter-broker listener must be one of its listeners (as Kafka checks)."""
    from kbroker.replica.peer import inter_broker_listener

    name = inter_broker_listener(config)
    names = [ls.name for ls in config.listeners]
    if name not in names:
        raise StartupError(f"the inter-broker listener {name} (inter.broker.listener.name, else "
                           f"security.inter.broker.protocol) is not one of the listeners {', '.join(names)}")


async def _close_later(stream: SocketStream, seconds: float) -> None:
    """Close a refused connection after its throttle time (as Kafka's DelayedCloseSocket)."""
    try:
        await anyio.sleep(seconds)
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


def host_name() -> str:
    """This machine's name for clients: its fully qualified name (as Kafka takes the
    canonical host name), or its plain host name when that only says ``localhost``."""
    name = socket.getfqdn()
    if not name or name.startswith("localhost"):
        name = socket.gethostname() or name
    return name


class StartupError(Exception):
    """The broker cannot start (a port in use, an unusable data directory); the message says why."""


def listener_security(config: BrokerConfig, name: str) -> ListenerSecurity:
    """One listener's security set-up; a TLS store that cannot be used raises StartupError."""
    protocol = config.security_protocol(name)
    if protocol not in ("SSL", "SASL_SSL"):
        return ListenerSecurity(name, protocol)
    # Imported here: TLS (and the cryptography package) costs a plaintext broker nothing at start-up.
    from kbroker.security.tls import listener_tls

    try:
        tls = listener_tls(config, name)
    except ConfigError as e:
        raise StartupError(f"listener {name}: {e}") from None
    # On SASL_SSL the SASL login names the principal, not the certificate.
    return ListenerSecurity(name, protocol, ssl_context=tls.context,
                            ssl_principal=tls.principal if protocol == "SSL" else None)


async def _listen(host: str, port: int) -> list[SocketListener]:
    """Sockets listening on ``host:port``: every interface (IPv4 and IPv6) for an empty
    host, and both 127.0.0.1 and ::1 for ``localhost``, which clients may resolve to either."""
    where = f"{host or '*'}:{port}"
    try:
        multi = await anyio.create_tcp_listener(local_host=host or None, local_port=port, reuse_port=False)
    except OSError as e:
        raise StartupError(f"cannot listen on {where}: {e.strerror or e}") from e
    listeners = [cast(SocketListener, listener) for listener in multi.listeners]
    if host.lower() == "localhost" and socket.has_ipv6:
        families = {listener.extra(anyio.abc.SocketAttribute.family) for listener in listeners}
        if socket.AF_INET6 not in families:
            bound_port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
            try:
                extra = await anyio.create_tcp_listener(local_host="::1", local_port=bound_port)
            except OSError as e:  # no IPv6 loopback here: IPv4 alone will do
                log.debug("not listening on [::1]:%d: %s", bound_port, e)
            else:
                listeners += [cast(SocketListener, listener) for listener in extra.listeners]
    return listeners


def resolve_log_dirs(dirs: list[Path]) -> list[Path]:
    """The data directories: those configured, or with ``log.dirs=:memory:`` one fresh
    directory in memory (freed when the log manager shuts down; nothing touches the disk)."""
    if any(str(d) == MEMORY_LOG_DIRS for d in dirs):
        if len(dirs) != 1:
            raise StartupError(f"log.dirs={MEMORY_LOG_DIRS} cannot be combined with other directories")
        return [new_memory_root()]
    return [Path(d) for d in dirs]


def check_log_dirs(dirs: list[Path]) -> None:
    """Create the data directories and check that files can be written in them."""
    for d in dirs:
        if is_memory_path(d):
            continue
        try:
            d.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError as e:
            raise StartupError(f"data directory {d} is not usable: {e.strerror or e}") from e


#: macOS's OPEN_MAX: the most its setrlimit takes as the soft limit of open files.
OPEN_MAX = 10240


def raise_fd_limit() -> None:
    """Raise the soft limit of open files to the hard limit: every connection and
    segment holds a file descriptor, and the usual soft default (1024) is soon spent."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == soft:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return
    except (OSError, ValueError) as e:
        error = e
    # macOS refuses RLIM_INFINITY (its hard limit there) and asks for min(OPEN_MAX, hard).
    if hard == resource.RLIM_INFINITY or hard > OPEN_MAX:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, OPEN_MAX), hard))
            return
        except (OSError, ValueError) as e:
            error = e
    log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, error)


def describe_endpoint(protocol: str, name: str, host: str, port: int) -> str:
    """How ``kbroker serve`` shows a listener: ``SSL://127.0.0.1:9093``, with the listener's
    name after it when that is not its protocol (``SSL://127.0.0.1:9093 (listener CLIENT)``)."""
    text = f"{protocol}://{host}:{port}"
    return text if name == protocol else f"{text} (listener {name})"


def run(config: BrokerConfig) -> int:
    """Run a broker until SIGTERM or SIGINT; the ``kbroker serve`` entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_fd_limit()
    heap.share_interpreter()

    async def main() -> None:
        try:
            broker = Broker(config)
        except OSError as e:  # reading the data directories
            raise StartupError(f"cannot load the data directories: {e}") from e
        broker.owns_process = True
        # Logs, indexes and metadata are loaded: keep them out of full collections.
        heap.settle("start-up", collect=True)
        async with broker.running():
            listeners = ", ".join(describe_endpoint(broker.listener_security[n].protocol, n, h, p)
                                  for n, (h, p) in broker.endpoints.items())
            print(f"kbroker {broker.node_id} listening on {listeners}, data in "
                  f"{', '.join(str(d) for d in broker.log_dirs)}", flush=True)
            if broker.metrics is not None:
                print(f"metrics on http://{broker.metrics.host or host_name()}:{broker.metrics.port}/metrics", flush=True)
            if broker.console is not None:
                print(f"console on http://{broker.console.host or host_name()}:{broker.console.port}/", flush=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for sig in signals:
                    log.info("received %s, shutting down", signal.Signals(sig).name)
                    break

    backend_options = {}
    if sys.platform != "win32":
        try:
            import uvloop  # noqa: F401

            backend_options["use_uvloop"] = True
        except ImportError:
            pass
    anyio.run(main, backend="asyncio", backend_options=backend_options)
    return 0
