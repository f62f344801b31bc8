"""The cluster controller: one broker at a time moves leaderships and ISRs as brokers come and go.

Any broker may run a :class:`Controller`; they campaign through the ``controller`` key (created
only when absent, attached to the broker's lease), so exactly one is active while its lease
lives and another takes over as soon as etcd expires it. The active controller keeps its own
view of ``brokers/``, ``topics/`` and ``partitions/`` (a read, then a watch) and reacts, as
Kafka's ``ReplicationControlManager`` does:

- a broker's registration gone (its lease expired), or marked ``shutting_down``: it leaves
  every ISR (except as a last member) and loses its leaderships to other ISR members;
- a broker registered: leaderless partitions whose ISR holds it get it as leader (any live
  replica when unclean election is enabled);
- a registration whose ``incarnation`` changed (a restart within the old lease): as a loss
  then an arrival, so the restarted broker leads under a new leader epoch;
- a reassignment whose adding replicas all joined the ISR completes;
- a topic's configs changed: its partitions are decided again (unclean election enabled);
- every ``leader.imbalance.check.interval.seconds`` (``auto.leader.rebalance.enable``),
  partitions not led by their preferred (first) replica move back to it when it is in the ISR.

Every write is a compare-and-swap on the partition key's ``mod_revision`` that also requires
the controller key to be the one this controller created: a deposed controller cannot write,
whatever its view says. A lost race re-reads the key and decides again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from kbroker.clock import Clock
from kbroker.config.holder import ConfigHolder
from kbroker.etcd.client import (
    Compare,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    KeyValue,
    Put,
    Range,
    WatchEvent,
)
from kbroker.metadata import election
from kbroker.metadata.cluster_state import (
    BrokerRegistration,
    ClusterKeys,
    TopicRecord,
    UndecodableDocument,
    decode_partition,
    encode_partition,
)
from kbroker.metadata.model import PartitionInfo

log = logging.getLogger(__name__)

__all__ = ["CasOutcome", "ClusterHandle", "Controller", "cas_partition", "read_brokers", "read_topic", "wait_applied"]

#: How many times one partition's change is re-decided after losing a compare-and-swap.
CAS_ATTEMPTS = 20
#: How long a candidate waits on the current controller key before trying again (a bound,
#: not a poll: a deletion wakes it at once).
CAMPAIGN_RECHECK_S = 1.0
#: Back-off after etcd could not be reached.
RETRY_BACKOFF_S = 0.5

#: Decides a partition's next state from its current one: the state to write, or None for none.
Decide = Callable[[PartitionInfo], PartitionInfo | None]


@dataclass(frozen=True)
class CasOutcome:
    """What :func:`cas_partition` did."""

    #: The state written, or None when the decision was to change nothing (or the key is gone).
    written: PartitionInfo | None
    #: The partition's state as last read (None: the key does not exist).
    current: PartitionInfo | None
    #: The revision of the write (0 when nothing was written).
    revision: int = 0
    #: The partition key's mod_revision after the call.
    mod_revision: int = 0
    #: False when the extra comparisons failed (for the controller: it is not the controller any more).
    fenced: bool = False


class ClusterHandle(Protocol):
    """What admin requests need of a clustered broker's metadata: the etcd client and key layout."""

    @property
    def client(self) -> EtcdClient: ...
    @property
    def keys(self) -> ClusterKeys: ...


async def wait_applied(cluster: ClusterHandle, revision: int, timeout_ms: int) -> None:
    """Wait (at most ``timeout_ms``) until this broker's own image has applied ``revision``, so
    that a client asking it next sees the change; a no-op for a handle without an image."""
    wait = getattr(cluster, "wait_applied", None)
    if wait is not None and revision > 0:
        await wait(revision, max(timeout_ms, 0) / 1000)


