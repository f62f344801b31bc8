"""The controller against a real etcd: campaigns, failover, and its reactions to brokers coming and going.

Brokers are fake: a registration key under a lease the test keeps alive, lets expire, or revokes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from kbroker.clock import SYSTEM_CLOCK
from kbroker.config.broker import BrokerConfig
from kbroker.config.holder import ConfigHolder
from kbroker.etcd import EtcdClient
from kbroker.etcd.client import Compare, EtcdError, KeyValue, Put, WatchEvent
from kbroker.etcd.server import EtcdNotFound, EtcdServer
from kbroker.metadata import election
from kbroker.metadata.cluster_state import (
    NO_LEADER,
    BrokerRegistration,
    ClusterKeys,
    TopicRecord,
    decode_partition,
    encode_partition,
)
from kbroker.metadata.controller import Controller, cas_partition
from kbroker.metadata.model import PartitionInfo

pytestmark = pytest.mark.anyio

#: etcd's shortest lease (its minimum TTL with the default heartbeat is 2 s).
TTL = 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeBroker:
    """A broker registration under a lease kept alive until :meth:`stop_heartbeats`."""

    def __init__(self, client: EtcdClient, keys: ClusterKeys, node_id: int) -> None:
        self.client, self.keys, self.node_id = client, keys, node_id
        self.lease = 0
        self.registration = BrokerRegistration(node_id, {"PLAINTEXT": ("127.0.0.1", 9000 + node_id)})
        self._beating: anyio.CancelScope | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.lease = await self.client.grant_lease(TTL)
        await self.client.put(self.keys.broker(self.node_id), self.registration.encode(), lease=self.lease)
        tg.start_soon(self._heartbeats)

    async def _heartbeats(self) -> None:
        with anyio.CancelScope() as scope:
            self._beating = scope
            lease = self.lease
            while True:
                try:
                    if await self.client.keepalive(lease) <= 0:
                        return
                except EtcdError:
                    pass  # etcd down for a moment: keep trying while the lease may live
                await anyio.sleep(0.4)

    def stop_heartbeats(self) -> None:
        """As a frozen or killed broker: the lease expires after its TTL."""
        if self._beating is not None:
            self._beating.cancel()

    async def revoke(self) -> None:
        self.stop_heartbeats()
        await self.client.revoke_lease(self.lease)

    async def reregister(self, **changes: object) -> None:
        self.registration = dataclasses.replace(self.registration, **changes)  # type: ignore[arg-type]
        await self.client.put(self.keys.broker(self.node_id), self.registration.encode(), lease=self.lease)


@pytest.fixture
async def cluster(etcd_server: EtcdServer) -> AsyncIterator[tuple[EtcdClient, ClusterKeys]]:
    client = EtcdClient([etcd_server.endpoint])
    keys = ClusterKeys(f"/test-{uuid.uuid4().hex[:8]}/")
    try:
        yield client, keys
    finally:
        await client.delete(keys.prefix, prefix=True)
        await client.aclose()


def config(**settings: str) -> ConfigHolder:
    return ConfigHolder(BrokerConfig({k.replace("_", "."): v for k, v in settings.items()}))


async def create_topic(client: EtcdClient, keys: ClusterKeys, name: str, parts: list[PartitionInfo],
                       configs: dict[str, str] | None = None) -> None:
    record = TopicRecord(name, uuid.uuid4(), len(parts), configs or {})
    ops = [Put(keys.topic(name), record.encode())]
    ops += [Put(keys.partition(name, p.index), encode_partition(p)) for p in parts]
    assert (await client.txn([Compare.absent(keys.topic(name))], ops)).succeeded


def part(topic: str, index: int, replicas: list[int], leader: int, isr: list[int], **kw: object) -> PartitionInfo:
    return PartitionInfo(topic, index, leader, 0, replicas, isr, **kw)  # type: ignore[arg-type]


async def state(client: EtcdClient, keys: ClusterKeys, topic: str, index: int) -> PartitionInfo:
    kv = await client.get(keys.partition(topic, index))
    assert kv is not None
    return decode_partition(topic, index, kv.value)


async def wait_partition(client: EtcdClient, keys: ClusterKeys, topic: str, index: int,
                         pred: Callable[[PartitionInfo], bool], timeout: float = 10.0) -> PartitionInfo:
    """The partition's state once ``pred`` holds (a watch: woken by each write)."""
    key = keys.partition(topic, index)
    with anyio.fail_after(timeout):
        while True:
            kv = await client.get(key)
            assert kv is not None
            info = decode_partition(topic, index, kv.value)
            if pred(info):
                return info
            async for events in client.watch(key, kv.mod_revision + 1):
                if any(e.kv.key == key for e in events):
                    break


