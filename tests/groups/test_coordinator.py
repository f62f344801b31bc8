"""The rebalance protocol, driven directly on a ManualClock."""

from __future__ import annotations

import pytest

from kbroker.groups import GroupConfig, GroupState
from kbroker.groups.consumer_protocol import EMPTY_ASSIGNMENT

from .helpers import coordinator, subscription

pytestmark = pytest.mark.anyio

NONE, ILLEGAL_GENERATION, INCONSISTENT = 0, 22, 23
UNKNOWN_MEMBER, INVALID_SESSION, REBALANCING = 25, 26, 27
MEMBER_ID_REQUIRED, FENCED = 79, 82


async def stable_group(h, n: int = 2, group: str = "g", **kw):  # type: ignore[no-untyped-def]
    """Join ``n`` dynamic members and sync them; returns their member ids (leader first)."""
    ids = [(await h.join(group, **kw)).member_id for _ in range(n)]
    boxes = [h.start_join(group, mid, **kw) for mid in ids]
    await h.settle()
    results = [b["result"] for b in boxes]
    assert all(r.error == NONE for r in results)
    gen = results[0].generation_id
    leader = results[0].leader_id
    syncs = [h.start_sync(group, gen, mid, {m: f"a-{m}".encode() for m in ids} if mid == leader else None)
             for mid in ids]
    await h.settle()
    assert all(s["result"].error == NONE for s in syncs)
    assert h.coord.manager.get(group).state is GroupState.STABLE
    return [leader] + [m for m in ids if m != leader]


async def test_first_join_requires_member_id_then_leads() -> None:
    async with coordinator() as h:
        first = await h.join("g")
        assert first.error == MEMBER_ID_REQUIRED and first.member_id.startswith("client-")
        r = await h.join("g", first.member_id)
        assert r.error == NONE and r.generation_id == 1 and r.leader_id == first.member_id
        assert r.protocol_name == "range" and r.protocol_type == "consumer"
        assert [m[0] for m in r.members] == [first.member_id]
        assert h.group("g").state is GroupState.COMPLETING_REBALANCE


async def test_v3_join_needs_no_member_id_round_trip() -> None:
    async with coordinator() as h:
        r = await h.join("g", version=3)
        assert r.error == NONE and r.member_id and r.generation_id == 1


async def test_members_metadata_only_to_leader_and_protocol_vote() -> None:
    async with coordinator() as h:
        ids = [(await h.join("g")).member_id for _ in range(3)]
        prefs = [[("range", b"r0"), ("roundrobin", b"o0")],
                 [("roundrobin", b"o1"), ("range", b"r1")],
                 [("roundrobin", b"o2"), ("sticky", b"s2")]]
        boxes = [h.start_join("g", mid, protocols=p) for mid, p in zip(ids, prefs, strict=True)]
        await h.settle()
        results = [b["result"] for b in boxes]
        assert {r.protocol_name for r in results} == {"roundrobin"}  # the only one all support
        leaders = [r for r in results if r.members]
        assert len(leaders) == 1 and leaders[0].member_id == leaders[0].leader_id
        assert sorted(md for _, _, md in leaders[0].members) == [b"o0", b"o1", b"o2"]
        assert all(r.leader_id == leaders[0].member_id for r in results)


async def test_protocol_majority_vote() -> None:
    async with coordinator() as h:
        ids = [(await h.join("g")).member_id for _ in range(3)]
        prefs = [[("range", b""), ("roundrobin", b"")], [("range", b""), ("roundrobin", b"")],
                 [("roundrobin", b""), ("range", b"")]]
        boxes = [h.start_join("g", mid, protocols=p) for mid, p in zip(ids, prefs, strict=True)]
        await h.settle()
        assert {b["result"].protocol_name for b in boxes} == {"range"}