async def read_brokers(client: EtcdClient, keys: ClusterKeys) -> dict[int, BrokerRegistration]:
    """Every registered (live) broker, by id."""
    kvs, _ = await client.get_prefix(keys.brokers)
    out: dict[int, BrokerRegistration] = {}
    for kv in kvs:
        broker = keys.parse_broker(kv.key)
        if broker is not None:
            try:
                out[broker] = BrokerRegistration.decode(kv.value)
            except UndecodableDocument as e:  # not a broker anyone can reach
                log.warning("ignoring undecodable etcd key %s: %s", kv.key, e)
    return out


async def read_topic(client: EtcdClient, keys: ClusterKeys, name: str) -> TopicRecord | None:
    """The topic's record, or None when it does not exist."""
    kv = await client.get(keys.topic(name))
    return None if kv is None else TopicRecord.decode(name, kv.value)


async def cas_partition(client: EtcdClient, keys: ClusterKeys, topic: str, index: int, decide: Decide, *,
                        known: tuple[PartitionInfo, int] | None = None,
                        guard: Sequence[Compare] = ()) -> CasOutcome:
    """Change one partition by compare-and-swap on its key's ``mod_revision``, re-reading and
    re-deciding after each lost race. ``known``: a state and its mod_revision to start from
    (else the key is read); ``guard``: extra comparisons every write needs (when one fails,
    the call returns ``fenced``)."""
    key = keys.partition(topic, index)
    if known is None:
        kv = await client.get(key)
        if kv is None:
            return CasOutcome(None, None)
        current, mod = _decode_partition(topic, index, kv.value), kv.mod_revision
    else:
        current, mod = known
    for _ in range(CAS_ATTEMPTS):
        wanted = decide(current)
        if wanted is None:
            return CasOutcome(None, current, 0, mod)
        result = await client.txn([Compare.mod_revision(key, mod), *guard], [Put(key, encode_partition(wanted))],
                                  [Range(key)])
        if result.succeeded:
            return CasOutcome(wanted, wanted, result.revision, result.revision)
        fresh = result.ranges[0] if result.ranges else []
        if not fresh:
            return CasOutcome(None, None)
        if fresh[0].mod_revision == mod:  # the partition did not move: a guard failed
            return CasOutcome(None, current, 0, mod, fenced=True)
        current, mod = _decode_partition(topic, index, fresh[0].value), fresh[0].mod_revision
    raise EtcdError(f"partition {topic}-{index}: {CAS_ATTEMPTS} compare-and-swap attempts lost")


def _decode_partition(topic: str, index: int, data: bytes) -> PartitionInfo:
    """A partition's state for a compare-and-swap: an undecodable one cannot be changed (EtcdError)."""
    try:
        return decode_partition(topic, index, data)
    except UndecodableDocument as e:
        raise EtcdError(f"undecodable state of partition {topic}-{index}: {e}") from None


