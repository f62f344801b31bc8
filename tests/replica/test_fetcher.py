"""ReplicaFetchers against small fake leaders: truncation, fetching, errors, reconnects, stop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.clock import SYSTEM_CLOCK
from kbroker.codec import Request
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log import LogConfig
from kbroker.records.batch import iter_headers
from kbroker.replica.fetcher import (
    ReplicaFetchers,
    fetcher_id,
    java_string_hash,
    truncation_offset,
    whole_batches,
)

from .fake_leader import FETCH, LIST_OFFSETS, OFFSET_FOR_LEADER_EPOCH, FakeLeader, batch, refused_endpoint
from .follower_log import open_follower_log

pytestmark = pytest.mark.anyio

NODE = 2
LEADER = 1
TP = TopicPartition("t", 0)
FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER = 74, 75, 6


class Follower:
    """A ReplicaFetchers with real logs on disk, and a way to wait for what it does."""

    def __init__(self, root: Path, leaders: dict[int, FakeLeader], **config: str) -> None:
        self.root = root
        self.logs: dict[tuple[str, int], Any] = {}
        self.endpoints: dict[int, tuple[str, int]] = {i: leader.endpoint for i, leader in leaders.items()}
        self.changes: list[TopicPartition] = []
        self._poke = anyio.Event()
        settings = {"replica.fetch.backoff.ms": "50", "replica.fetch.wait.max.ms": "50",
                    "replica.socket.timeout.ms": "3000"}
        settings.update(config)
        self.fetchers = ReplicaFetchers(
            node_id=NODE, config=ConfigHolder(BrokerConfig(settings)), clock=SYSTEM_CLOCK,
            endpoint=self.endpoints.get, logs=lambda t, p: self.logs.get((t, p)), on_change=self._changed)
        for leader in leaders.values():
            leader.on_request = self._seen

    def log(self, tp: TopicPartition = TP) -> Any:
        if tp not in self.logs:
            self.logs[tp] = open_follower_log(self.root / f"{tp.topic}-{tp.partition}", SYSTEM_CLOCK)
        return self.logs[tp]

    def _changed(self, tp: TopicPartition) -> None:
        self.changes.append(tp)
        self.poke()

    def _seen(self, request: Request) -> None:
        self.poke()

    def poke(self) -> None:
        self._poke.set()
        self._poke = anyio.Event()

    async def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds, re-checked after each change or leader request, and
        every 20 ms for states no event announces (a parked partition, a retired task)."""
        with anyio.fail_after(timeout):
            while not predicate():
                with anyio.move_on_after(0.02):
                    await self._poke.wait()

    def close(self) -> None:
        for plog in self.logs.values():
            plog.close()


def batches_of(plog: Any) -> list[tuple[int, int, int]]:
    """``(base offset, last offset, leader epoch)`` of every batch in a follower log."""
    out = []
    pos = plog.log_start_offset
    while pos < plog.log_end_offset:
        for _, h in iter_headers(bytes(plog.read(pos, 1 << 20))):
            out.append((h.base_offset, h.base_offset + h.last_offset_delta, h.partition_leader_epoch))
            pos = h.base_offset + h.last_offset_delta + 1
    return out


def leader_batches(leader: FakeLeader, tp: TopicPartition = TP) -> list[tuple[int, int, int]]:
    out = []
    for data in leader.partition(tp.topic, tp.partition).batches:
        (_, h), = iter_headers(data)
        out.append((h.base_offset, h.base_offset + h.last_offset_delta, h.partition_leader_epoch))
    return out


@pytest.fixture
async def leader() -> AsyncIterator[FakeLeader]:
    async with FakeLeader() as fake:
        yield fake


@pytest.fixture
async def follower(tmp_path: Path, leader: FakeLeader) -> AsyncIterator[Follower]:
    f = Follower(tmp_path, {LEADER: leader})
    async with anyio.create_task_group() as tg:
        await f.fetchers.start(tg)
        yield f
        with anyio.fail_after(5):
            await f.fetchers.stop()
    f.close()


def seed(plog: Any, *batches: bytes, hw: int | None = None) -> None:
    for data in batches:
        plog.append_as_follower(data)
    plog.update_high_watermark(plog.log_end_offset if hw is None else hw)


