"""KIP-345 static membership on the coordinator."""

from __future__ import annotations

import pytest

from kbroker.groups import GroupConfig, GroupState

from .helpers import coordinator, subscription

pytestmark = pytest.mark.anyio

NONE, UNKNOWN_MEMBER, FENCED = 0, 25, 82
#: An initial delay lets both members into the first generation together.
DELAYED = GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=1000)


async def static_group(h, instances=("i-a", "i-b"), **kw):  # type: ignore[no-untyped-def]
    """Static members join (no MEMBER_ID_REQUIRED round trip) and sync; returns {instance: member id}."""
    boxes = {i: h.start_join("g", instance_id=i, client_id=f"c-{i}", **kw) for i in instances}
    await h.settle()
    await h.advance(1000)  # a member joined during the delay: it is extended once
    await h.advance(1000)
    results = {i: b["result"] for i, b in boxes.items()}
    assert all(r.error == NONE for r in results.values())
    ids = {i: r.member_id for i, r in results.items()}
    leader = next(iter(results.values())).leader_id
    syncs = [h.start_sync("g", 1, m, {x: f"assign-{i}".encode() for i, x in ids.items()} if m == leader else None,
                          instance_id=i) for i, m in ids.items()]
    await h.settle()
    assert all(s["result"].error == NONE for s in syncs)
    return ids


async def test_static_restart_keeps_assignment_without_rebalance() -> None:
    async with coordinator(DELAYED) as h:
        ids = await static_group(h)
        group = h.group("g")
        old_b = ids["i-b"]
        assert old_b.startswith("i-b-")
        r = await h.join("g", instance_id="i-b", client_id="c-i-b")
        assert r.error == NONE and r.member_id != old_b and r.generation_id == 1
        assert r.leader_id != r.member_id and not r.members  # follower: no assignment to compute
        assert group.state is GroupState.STABLE and group.generation_id == 1
        s = h.start_sync("g", 1, r.member_id, instance_id="i-b")
        await h.settle()
        assert s["result"].assignment == b"assign-i-b"
        # The old incarnation is fenced; the other member never sees a rebalance.
        assert h.coord.heartbeat("g", old_b, "i-b", 1) == FENCED
        assert h.coord.heartbeat("g", ids["i-a"], "i-a", 1) == NONE
        assert h.coord.heartbeat("g", r.member_id, "i-b", 1) == NONE


async def test_static_leader_restart_is_told_old_leader_id() -> None:
    async with coordinator(DELAYED) as h:
        ids = await static_group(h)
        group = h.group("g")
        leader_instance = next(i for i, m in ids.items() if group.is_leader(m))
        r = await h.join("g", instance_id=leader_instance)
        assert r.leader_id == ids[leader_instance] != r.member_id  # so it does not reassign
        assert group.is_leader(r.member_id) and group.state is GroupState.STABLE
        r9 = await h.join("g", instance_id=leader_instance, version=9)
        assert r9.skip_assignment and r9.leader_id == r9.member_id and len(r9.members) == 2


async def test_static_rejoin_with_new_subscription_rebalances() -> None:
    async with coordinator(DELAYED) as h:
        ids = await static_group(h)
        box = h.start_join("g", instance_id="i-b", protocols=[("range", subscription("t", "u"))])
        await h.settle()
        group = h.group("g")
        assert group.state is GroupState.PREPARING_REBALANCE and "result" not in box
        assert h.coord.heartbeat("g", ids["i-a"], "i-a", 1) == 27


async def test_static_member_leave_by_instance_id() -> None:
    async with coordinator(DELAYED) as h:
        await static_group(h)
        err, results = h.coord.leave_group("g", [("", "i-a"), ("", "i-zzz")])
        assert [e for _, _, e in results] == [NONE, UNKNOWN_MEMBER]
        assert h.group("g").static_member_id("i-a") is None


async def test_unknown_member_with_known_instance_is_fenced() -> None:
    async with coordinator(DELAYED) as h:
        await static_group(h)
        r = await h.join("g", "i-a-stale", instance_id="i-a")
        assert r.error == FENCED
        res = await h.coord.sync_group("g", 1, "i-a-stale", "i-a", None, None, {})
        assert res.error == FENCED


async def test_static_member_survives_reload_and_rejoins_without_rebalance() -> None:
    async with coordinator(DELAYED) as h:
        ids = await static_group(h)
        log = h.log
    async with coordinator(DELAYED, log=log) as h2:
        group = h2.group("g")
        assert group.state is GroupState.STABLE and group.generation_id == 1
        assert set(group.static_members) == {"i-a", "i-b"}
        assert group.get(ids["i-a"]).assignment == b"assign-i-a"
        r = await h2.join("g", instance_id="i-a")
        assert r.error == NONE and r.generation_id == 1
        s = h2.start_sync("g", 1, r.member_id, instance_id="i-a")
        await h2.settle()
        assert s["result"].assignment == b"assign-i-a"
        assert group.state is GroupState.STABLE


async def test_absent_static_member_keeps_slot_until_session_expiry() -> None:
    async with coordinator(DELAYED) as h:
        ids = await static_group(h, session_ms=10_000, rebalance_ms=5_000)
        # i-a rejoins with a change; i-b is down and does not rejoin within the rebalance timeout.
        box = h.start_join("g", ids["i-a"], instance_id="i-a", protocols=[("range", subscription("t", "u"))],
                           session_ms=10_000, rebalance_ms=5_000)
        await h.settle()
        await h.advance(5_000)
        r = box["result"]
        assert r.error == NONE and r.generation_id == 2
        group = h.group("g")
        assert group.has(ids["i-b"])  # static: kept through the rebalance
        await h.advance(5_000)  # its session runs out
        assert not group.has(ids["i-b"])
