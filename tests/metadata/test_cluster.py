"""ClusterMetadata against a real etcd: registration and lease, the image, writes and their CAS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from kbroker.clock import SYSTEM_CLOCK, Clock, ManualClock
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.etcd import EtcdClient, EtcdUnavailable
from kbroker.etcd.server import EtcdServer
from kbroker.metadata.cluster import ClusterImage, ClusterMetadata, ImageChanges
from kbroker.metadata.cluster_state import BrokerRegistration, ClusterKeys, TopicRecord, encode_partition
from kbroker.metadata.model import PartitionInfo

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _holder(**overrides: str) -> ConfigHolder:
    props = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "100", **overrides}
    return ConfigHolder(BrokerConfig(props))


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


@asynccontextmanager
async def _member(etcd: EtcdServer, keys: ClusterKeys, node: int, *, clock: Clock = SYSTEM_CLOCK,
                  rack: str | None = None, join: bool = True) -> AsyncIterator[ClusterMetadata]:
    client = EtcdClient([etcd.endpoint])
    cm = ClusterMetadata(client, keys, node, _holder(), clock, listeners=lambda: {"PLAINTEXT": ("h", 9000 + node)},
                         rack=rack)
    try:
        async with anyio.create_task_group() as tg:
            await cm.load()
            if join:
                await cm.join(tg)
            yield cm
            await cm.stop(revoke=True)
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()


def _keys() -> ClusterKeys:
    return ClusterKeys(f"/test/{uuid.uuid4().hex}/")


async def test_members_see_each_other_and_leave(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1, rack="r1") as a:
        assert a.lease_valid() and a.lease_id
        assert a.ttl == 2
        async with _member(etcd_server, keys, 2) as b:
            await _until(lambda: a.image.live_broker_ids() == [1, 2])
            assert b.image.live_broker_ids() == [1, 2]
            assert b.image.brokers[1].rack == "r1"
            assert b.image.brokers[1].listeners == {"PLAINTEXT": ("h", 9001)}
        # b revoked its lease on the way out: gone at once, no session timeout.
        await _until(lambda: a.image.live_broker_ids() == [1])


async def test_lease_validity_follows_the_clock() -> None:
    clock = ManualClock()
    cm = ClusterMetadata(EtcdClient(["http://127.0.0.1:1"]), _keys(), 1, _holder(), clock, listeners=dict)
    cm._valid_until = clock.monotonic() + cm.ttl
    assert cm.lease_valid()
    clock.advance(1999)
    assert cm.lease_valid()
    clock.advance(1)
    assert not cm.lease_valid()
    await cm.client.aclose()


async def test_expired_lease_drops_the_broker_then_it_registers_again(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a, _member(etcd_server, keys, 2) as b:
        await _until(lambda: a.image.live_broker_ids() == [1, 2])
        first = a.image.brokers[2].incarnation
        seen: list[ImageChanges] = []
        a.on_change = seen.append
        # The lease ends behind b's back (as when etcd expired it during a pause).
        await a.client.revoke_lease(b.lease_id)
        await _until(lambda: any(c.brokers.get(2, (None, None))[1] is None and 2 in c.brokers for c in seen))
        # b's next keepalive finds it gone and registers again as a new incarnation.
        await _until(lambda: 2 in a.image.brokers and a.image.brokers[2].incarnation != first)
        assert b.lease_valid()


async def test_a_new_lease_counts_only_once_the_image_caught_up(etcd_server: EtcdServer) -> None:
    # A broker back from a long pause registers again at once; until its image holds every change
    # made before that (leaderships moved meanwhile) it must not act as a leader.
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a:
        gate = anyio.Event()
        real_applied = a.applied

        async def slow_applied(changes: ImageChanges) -> None:
            await gate.wait()
            await real_applied(changes)

        a.applied = slow_applied  # type: ignore[method-assign]
        revision = await a._register()  # what the keepalive loop does when it finds its lease expired
        assert a.applied_revision < revision and not a.lease_valid()
        gate.set()
        await _until(lambda: a.applied_revision >= revision)
        assert a.lease_valid()


async def test_stopped_keepalive_expires_after_the_ttl(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a:
        client = EtcdClient([etcd_server.endpoint])
        b = ClusterMetadata(client, keys, 2, _holder(), SYSTEM_CLOCK, listeners=dict)
        async with anyio.create_task_group() as tg:
            await b.load()
            await b.join(tg)
            await _until(lambda: 2 in a.image.brokers)
            await b.stop(revoke=False)  # frozen: no keepalive any more
            start = anyio.current_time()
            await _until(lambda: 2 not in a.image.brokers, timeout=15)
            assert anyio.current_time() - start >= 1.0
            assert not b.lease_valid()
        await client.aclose()


async def test_create_topic_is_guarded_and_waited_for(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a, _member(etcd_server, keys, 2) as b:
        await _until(lambda: a.image.live_broker_ids() == [1, 2])
        record = TopicRecord("t", uuid.uuid4(), 2, {"cleanup.policy": "compact"})
        revision = await a.create_topic(record, {0: [1, 2], 1: [2, 3]})
        assert revision is not None
        assert a.image.revision < revision or a.image.topics.get("t") is not None
        assert await a.wait_applied(revision)
        p0, p1 = a.image.partition("t", 0), a.image.partition("t", 1)
        assert p0 is not None and (p0.leader, p0.isr, p0.leader_epoch) == (1, [1, 2], 0)
        # Broker 3 is not live: not in the ISR; the first live replica leads.
        assert p1 is not None and (p1.leader, p1.replicas, p1.isr) == (2, [2, 3], [2])
        assert a.image.topics["t"].configs == {"cleanup.policy": "compact"}
        # The other broker's creation of the same name loses.
        assert await b.create_topic(TopicRecord("t", uuid.uuid4(), 1), {0: [2]}) is None
        await _until(lambda: b.image.topics.get("t") == record)


async def test_large_topic_needs_several_transactions(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a:
        revision = await a.create_topic(TopicRecord("big", uuid.uuid4(), 300), {i: [1] for i in range(300)})
        assert revision is not None and await a.wait_applied(revision)
        assert len(a.image.topic_partitions("big")) == 300
        grown = await a.grow_topic("big", 500, {i: [1] for i in range(300, 500)})
        assert grown is not None and await a.wait_applied(grown)
        assert len(a.image.topic_partitions("big")) == 500


async def test_grow_configs_delete(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a, _member(etcd_server, keys, 2) as b:
        await _until(lambda: len(a.image.brokers) == 2)
        rev = await a.create_topic(TopicRecord("g", uuid.uuid4(), 1), {0: [1, 2]})
        assert rev is not None and await a.wait_applied(rev) and await b.wait_applied(rev)
        grown = await b.grow_topic("g", 3, {1: [2, 1], 2: [1, 2]})
        assert grown is not None and await a.wait_applied(grown)
        assert a.image.topics["g"].partitions == 3 and a.image.partition("g", 2).leader == 1  # type: ignore[union-attr]
        # a's view is fresh, b's change made it stale: a's own stale CAS would lose; a fresh one wins.
        configs = await a.set_topic_configs("g", {"retention.ms": "1000"})
        assert configs is not None and await b.wait_applied(configs)
        assert b.image.topics["g"].configs == {"retention.ms": "1000"}
        deleted = await b.delete_topic("g")
        assert deleted is not None and await a.wait_applied(deleted)
        assert "g" not in a.image.topics and a.image.topic_partitions("g") == {}
        assert not any(t == "g" for t, _ in a.image.partitions)
        assert await a.delete_topic("g") is None
        assert await a.set_topic_configs("g", {}) is None
        assert await a.grow_topic("g", 5, {}) is None


async def test_stale_grow_loses_the_cas(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a:
        rev = await a.create_topic(TopicRecord("s", uuid.uuid4(), 1), {0: [1]})
        assert rev is not None and await a.wait_applied(rev)
        kv = a.image.raw[keys.topic("s")]
        # Another writer changes the topic before a's image has it: a's CAS must lose.
        async with _member(etcd_server, keys, 2, join=False) as other:
            changed = await other.set_topic_configs("s", {"x": "y"})
        assert changed is not None and await a.wait_applied(changed)
        a.image.raw[keys.topic("s")] = kv  # pretend the change had not arrived yet
        assert await a.grow_topic("s", 2, {1: [1]}) is None


async def test_alter_isr_needs_a_valid_lease(etcd_server: EtcdServer) -> None:
    # A broker back from a crash within its session leads at its old epoch until the controller
    # fences it: its ISR change must not make that leadership look current.
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a, _member(etcd_server, keys, 2):
        await _until(lambda: len(a.image.brokers) == 2)
        rev = await a.create_topic(TopicRecord("v", uuid.uuid4(), 1), {0: [1, 2]})
        assert rev is not None and await a.wait_applied(rev)
        start = a.image.partition("v", 0)
        assert start is not None
        valid_until, a._valid_until = a._valid_until, 0.0
        assert await a.alter_isr(start, [1]) is None
        assert a.image.partition("v", 0) == start
        a._valid_until = valid_until
        assert await a.alter_isr(start, [1]) is not None


async def test_alter_isr_compare_and_swap(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1) as a, _member(etcd_server, keys, 2) as b:
        await _until(lambda: len(a.image.brokers) == 2)
        rev = await a.create_topic(TopicRecord("i", uuid.uuid4(), 1), {0: [1, 2]})
        assert rev is not None and await a.wait_applied(rev)
        start = a.image.partition("i", 0)
        assert start is not None and start.isr == [1, 2]
        shrunk = await a.alter_isr(start, [1])
        assert shrunk is not None and shrunk.isr == [1] and shrunk.partition_epoch == 1 and shrunk.leader_epoch == 0
        # The old version is stale now: refused without writing.
        assert await a.alter_isr(start, [1, 2]) is None
        # A concurrent writer (the controller moving the leadership) wins the race.
        await _until(lambda: b.image.partition("i", 0) == shrunk)
        moved = PartitionInfo("i", 0, 2, 1, [1, 2], [2], partition_epoch=2)
        key = keys.partition("i", 0)
        stale_view = a.image.raw[key]
        await b.client.put(key, encode_partition(moved))
        a.image.raw[key] = stale_view  # a has not seen the write yet: etcd refuses its CAS
        a.image.partitions[("i", 0)] = shrunk
        assert await a.alter_isr(shrunk, [1, 2]) is None
        # Re-decided on the fresh image: a is no longer the leader; b's own change goes through.
        await _until(lambda: b.image.partition("i", 0) == moved)
        expanded = await b.alter_isr(moved, [2, 1])
        assert expanded is not None and expanded.isr == [2, 1] and expanded.partition_epoch == 3


async def test_alter_isr_of_a_broker_whose_lease_expired_is_refused(etcd_server: EtcdServer) -> None:
    # As Kafka's controller refusing an AlterPartition of a fenced broker (STALE_BROKER_EPOCH): a
    # leader whose registration etcd dropped (the controller moves its leaderships now) writes no
    # ISR, even while its image still shows it leading the partition at the same epochs.
    keys = _keys()
    client = EtcdClient([etcd_server.endpoint])
    slow = ConfigHolder(BrokerConfig({"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "5000"}))
    a = ClusterMetadata(client, keys, 1, slow, SYSTEM_CLOCK, listeners=lambda: {"PLAINTEXT": ("h", 9001)})
    try:
        async with anyio.create_task_group() as tg, _member(etcd_server, keys, 2) as b:
            await a.load()
            await a.join(tg)
            await _until(lambda: len(a.image.brokers) == 2)
            rev = await a.create_topic(TopicRecord("i", uuid.uuid4(), 1), {0: [1, 2]})
            assert rev is not None and await a.wait_applied(rev)
            start = a.image.partition("i", 0)
            assert start is not None and start.leader == 1 and start.isr == [1, 2]
            await b.client.revoke_lease(a.lease_id)  # as etcd expiring it: a's registration goes
            assert await a.alter_isr(start, [1]) is None
            stored = await b.client.get(keys.partition("i", 0))
            assert stored is not None and stored.mod_revision == a.image.mod_revision(keys.partition("i", 0))
            await a.stop(revoke=False)
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()


async def test_a_restarted_broker_does_not_lead_at_its_previous_incarnations_epochs(etcd_server: EtcdServer) -> None:
    # Broker 1 restarts within its lease: the image still has it leading at epoch 0. As Kafka fences
    # a new incarnation before it serves, its lease counts only once those leaderships were
    # written again (by the controller, under new leader epochs); partitions written after its
    # registration, and others' leaderships, do not hold it back.
    keys = _keys()
    async with _member(etcd_server, keys, 2) as b:
        async with _member(etcd_server, keys, 1) as old:
            rev = await old.create_topic(TopicRecord("r", uuid.uuid4(), 2), {0: [1, 2], 1: [2, 1]})
            assert rev is not None and await old.wait_applied(rev)
            assert old.lease_valid()
            await _until(lambda: b.image.revision >= rev)
        async with _member(etcd_server, keys, 1) as new:
            assert not new.lease_valid()
            led = new.image.partition("r", 0)
            assert led is not None and led.leader == 1
            fenced = PartitionInfo("r", 0, 1, 2, [1, 2], [1], partition_epoch=1)
            put = await b.client.put(keys.partition("r", 0), encode_partition(fenced))
            assert await new.wait_applied(put)
            assert new.lease_valid()


async def test_broken_watch_reads_again(etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1, join=False) as a:
        real_watch = a.client.watch
        calls = 0

        async def flaky(prefix: str, start: int) -> AsyncIterator[Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise EtcdUnavailable("stream broke")
            async for events in real_watch(prefix, start):
                yield events

        monkeypatch.setattr(a.client, "watch", flaky)
        async with anyio.create_task_group() as tg:
            await a.join(tg)  # its own registration arrives through the re-read, then the second watch
            assert calls == 2
            async with _member(etcd_server, keys, 2, join=False) as other:
                rev = await other.create_topic(TopicRecord("w", uuid.uuid4(), 1), {0: [1]})
            assert rev is not None and await a.wait_applied(rev, timeout=10)
            assert "w" in a.image.topics and a.image.live_broker_ids() == [1]
            await a.stop()
            tg.cancel_scope.cancel()


async def test_compacted_watch_reads_everything_again(etcd_server: EtcdServer) -> None:
    keys = _keys()
    async with _member(etcd_server, keys, 1, join=False) as a:
        seen: list[ImageChanges] = []
        a.on_change = seen.append
        # Writes after a's read, then compaction past them: the watch from a's revision is refused.
        async with _member(etcd_server, keys, 2, join=False) as other:
            rev = await other.create_topic(TopicRecord("c", uuid.uuid4(), 1), {0: [1]})
        assert rev is not None
        async with httpx.AsyncClient() as http:
            response = await http.post(etcd_server.endpoint + "/v3/kv/compaction",
                                       json={"revision": str(rev), "physical": True})
            assert response.status_code == 200
        async with anyio.create_task_group() as tg:
            await a.join(tg)
            assert await a.wait_applied(rev, timeout=10)
            assert "c" in a.image.topics and a.image.partition("c", 0) is not None
            assert any("c" in c.topics for c in seen)
            await a.stop()
            tg.cancel_scope.cancel()


def test_image_reset_reports_the_difference() -> None:
    from kbroker.etcd.client import KeyValue

    keys = ClusterKeys("/p/")
    image = ClusterImage(keys)
    reg = BrokerRegistration(1, {"PLAINTEXT": ("h", 1)})
    first = image.reset([KeyValue(keys.broker(1), reg.encode(), 2, 2, 1),
                         KeyValue(keys.controller, b'{"id": 1}', 3, 3, 1),
                         KeyValue(keys.topic("t"), TopicRecord("t", uuid.uuid4(), 1).encode(), 4, 4, 1)], 4)
    assert set(first.brokers) == {1} and first.controller and set(first.topics) == {"t"}
    assert image.controller_id == 1
    second = image.reset([KeyValue(keys.broker(1), reg.encode(), 2, 2, 1),
                          KeyValue(keys.broker(2), b"not json", 5, 5, 1)], 5)
    assert second.topics["t"][1] is None and second.controller and image.controller_id == -1
    assert 1 not in second.brokers and 2 not in image.brokers  # undecodable: ignored
    assert image.revision == 5


async def test_etcd_outage_ends_lease_validity_then_the_member_recovers(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    try:
        EtcdServer.executable()
    except Exception as e:  # as the shared fixture: skipped where etcd is not installed
        pytest.skip(str(e))
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    try:
        keys = _keys()
        async with _member(etcd, keys, 1) as a:
            assert a.lease_valid()
            etcd.stop()
            # Keepalives fail: the lease is known valid only until TTL after the last answered one.
            start = anyio.current_time()
            await _until(lambda: not a.lease_valid(), timeout=10)
            assert 1.0 <= anyio.current_time() - start <= a.ttl + 1
            failures = [r for r in caplog.records if "keepalive failed" in r.getMessage()]
            assert len(failures) == 1  # once per outage, not at every heartbeat
            # etcd back (same ports and data): the member's lease is valid again (etcd restores
            # leases at restart, or the member registers under a new one) and its registration
            # is attached to it; its image catches up by reading again.
            etcd.start()
            await _until(lambda: a.lease_valid(), timeout=15)
            await _until(lambda: a.image.live_broker_ids() == [1], timeout=15)
            kv = await a.client.get(keys.broker(1))
            assert kv is not None and kv.lease == a.lease_id
    finally:
        etcd.stop()


def test_image_ignores_foreign_documents_and_illegal_topic_names() -> None:
    from kbroker.etcd.client import KeyValue

    keys = ClusterKeys("/p/")
    image = ClusterImage(keys)
    record = TopicRecord("t", uuid.uuid4(), 1).encode()
    state = encode_partition(PartitionInfo("t", 0, 1, 0, [1], [1]))
    changes = image.reset([
        # A name that would be a log directory outside log.dirs, and one that is not a topic name.
        KeyValue(keys.topic("../../escaped"), record, 2, 2, 1),
        KeyValue(keys.partition("../../escaped", 0), state, 3, 3, 1),
        KeyValue(keys.topic("a b"), record, 4, 4, 1),
        KeyValue(keys.partition("a b", 0), state, 5, 5, 1),
        # Valid JSON of the wrong shapes.
        KeyValue(keys.broker(3), b'{"id": 3, "listeners": []}', 6, 6, 1),
        KeyValue(keys.topic("u"), b'{"id": "x", "partitions": 1, "configs": []}', 7, 7, 1),
        KeyValue(keys.partition("t", 0), b'{"leader": 1, "leader_epoch": 0, "replicas": 5, "isr": [1]}', 8, 8, 1),
        KeyValue(keys.topic("t"), record, 9, 9, 1),
    ], 9)
    assert set(image.topics) == {"t"} and not image.partitions and not image.brokers
    assert set(changes.topics) == {"t"} and not changes.partitions