async def wait_active(*controllers: Controller, timeout: float = 10.0) -> Controller:
    with anyio.fail_after(timeout):
        while True:
            for c in controllers:
                if c.active:
                    return c
            await anyio.sleep(0.05)


async def start_controllers(tg: anyio.abc.TaskGroup, client: EtcdClient, keys: ClusterKeys,
                            brokers: list[FakeBroker], cfg: ConfigHolder | None = None) -> list[Controller]:
    out = []
    for b in brokers:
        c = Controller(client, keys, b.node_id, lambda b=b: b.lease, cfg or config(), SYSTEM_CLOCK)  # type: ignore[misc]
        tg.start_soon(c.run)
        out.append(c)
    return out


async def brokers(tg: anyio.abc.TaskGroup, client: EtcdClient, keys: ClusterKeys, ids: list[int]) -> list[FakeBroker]:
    out = [FakeBroker(client, keys, i) for i in ids]
    for b in out:
        await b.start(tg)
    return out


async def test_one_controller_and_failover_within_the_lease_ttl(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2, b3 = await brokers(tg, client, keys, [1, 2, 3])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2, 3], 1, [1, 2, 3])])
        controllers = await start_controllers(tg, client, keys, [b1, b2, b3])
        first = await wait_active(*controllers)
        await anyio.sleep(0.5)
        assert [c.active for c in controllers].count(True) == 1
        kv = await client.get(keys.controller)
        assert kv is not None and kv.json() == {"id": first.node_id}

        old = [b1, b2, b3][controllers.index(first)]
        old.stop_heartbeats()  # frozen: its lease (and the controller key) expire after the TTL
        started = anyio.current_time()
        others = [c for c in controllers if c is not first]
        second = await wait_active(*others, timeout=TTL + 4)
        assert anyio.current_time() - started <= TTL + 3
        kv = await client.get(keys.controller)
        assert kv is not None and kv.json() == {"id": second.node_id}
        # The new controller moved the dead broker's leadership and ISR membership.
        info = await wait_partition(client, keys, "t", 0, lambda p: old.node_id not in p.isr)
        assert info.leader != old.node_id and info.leader in info.isr
        assert not first.active
        tg.cancel_scope.cancel()


async def test_broker_loss_moves_leadership_and_shrinks_isr(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2, b3 = await brokers(tg, client, keys, [1, 2, 3])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2, 3], 1, [1, 2, 3]),
                                               part("t", 1, [2, 1, 3], 2, [2, 1, 3])])
        [c3] = await start_controllers(tg, client, keys, [b3])
        await wait_active(c3)
        await anyio.sleep(0.3)
        assert (await state(client, keys, "t", 0)).leader_epoch == 0  # nothing to do while all live
        b1.stop_heartbeats()
        started = anyio.current_time()
        p0 = await wait_partition(client, keys, "t", 0, lambda p: p.leader != 1, timeout=TTL + 4)
        assert anyio.current_time() - started <= TTL + 3
        assert (p0.leader, p0.isr, p0.leader_epoch, p0.partition_epoch) == (2, [2, 3], 1, 1)
        p1 = await wait_partition(client, keys, "t", 1, lambda p: 1 not in p.isr)
        # Not its leader: out of the ISR only, the leader epoch stays.
        assert (p1.leader, p1.isr, p1.leader_epoch, p1.partition_epoch) == (2, [2, 3], 0, 1)
        tg.cancel_scope.cancel()


async def test_last_isr_member_stays_and_leads_again_when_back(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1])])
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        await b1.revoke()
        p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == NO_LEADER)
        # Unclean election off: broker 2 is alive but out of sync, so no leader; the ISR keeps 1.
        assert (p.isr, p.leader_epoch) == ([1], 1)
        await anyio.sleep(0.3)
        assert (await state(client, keys, "t", 0)).leader == NO_LEADER

        b1.registration = dataclasses.replace(b1.registration, incarnation=uuid.uuid4().hex)
        await b1.start(tg)  # back under a new lease
        p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 1)
        assert (p.isr, p.leader_epoch) == ([1], 2)
        tg.cancel_scope.cancel()