async def test_inconsistent_protocols_rejected() -> None:
    async with coordinator() as h:
        await stable_group(h, 1)
        r = await h.join("g", protocols=[("sticky", b"")])
        assert r.error == INCONSISTENT
        r = await h.join("g", protocol_type="connect")
        assert r.error == INCONSISTENT
        r = await h.join("other", protocols=[])
        assert r.error == INCONSISTENT


async def test_session_timeout_bounds() -> None:
    async with coordinator(GroupConfig(min_session_timeout_ms=6000, max_session_timeout_ms=10_000,
                                       initial_rebalance_delay_ms=0)) as h:
        assert (await h.join("g", session_ms=5999)).error == INVALID_SESSION
        assert (await h.join("g", session_ms=10_001)).error == INVALID_SESSION
        assert (await h.join("g", session_ms=6000)).error == MEMBER_ID_REQUIRED


async def test_sync_fans_out_assignment_and_fills_missing_with_empty() -> None:
    async with coordinator() as h:
        ids = [(await h.join("g")).member_id for _ in range(2)]
        boxes = [h.start_join("g", mid) for mid in ids]
        await h.settle()
        leader = boxes[0]["result"].leader_id
        follower = next(m for m in ids if m != leader)
        follower_sync = h.start_sync("g", 1, follower)
        await h.settle()
        assert "result" not in follower_sync  # waits for the leader
        leader_sync = h.start_sync("g", 1, leader, {leader: b"mine"})
        await h.settle()
        assert leader_sync["result"].assignment == b"mine"
        assert follower_sync["result"].error == NONE
        assert follower_sync["result"].assignment == EMPTY_ASSIGNMENT
        assert h.group("g").state is GroupState.STABLE
        # Stable: a repeated SyncGroup returns the stored assignment at once.
        again = h.start_sync("g", 1, leader)
        await h.settle()
        assert again["result"].assignment == b"mine"


async def test_sync_errors() -> None:
    async with coordinator() as h:
        leader, follower = await stable_group(h)
        r = await h.coord.sync_group("g", 5, leader, None, None, None, {})
        assert r.error == ILLEGAL_GENERATION
        r = await h.coord.sync_group("g", 1, "nobody", None, None, None, {})
        assert r.error == UNKNOWN_MEMBER
        r = await h.coord.sync_group("g", 1, leader, None, "consumer", "roundrobin", {})
        assert r.error == INCONSISTENT
        r = await h.coord.sync_group("g", 1, leader, None, "consumer", "range", {})
        assert r.error == NONE and r.protocol_name == "range"


async def test_heartbeat_errors_and_rebalance_signal() -> None:
    async with coordinator() as h:
        leader, follower = await stable_group(h)
        c = h.coord
        assert c.heartbeat("g", follower, None, 1) == NONE
        assert c.heartbeat("g", "nobody", None, 1) == UNKNOWN_MEMBER
        assert c.heartbeat("g", follower, None, 7) == ILLEGAL_GENERATION
        assert c.heartbeat("nogroup", follower, None, 1) == UNKNOWN_MEMBER
        newcomer = await h.join("g")
        box = h.start_join("g", newcomer.member_id)
        await h.settle()
        assert h.group("g").state is GroupState.PREPARING_REBALANCE
        assert c.heartbeat("g", follower, None, 1) == REBALANCING
        assert "result" not in box


async def test_session_expiry_removes_member_and_rebalances() -> None:
    async with coordinator() as h:
        leader, follower = await stable_group(h, session_ms=5000)
        for _ in range(3):  # the leader keeps heartbeating, the follower went silent
            await h.advance(2000)
            h.coord.heartbeat("g", leader, None, 1)
        group = h.group("g")
        assert not group.has(follower) and group.state is GroupState.PREPARING_REBALANCE
        assert h.coord.heartbeat("g", leader, None, 1) == REBALANCING
        r = await h.join("g", leader, session_ms=5000)
        assert r.error == NONE and r.generation_id == 2 and [m[0] for m in r.members] == [leader]


