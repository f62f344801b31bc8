"""The etcd client against a real etcd server: keys, transactions, leases, watches, failures."""

from __future__ import annotations

import anyio
import pytest

from kbroker.etcd import Compare, Delete, EtcdClient, EtcdCompacted, EtcdUnavailable, Put, Range
from kbroker.etcd.client import prefix_end
from kbroker.etcd.server import EtcdServer, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_prefix_end() -> None:
    assert prefix_end("a/") == b"a0"
    assert prefix_end("a\xff") == "a\xff".encode()[:-1] + b"\xc0"
    assert prefix_end("") == b"\0"


async def test_put_get_prefix_delete(etcd_server: EtcdServer) -> None:
    c = EtcdClient([etcd_server.endpoint])
    try:
        rev = await c.put("t1/a", b"1")
        await c.put("t1/b", b"\x00\xff")
        await c.put("t10", b"other prefix")
        kv = await c.get("t1/a")
        assert kv is not None and kv.value == b"1" and kv.mod_revision == rev and kv.version == 1
        kvs, revision = await c.get_prefix("t1/")
        assert [k.key for k in kvs] == ["t1/a", "t1/b"] and kvs[1].value == b"\x00\xff"
        assert revision >= rev
        assert await c.get("t1/missing") is None
        assert await c.delete("t1/", prefix=True) == 2
        assert (await c.get_prefix("t1/"))[0] == []
        assert await c.get("t10") is not None
    finally:
        await c.aclose()


async def test_txn_compare_and_swap(etcd_server: EtcdServer) -> None:
    c = EtcdClient([etcd_server.endpoint])
    try:
        first = await c.txn([Compare.absent("t2/k")], [Put("t2/k", b"v1")])
        again = await c.txn([Compare.absent("t2/k")], [Put("t2/k", b"v2")], [Range("t2/k")])
        assert first.succeeded and not again.succeeded
        assert again.ranges[0][0].value == b"v1"
        kv = again.ranges[0][0]
        swapped = await c.txn([Compare.mod_revision("t2/k", kv.mod_revision)], [Put("t2/k", b"v3")])
        stale = await c.txn([Compare.mod_revision("t2/k", kv.mod_revision)], [Put("t2/k", b"v4")])
        assert swapped.succeeded and not stale.succeeded
        assert (await c.get("t2/k")).value == b"v3"  # type: ignore[union-attr]
        assert (await c.txn([Compare.equals("t2/k", b"v3")], [Delete("t2/k")])).succeeded
        assert await c.get("t2/k") is None
    finally:
        await c.aclose()


async def test_lease_expiry_deletes_keys(etcd_server: EtcdServer) -> None:
    c = EtcdClient([etcd_server.endpoint])
    try:
        lease = await c.grant_lease(2)
        await c.put("t3/alive", b"x", lease=lease)
        assert await c.keepalive(lease) >= 1
        await c.revoke_lease(lease)
        assert await c.get("t3/alive") is None
        assert await c.keepalive(lease) == 0  # gone
        await c.revoke_lease(lease)  # revoking twice is harmless
    finally:
        await c.aclose()


async def test_watch_sees_puts_and_deletes_in_order(etcd_server: EtcdServer) -> None:
    c = EtcdClient([etcd_server.endpoint])
    try:
        _, rev = await c.get_prefix("t4/")
        seen: list[tuple[str, str, bytes]] = []

        async def watch() -> None:
            async for events in c.watch("t4/", rev + 1):
                seen.extend((e.type, e.kv.key, e.kv.value) for e in events)
                if len(seen) >= 3:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await c.put("t4/x", b"1")
            await c.put("t4/x", b"2")
            await c.put("t5/outside", b"no")
            await c.delete("t4/x")
        assert seen == [("PUT", "t4/x", b"1"), ("PUT", "t4/x", b"2"), ("DELETE", "t4/x", b"")]
    finally:
        await c.aclose()


async def test_watch_of_compacted_revision(etcd_server: EtcdServer) -> None:
    c = EtcdClient([etcd_server.endpoint])
    try:
        await c.put("t6/a", b"1")
        rev = await c.put("t6/a", b"2")
        await c._post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        with pytest.raises(EtcdCompacted):
            async for _ in c.watch("t6/", 1):
                pass
    finally:
        await c.aclose()


async def test_unreachable_endpoints_then_failover(etcd_server: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    c = EtcdClient([dead], timeout=1.0)
    try:
        with pytest.raises(EtcdUnavailable):
            await c.get("x")
    finally:
        await c.aclose()
    c = EtcdClient([dead, etcd_server.endpoint], timeout=1.0)
    try:
        await c.put("t7/k", b"v")
        assert (await c.get("t7/k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await c.aclose()