async def test_unclean_election_by_topic_config(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "clean", [part("clean", 0, [1, 2], 1, [1])])
        await create_topic(client, keys, "dirty", [part("dirty", 0, [1, 2], 1, [1])],
                           {"unclean.leader.election.enable": "true"})
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        await b1.revoke()
        dirty = await wait_partition(client, keys, "dirty", 0, lambda p: p.leader == 2)
        assert (dirty.isr, dirty.leader_epoch) == ([2], 1)
        clean = await wait_partition(client, keys, "clean", 0, lambda p: p.leader == NO_LEADER)
        assert clean.isr == [1]
        tg.cancel_scope.cancel()


async def test_unclean_election_by_broker_default(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1])])
        await create_topic(client, keys, "off", [part("off", 0, [1, 2], 1, [1])],
                           {"unclean.leader.election.enable": "false"})
        [c2] = await start_controllers(tg, client, keys, [b2], config(unclean_leader_election_enable="true"))
        await wait_active(c2)
        await b1.revoke()
        p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 2)
        assert p.isr == [2]
        off = await wait_partition(client, keys, "off", 0, lambda p: p.leader == NO_LEADER)
        assert off.isr == [1]
        tg.cancel_scope.cancel()


async def test_restart_within_the_lease_fences_the_old_incarnation(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2]), part("t", 1, [1, 2], 1, [1])])
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        await anyio.sleep(0.2)
        await b1.reregister(incarnation=uuid.uuid4().hex)
        p0 = await wait_partition(client, keys, "t", 0, lambda p: p.leader != 1)
        # Fenced: another ISR member leads; the restarted broker rejoins the ISR by fetching.
        assert (p0.leader, p0.isr, p0.leader_epoch) == (2, [2], 1)
        p1 = await wait_partition(client, keys, "t", 1, lambda p: p.leader_epoch > 0)
        # The only ISR member leads again, under a new leader epoch (its old state is gone).
        assert (p1.leader, p1.isr, p1.leader_epoch, p1.partition_epoch) == (1, [1], 2, 1)
        tg.cancel_scope.cancel()


async def test_a_restart_no_controller_saw_is_fenced_by_the_next_controller(
        cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    # Broker 1 restarts (a new incarnation) while no controller runs (or before the one running
    # handled it): the controller that loads the state later still ends the old incarnation's
    # leaderships under new leader epochs, as for a restart it watched.
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2]), part("t", 1, [1, 2], 1, [1]),
                                               part("t", 2, [2, 1], 2, [2, 1])])
        await b1.reregister(incarnation=uuid.uuid4().hex)
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        p0 = await wait_partition(client, keys, "t", 0, lambda p: p.leader != 1)
        assert (p0.leader, p0.isr, p0.leader_epoch) == (2, [2], 1)
        p1 = await wait_partition(client, keys, "t", 1, lambda p: p.leader_epoch > 0)
        assert (p1.leader, p1.isr, p1.leader_epoch) == (1, [1], 2)
        # A follower of the old incarnation leaves the ISR too (it rejoins by fetching).
        p2 = await wait_partition(client, keys, "t", 2, lambda p: p.isr == [2])
        assert (p2.leader, p2.leader_epoch) == (2, 0)
        tg.cancel_scope.cancel()


async def test_a_registration_gone_and_back_in_one_batch_is_fenced_as_a_restart(
        cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    # Broker 1's lease expired and it registered again, both seen in one batch of changes: no
    # incarnation change is visible (its old registration is gone first), yet what it led under
    # the old one is fenced under a new leader epoch.
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2])])
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        with anyio.fail_after(5):
            while ("t", 0) not in c2.partitions:
                await anyio.sleep(0.05)
        revision = c2.partitions[("t", 0)][1]
        key = keys.broker(1)
        back = BrokerRegistration(1, {"PLAINTEXT": ("127.0.0.1", 9001)}).encode()
        assert await c2._apply([
            WatchEvent("DELETE", KeyValue(key, b"", 0, revision + 1, 0)),
            WatchEvent("PUT", KeyValue(key, back, revision + 2, revision + 2, 1)),
        ])
        p0 = await state(client, keys, "t", 0)
        assert (p0.leader, p0.isr, p0.leader_epoch) == (2, [2], 1)
        tg.cancel_scope.cancel()


