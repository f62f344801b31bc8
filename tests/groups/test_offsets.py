"""Committed offsets on the coordinator: validation, fetch, delete, retention, reload."""

from __future__ import annotations

import pytest

from kbroker.groups import GroupConfig, GroupState, OffsetAndMetadata
from kbroker.groups.records import GroupKey, OffsetKey, decode_key
from kbroker.groups.storage import StoredRecord

from .helpers import coordinator, subscription

pytestmark = pytest.mark.anyio

NONE, METADATA_TOO_LARGE, ILLEGAL_GENERATION, UNKNOWN_MEMBER = 0, 12, 22, 25
NON_EMPTY, NOT_FOUND, SUBSCRIBED = 68, 69, 86


def om(offset: int, metadata: str = "", ts: int = 0) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, 3, metadata, ts)


async def member_group(h):  # type: ignore[no-untyped-def]
    first = await h.join("g", protocols=[("range", subscription("t"))])
    r = await h.join("g", first.member_id, protocols=[("range", subscription("t"))])
    s = h.start_sync("g", 1, r.member_id, {r.member_id: b"x"})
    await h.settle()
    assert s["result"].error == NONE
    return r.member_id


async def test_simple_commit_and_fetch() -> None:
    async with coordinator() as h:
        c = h.coord
        res = await c.commit_offsets("simple", -1, "", None, {("t", 0): om(5, "meta"), ("t", 1): om(7)})
        assert res == {("t", 0): NONE, ("t", 1): NONE}
        assert h.group("simple").state is GroupState.EMPTY
        got = c.fetch_offsets("simple", [("t", 0), ("t", 2)])
        assert got[("t", 0)] == om(5, "meta") and got[("t", 2)] is None
        assert list(c.fetch_offsets("simple", None)) == [("t", 0), ("t", 1)]
        assert c.fetch_offsets("nobody", None) == {}
        assert c.fetch_offsets("nobody", [("t", 0)]) == {("t", 0): None}
        assert [g.group_id for g in c.list_groups()] == ["simple"]


async def test_commit_validation() -> None:
    async with coordinator() as h:
        c = h.coord
        assert await c.commit_offsets("new", 3, "m", None, {("t", 0): om(1)}) == {("t", 0): ILLEGAL_GENERATION}
        member = await member_group(h)
        assert await c.commit_offsets("g", 1, member, None, {("t", 0): om(1)}) == {("t", 0): NONE}
        assert await c.commit_offsets("g", 2, member, None, {("t", 0): om(1)}) == {("t", 0): ILLEGAL_GENERATION}
        assert await c.commit_offsets("g", 1, "x", None, {("t", 0): om(1)}) == {("t", 0): UNKNOWN_MEMBER}
        # Without member and generation a non-empty group refuses simple commits.
        assert await c.commit_offsets("g", -1, "", None, {("t", 0): om(1)}) == {("t", 0): UNKNOWN_MEMBER}
        big = "x" * 5000
        assert await c.commit_offsets("g", 1, member, None, {("t", 1): om(1, big)}) == {("t", 1): METADATA_TOO_LARGE}


async def test_commit_allowed_while_preparing_rebalance() -> None:
    async with coordinator() as h:
        member = await member_group(h)
        await h.join("g")  # a newcomer (pending) ...
        box = h.start_join("g", member)  # ... and the old member rejoins
        await h.settle()
        assert h.group("g").state is GroupState.PREPARING_REBALANCE
        assert await h.coord.commit_offsets("g", 1, member, None, {("t", 0): om(9)}) == {("t", 0): NONE}
        assert "result" not in box


async def test_delete_groups() -> None:
    async with coordinator() as h:
        c = h.coord
        await member_group(h)
        await c.commit_offsets("empty", -1, "", None, {("t", 0): om(1)})
        res = await c.delete_groups(["g", "empty", "missing"])
        assert res == {"g": NON_EMPTY, "empty": NONE, "missing": NOT_FOUND}
        assert c.manager.get("empty") is None
        assert h.log.partitions is not None
        tombstones = [decode_key(r.key) for recs in h.log.partitions.values() for r in recs
                      if isinstance(r, StoredRecord) and r.value is None]
        assert OffsetKey("empty", "t", 0) in tombstones and GroupKey("empty") in tombstones


async def test_offset_delete_respects_subscriptions() -> None:
    async with coordinator() as h:
        c = h.coord
        member = await member_group(h)
        await c.commit_offsets("g", 1, member, None, {("t", 0): om(1), ("old", 0): om(2)})
        err, res = await c.delete_offsets("g", [("t", 0), ("old", 0)])
        assert err == NONE and res == {("t", 0): SUBSCRIBED, ("old", 0): NONE}
        assert set(c.fetch_offsets("g", None)) == {("t", 0)}
        err, _ = await c.delete_offsets("missing", [("t", 0)])
        assert err == NOT_FOUND


async def test_offsets_survive_reload() -> None:
    async with coordinator() as h:
        member = await member_group(h)
        await h.coord.commit_offsets("g", 1, member, None, {("t", 0): om(42, "hello", 5)})
        await h.coord.commit_offsets("s", -1, "", None, {("u", 3): om(7)})
        await h.coord.delete_offsets("s", [("u", 3)])
        await h.coord.commit_offsets("s", -1, "", None, {("u", 4): om(8)})
        log = h.log
    async with coordinator(log=log) as h2:
        assert h2.coord.fetch_offsets("g", None) == {("t", 0): om(42, "hello", 5)}
        assert h2.coord.fetch_offsets("s", None) == {("u", 4): om(8)}


async def test_retention_expires_offsets_of_empty_groups_only() -> None:
    day = 24 * 60 * 60 * 1000
    config = GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=0, offsets_retention_ms=day,
                         retention_check_interval_ms=60_000)
    async with coordinator(config) as h:
        c = h.coord
        now = h.clock.time_ms()
        member = await member_group(h)
        await c.commit_offsets("g", 1, member, None, {("t", 0): om(1, ts=now)})
        await c.commit_offsets("simple", -1, "", None, {("t", 0): om(1, ts=now)})
        h.clock.advance(day)
        for _ in range(100):  # keep the member alive
            c.heartbeat("g", member, None, 1)
        await h.advance(60_000)
        assert c.manager.get("simple") is None  # expired and then removed
        assert c.fetch_offsets("g", None)  # stable and subscribed to t: kept
        c.leave_group("g", [(member, None)])
        await h.settle()
        h.clock.advance(day)
        assert await c.expire_offsets() == 1
        assert c.manager.get("g") is None