async def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    async with coordinator() as h:
        leader, follower = await stable_group(h, session_ms=60_000, rebalance_ms=10_000)
        box = h.start_join("g", leader, session_ms=60_000, rebalance_ms=10_000, protocols=[("range", subscription("t", "u"))])
        await h.settle()
        assert "result" not in box
        await h.advance(9_000)
        h.coord.heartbeat("g", follower, None, 1)
        assert "result" not in box
        await h.advance(1_000)
        r = box["result"]
        assert r.error == NONE and r.generation_id == 2 and [m[0] for m in r.members] == [leader]
        assert h.coord.heartbeat("g", follower, None, 1) == UNKNOWN_MEMBER


async def test_members_that_never_sync_are_dropped() -> None:
    async with coordinator() as h:
        ids = [(await h.join("g", rebalance_ms=5000)).member_id for _ in range(2)]
        boxes = [h.start_join("g", mid, rebalance_ms=5000) for mid in ids]
        await h.settle()
        leader = boxes[0]["result"].leader_id
        s = h.start_sync("g", 1, leader, {m: b"x" for m in ids})
        await h.settle()
        assert s["result"].error == NONE
        await h.advance(5000)
        group = h.group("g")
        assert list(group.members) == [leader] and group.state is GroupState.PREPARING_REBALANCE


async def test_leave_group_single_and_batch() -> None:
    async with coordinator() as h:
        ids = await stable_group(h, 3)
        err, results = h.coord.leave_group("g", [(ids[1], None), ("ghost", None)])
        assert err == NONE and [e for _, _, e in results] == [NONE, UNKNOWN_MEMBER]
        group = h.group("g")
        assert group.state is GroupState.PREPARING_REBALANCE and not group.has(ids[1])
        err, results = h.coord.leave_group("g", [(ids[0], None), (ids[2], None)])
        assert [e for _, _, e in results] == [NONE, NONE]
        await h.settle()
        assert group.state is GroupState.EMPTY and group.generation_id == 2
        err, results = h.coord.leave_group("missing", [("x", None)])
        assert err == NONE and results[0][2] == UNKNOWN_MEMBER


async def test_leave_pending_member_unblocks_barrier() -> None:
    async with coordinator() as h:
        leader, follower = await stable_group(h)
        pending = await h.join("g")  # MEMBER_ID_REQUIRED: pending
        boxes = [h.start_join("g", m) for m in (leader, follower)]
        await h.settle()
        assert all("result" not in b for b in boxes)  # the barrier waits for the pending member
        h.coord.leave_group("g", [(pending.member_id, None)])
        await h.settle()
        assert all(b["result"].generation_id == 2 for b in boxes)


async def test_initial_rebalance_delay() -> None:
    async with coordinator(GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=3000)) as h:
        a = await h.join("g")
        box_a = h.start_join("g", a.member_id)
        await h.settle()
        await h.advance(2000)
        b = await h.join("g")
        box_b = h.start_join("g", b.member_id)
        await h.settle()
        await h.advance(1000)  # the first delay ends, but a member joined during it: extended
        assert "result" not in box_a
        await h.advance(3000)
        assert box_a["result"].generation_id == box_b["result"].generation_id == 1
        assert len(box_a["result"].members or box_b["result"].members) == 2


async def test_commit_during_completing_rebalance_is_retriable() -> None:
    async with coordinator() as h:
        ids = [(await h.join("g")).member_id for _ in range(1)]
        await h.join("g", ids[0])
        res = await h.coord.commit_offsets("g", 1, ids[0], None, {("t", 0): _om(5)})
        assert res == {("t", 0): REBALANCING}


def _om(offset: int, metadata: str = ""):  # type: ignore[no-untyped-def]
    from kbroker.groups import OffsetAndMetadata

    return OffsetAndMetadata(offset, -1, metadata, 1000)