# -- pure helpers ------------------------------------------------------------------------------

def test_whole_batches_drops_a_partial_tail() -> None:
    data = batch(0, 2, 0) + batch(2, 3, 0)
    assert bytes(whole_batches(data)) == data
    assert bytes(whole_batches(data[:-1])) == batch(0, 2, 0)
    assert bytes(whole_batches(data[:20])) == b""
    assert bytes(whole_batches(b"")) == b""


def test_truncation_offset_rules(tmp_path: Path) -> None:
    plog = open_follower_log(tmp_path / "t-0", SYSTEM_CLOCK)
    try:
        seed(plog, batch(0, 5, 0), batch(5, 5, 2), hw=3)  # epochs 0@0, 2@5, LEO 10
        assert truncation_offset(plog, 2, 7, plog.high_watermark) == (7, True)
        assert truncation_offset(plog, 2, 50, plog.high_watermark) == (10, True)
        assert truncation_offset(plog, 0, 4, plog.high_watermark) == (4, True)
        # The leader's epoch 1 is unknown here: cut to the end of epoch 0 and ask again.
        assert truncation_offset(plog, 1, 8, plog.high_watermark) == (5, False)
        assert truncation_offset(plog, -1, 6, plog.high_watermark) == (6, True)
        assert truncation_offset(plog, 2, -1, plog.high_watermark) == (3, True)
    finally:
        plog.close()


def test_truncation_stops_at_our_own_end_of_the_common_epoch(tmp_path: Path) -> None:
    # We led epoch 1 briefly from 5; the leader wrote epoch 0 up to 6: our epoch 0 ends at 5.
    plog = open_follower_log(tmp_path / "t-0", SYSTEM_CLOCK)
    try:
        seed(plog, batch(0, 5, 0), batch(5, 3, 1), hw=5)
        assert truncation_offset(plog, 0, 6, plog.high_watermark) == (5, True)
    finally:
        plog.close()


# -- following ---------------------------------------------------------------------------------

