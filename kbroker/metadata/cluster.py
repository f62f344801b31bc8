"""``ClusterMetadata``: this broker's membership of an etcd-coordinated cluster and its image of it.

- **Membership.** The broker registers ``brokers/<id>`` under its own lease (TTL =
  ``broker.session.timeout.ms`` rounded up to whole seconds, at least 2) and renews the lease
  every ``broker.heartbeat.interval.ms``. :meth:`ClusterMetadata.lease_valid` says whether the
  lease is known alive: until ``t_sent + TTL``, ``t_sent`` being the monotonic time the last
  keepalive that etcd answered with a TTL was *sent*. A lease found expired is replaced by a new
  one and the broker registers again, as a new incarnation.
- **The image.** Every key under the cluster's prefix, read with ``get_prefix`` and kept up to
  date by a watch, applied on the event loop in revision order. A compacted or broken watch
  reads everything again and applies the difference. After each applied batch, ``on_change``
  gets what changed (:class:`ImageChanges`).
- **Writes.** Topic creation, growth, deletion, config changes and ISR changes are etcd
  transactions guarded by compare-and-swap; :meth:`ClusterMetadata.wait_applied` waits until the
  image has applied a write's revision, so a caller answers only once its own view shows it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import anyio
from anyio.abc import TaskGroup

from kbroker.clock import Clock
from kbroker.config import ConfigHolder
from kbroker.etcd.client import (
    Compare,
    Delete,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    Op,
    Put,
    WatchEvent,
)
from kbroker.metadata.cluster_state import (
    NO_LEADER,
    BrokerRegistration,
    ClusterKeys,
    TopicRecord,
    decode_partition,
    encode_partition,
)
from kbroker.metadata.model import PartitionInfo

log = logging.getLogger(__name__)

__all__ = ["ClusterImage", "ClusterMetadata", "ImageChanges", "MAX_TXN_OPS", "PartitionChange"]

#: Operations per etcd transaction (etcd's ``--max-txn-ops`` default is 128).
MAX_TXN_OPS = 120
#: Pause before reading everything again after the watch failed.
_RETRY_S = 0.5

PartitionChange = tuple[PartitionInfo | None, PartitionInfo | None]


@dataclass
class ImageChanges:
    """What one applied batch changed."""

    brokers: dict[int, tuple[BrokerRegistration | None, BrokerRegistration | None]] = field(default_factory=dict)
    topics: dict[str, tuple[TopicRecord | None, TopicRecord | None]] = field(default_factory=dict)
    partitions: dict[tuple[str, int], PartitionChange] = field(default_factory=dict)
    controller: bool = False
    #: Other documents of the cluster (``state/``, ``configs/``), as etcd holds them now (None: deleted).
    documents: dict[str, KeyValue | None] = field(default_factory=dict)

    @property
    def touched_topics(self) -> set[str]:
        """Every topic whose record or one of whose partitions changed."""
        return set(self.topics) | {t for t, _ in self.partitions}


class ClusterImage:
    """The cluster as etcd holds it, at ``revision``."""

    def __init__(self, keys: ClusterKeys) -> None:
        self.keys = keys
        self.revision = 0
        self.raw: dict[str, KeyValue] = {}
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicRecord] = {}
        self.partitions: dict[tuple[str, int], PartitionInfo] = {}
        self.controller_id = -1

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        """One partition's state, or None."""
        return self.partitions.get((topic, index))

    def topic_partitions(self, topic: str) -> dict[int, PartitionInfo]:
        """Every partition of ``topic`` the image holds, by index."""
        record = self.topics.get(topic)
        if record is None:
            return {}
        return {i: p for i in range(record.partitions) if (p := self.partitions.get((topic, i))) is not None}

    def mod_revision(self, key: str) -> int:
        """The revision ``key`` was last written at (0: absent)."""
        kv = self.raw.get(key)
        return kv.mod_revision if kv is not None else 0

    def live_broker_ids(self) -> list[int]:
        """Ids of the registered brokers, sorted."""
        return sorted(self.brokers)

    def apply(self, events: Sequence[WatchEvent]) -> ImageChanges:
        """Apply watch events (in revision order)."""
        touched: dict[str, KeyValue | None] = {}
        for event in events:
            old = self.raw.get(event.kv.key)
            if event.type == "DELETE":
                self.raw.pop(event.kv.key, None)
            else:
                self.raw[event.kv.key] = event.kv
            touched.setdefault(event.kv.key, old)
            self.revision = max(self.revision, event.kv.mod_revision)
        return self._decode(touched)

    def reset(self, kvs: Sequence[KeyValue], revision: int) -> ImageChanges:
        """Replace the whole image by a fresh read; the difference is what changed."""
        new = {kv.key: kv for kv in kvs}
        touched: dict[str, KeyValue | None] = {}
        for key in set(self.raw) | set(new):
            old = self.raw.get(key)
            current = new.get(key)
            if old is None or current is None or old.mod_revision != current.mod_revision:
                touched[key] = old
        self.raw = new
        self.revision = max(self.revision, revision)
        return self._decode(touched)

    def _decode(self, touched: Mapping[str, KeyValue | None]) -> ImageChanges:
        changes = ImageChanges()
        keys = self.keys
        for key in touched:
            kv = self.raw.get(key)
            try:
                if key.startswith(keys.brokers):
                    node = keys.parse_broker(key)
                    if node is None:
                        continue
                    old_b = self.brokers.pop(node, None)
                    if kv is not None:
                        self.brokers[node] = BrokerRegistration.decode(kv.value)
                    changes.brokers[node] = (old_b, self.brokers.get(node))
                elif key.startswith(keys.topics):
                    name = key[len(keys.topics):]
                    old_t = self.topics.pop(name, None)
                    if kv is not None:
                        self.topics[name] = TopicRecord.decode(name, kv.value)
                    changes.topics[name] = (old_t, self.topics.get(name))
                elif key.startswith(keys.partitions):
                    tp = keys.parse_partition(key)
                    if tp is None:
                        continue
                    old_p = self.partitions.pop(tp, None)
                    if kv is not None:
                        self.partitions[tp] = decode_partition(tp[0], tp[1], kv.value)
                    changes.partitions[tp] = (old_p, self.partitions.get(tp))
                elif key.startswith((keys.state, keys.configs)):
                    changes.documents[key] = kv
                elif key == keys.controller:
                    self.controller_id = int(kv.json()["id"]) if kv is not None else -1
                    changes.controller = True
            except (ValueError, KeyError, TypeError) as e:  # a foreign or corrupt document: not ours to use
                log.warning("ignoring undecodable etcd key %s: %s", key, e)
        return changes