async def test_controlled_shutdown_moves_leaderships_away(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2, b3 = await brokers(tg, client, keys, [1, 2, 3])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2, 3], 1, [1, 2, 3]),
                                               part("t", 1, [2, 1], 2, [2, 1]),
                                               part("t", 2, [1], 1, [1])])
        [c3] = await start_controllers(tg, client, keys, [b3])
        await wait_active(c3)
        await b1.reregister(shutting_down=True)
        p0 = await wait_partition(client, keys, "t", 0, lambda p: p.leader != 1)
        assert (p0.leader, p0.isr) == (2, [2, 3])
        p1 = await wait_partition(client, keys, "t", 1, lambda p: 1 not in p.isr)
        assert (p1.leader, p1.isr, p1.leader_epoch) == (2, [2], 0)
        # A single replica has nowhere to go: offline during the shutdown, as in KRaft.
        p2 = await wait_partition(client, keys, "t", 2, lambda p: p.leader == NO_LEADER)
        assert p2.isr == [1]
        tg.cancel_scope.cancel()


async def test_reassignment_completes_when_adding_replicas_join_the_isr(
        cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        bs = await brokers(tg, client, keys, [1, 2, 3, 4])
        await create_topic(client, keys, "t", [part("t", 0, [2, 3, 4, 1], 1, [1, 2, 3], adding_replicas=[4],
                                                    removing_replicas=[1])])
        [c] = await start_controllers(tg, client, keys, bs[1:2])
        await wait_active(c)
        await anyio.sleep(0.3)
        assert (await state(client, keys, "t", 0)).adding_replicas == [4]  # 4 not in sync yet
        # The leader adds 4 to the ISR once it caught up (its AlterPartition).
        kv = await client.get(keys.partition("t", 0))
        assert kv is not None
        joined = dataclasses.replace(decode_partition("t", 0, kv.value), isr=[1, 2, 3, 4], partition_epoch=1)
        assert (await client.txn([Compare.mod_revision(kv.key, kv.mod_revision)],
                                 [Put(kv.key, encode_partition(joined))])).succeeded
        p = await wait_partition(client, keys, "t", 0, lambda p: not p.adding_replicas)
        assert (p.replicas, p.isr, p.removing_replicas, p.leader) == ([2, 3, 4], [2, 3, 4], [], 2)
        assert (p.leader_epoch, p.partition_epoch) == (1, 2)
        tg.cancel_scope.cancel()


async def test_preferred_leader_rebalance(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        bs = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 2, [1, 2]), part("t", 1, [2, 1], 2, [2, 1]),
                                               part("t", 2, [1, 2], 2, [2])])
        cfg = config(leader_imbalance_check_interval_seconds="1")
        [c] = await start_controllers(tg, client, keys, bs[1:], cfg)
        await wait_active(c)
        p0 = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 1, timeout=5)
        assert (p0.leader_epoch, p0.isr) == (1, [1, 2])
        # Preferred replica out of sync: nothing moves.
        await anyio.sleep(0.3)
        assert (await state(client, keys, "t", 2)).leader == 2
        assert (await state(client, keys, "t", 1)).leader_epoch == 0
        tg.cancel_scope.cancel()