async def test_follows_the_leader_log_and_its_high_watermark(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(3)
    lp.append(4)
    lp.append(2, commit=False)  # HW 7, LEO 9
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    assert follower.fetchers.following(TP) == (LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 9 and plog.high_watermark == 7)
    assert batches_of(plog) == leader_batches(leader)
    fetch = leader.requests_of(FETCH)[0]
    assert fetch.api_version == 12
    assert fetch.header.client_id == f"kbroker-replica-{NODE}"
    body = fetch.body
    assert body.replica_id == NODE and body.session_id == 0 and body.session_epoch == -1
    assert body.max_wait_ms == 50 and body.min_bytes == 1 and body.max_bytes == 10485760
    (part,) = body.topics[0].partitions
    assert (part.partition, part.fetch_offset, part.current_leader_epoch, part.partition_max_bytes) == (0, 0, 0, 1048576)
    # The leader commits the rest: the follower's HW follows; new data follows too.
    lp.high_watermark = 9
    await follower.until(lambda: plog.high_watermark == 9)
    lp.append(5)
    await follower.until(lambda: plog.log_end_offset == 14 and plog.high_watermark == 14)
    later = leader.requests_of(FETCH)[-1].body.topics[0].partitions[0]
    assert later.last_fetched_epoch == 0 and later.log_start_offset == 0
    assert TP in follower.changes


async def test_truncates_a_divergent_suffix_before_fetching(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.leader_epoch = 2
    lp.batches = [batch(0, 5, 0), batch(5, 3, 2, value=b"new")]
    lp.high_watermark = 8
    plog = follower.log()
    seed(plog, batch(0, 5, 0), batch(5, 5, 1, value=b"old"), hw=5)  # epoch 1's 5 records never committed
    follower.fetchers.add(TP, LEADER, 2)
    await follower.until(lambda: batches_of(plog) == leader_batches(leader))
    (ofle,) = leader.requests_of(OFFSET_FOR_LEADER_EPOCH)
    assert ofle.api_version == 4 and ofle.body.replica_id == NODE
    part = ofle.body.topics[0].partitions[0]
    assert (part.partition, part.current_leader_epoch, part.leader_epoch) == (0, 2, 1)
    # Fetching started at the truncation point.
    assert leader.requests_of(FETCH)[0].body.topics[0].partitions[0].fetch_offset == 5
    assert plog.latest_epoch == 2


async def test_truncation_asks_again_for_an_epoch_the_follower_does_not_know(
        leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.leader_epoch = 5
    lp.batches = [batch(0, 3, 0), batch(3, 5, 1), batch(8, 2, 5)]
    lp.high_watermark = 10
    plog = follower.log()
    seed(plog, batch(0, 3, 0), batch(3, 2, 0, value=b"old"), batch(5, 5, 2), hw=3)
    follower.fetchers.add(TP, LEADER, 5)
    await follower.until(lambda: batches_of(plog) == leader_batches(leader))
    asked = [r.body.topics[0].partitions[0].leader_epoch for r in leader.requests_of(OFFSET_FOR_LEADER_EPOCH)]
    assert asked == [2, 0]
    assert leader.requests_of(FETCH)[0].body.topics[0].partitions[0].fetch_offset == 3


async def test_an_undefined_epoch_answer_truncates_to_the_high_watermark(
        leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.epoch_answer = (-1, -1)
    lp.batches = [batch(0, 2, 0)]
    lp.high_watermark = 2
    plog = follower.log()
    seed(plog, batch(0, 2, 0), batch(2, 4, 3), hw=2)
    follower.fetchers.add(TP, LEADER, 4)
    await follower.until(lambda: follower.fetchers.fetch_offset(TP) == 2)
    assert plog.log_end_offset == 2
    assert batches_of(plog) == [(0, 1, 0)]


async def test_a_diverging_epoch_in_a_fetch_answer_truncates(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.leader_epoch = 2
    lp.batches = [batch(0, 5, 0), batch(5, 4, 2)]
    lp.high_watermark = 9
    lp.epoch_answer = (1, 8)  # the epoch check passes: the fetch finds the divergence
    lp.diverging = (0, 5)
    plog = follower.log()
    seed(plog, batch(0, 5, 0), batch(5, 3, 1), hw=5)
    follower.fetchers.add(TP, LEADER, 2)
    await follower.until(lambda: batches_of(plog) == leader_batches(leader))
    first, second = leader.requests_of(FETCH)[:2]
    assert first.body.topics[0].partitions[0].fetch_offset == 8
    assert first.body.topics[0].partitions[0].last_fetched_epoch == 1
    assert second.body.topics[0].partitions[0].fetch_offset == 5


async def test_a_partial_trailing_batch_is_left_for_the_next_fetch(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(2)
    lp.append(3)
    lp.append(4)
    leader.cut_tail = 7
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset > 0)
    assert batches_of(plog) == leader_batches(leader)[:2]
    # The cut batch alone: nothing whole, nothing appended, retried after the back-off.
    await follower.until(lambda: len(leader.requests_of(FETCH)) >= 3)
    assert plog.log_end_offset == 5
    leader.cut_tail = 0
    await follower.until(lambda: plog.log_end_offset == 9)
    assert batches_of(plog) == leader_batches(leader)


async def test_corrupt_records_are_not_appended(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    good = lp.append(2)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    lp.batches = [bytes(bad)]
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: len(leader.requests_of(FETCH)) >= 2)
    assert plog.log_end_offset == 0
    lp.batches = [good]
    await follower.until(lambda: plog.log_end_offset == 2)


async def test_out_of_range_below_our_end_truncates_to_the_leader_end(
        leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.batches = [batch(0, 5, 0)]
    lp.high_watermark = 5
    lp.epoch_answer = (0, 100)  # no truncation by epoch: the fetch meets OFFSET_OUT_OF_RANGE
    plog = follower.log()
    seed(plog, batch(0, 5, 0), batch(5, 5, 0), hw=5)
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: follower.fetchers.fetch_offset(TP) == 5 and plog.log_end_offset == 5)
    (latest,) = leader.requests_of(LIST_OFFSETS)
    assert latest.body.replica_id == NODE
    part = latest.body.topics[0].partitions[0]
    assert (part.timestamp, part.current_leader_epoch) == (-1, 0)
    lp.append(3)
    await follower.until(lambda: plog.log_end_offset == 8)
    assert batches_of(plog) == leader_batches(leader)


async def test_out_of_range_below_the_leader_start_starts_over_there(
        leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.log_start_offset = 10
    lp.batches = [batch(10, 5, 0)]
    lp.high_watermark = 15
    plog = follower.log()
    seed(plog, batch(0, 3, 0), hw=3)
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 15)
    assert plog.log_start_offset == 10
    assert batches_of(plog) == [(10, 14, 0)]
    assert [r.body.topics[0].partitions[0].timestamp for r in leader.requests_of(LIST_OFFSETS)] == [-1, -2]


async def test_the_log_start_follows_the_leader(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    for _ in range(4):
        lp.append(5)
    # Small segments (a batch each) and no file delay: whole segments below the start go.
    follower.logs[TP] = open_follower_log(follower.root / "t-0", SYSTEM_CLOCK,
                                          LogConfig(segment_bytes=200, file_delete_delay_ms=0))
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.high_watermark == 20)
    assert len(plog.segments) >= 4
    lp.log_start_offset = 12
    lp.append(1)
    await follower.until(lambda: plog.log_start_offset == 12)
    assert plog.log_end_offset == 21
    await follower.until(lambda: len(list((follower.root / "t-0").glob("*.log"))) == len(plog.segments))
    assert plog.segments[0].base_offset == 10
    assert not list((follower.root / "t-0").glob("00000000000000000000.log"))


# -- errors ------------------------------------------------------------------------------------

async def test_a_fenced_partition_waits_for_a_new_epoch(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(3)
    lp.error = FENCED_LEADER_EPOCH
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: follower.fetchers.parked(TP))
    asked = len(leader.requests)
    lp.error = 0
    follower.fetchers.add(TP, LEADER, 0)  # the same state: stays parked
    assert follower.fetchers.parked(TP)
    # Another partition of the same leader keeps flowing, and the fenced one is not asked again.
    other = TopicPartition("u", 0)
    leader.partition("u").append(2)
    follower.log(other)
    follower.fetchers.add(other, LEADER, 0)
    await follower.until(lambda: follower.log(other).log_end_offset == 2)
    assert all(p.partition != 0 or t.topic != "t" for r in leader.requests[asked:] for t in r.body.topics
               for p in t.partitions)
    assert plog.log_end_offset == 0
    follower.fetchers.add(TP, LEADER, 1)
    await follower.until(lambda: plog.log_end_offset == 3)
    assert follower.fetchers.following(TP) == (LEADER, 1)


async def test_fencing_during_truncation_parks_too(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.error = FENCED_LEADER_EPOCH
    seed(follower.log(), batch(0, 2, 0))
    follower.fetchers.add(TP, LEADER, 1)
    await follower.until(lambda: follower.fetchers.parked(TP))
    assert [r.api_key for r in leader.requests] == [OFFSET_FOR_LEADER_EPOCH]


@pytest.mark.parametrize("error", [UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER])
async def test_a_leader_behind_our_view_is_retried(leader: FakeLeader, follower: Follower, error: int) -> None:
    lp = leader.partition("t")
    lp.append(3)
    lp.error = error
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 3)
    await follower.until(lambda: len(leader.requests_of(FETCH)) >= 3)
    assert not follower.fetchers.parked(TP)
    assert plog.log_end_offset == 0
    lp.error = 0
    await follower.until(lambda: plog.log_end_offset == 3)


async def test_list_offsets_errors_delay_the_partition(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.log_start_offset = 4
    lp.batches = [batch(4, 2, 0)]
    lp.high_watermark = 6
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    # Fetch at 0 is out of range; the ListOffsets answers are then refused.
    original = leader._list_offsets

    def refuse(request: Request) -> dict[str, Any]:
        if len(leader.requests_of(LIST_OFFSETS)) <= 2:
            t = request.body.topics[0]
            return {"topics": [{"name": t.name, "partitions": [
                {"partition_index": 0, "error_code": NOT_LEADER_OR_FOLLOWER}]}]}
        return original(request)

    leader._list_offsets = refuse  # type: ignore[method-assign]
    await follower.until(lambda: plog.log_end_offset == 6)
    assert plog.log_start_offset == 4
    assert len(leader.requests_of(LIST_OFFSETS)) >= 4


async def test_a_dropped_connection_is_reopened(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(3)
    leader.drop_next = 2
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 3)
    assert leader.connections == 3


async def test_a_wrong_correlation_id_drops_the_connection(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(3)
    leader.correlation_skew = 5

    def heal(request: Request) -> None:
        if len(leader.requests) >= 2:
            leader.correlation_skew = 0
        follower.poke()

    leader.on_request = heal
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 3)
    assert leader.connections >= 2


async def test_a_dead_leader_does_not_block_the_others(tmp_path: Path) -> None:
    async with FakeLeader() as alive, FakeLeader() as replacement:
        f = Follower(tmp_path, {1: alive})
        f.endpoints[3] = await refused_endpoint()
        a, d = TopicPartition("a", 0), TopicPartition("d", 0)
        alive.partition("a").append(4)
        replacement.partition("d").append(2)
        replacement.on_request = lambda r: f.poke()
        async with anyio.create_task_group() as tg:
            await f.fetchers.start(tg)
            f.log(a)
            f.log(d)
            f.fetchers.add(d, 3, 0)
            f.fetchers.add(a, 1, 0)
            await f.until(lambda: f.log(a).log_end_offset == 4)
            alive.partition("a").append(1)
            await f.until(lambda: f.log(a).log_end_offset == 5)
            assert f.log(d).log_end_offset == 0
            # The dead broker comes back elsewhere: its endpoint moves and fetching resumes.
            f.endpoints[3] = replacement.endpoint
            await f.until(lambda: f.log(d).log_end_offset == 2)
            with anyio.fail_after(5):
                await f.fetchers.stop()
        f.close()


async def test_an_unknown_endpoint_waits(leader: FakeLeader, follower: Follower) -> None:
    leader.partition("t").append(1)
    del follower.endpoints[LEADER]
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    with anyio.move_on_after(0.3):
        await follower.until(lambda: leader.requests)
    assert leader.requests == [] and plog.log_end_offset == 0
    follower.endpoints[LEADER] = leader.endpoint
    await follower.until(lambda: plog.log_end_offset == 1)


async def test_a_missing_log_is_retried(leader: FakeLeader, follower: Follower) -> None:
    leader.partition("t").append(2)
    follower.fetchers.add(TP, LEADER, 0)
    with anyio.move_on_after(0.2):
        await follower.until(lambda: leader.requests)
    assert leader.requests == []
    plog = follower.log()
    await follower.until(lambda: plog.log_end_offset == 2)


# -- adding, removing, stopping ------------------------------------------------------------------

async def test_leader_change_moves_the_partition(tmp_path: Path) -> None:
    async with FakeLeader() as first, FakeLeader() as second:
        f = Follower(tmp_path, {1: first, 3: second})
        first.partition("t").append(2)
        second.partition("t").batches = [batch(0, 2, 0), batch(2, 3, 1)]
        second.partition("t").leader_epoch = 1
        second.partition("t").high_watermark = 5
        async with anyio.create_task_group() as tg:
            await f.fetchers.start(tg)
            plog = f.log()
            f.fetchers.add(TP, 1, 0)
            await f.until(lambda: plog.log_end_offset == 2)
            f.fetchers.add(TP, 3, 1)
            await f.until(lambda: plog.log_end_offset == 5)
            assert f.fetchers.following(TP) == (3, 1)
            # The first leader's task retires once it has nothing to fetch.
            await f.until(lambda: f.fetchers.sources == {(3, 0)})
            with anyio.fail_after(5):
                await f.fetchers.stop()
        f.close()


async def test_remove_stops_fetching(leader: FakeLeader, follower: Follower) -> None:
    lp = leader.partition("t")
    lp.append(2)
    plog = follower.log()
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 2)
    follower.fetchers.remove(TP)
    assert follower.fetchers.following(TP) is None
    await follower.until(lambda: follower.fetchers.sources == set())
    lp.append(3)
    with anyio.move_on_after(0.3):
        await follower.until(lambda: plog.log_end_offset > 2)
    assert plog.log_end_offset == 2


async def test_stop_during_a_long_poll(tmp_path: Path) -> None:
    async with FakeLeader() as leader:
        leader.hold_empty_fetch = 60.0
        f = Follower(tmp_path, {LEADER: leader}, **{"replica.fetch.wait.max.ms": "60000",
                                                    "replica.socket.timeout.ms": "120000"})
        async with anyio.create_task_group() as tg:
            await f.fetchers.start(tg)
            f.log()
            f.fetchers.add(TP, LEADER, 0)
            await f.until(lambda: leader.requests_of(FETCH))
            with anyio.fail_after(2):
                await f.fetchers.stop()
            assert f.fetchers.sources == set()
        f.close()


def test_fetcher_ids_follow_kafka() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("topic") == 110546223  # "topic".hashCode() in Java
    assert java_string_hash("\u00e9") == 0xE9
    assert java_string_hash("\U0001F600") == 0xD83D * 31 + 0xDE00  # a surrogate pair: two code units
    long = "a-long-topic-name-that-overflows"
    closed_form = sum(ord(c) * 31 ** (len(long) - 1 - i) for i, c in enumerate(long)) % (1 << 32)
    assert java_string_hash(long) == (closed_form - (1 << 32) if closed_form >= 1 << 31 else closed_form)
    assert {fetcher_id(TopicPartition("t", p), 1) for p in range(10)} == {0}
    # abs(31 * hash("topic") + p) % 3 in Java ints: 31 * 110546223 wraps to -868034383.
    assert [fetcher_id(TopicPartition("topic", p), 3) for p in range(4)] == [
        (868034383 - p) % 3 for p in range(4)] == [1, 0, 2, 1]


async def test_several_fetchers_per_leader_split_the_partitions(tmp_path: Path) -> None:
    async with FakeLeader() as leader:
        f = Follower(tmp_path, {LEADER: leader}, **{"num.replica.fetchers": "2"})
        tps = [TopicPartition("t", p) for p in range(4)]
        async with anyio.create_task_group() as tg:
            await f.fetchers.start(tg)
            for tp in tps:
                leader.partition("t", tp.partition).append(tp.partition + 1)
                f.log(tp)
                f.fetchers.add(tp, LEADER, 0)
            assert f.fetchers.sources == {(LEADER, 0), (LEADER, 1)}
            await f.until(lambda: all(f.log(tp).log_end_offset == tp.partition + 1 for tp in tps))
            assert leader.connections == 2
            fetched = [{(t.topic, p.partition) for t in r.body.topics for p in t.partitions}
                       for r in leader.requests_of(FETCH)]
            assert all(len(parts) == 2 for parts in fetched)  # each connection fetches its own half
            with anyio.fail_after(5):
                await f.fetchers.stop()
        f.close()


async def test_partitions_added_before_start_are_fetched(tmp_path: Path) -> None:
    async with FakeLeader() as leader:
        leader.partition("t").append(2)
        f = Follower(tmp_path, {LEADER: leader})
        plog = f.log()
        f.fetchers.add(TP, LEADER, 0)
        async with anyio.create_task_group() as tg:
            await f.fetchers.start(tg)
            await f.until(lambda: plog.log_end_offset == 2)
            with anyio.fail_after(5):
                await f.fetchers.stop()
        f.close()


class FaultyLog:
    """A follower log whose next ``faults`` appends raise an unexpected error."""

    def __init__(self, plog: Any, faults: int) -> None:
        self.plog = plog
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plog, name)

    def append_as_follower(self, records: Any) -> Any:
        if self.faults:
            self.faults -= 1
            raise RuntimeError("unexpected fault")
        return self.plog.append_as_follower(records)


async def test_an_unexpected_fault_costs_a_back_off_not_the_broker(leader: FakeLeader, follower: Follower) -> None:
    leader.partition("t").append(3)
    plog = follower.log()
    follower.logs[TP] = FaultyLog(plog, faults=2)
    follower.fetchers.add(TP, LEADER, 0)
    await follower.until(lambda: plog.log_end_offset == 3)
    assert len(leader.requests_of(FETCH)) >= 3
    assert follower.fetchers.sources == {(LEADER, 0)}
