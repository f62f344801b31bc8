"""MetadataManager in cluster mode against a real etcd, through Brokers built but not serving:
cluster id, strays, local logs and partition listeners, internal topics, auto-creation,
controlled shutdown."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from kbroker.broker import Broker, StartupError
from kbroker.codec.error_codes import ErrorCode
from kbroker.etcd import EtcdClient
from kbroker.etcd.server import EtcdServer
from kbroker.metadata import errors as E
from kbroker.metadata.cluster_id import MetaPropertiesError
from kbroker.metadata.cluster_state import ClusterKeys, encode_partition
from kbroker.metadata.manager import MetadataManager, PartitionChange
from kbroker.metadata.model import NewTopicRequest
from kbroker.testing import make_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Brokers that elect no controller: the test plays the controller's part by hand."""
    monkeypatch.setattr(MetadataManager, "_start_controller", lambda self, tg: None)


async def _until(check: Callable[[], object], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


@asynccontextmanager
async def _brokers(etcd: EtcdServer, root: Path, nodes: list[int], **overrides: str) -> AsyncIterator[list[Broker]]:
    """Joined brokers (not listening); their metadata shut down (controlled) on exit."""
    prefix = overrides.pop("etcd.prefix", f"/t/{uuid.uuid4().hex}/")
    built = [_broker(etcd, root, n, prefix, **overrides) for n in nodes]
    try:
        async with anyio.create_task_group() as tg:
            for b in built:
                await b.metadata.start(tg)
            yield built
            for b in built:
                await b.metadata.shutdown()
            tg.cancel_scope.cancel()
    finally:
        for b in built:
            b.log_manager.shutdown()


def _broker(etcd: EtcdServer, root: Path, node: int, prefix: str, **overrides: str) -> Broker:
    values = {"node.id": str(node), "etcd.endpoints": etcd.endpoint, "etcd.prefix": prefix,
              "broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "200",
              "controlled.shutdown.max.wait.ms": "500", **overrides}
    b = Broker(make_config(root / f"b{node}", values))
    b.endpoints["PLAINTEXT"] = ("127.0.0.1", 9000 + node)
    return b


async def test_cluster_id_is_created_once_and_must_match(etcd_server: EtcdServer, tmp_path: Path) -> None:
    prefix = f"/t/{uuid.uuid4().hex}/"
    async with _brokers(etcd_server, tmp_path, [1, 2], **{"etcd.prefix": prefix}) as (a, b):
        assert a.metadata.cluster_id and a.metadata.cluster_id == b.metadata.cluster_id
        assert f"cluster.id={a.metadata.cluster_id}" in (tmp_path / "b2" / "meta.properties").read_text()
        client = EtcdClient([etcd_server.endpoint])
        stored = await client.get(prefix + "cluster-id")
        await client.aclose()
        assert stored is not None and stored.value.decode() == a.metadata.cluster_id
    # A broker whose log dir belongs to another cluster refuses to join.
    stranger = tmp_path / "b3"
    stranger.mkdir()
    (stranger / "meta.properties").write_text("node.id=3\nversion=1\ncluster.id=another-cluster-id-xx\n")
    with pytest.raises(StartupError, match="doesn't match") as refused:
        _broker(etcd_server, tmp_path, 3, prefix)
    assert isinstance(refused.value.__cause__, MetaPropertiesError)
    # Its data dir is not held: a broker of that other cluster may still use it.
    Broker(make_config(stranger, {"node.id": "3"})).log_manager.shutdown()


async def test_unreachable_etcd_fails_the_start(tmp_path: Path) -> None:
    from kbroker.etcd import EtcdUnavailable
    from kbroker.etcd.server import free_port

    # Without cluster.id the broker asks etcd for it before anything else.
    with pytest.raises(StartupError, match="cannot join the cluster") as refused:
        Broker(make_config(tmp_path / "b", {"etcd.endpoints": f"http://127.0.0.1:{free_port()}"}))
    assert isinstance(refused.value.__cause__, EtcdUnavailable)
    # With one, reading the cluster's security state (kept in etcd) fails the start the same way.
    with pytest.raises(StartupError, match="cannot read etcd key"):
        Broker(make_config(tmp_path / "c", {"etcd.endpoints": f"http://127.0.0.1:{free_port()}",
                                           "cluster.id": "abcdefghijklmnopqrstuv"}))
    # Neither start left its data dir locked.
    for d in ("b", "c"):
        Broker(make_config(tmp_path / d, {})).log_manager.shutdown()


async def test_single_broker_answers_as_before(tmp_path: Path) -> None:
    b = Broker(make_config(tmp_path / "b", {"node.id": "4"}))
    b.endpoints["PLAINTEXT"] = ("h", 1)
    try:
        md = b.metadata
        async with anyio.create_task_group() as tg:
            await md.start(tg)
        assert not md.clustered and md.cluster is None and md.lease_valid()
        assert (md.controller_id, md.live_broker_ids(), md.broker_endpoint(4, "PLAINTEXT")) == (4, [4], ("h", 1))
        assert md.broker_endpoint(5, "PLAINTEXT") is None and md.rack_of(4) is None
        await md.shutdown()
    finally:
        b.log_manager.shutdown()


async def test_local_logs_follow_the_image(etcd_server: EtcdServer, tmp_path: Path) -> None:
    # A stray from an earlier life of node 2: deleted once the image is known.
    prefix = f"/t/{uuid.uuid4().hex}/"
    pre = _broker(etcd_server, tmp_path, 2, prefix)
    pre.log_manager.get_or_create_log("ghost", 0, pre.default_log_config())
    pre.log_manager.shutdown()
    async with _brokers(etcd_server, tmp_path, [1, 2], **{"broker.rack": "r", "etcd.prefix": prefix}) as (a, b):
        assert not (tmp_path / "b2" / "ghost-0").exists()
        assert a.metadata.live_broker_ids() == [1, 2]
        assert [(n.node_id, n.port, n.rack) for n in b.metadata.brokers("PLAINTEXT")] == [(1, 9001, "r"), (2, 9002, "r")]
        assert b.metadata.brokers("OTHER") == [] and b.metadata.broker_endpoint(1, "PLAINTEXT") == ("127.0.0.1", 9001)
        assert b.metadata.rack_of(1) == "r" and b.metadata.rack_of(9) is None
        seen: list[list[PartitionChange]] = []
        logs_at_call: list[bool] = []

        def listener(changes: Sequence[PartitionChange]) -> None:
            seen.append(list(changes))
            logs_at_call.append(all(b.log_manager.get_log(new.topic, new.index) is not None
                                    for _, new in changes if new is not None))

        b.metadata.on_partitions_changed.append(listener)
        results = await a.metadata.create_topics_async(
            [NewTopicRequest("t", -1, -1, {}, {0: [1, 2]}), NewTopicRequest("t", 1, 1),
             NewTopicRequest("bad", 1, 3), NewTopicRequest("solo", -1, -1, {}, {0: [1]})])
        assert results[0] == E.OK and results[1][0] == ErrorCode.INVALID_REQUEST and results[3] == E.OK
        assert results[2][0] == ErrorCode.INVALID_REPLICATION_FACTOR
        # Answered once a's own image has it; b sees it soon after.
        topic = a.metadata.topic("t")
        assert topic is not None and topic.partitions[0].isr == [1, 2]
        await _until(lambda: b.metadata.topic("t") is not None and b.metadata.topic("solo") is not None)
        assert b.log_manager.get_log("t", 0) is not None and b.log_manager.get_log("solo", 0) is None
        assert a.log_manager.get_log("solo", 0) is not None
        assert [[(old, new.index if new else None) for old, new in c] for c in seen] == [[(None, 0)]]
        assert logs_at_call == [True]
        # The partition moves off node 2 (as a reassignment would): its listener first, then its log goes.
        assert a.metadata.cluster is not None
        keys: ClusterKeys = a.metadata.cluster.keys
        moved = a.metadata.cluster.image.partition("t", 0)
        assert moved is not None
        moved.replicas, moved.isr, moved.partition_epoch = [1], [1], 1
        await a.metadata.cluster.client.put(keys.partition("t", 0), encode_partition(moved))
        await _until(lambda: len(seen) == 2)
        before, after = seen[1][0]
        assert before is not None and after is not None and 2 in before.replicas and after.replicas == [1]
        await _until(lambda: not (tmp_path / "b2" / "t-0").exists())
        assert b.log_manager.get_log("t", 0) is None
        # Deletion: every local log goes, listeners are told.
        deleted: list[str] = []
        a.metadata.on_topic_deleted.append(lambda t: deleted.append(t.name))
        assert await a.metadata.delete_topic("t") == (E.OK, "t")
        assert deleted == ["t"] and a.metadata.topic("t") is None
        await _until(lambda: not (tmp_path / "b1" / "t-0").exists())
        assert (tmp_path / "b1" / "solo-0").exists()
        assert (await b.metadata.delete_topic("t"))[0][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_grow_and_alter_configs(etcd_server: EtcdServer, tmp_path: Path) -> None:
    async with _brokers(etcd_server, tmp_path, [1, 2]) as (a, b):
        assert (await a.metadata.create_topics_async([NewTopicRequest("g", 1, 2)]))[0] == E.OK
        await _until(lambda: b.metadata.topic("g") is not None)
        assert await b.metadata.create_partitions_async("g", 3) == E.OK
        assert sorted(b.metadata.topic("g").partitions) == [0, 1, 2]  # type: ignore[union-attr]
        assert all(len(p.replicas) == 2 for p in b.metadata.topic("g").partitions.values())  # type: ignore[union-attr]
        assert (await a.metadata.create_partitions_async("g", 2))[0] == ErrorCode.INVALID_PARTITIONS
        assert (await a.metadata.create_partitions_async("g", 4, [[7]]))[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
        assert await a.metadata.create_partitions_async("g", 4, [[2]]) == E.OK
        assert a.metadata.partition("g", 3).replicas == [2]  # type: ignore[union-attr]
        result = await a.metadata.alter_topic_configs_async("g", {"retention.ms": "5000"})
        assert result == E.OK and a.metadata.topic("g").configs == {"retention.ms": "5000"}  # type: ignore[union-attr]
        await _until(lambda: b.metadata.topic("g").configs == {"retention.ms": "5000"})  # type: ignore[union-attr]
        assert b.log_manager.get_log("g", 0).config.retention_ms == 5000  # type: ignore[union-attr]
        bad = await b.metadata.alter_topic_configs_async("g", {"retention.ms": "x"})
        assert bad[0] == ErrorCode.INVALID_CONFIG
        assert (await b.metadata.alter_topic_configs_async("nope", {}))[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_internal_topics_need_enough_brokers_and_auto_creation_is_retriable(
        etcd_server: EtcdServer, tmp_path: Path) -> None:
    async with _brokers(etcd_server, tmp_path, [1, 2], **{"offsets.topic.replication.factor": "3",
                                                        "transaction.state.log.replication.factor": "2",
                                                        "offsets.topic.num.partitions": "3",
                                                        "transaction.state.log.num.partitions": "2"}) as (a, b):
        code, message = a.metadata.ensure_internal_topic("__consumer_offsets")
        assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE and "'3'" in message  # type: ignore[operator]
        first = a.metadata.ensure_internal_topic("__transaction_state")
        assert first[0] == ErrorCode.LEADER_NOT_AVAILABLE
        assert a.metadata.auto_create("__transaction_state")[0] == ErrorCode.LEADER_NOT_AVAILABLE
        await _until(lambda: b.metadata.topic("__transaction_state") is not None)
        txn = b.metadata.topic("__transaction_state")
        assert txn is not None and txn.internal and len(txn.partitions) == 2
        assert all(sorted(p.replicas) == [1, 2] for p in txn.partitions.values())
        assert a.metadata.ensure_internal_topic("__transaction_state") == E.OK
        assert a.metadata.auto_create("auto")[0] == ErrorCode.LEADER_NOT_AVAILABLE
        await _until(lambda: a.metadata.topic("auto") is not None and b.metadata.topic("auto") is not None)


async def test_controlled_shutdown_waits_for_leaderships_to_move(etcd_server: EtcdServer, tmp_path: Path, no_controller: None) -> None:
    async with _brokers(etcd_server, tmp_path, [1, 2], **{"controlled.shutdown.max.wait.ms": "20000"}) as (a, b):
        assert (await a.metadata.create_topics_async(
            [NewTopicRequest("c", -1, -1, {}, {0: [1, 2]}), NewTopicRequest("c1", -1, -1, {}, {0: [1]})]))[0] == E.OK
        await _until(lambda: b.metadata.topic("c") is not None)
        cluster = b.metadata.cluster
        assert cluster is not None
        done = anyio.Event()

        async def stop_a() -> None:
            await a.metadata.shutdown()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_a)
            # Broker 1 announces its shutdown; p1 (no other replica) need not move, p0 must.
            await _until(lambda: cluster.image.brokers.get(1) is not None and cluster.image.brokers[1].shutting_down)
            await anyio.sleep(0.3)
            assert not done.is_set()
            # What the controller does: p0's leadership moves to broker 2, broker 1 leaves its ISR.
            p0 = cluster.image.partition("c", 0)
            assert p0 is not None
            p0.leader, p0.leader_epoch, p0.isr, p0.partition_epoch = 2, 1, [2], 1
            await cluster.client.put(cluster.keys.partition("c", 0), encode_partition(p0))
            with anyio.fail_after(5):
                await done.wait()
        # The lease was revoked: gone at once.
        await _until(lambda: b.metadata.live_broker_ids() == [2], timeout=3)
        assert not a.metadata.lease_valid()


async def test_controlled_shutdown_gives_up_after_its_max_wait(etcd_server: EtcdServer, tmp_path: Path, no_controller: None) -> None:
    async with _brokers(etcd_server, tmp_path, [1, 2]) as (a, b):
        assert (await a.metadata.create_topics_async([NewTopicRequest("w", -1, -1, {}, {0: [1, 2]})]))[0] == E.OK
        start = anyio.current_time()
        await a.metadata.shutdown()  # nobody moves the leadership: 500 ms, then leave anyway
        assert 0.4 <= anyio.current_time() - start < 5
        await _until(lambda: b.metadata.live_broker_ids() == [2], timeout=3)


async def test_topic_recreated_under_its_name_gets_fresh_logs(etcd_server: EtcdServer, tmp_path: Path) -> None:
    from kbroker.etcd.client import Delete, Put
    from kbroker.metadata.cluster_state import TopicRecord

    async with _brokers(etcd_server, tmp_path, [1, 2]) as (a, b):
        assert (await a.metadata.create_topics_async([NewTopicRequest("r", -1, -1, {}, {0: [1, 2]})]))[0] == E.OK
        await _until(lambda: b.log_manager.get_log("r", 0) is not None)
        old = b.log_manager.get_log("r", 0)
        old_id = b.metadata.topic("r").topic_id  # type: ignore[union-attr]
        cluster = a.metadata.cluster
        assert cluster is not None and old is not None and old.topic_id == old_id
        # Deleted and created again while b was not watching: b's re-read (as after a compacted
        # watch) sees only that the topic's id changed.
        await b.metadata.cluster.stop(revoke=False)  # type: ignore[union-attr]
        new_id = uuid.uuid4()
        p0 = cluster.image.partition("r", 0)
        assert p0 is not None
        deleted: list[uuid.UUID] = []
        b.metadata.on_topic_deleted.append(lambda t: deleted.append(t.topic_id))
        await cluster.client.txn([], [Delete(cluster.keys.topic_partitions("r"), prefix=True),
                                      Delete(cluster.keys.topic("r"))])
        await cluster.client.txn([], [Put(cluster.keys.topic("r"), TopicRecord("r", new_id, 1).encode()),
                                      Put(cluster.keys.partition("r", 0), encode_partition(p0))])
        b_cluster = b.metadata.cluster
        assert b_cluster is not None
        await b_cluster.applied(await b_cluster.load())
        assert deleted == [old_id] and b.metadata.topic("r").topic_id == new_id  # type: ignore[union-attr]
        fresh = b.log_manager.get_log("r", 0)
        assert fresh is not None and fresh is not old and fresh.topic_id == new_id


async def test_placement_uses_racks_when_every_broker_has_one(etcd_server: EtcdServer, tmp_path: Path) -> None:
    prefix = f"/t/{uuid.uuid4().hex}/"
    racked = [_broker(etcd_server, tmp_path, n, prefix, **{"broker.rack": rack})
              for n, rack in ((1, "a"), (2, "a"), (3, "b"), (4, "b"))]
    try:
        async with anyio.create_task_group() as tg:
            for b in racked:
                await b.metadata.start(tg)
            md = racked[0].metadata
            await _until(lambda: md.live_broker_ids() == [1, 2, 3, 4])
            assert (await md.create_topics_async([NewTopicRequest("racks", 8, 2)]))[0] == E.OK
            topic = md.topic("racks")
            assert topic is not None
            for p in topic.partitions.values():
                assert {md.rack_of(r) for r in p.replicas} == {"a", "b"}
            # A broker without a rack joins: placement ignores racks rather than failing.
            plain = _broker(etcd_server, tmp_path, 5, prefix)
            racked.append(plain)
            await plain.metadata.start(tg)
            await _until(lambda: 5 in md.live_broker_ids())
            assert (await md.create_topics_async([NewTopicRequest("mixed", 5, 3)]))[0] == E.OK
            for b in racked:
                await b.metadata.shutdown()
            tg.cancel_scope.cancel()
    finally:
        for b in racked:
            b.log_manager.shutdown()


async def test_controller_id_follows_the_controller_key(etcd_server: EtcdServer, tmp_path: Path, no_controller: None) -> None:
    async with _brokers(etcd_server, tmp_path, [3, 1, 2]) as (a, b, c):
        cluster = a.metadata.cluster
        assert cluster is not None
        # No controller elected: clients are pointed at a live broker (the lowest id), as KRaft
        # brokers point them at a random live broker.
        await _until(lambda: a.metadata.live_broker_ids() == [1, 2, 3])
        assert a.metadata.controller_id == 1
        revision = await cluster.client.put(cluster.keys.controller, b'{"id": 2}', lease=c.metadata.cluster.lease_id)  # type: ignore[union-attr]
        assert await cluster.wait_applied(revision)
        assert a.metadata.controller_id == 2 and cluster.image.controller_id == 2
        # The controller's broker leaves (its lease ends): the key goes with it.
        await c.metadata.shutdown()
        await _until(lambda: cluster.image.controller_id == -1)
        assert a.metadata.controller_id == 1
        # A controller key naming a broker that is not live is not handed to clients.
        revision = await cluster.client.put(cluster.keys.controller, b'{"id": 9}')
        assert await cluster.wait_applied(revision)
        assert a.metadata.controller_id == 1


async def test_many_new_local_logs_are_prepared_off_the_loop(etcd_server: EtcdServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from kbroker.metadata.topic_logs import OFF_LOOP_PARTITIONS, TopicLogs

    threads: list[str] = []
    real_prepare = TopicLogs.prepare

    def prepare(self: TopicLogs, topic: object, partitions: object) -> object:
        threads.append(threading.current_thread().name)
        return real_prepare(self, topic, partitions)  # type: ignore[arg-type]

    monkeypatch.setattr(TopicLogs, "prepare", prepare)
    n = 2 * OFF_LOOP_PARTITIONS
    async with _brokers(etcd_server, tmp_path, [1, 2]) as (a, b):
        await _until(lambda: a.metadata.live_broker_ids() == [1, 2])
        assert (await a.metadata.create_topics_async([NewTopicRequest("bulk", n, 2)]))[0] == E.OK
        await _until(lambda: b.metadata.topic("bulk") is not None)
        for broker in (a, b):
            assert all(broker.log_manager.get_log("bulk", i) is not None for i in range(n))
        main = threading.main_thread().name
        assert len(threads) == 2 and main not in threads
        # A few more partitions: opened on the loop, as before.
        assert await a.metadata.create_partitions_async("bulk", n + 2) == E.OK
        await _until(lambda: b.log_manager.get_log("bulk", n + 1) is not None)
        assert len(threads) == 2