class ClusterMetadata:
    """Registration, lease, image and writes of one broker of an etcd-coordinated cluster."""

    def __init__(self, client: EtcdClient, keys: ClusterKeys, node_id: int, config: ConfigHolder, clock: Clock, *,
                 listeners: Callable[[], Mapping[str, tuple[str, int]]], rack: str | None = None) -> None:
        """``listeners`` gives the advertised endpoints once bound (read at registration)."""
        self.client = client
        self.keys = keys
        self.node_id = node_id
        self.image = ClusterImage(keys)
        self._config = config
        self._clock = clock
        self._listeners = listeners
        self.rack = rack
        cfg = config.current
        #: The lease TTL in seconds (etcd leases have whole seconds).
        self.ttl = max(2, math.ceil(int(cfg.get("broker.session.timeout.ms")) / 1000))
        self._heartbeat_s = int(cfg.get("broker.heartbeat.interval.ms")) / 1000
        self.lease_id = 0
        self._valid_until = 0.0
        #: The revision of the latest registration under a new lease: the lease counts once applied.
        self._valid_from_revision = 0
        #: Partition keys this broker leads in the image under a state written before its latest
        #: registration (a previous incarnation's leaderships): the lease does not count while
        #: any is left, until the controller has fenced them under new leader epochs.
        self._inherited: set[str] = set()
        self._inherited_pending = False
        self.registration: BrokerRegistration | None = None
        #: Called on the loop after each batch the image applied; the next batch waits for it
        #: (a coroutine function may move work off the loop and stay in revision order).
        self.on_change: Callable[[ImageChanges], Awaitable[None] | None] | None = None
        #: The revision every ``on_change`` call has completed up to (what :meth:`wait_applied` waits for).
        self.applied_revision = 0
        self._waiters: list[tuple[int, anyio.Event]] = []
        self._scope: anyio.CancelScope | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def load(self) -> ImageChanges:
        """Read the whole image (before joining: the caller applies it)."""
        kvs, revision = await self.client.get_prefix(self.keys.prefix)
        return self.image.reset(kvs, revision)

    async def join(self, tg: TaskGroup) -> None:
        """Register under a new lease, then keep the lease and the image up to date in ``tg``."""
        revision = await self._register()
        self._scope = anyio.CancelScope()
        tg.start_soon(self._run, self._scope)
        await self.wait_applied(revision)

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keepalive_loop)
                tg.start_soon(self._watch_loop)

    async def _register(self, *, shutting_down: bool = False, new_lease: bool = True) -> int:
        if new_lease:
            sent = self._clock.monotonic()
            self.lease_id = await self.client.grant_lease(self.ttl)
            self._valid_until = sent + self.ttl
        if self.registration is None or new_lease:
            self.registration = BrokerRegistration(self.node_id, dict(self._listeners()), self.rack)
        self.registration = replace(self.registration, shutting_down=shutting_down)
        revision = await self.client.put(self.keys.broker(self.node_id), self.registration.encode(),
                                         lease=self.lease_id)
        if new_lease:
            # A broker back from a long pause (its lease expired) is valid again only once its image
            # holds every change made before it registered again: until then it may still believe
            # it leads partitions that moved while it was away.
            self._valid_from_revision = revision
            self._inherited_pending = True
        return revision

    async def stop(self, *, revoke: bool = True) -> None:
        """Stop the background tasks; with ``revoke``, end the lease (the broker leaves at once)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()
        if revoke and self.lease_id:
            lease, self.lease_id = self.lease_id, 0
            self._valid_until = 0.0
            try:
                await self.client.revoke_lease(lease)
            except EtcdError as e:  # it expires by itself then
                log.warning("cannot revoke the etcd lease: %s", e)
        for _, event in self._waiters:
            event.set()

    async def mark_shutting_down(self) -> int:
        """Tell the controller this broker is stopping (its leaderships should move)."""
        return await self._register(shutting_down=True, new_lease=False)

    def lease_valid(self) -> bool:
        """Whether this broker's lease is known alive now (and its image caught up with its
        latest registration)."""
        return (self._clock.monotonic() < self._valid_until and self.applied_revision >= self._valid_from_revision
                and not self._inherited)

    def _track_inherited(self) -> None:
        """Keep :attr:`_inherited` up to date once the image holds the latest registration: as
        Kafka's controller fences a broker registering with a new incarnation before it serves,
        a restarted broker must not lead at its old incarnation's leader epochs (a log that lost
        its tail would write other records under the same epoch as its followers' and make
        them truncate to it)."""
        since = self._valid_from_revision
        image = self.image
        if self._inherited_pending:
            if self.applied_revision < since:
                return
            self._inherited_pending = False
            self._inherited = {self.keys.partition(t, i) for (t, i), p in image.partitions.items()
                               if p.leader == self.node_id and image.mod_revision(self.keys.partition(t, i)) < since}
            if self._inherited:
                log.info("broker %d waits for the controller to fence %d leaderships of its previous incarnation",
                         self.node_id, len(self._inherited))
            return
        if self._inherited:
            self._inherited = {k for k in self._inherited if 0 < image.mod_revision(k) < since}

    async def _keepalive_loop(self) -> None:
        failing = False
        while True:
            await anyio.sleep(self._heartbeat_s)
            sent = self._clock.monotonic()
            try:
                ttl = await self.client.keepalive(self.lease_id)
            except EtcdError as e:
                if not failing:  # once per outage, not at every heartbeat
                    log.warning("etcd lease keepalive failed: %s; retrying every heartbeat", e)
                    failing = True
                continue
            if failing:
                log.info("etcd lease keepalive works again")
                failing = False
            if ttl > 0:
                self._valid_until = sent + ttl
                continue
            # The lease expired (a long pause, or etcd was away): the cluster saw this broker die.
            log.warning("the etcd lease of broker %d expired; registering again", self.node_id)
            self._valid_until = 0.0
            try:
                await self._register(shutting_down=bool(self.registration and self.registration.shutting_down))
            except EtcdError as e:
                log.warning("registering again failed: %s", e)

    async def _watch_loop(self) -> None:
        reported = False
        while True:
            try:
                async for events in self.client.watch(self.keys.prefix, self.image.revision + 1):
                    await self.applied(self.image.apply(events))
            except (EtcdCompacted, EtcdUnavailable) as e:
                log.warning("etcd watch interrupted (%s); reading the cluster metadata again", e)
            # Until etcd answers again: a read every _RETRY_S, logged once.
            while True:
                await anyio.sleep(_RETRY_S)
                try:
                    changes = await self.load()
                except EtcdError as e:
                    if not reported:
                        log.warning("reading the cluster metadata failed: %s; retrying", e)
                        reported = True
                    continue
                await self.applied(changes)
                break
            reported = False

    async def applied(self, changes: ImageChanges) -> None:
        """Hand a batch the image applied (``load()``'s or the watch's) to ``on_change``, then
        wake those waiting for its revision."""
        if self.on_change is not None:
            try:
                result = self.on_change(changes)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # the image is applied; a listener's fault must not stop the watch
                log.exception("applying a cluster metadata change failed")
        revision = self.applied_revision = self.image.revision
        self._track_inherited()
        ready = [e for r, e in self._waiters if r <= revision]
        self._waiters = [(r, e) for r, e in self._waiters if r > revision]
        for event in ready:
            event.set()

    async def wait_applied(self, revision: int, timeout: float = 30.0) -> bool:
        """Wait until ``revision`` is applied (``on_change`` included); False on timeout (or when stopped)."""
        if self.applied_revision >= revision:
            return True
        event = anyio.Event()
        self._waiters.append((revision, event))
        with anyio.move_on_after(timeout):
            await event.wait()
        return self.applied_revision >= revision

    # ------------------------------------------------------------------ writes

    def new_partition(self, topic: str, index: int, replicas: Sequence[int]) -> PartitionInfo:
        """A new partition's state: the first live replica leads at epoch 0, ISR = the live replicas."""
        live = [b for b in replicas if b in self.image.brokers]
        return PartitionInfo(topic, index, live[0] if live else NO_LEADER, 0, list(replicas), live)

    async def create_topic(self, record: TopicRecord, assignment: Mapping[int, Sequence[int]]) -> int | None:
        """Write a new topic and its partitions; the revision, or None when the topic exists already."""
        topic_key = self.keys.topic(record.name)
        ops: list[Op] = [Put(self.keys.partition(record.name, i), encode_partition(self.new_partition(record.name, i, r)))
                         for i, r in sorted(assignment.items())]
        absent = [Compare.absent(topic_key)]
        # Past etcd's operations per transaction, the partitions go first, the topic (which makes them visible) last.
        while len(ops) >= MAX_TXN_OPS:
            chunk, ops = ops[:MAX_TXN_OPS], ops[MAX_TXN_OPS:]
            if not (await self.client.txn(absent, chunk)).succeeded:
                return None
        result = await self.client.txn(absent, [*ops, Put(topic_key, record.encode())])
        return result.revision if result.succeeded else None

    async def grow_topic(self, name: str, total: int, assignment: Mapping[int, Sequence[int]]) -> int | None:
        """Add partitions to a topic; the revision, or None when the topic changed meanwhile."""
        record = self.image.topics.get(name)
        if record is None:
            return None
        topic_key = self.keys.topic(name)
        same = [Compare.mod_revision(topic_key, self.image.mod_revision(topic_key))]
        ops: list[Op] = [Put(self.keys.partition(name, i), encode_partition(self.new_partition(name, i, r)))
                         for i, r in sorted(assignment.items())]
        while len(ops) >= MAX_TXN_OPS:
            chunk, ops = ops[:MAX_TXN_OPS], ops[MAX_TXN_OPS:]
            if not (await self.client.txn(same, chunk)).succeeded:
                return None
        result = await self.client.txn(same, [*ops, Put(topic_key, replace(record, partitions=total).encode())])
        return result.revision if result.succeeded else None

    async def delete_topic(self, name: str) -> int | None:
        """Remove a topic and its partitions; the revision, or None when it is gone (or was recreated)."""
        topic_key = self.keys.topic(name)
        kv = self.image.raw.get(topic_key)
        if kv is None:
            return None
        result = await self.client.txn([Compare(topic_key, "CREATE", kv.create_revision)],
                                       [Delete(topic_key), Delete(self.keys.topic_partitions(name), prefix=True)])
        return result.revision if result.succeeded else None

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> int | None:
        """Replace a topic's config overrides (CAS); the revision, or None when the topic changed meanwhile."""
        record = self.image.topics.get(name)
        if record is None:
            return None
        topic_key = self.keys.topic(name)
        result = await self.client.txn([Compare.mod_revision(topic_key, self.image.mod_revision(topic_key))],
                                       [Put(topic_key, replace(record, configs=dict(configs)).encode())])
        return result.revision if result.succeeded else None

    async def alter_isr(self, expected: PartitionInfo, isr: Sequence[int]) -> PartitionInfo | None:
        """Kafka's AlterPartition: CAS of a partition's ISR by its leader.

        Refused (None) unless the image's state is ``expected``'s (same leader, leader epoch and
        partition epoch), etcd still holds that version, and this broker's registration is still
        held under its lease (as Kafka's controller refuses a fenced broker's AlterPartition with
        STALE_BROKER_EPOCH: a broker whose lease lapsed is losing its leaderships, and its ISR
        change could leave the partition leaderless behind its back); the new state bumps the
        partition epoch. On success, returns the state once the image has applied it.
        """
        if not self.lease_valid():
            # Not known alive, or back from a restart its old leaderships are not yet fenced for:
            # an ISR change now could make the leader it was look current again (its followers
            # would truncate acknowledged records to its lost log).
            return None
        key = self.keys.partition(expected.topic, expected.index)
        current = self.image.partition(expected.topic, expected.index)
        if (current is None or current.leader != expected.leader or current.leader_epoch != expected.leader_epoch
                or current.partition_epoch != expected.partition_epoch or not self.lease_id):
            return None
        new = replace(current, isr=list(isr), partition_epoch=current.partition_epoch + 1)
        registered = Compare(self.keys.broker(self.node_id), "LEASE", self.lease_id)
        try:
            result = await self.client.txn([Compare.mod_revision(key, self.image.mod_revision(key)), registered],
                                           [Put(key, encode_partition(new))])
        except EtcdError as e:
            log.warning("ISR change of %s-%d failed: %s", expected.topic, expected.index, e)
            return None
        if not result.succeeded:
            return None
        await self.wait_applied(result.revision)
        return self.image.partition(expected.topic, expected.index)