async def test_rebalance_disabled_and_without_a_threshold(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        bs = await brokers(tg, client, keys, [1, 2])
        parts = [part("t", i, [1, 2], 1, [1, 2]) for i in range(20)]
        # 1 of 20 not led by broker 1 (5%): as the KRaft controller, which has no per-broker
        # threshold (Kafka 4 removed leader.imbalance.per.broker.percentage), it moves back.
        parts[0] = part("t", 0, [1, 2], 2, [1, 2])
        await create_topic(client, keys, "t", parts)
        cfg = config(leader_imbalance_check_interval_seconds="3600")
        [c] = await start_controllers(tg, client, keys, bs[1:], cfg)
        await wait_active(c)
        await anyio.sleep(0.2)
        assert await c.rebalance() == 1
        assert (await state(client, keys, "t", 0)).leader == 1
        assert await c.rebalance() == 0
        tg.cancel_scope.cancel()
    async with anyio.create_task_group() as tg:
        bs = await brokers(tg, client, keys, [3, 4])
        await create_topic(client, keys, "u", [part("u", 0, [3, 4], 4, [3, 4])])
        cfg = config(leader_imbalance_check_interval_seconds="1", auto_leader_rebalance_enable="false")
        [c] = await start_controllers(tg, client, keys, bs[1:], cfg)
        await wait_active(c, timeout=TTL + 4)  # the previous controller's lease expires first
        await anyio.sleep(1.5)
        assert (await state(client, keys, "u", 0)).leader == 4
        tg.cancel_scope.cancel()


async def test_cas_conflicts_under_concurrent_writers(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    await create_topic(client, keys, "t", [part("t", 0, [1], 1, [1])])

    def add(n: int) -> Callable[[PartitionInfo], PartitionInfo | None]:
        def decide(p: PartitionInfo) -> PartitionInfo | None:
            if n in p.replicas:
                return None
            return dataclasses.replace(p, replicas=[*p.replicas, n], partition_epoch=p.partition_epoch + 1)
        return decide

    async with anyio.create_task_group() as tg:
        for n in range(2, 12):
            tg.start_soon(cas_partition, client, keys, "t", 0, add(n))
    p = await state(client, keys, "t", 0)
    assert sorted(p.replicas) == list(range(1, 12)) and p.partition_epoch == 10
    # A decision of no change writes nothing; a missing partition is reported as such.
    again = await cas_partition(client, keys, "t", 0, add(5))
    assert again.written is None and again.current == p
    missing = await cas_partition(client, keys, "t", 9, add(5))
    assert missing.current is None and missing.written is None


async def test_a_deposed_controller_cannot_write(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2])])
        [c1] = await start_controllers(tg, client, keys, [b1])
        await wait_active(c1)
        held = await client.get(keys.controller)
        assert held is not None
        guard = [Compare.mod_revision(keys.controller, held.mod_revision)]
        # Someone else holds the key now (the old lease expired and another broker won). One
        # write, not a delete then a put: between those, c1 may rightly win the key back.
        await client.put(keys.controller, b'{"id":2}', lease=b2.lease)
        with anyio.fail_after(5):
            while c1.active:
                await anyio.sleep(0.02)

        def move(p: PartitionInfo) -> PartitionInfo:
            return dataclasses.replace(p, leader=2, leader_epoch=p.leader_epoch + 1, partition_epoch=p.partition_epoch + 1)

        out = await cas_partition(client, keys, "t", 0, move, guard=guard)
        assert out.fenced and out.written is None
        assert (await state(client, keys, "t", 0)).leader == 1
        await anyio.sleep(0.3)
        assert not c1.active  # it does not take the key back while another holds it
        tg.cancel_scope.cancel()


async def test_controller_waits_for_a_lease(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    lease = 0
    c = Controller(client, keys, 7, lambda: lease, config(), SYSTEM_CLOCK)
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.run)
        await anyio.sleep(0.7)
        assert not c.active and await client.get(keys.controller) is None
        lease = await client.grant_lease(TTL)
        await wait_active(c)
        lease = await client.grant_lease(TTL)  # the broker re-registered under a new lease
        with anyio.fail_after(3):
            while c.active:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()


async def test_a_writer_that_lost_the_race_decides_again_on_the_fresh_state(
        cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    await create_topic(client, keys, "t", [part("t", 0, [1, 2, 3], 1, [1, 2, 3])])
    kv = await client.get(keys.partition("t", 0))
    assert kv is not None
    stale = (decode_partition("t", 0, kv.value), kv.mod_revision)
    # The leader shrank the ISR meanwhile (its AlterPartition).
    shrunk = dataclasses.replace(stale[0], isr=[1, 2], partition_epoch=1)
    assert (await client.txn([Compare.mod_revision(kv.key, kv.mod_revision)],
                             [Put(kv.key, encode_partition(shrunk))])).succeeded
    seen: list[list[int]] = []

    def drop_1(info: PartitionInfo) -> PartitionInfo | None:
        seen.append(list(info.isr))
        return election.remove_broker(info, 1, lambda b: b != 1)

    out = await cas_partition(client, keys, "t", 0, drop_1, known=stale)
    assert seen == [[1, 2, 3], [1, 2]]  # decided on the stale view, lost, decided again
    assert out.written is not None and (out.written.leader, out.written.isr, out.written.partition_epoch) == (2, [2], 2)
    assert await state(client, keys, "t", 0) == out.written


async def test_controller_resumes_after_etcd_restarts(tmp_path: Path) -> None:
    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        pytest.skip(str(e))
    server = EtcdServer(tmp_path / "etcd")
    await anyio.to_thread.run_sync(server.start)
    client = EtcdClient([server.endpoint], timeout=1.0)
    keys = ClusterKeys("/restart/")
    try:
        async with anyio.create_task_group() as tg:
            b1, b2 = await brokers(tg, client, keys, [1, 2])
            await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2])])
            [c2] = await start_controllers(tg, client, keys, [b2])
            await wait_active(c2)
            await anyio.to_thread.run_sync(server.stop)
            with anyio.fail_after(5):
                while c2.active:  # its watch broke: it stops acting until etcd answers again
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(server.start)
            await wait_active(c2)
            await b1.revoke()
            p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 2)
            assert p.isr == [2]
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
        await anyio.to_thread.run_sync(server.stop)


