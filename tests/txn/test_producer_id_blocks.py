"""Producer id blocks from etcd: unique across brokers taking blocks concurrently."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from kbroker.etcd import EtcdClient
from kbroker.etcd.server import EtcdServer, free_port
from kbroker.metadata.cluster_state import ClusterKeys
from kbroker.txn.producer_id_blocks import EtcdProducerIdBlocks, ProducerIdBlockError
from kbroker.txn.producer_ids import PRODUCER_IDS_FILE, ProducerIdManager, ProducerIdsUnavailable
from tests.etcd.conftest import etcd_server as etcd_server  # noqa: F401  (the shared fixture)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_two_managers_never_share_an_id(etcd_server: EtcdServer, tmp_path: Path) -> None:  # noqa: F811
    keys = ClusterKeys("/pid-test-1/")
    clients = [EtcdClient([etcd_server.endpoint]) for _ in range(2)]
    try:
        managers = [ProducerIdManager(tmp_path / str(i), block_size=7,
                                      block_source=EtcdProducerIdBlocks(c, keys, node_id=i))
                    for i, c in enumerate(clients)]
        got: list[list[int]] = [[], []]

        async def allocate(i: int, n: int) -> None:
            for _ in range(n):
                await managers[i].ready()
                got[i].append(managers[i].generate_producer_id())

        async with anyio.create_task_group() as tg:
            for i in range(2):
                for _ in range(3):  # several callers per broker share its block fetches
                    tg.start_soon(allocate, i, 40)
        every = got[0] + got[1]
        assert len(every) == 240
        assert len(set(every)) == 240, "an id was handed out twice"
        assert set(got[0]).isdisjoint(got[1])
        kv = await clients[0].get(keys.producer_ids)
        assert kv is not None and kv.json()["next_producer_id"] >= max(every) + 1
        assert not (tmp_path / "0" / PRODUCER_IDS_FILE).exists()  # the local file is not used
    finally:
        for c in clients:
            await c.aclose()


async def test_blocks_follow_each_other_and_loser_retries(etcd_server: EtcdServer) -> None:  # noqa: F811
    keys = ClusterKeys("/pid-test-2/")
    client = EtcdClient([etcd_server.endpoint])
    try:
        a, b = EtcdProducerIdBlocks(client, keys, 1), EtcdProducerIdBlocks(client, keys, 2)
        starts = await asyncio_gather(*(src(10) for src in (a, b, a, b, a)))
        assert sorted(starts) == [0, 10, 20, 30, 40]
        assert await a(5) == 50
        doc = (await client.get(keys.producer_ids))
        assert doc is not None and doc.json() == {"broker": 1, "next_producer_id": 55}
    finally:
        await client.aclose()


async def asyncio_gather(*coros: object) -> list[int]:
    out: list[int] = [0] * len(coros)

    async def run(i: int, c: object) -> None:
        out[i] = await c  # type: ignore[misc]

    async with anyio.create_task_group() as tg:
        for i, c in enumerate(coros):
            tg.start_soon(run, i, c)
    return out


async def test_malformed_document_is_refused(etcd_server: EtcdServer) -> None:  # noqa: F811
    keys = ClusterKeys("/pid-test-3/")
    client = EtcdClient([etcd_server.endpoint])
    try:
        await client.put(keys.producer_ids, b"not json")
        with pytest.raises(ProducerIdBlockError):
            await EtcdProducerIdBlocks(client, keys, 1)(10)
        await client.put(keys.producer_ids, json.dumps({"next_producer_id": -4}).encode())
        with pytest.raises(ProducerIdBlockError):
            await EtcdProducerIdBlocks(client, keys, 1)(10)
        # The manager turns a failing source into a retriable error, and recovers afterwards.
        manager = ProducerIdManager(Path("/nonexistent"), block_size=3,
                                    block_source=EtcdProducerIdBlocks(client, keys, 1))
        with pytest.raises(ProducerIdsUnavailable):
            await manager.ready()
        with pytest.raises(ProducerIdsUnavailable):
            manager.generate_producer_id()
        await client.put(keys.producer_ids, json.dumps({"next_producer_id": 100}).encode())
        await manager.ready()
        assert [manager.generate_producer_id() for _ in range(3)] == [100, 101, 102]
    finally:
        await client.aclose()


async def test_unreachable_etcd_is_unavailable(tmp_path: Path) -> None:
    client = EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout=1.0)
    try:
        manager = ProducerIdManager(tmp_path, block_source=EtcdProducerIdBlocks(client, ClusterKeys("/x/"), 1))
        with pytest.raises(ProducerIdsUnavailable):
            await manager.ready()
    finally:
        await client.aclose()
