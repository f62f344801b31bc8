"""A follower against a leader that answers badly on purpose: it stays bounded and correct."""

from __future__ import annotations

import anyio
import pytest

from .fake_leader import FETCH, OFFSET_FOR_LEADER_EPOCH, FakeLeader, batch
from .test_fetcher import LEADER, TP, Follower, follower, leader, seed  # noqa: F401

pytestmark = pytest.mark.anyio


async def test_a_diverging_epoch_at_our_own_end_backs_off(leader: FakeLeader, follower: Follower) -> None:  # noqa: F811
    lp = leader.partition("t")
    lp.batches = [batch(0, 5, 0)]
    lp.high_watermark = 5
    plog = follower.log()
    seed(plog, batch(0, 5, 0), hw=5)
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: len(leader.requests_of(FETCH)) >= 1)
    # From now on every fetch answers a divergence at the follower's own end: nothing to cut.
    original = leader._fetch

    async def diverging(request):  # type: ignore[no-untyped-def]
        lp.diverging = (0, 5)
        return await original(request)

    leader._fetch = diverging  # type: ignore[method-assign]
    before = len(leader.requests)
    await anyio.sleep(0.5)
    asked = len(leader.requests) - before
    assert plog.log_end_offset == 5
    # replica.fetch.backoff.ms is 50: a bounded follower asks about 10 times in half a second.
    assert asked <= 30, asked



@pytest.mark.parametrize("answer", [(0, -5), (-1, -7)])
async def test_a_negative_end_offset_for_our_epoch_truncates_nothing(
        leader: FakeLeader, follower: Follower, answer: tuple[int, int]) -> None:  # noqa: F811
    lp = leader.partition("t")
    lp.batches = [batch(0, 5, 0)]
    lp.high_watermark = 5
    lp.epoch_answer = answer
    plog = follower.log()
    seed(plog, batch(0, 5, 0), hw=5)
    follower.fetchers.add(TP, LEADER, 1)
    await follower.until(lambda: len(leader.requests_of(OFFSET_FOR_LEADER_EPOCH)) >= 2)
    # Refused as a broken answer (asked again after the back-off), the log kept whole.
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 5)
    assert not leader.requests_of(FETCH)
    lp.epoch_answer = None
    await follower.until(lambda: len(leader.requests_of(FETCH)) >= 1)
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 5)


async def test_a_negative_log_end_from_list_offsets_truncates_nothing(
        leader: FakeLeader, follower: Follower) -> None:  # noqa: F811
    lp = leader.partition("t")
    lp.batches = [batch(0, 3, 0)]
    lp.high_watermark = 3
    plog = follower.log()
    seed(plog, batch(0, 5, 0), hw=3)
    original = leader._list_offsets

    def negative(request):  # type: ignore[no-untyped-def]
        out = original(request)
        out["topics"][0]["partitions"][0]["offset"] = -9
        return out

    leader._list_offsets = negative  # type: ignore[method-assign]
    lp.epoch_answer = (0, 5)  # the truncation keeps all: the fetch at 5 is out of range
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: len(leader.requests_of(2)) >= 2)
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 5)


def test_a_log_refuses_truncation_to_a_negative_offset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kbroker.clock import SYSTEM_CLOCK
    from kbroker.log.errors import LogError

    from .follower_log import open_follower_log

    plog = open_follower_log(tmp_path / "t-0", SYSTEM_CLOCK)
    try:
        seed(plog, batch(0, 5, 0))
        with pytest.raises(LogError):
            plog.truncate_to(-1)
        assert (plog.log_start_offset, plog.log_end_offset) == (0, 5)
    finally:
        plog.close()


async def test_a_fetch_answer_leaving_out_our_partitions_backs_off(
        leader: FakeLeader, follower: Follower) -> None:  # noqa: F811
    lp = leader.partition("t")
    lp.batches = [batch(0, 5, 0)]
    lp.high_watermark = 5
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 5)

    async def nothing(request):  # type: ignore[no-untyped-def]
        return {"responses": []}  # at once, without the long poll, naming no partition

    leader._fetch = nothing  # type: ignore[method-assign]
    before = len(leader.requests)
    await anyio.sleep(0.5)
    asked = len(leader.requests) - before
    assert asked <= 30, asked


async def test_a_leader_answering_empty_fetches_at_once_is_asked_at_the_wait_pace(
        leader: FakeLeader, follower: Follower) -> None:  # noqa: F811
    lp = leader.partition("t")
    lp.batches = [batch(0, 5, 0)]
    lp.high_watermark = 5
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 5)
    # The fake leader does not hold empty fetches: replica.fetch.wait.max.ms (50) paces them.
    before = len(leader.requests_of(FETCH))
    await anyio.sleep(0.5)
    assert len(leader.requests_of(FETCH)) - before <= 15
    lp.append(3)  # new records still come at that pace
    await follower.until(lambda: plog.log_end_offset == 8, timeout=2)