async def test_enabling_unclean_election_on_a_topic_elects_at_once(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1])])
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        await b1.revoke()
        await wait_partition(client, keys, "t", 0, lambda p: p.leader == NO_LEADER)
        kv = await client.get(keys.topic("t"))
        assert kv is not None
        record = TopicRecord.decode("t", kv.value)
        await client.put(kv.key, dataclasses.replace(record, configs={"unclean.leader.election.enable": "true"}).encode())
        p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 2)
        assert (p.isr, p.leader_epoch) == ([2], 2)
        tg.cancel_scope.cancel()


async def test_controller_wins_against_a_busy_leader(cluster: tuple[EtcdClient, ClusterKeys]) -> None:
    """The leader keeps changing the ISR (shrink/expand of broker 2) while broker 3 dies: the
    controller's removal of 3 lands, and none of the leader's changes is lost."""
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2, b3 = await brokers(tg, client, keys, [1, 2, 3])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2, 3], 1, [1, 2, 3])])
        [c1] = await start_controllers(tg, client, keys, [b1])
        await wait_active(c1)
        toggles = 0
        stop, done = anyio.Event(), anyio.Event()

        def toggle(info: PartitionInfo) -> PartitionInfo | None:
            isr = [r for r in info.isr if r != 2] if 2 in info.isr else sorted([*info.isr, 2])
            return dataclasses.replace(info, isr=isr, partition_epoch=info.partition_epoch + 1)

        async def leader() -> None:
            nonlocal toggles
            while not stop.is_set():
                out = await cas_partition(client, keys, "t", 0, toggle)
                assert out.written is not None
                toggles += 1
            done.set()

        tg.start_soon(leader)
        await anyio.sleep(0.2)
        await b3.revoke()
        await wait_partition(client, keys, "t", 0, lambda p: 3 not in p.isr)
        stop.set()
        with anyio.fail_after(5):
            await done.wait()
        final = await state(client, keys, "t", 0)
        assert 3 not in final.isr and final.leader == 1
        # Every write bumped the partition epoch once: the leader's toggles and the controller's removal.
        assert final.partition_epoch == toggles + 1 and toggles > 5
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("where", ["partitions/t/1", "partitions/zz/0", "brokers/9", "topics/zz"])
@pytest.mark.parametrize("document", [b"garbage", b'{"id": 9, "listeners": []}', b"[1]", b"null"])
async def test_foreign_documents_under_the_prefix_are_skipped(
        cluster: tuple[EtcdClient, ClusterKeys], where: str, document: bytes) -> None:
    client, keys = cluster
    async with anyio.create_task_group() as tg:
        b1, b2 = await brokers(tg, client, keys, [1, 2])
        await create_topic(client, keys, "t", [part("t", 0, [1, 2], 1, [1, 2])])
        await client.put(keys.prefix + where, document)  # present when the controller reads everything
        [c2] = await start_controllers(tg, client, keys, [b2])
        await wait_active(c2)
        await client.put(keys.prefix + where, document + b" ")  # and again through its watch
        b1.stop_heartbeats()
        # Still controlling: broker 1's loss moves the leadership of the partition it can decode.
        p = await wait_partition(client, keys, "t", 0, lambda p: p.leader == 2, timeout=TTL + 4)
        assert p.isr == [2] and c2.active
        tg.cancel_scope.cancel()