async def _close(watch: AsyncIterator[Any]) -> None:
    """End a watch stream now (its HTTP connection), even from a cancelled scope."""
    aclose = getattr(watch, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


class Controller:
    """Campaigns for the ``controller`` key and, while holding it, keeps partitions led."""

    def __init__(self, client: EtcdClient, keys: ClusterKeys, node_id: int, lease: Callable[[], int],
                 config: ConfigHolder, clock: Clock) -> None:
        """``lease``: this broker's current etcd lease id (0 while it has none)."""
        self.client = client
        self.keys = keys
        self.node_id = node_id
        self._lease = lease
        self._config = config
        self._clock = clock
        self._active = False
        self._held_lease = 0
        self._key_revision = 0
        self.brokers: dict[int, BrokerRegistration] = {}
        #: The revision each broker's registration was last written at.
        self._broker_revisions: dict[int, int] = {}
        self.topics: dict[str, TopicRecord] = {}
        self.partitions: dict[tuple[str, int], tuple[PartitionInfo, int]] = {}
        #: Set each time this controller becomes active (tests and callers can await it).
        self.became_active = anyio.Event()
        self._cancel: anyio.CancelScope | None = None

    @property
    def active(self) -> bool:
        """Whether this broker is the controller now."""
        return self._active and self._lease() == self._held_lease

    # ------------------------------------------------------------------ campaign

    async def run(self) -> None:
        """Campaign, lead while elected, campaign again after losing the key; until cancelled."""
        while True:
            try:
                if await self._campaign():
                    await self._lead()
                    await anyio.sleep(0)  # a controller deposed at once does not spin
            except (EtcdError, OSError) as e:
                log.warning("controller %d: etcd: %s", self.node_id, e)
                await anyio.sleep(RETRY_BACKOFF_S)
            finally:
                self._active = False

    async def _campaign(self) -> bool:
        """Try to create the controller key; while another holds it, wait for its deletion."""
        lease = self._lease()
        if not lease:
            await anyio.sleep(RETRY_BACKOFF_S)
            return False
        doc = b'{"id":%d}' % self.node_id
        result = await self.client.txn([Compare.absent(self.keys.controller)],
                                       [Put(self.keys.controller, doc, lease=lease)], [Range(self.keys.controller)])
        if result.succeeded:
            self._held_lease, self._key_revision = lease, result.revision
            return True
        held = result.ranges[0][0] if result.ranges and result.ranges[0] else None
        if held is not None and held.lease == lease and held.value == doc:
            # Ours already (a previous term of this broker under the same lease): take it back.
            self._held_lease, self._key_revision = lease, held.mod_revision
            return True
        start = (held.mod_revision + 1) if held is not None else result.revision + 1
        watch = self.client.watch(self.keys.controller, start)
        try:
            with anyio.move_on_after(CAMPAIGN_RECHECK_S):
                async for events in watch:
                    if any(e.type == "DELETE" and e.kv.key == self.keys.controller for e in events):
                        break
        finally:
            await _close(watch)
        return False

    def _guard(self) -> list[Compare]:
        return [Compare.mod_revision(self.keys.controller, self._key_revision)]

    # ------------------------------------------------------------------ leading

    async def _lead(self) -> None:
        log.info("broker %d is the controller", self.node_id)
        self._active = True
        self.became_active.set()
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                tg.start_soon(self._rebalance_loop)
                tg.start_soon(self._lease_watch)
                try:
                    await self._follow()
                except (EtcdError, OSError) as e:
                    log.warning("controller %d: etcd: %s", self.node_id, e)
                tg.cancel_scope.cancel()
        finally:
            self._active = False
            self._cancel = None
            self.became_active = anyio.Event()
            log.info("broker %d is no longer the controller", self.node_id)

    async def _lease_watch(self) -> None:
        """Stop at once when the broker's lease changes (the old one, and our key with it, is gone)."""
        while self._lease() == self._held_lease:
            await anyio.sleep(0.1)
        self._deposed()

    def _deposed(self) -> None:
        self._active = False
        if self._cancel is not None:
            self._cancel.cancel()

    async def _follow(self) -> None:
        """Read the whole state, reconcile every partition, then apply watched changes; again
        after a compaction or a broken watch. Returns when this controller is deposed."""
        while self.active:
            kvs, revision = await self.client.get_prefix(self.keys.prefix)
            self._load(kvs)
            if not self._holds_key(kvs):
                return
            stale = self._stale_incarnations()
            await self._reconcile_all()
            for broker, tps in sorted(stale.items()):
                await self._restart(broker, tps)
            watch = self.client.watch(self.keys.prefix, revision + 1)
            try:
                async for events in watch:
                    if not await self._apply(events):
                        return
            except (EtcdCompacted, EtcdError) as e:
                log.info("controller %d: watch ended (%s); reading again", self.node_id, e)
                await anyio.sleep(0.05)
            finally:
                await _close(watch)

    def _holds_key(self, kvs: Sequence[KeyValue]) -> bool:
        for kv in kvs:
            if kv.key == self.keys.controller:
                return kv.mod_revision == self._key_revision
        return False

    def _stale_incarnations(self) -> dict[int, set[tuple[str, int]]]:
        """Partitions led by, or in the ISR of, a broker registered after their state was written:
        a restart whose new registration an earlier controller did not handle (or that happened
        while there was none). As Kafka fences a broker registering with a new incarnation, the
        old incarnation's leaderships and ISR memberships end (and the broker's leader epochs
        with them) rather than carry over to a process that may have lost the log's tail."""
        stale: dict[int, set[tuple[str, int]]] = {}
        for broker, registration in self.brokers.items():
            registered = self._broker_revisions.get(broker, 0)
            if registration.shutting_down:
                continue  # reconciled as shutting down anyway
            for tp, (info, revision) in self.partitions.items():
                if revision < registered and (info.leader == broker or broker in info.isr):
                    stale.setdefault(broker, set()).add(tp)
        return stale

    def _load(self, kvs: Sequence[KeyValue]) -> None:
        self.brokers.clear()
        self._broker_revisions.clear()
        self.topics.clear()
        self.partitions.clear()
        for kv in kvs:
            self._put(kv)

    def _put(self, kv: KeyValue) -> None:
        """Apply one key to the view (a partition only when newer than the view's); an
        undecodable one leaves it, as if deleted."""
        try:
            self._decode_put(kv)
        except UndecodableDocument as e:
            log.warning("controller %d: ignoring undecodable etcd key %s: %s", self.node_id, kv.key, e)
            self._delete(kv.key)

    def _decode_put(self, kv: KeyValue) -> None:
        broker = self.keys.parse_broker(kv.key)
        if broker is not None:
            self.brokers[broker] = BrokerRegistration.decode(kv.value)
            self._broker_revisions[broker] = kv.mod_revision
            return
        tp = self.keys.parse_partition(kv.key)
        if tp is not None:
            known = self.partitions.get(tp)
            if known is None or known[1] < kv.mod_revision:
                self.partitions[tp] = (decode_partition(tp[0], tp[1], kv.value), kv.mod_revision)
            return
        if kv.key.startswith(self.keys.topics):
            name = kv.key[len(self.keys.topics):]
            self.topics[name] = TopicRecord.decode(name, kv.value)

    def _delete(self, key: str) -> None:
        broker = self.keys.parse_broker(key)
        if broker is not None:
            self.brokers.pop(broker, None)
            self._broker_revisions.pop(broker, None)
            return
        tp = self.keys.parse_partition(key)
        if tp is not None:
            self.partitions.pop(tp, None)
        elif key.startswith(self.keys.topics):
            self.topics.pop(key[len(self.keys.topics):], None)

    async def _apply(self, events: list[WatchEvent]) -> bool:
        """Apply one batch of changes and react; False when this controller lost its key."""
        dirty: set[tuple[str, int]] = set()
        restarted: set[int] = set()
        returned: set[int] = set()
        touched_topics: set[str] = set()
        brokers_changed = False
        for event in events:
            kv = event.kv
            if kv.key == self.keys.controller:
                if event.type == "DELETE" or kv.mod_revision != self._key_revision:
                    self._deposed()
                    return False
                continue
            broker = self.keys.parse_broker(kv.key)
            if broker is not None:
                brokers_changed = True
                old = self.brokers.get(broker)
                if event.type == "PUT":
                    try:
                        new = BrokerRegistration.decode(kv.value)
                    except UndecodableDocument:
                        pass  # _put below drops it from the view
                    else:
                        if old is not None and old.incarnation != new.incarnation:
                            restarted.add(broker)
                        elif old is None:
                            returned.add(broker)
            tp = self.keys.parse_partition(kv.key)
            if tp is not None:
                dirty.add(tp)
            elif event.type == "PUT" and kv.key.startswith(self.keys.topics):
                # Its configs may have changed (unclean.leader.election.enable): decide again.
                touched_topics.add(kv.key[len(self.keys.topics):])
            if event.type == "DELETE":
                self._delete(kv.key)
            else:
                self._put(kv)
        dirty.update(tp for tp in self.partitions if tp[0] in touched_topics)
        for broker in restarted:
            await self._restart(broker)
        if returned - restarted:
            # Registered again after its old registration went in this same batch (or unseen):
            # what its old incarnation still leads is fenced as for a restart.
            stale = self._stale_incarnations()
            for broker in sorted((returned - restarted) & set(stale)):
                await self._restart(broker, stale[broker])
        if brokers_changed:
            await self._reconcile_all()
        else:
            for tp in sorted(dirty):
                await self._reconcile(tp)
        return self.active

    # ------------------------------------------------------------------ decisions

    def acceptable(self, broker: int) -> bool:
        """Whether ``broker`` may lead: registered and not shutting down."""
        registration = self.brokers.get(broker)
        return registration is not None and not registration.shutting_down

    def _unclean(self, topic: str) -> bool:
        record = self.topics.get(topic)
        default = bool(self._config.current.get("unclean.leader.election.enable"))
        return election.unclean_allowed(record.configs if record is not None else {}, default)

    async def _write(self, tp: tuple[str, int], decide: Decide) -> PartitionInfo | None:
        known = self.partitions.get(tp)
        if known is None or not self.active:
            return None
        outcome = await cas_partition(self.client, self.keys, tp[0], tp[1], decide, known=known, guard=self._guard())
        if outcome.fenced:
            self._deposed()
            return None
        if outcome.current is None:
            self.partitions.pop(tp, None)
        elif outcome.mod_revision >= known[1]:
            self.partitions[tp] = (outcome.current, outcome.mod_revision)
        if outcome.written is not None:
            log.info("controller %d: %s-%d leader %d epoch %d isr %s replicas %s", self.node_id, tp[0], tp[1],
                     outcome.written.leader, outcome.written.leader_epoch, outcome.written.isr,
                     outcome.written.replicas)
        return outcome.written

    async def _reconcile(self, tp: tuple[str, int]) -> None:
        unclean = self._unclean(tp[0])
        await self._write(tp, lambda info: election.reconcile(info, self.acceptable, unclean=unclean))

    async def _reconcile_all(self) -> None:
        for tp in sorted(self.partitions):
            await self._reconcile(tp)

    async def _restart(self, broker: int, only: set[tuple[str, int]] | None = None) -> None:
        """A broker restarted within its old lease: fence it, then let it lead again (in the
        partitions ``only``, when given)."""
        for tp in sorted(self.partitions if only is None else only & set(self.partitions)):
            info = self.partitions[tp][0]
            if broker not in info.isr and info.leader != broker:
                continue
            unclean = self._unclean(tp[0])

            def decide(current: PartitionInfo, unclean: bool = unclean) -> PartitionInfo | None:
                removed = election.remove_broker(current, broker, self.acceptable, unclean=unclean)
                if removed is None:
                    return None
                again = election.reconcile(removed, self.acceptable, unclean=unclean)
                if again is None:
                    return removed
                again.partition_epoch = removed.partition_epoch  # one write, one partition epoch
                return again

            await self._write(tp, decide)

    # ------------------------------------------------------------------ preferred leaders

    async def _rebalance_loop(self) -> None:
        while True:
            interval = max(1, int(self._config.current.get("leader.imbalance.check.interval.seconds")))
            await anyio.sleep(interval)
            if bool(self._config.current.get("auto.leader.rebalance.enable")):
                try:
                    await self.rebalance()
                except (EtcdError, OSError) as e:
                    log.warning("controller %d: preferred-leader rebalance: %s", self.node_id, e)

    async def rebalance(self) -> int:
        """Preferred-leader elections for every partition not led by its first replica (as the
        KRaft controller's ``maybeBalancePartitionLeaders``: no per-broker threshold, Kafka 4
        dropped ``leader.imbalance.per.broker.percentage``); how many moved."""
        moved = 0
        for tp in sorted(self.partitions):
            info = self.partitions[tp][0]
            if not election.is_imbalanced(info) or not self.acceptable(info.replicas[0]):
                continue

            def decide(current: PartitionInfo) -> PartitionInfo | None:
                if not election.is_imbalanced(current):
                    return None
                return election.build_change(current, self.acceptable, election=election.Election.PREFERRED)

            written = await self._write(tp, decide)
            if written is not None and written.leader == info.replicas[0]:
                moved += 1
        return moved
