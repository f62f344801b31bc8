"""A follower against a leader that answers badly on purpose: it stays bounded and correct."""

from __future__ import annotations

import anyio
import pytest

from .fake_leader import FETCH, FakeLeader, batch
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

