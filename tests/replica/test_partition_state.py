"""Follower state rules, the rack-aware replica selector, and the Fetch handler's replication fields
(client rack in, preferred read replica and diverging epoch out) through the wire codec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.frames import decode_request, decode_response, encode_request, encode_response
from kbroker.config import BrokerConfig
from kbroker.handlers import fetch as fetch_handler
from kbroker.handlers import list_offsets as list_offsets_handler
from kbroker.handlers.api import RequestContext
from kbroker.replica.partition_state import NEVER_MS, FollowerState, ReplicaView, rack_aware_select

from .replication_helpers import TOPIC, Harness

# -- FollowerState (Kafka's Replica.updateFetchStateOrThrow / isCaughtUp) --------------------------


def test_a_fetch_at_the_leader_end_is_caught_up_now() -> None:
    s = FollowerState()
    s.update(10, 0, now_ms=1_000, leader_leo=10)
    assert s.last_caught_up_ms == 1_000 and s.log_end_offset == 10


def test_a_fetch_reaching_the_previous_leader_end_is_caught_up_as_of_the_previous_fetch() -> None:
    s = FollowerState()
    s.update(5, 0, now_ms=1_000, leader_leo=8)
    assert s.last_caught_up_ms == NEVER_MS
    s.update(8, 0, now_ms=2_000, leader_leo=12)  # reached where the leader ended at 1_000
    assert s.last_caught_up_ms == 1_000
    s.update(9, 0, now_ms=3_000, leader_leo=14)  # short of 12: no progress
    assert s.last_caught_up_ms == 1_000


def test_caught_up_within_the_lag_or_at_the_leader_end() -> None:
    s = FollowerState()
    s.update(5, 0, now_ms=1_000, leader_leo=5)
    assert s.is_caught_up(9, 1_000 + 500, 500)
    assert not s.is_caught_up(9, 1_000 + 501, 500)
    assert s.is_caught_up(5, 10**9, 500)
    assert not FollowerState().is_caught_up(0, 0, 500)  # never fetched: not caught up


# -- RackAwareReplicaSelector --------------------------------------------------------------------

LEADER = ReplicaView(1, "a", 100, 0)


def test_no_client_rack_or_leader_in_it_selects_the_leader() -> None:
    others = [ReplicaView(2, "b", 100, 0)]
    assert rack_aware_select(None, LEADER, [LEADER, *others]) is LEADER
    assert rack_aware_select("", LEADER, [LEADER, *others]) is LEADER
    assert rack_aware_select("a", LEADER, [LEADER, ReplicaView(2, "a", 100, 0)]) is LEADER
    assert rack_aware_select("z", LEADER, [LEADER, *others]) is LEADER


def test_the_most_caught_up_replica_of_the_rack_is_selected() -> None:
    views = [LEADER, ReplicaView(2, "b", 90, 0), ReplicaView(3, "b", 95, 50), ReplicaView(4, "b", 95, 10),
             ReplicaView(5, "c", 100, 0)]
    assert rack_aware_select("b", LEADER, views).node_id == 4  # highest LEO, then most recently caught up
    tie = [LEADER, ReplicaView(2, "b", 95, 10), ReplicaView(3, "b", 95, 10)]
    assert rack_aware_select("b", LEADER, tie).node_id == 3  # then the highest id


# -- the Fetch handler ---------------------------------------------------------------------------

@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, ManualClock(),
                      **{"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"})
    harness.seam.racks = {1: "a", 2: "b"}
    async with anyio.create_task_group() as tg:
        await harness.rm.start(tg)
        yield harness
        await harness.rm.stop()
        tg.cancel_scope.cancel()
    harness.close()


async def _fetch(h: Harness, version: int, *, replica_id: int = -1, rack: str = "", offset: int = 0,
                 epoch: int = -1, last_fetched_epoch: int = -1) -> Any:
    body: dict[str, Any] = {
        "replica_id": replica_id, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
        "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": rack,
        "topics": [{"topic": TOPIC, "partitions": [{
            "partition": 0, "fetch_offset": offset, "partition_max_bytes": 1 << 20, "current_leader_epoch": epoch,
            "last_fetched_epoch": last_fetched_epoch, "log_start_offset": 0}]}]}
    request = decode_request(encode_request(1, version, 7, body)[4:])
    broker = SimpleNamespace(replica_manager=h.rm, metadata=h, authorizer=None, config=BrokerConfig({}))
    ctx = RequestContext(broker=broker, session=None, request=request)  # type: ignore[arg-type]
    answer = await fetch_handler.handle(ctx)
    _, decoded = decode_response(1, version, encode_response(1, version, 7, answer)[4:])
    return decoded.responses[0].partitions[0]


@pytest.mark.anyio
async def test_a_consumer_with_a_rack_is_sent_to_its_replica(h: Harness) -> None:
    h.open_log()
    h.set_partition(replicas=[1, 2], isr=[1, 2])
    await h.produce(2, acks=1)
    await h.follower_fetch(2, 2)
    p = await _fetch(h, 11, rack="b")
    assert p.preferred_read_replica == 2 and not p.records and p.high_watermark == 2
    p = await _fetch(h, 11, rack="a")
    assert p.preferred_read_replica == -1 and p.records
    # Before v11 there is no client metadata: the leader serves.
    p = await _fetch(h, 10, rack="b")
    assert "preferred_read_replica" not in p and p.records


@pytest.mark.anyio
async def test_a_diverging_follower_gets_the_epoch_end_on_the_wire(h: Harness) -> None:
    plog = h.open_log(records=3)
    getattr(plog, "assign_leader_epoch")(0)  # noqa: B009 - the log layer's method
    h.set_partition(replicas=[1, 2], isr=[1], epoch=1)
    await h.produce(1, acks=1)
    p = await _fetch(h, 12, replica_id=2, offset=4, epoch=1, last_fetched_epoch=0)
    assert p.error_code == ErrorCode.NONE
    assert (p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (0, 3)
    p = await _fetch(h, 12, replica_id=2, offset=3, epoch=1, last_fetched_epoch=0)
    assert p.diverging_epoch.epoch == -1 and p.records  # the tagged field's default: absent
    # An epoch newer than any here has no end offset: OFFSET_OUT_OF_RANGE, as Kafka.
    p = await _fetch(h, 12, replica_id=2, offset=0, epoch=1, last_fetched_epoch=7)
    assert p.error_code == ErrorCode.OFFSET_OUT_OF_RANGE


async def _list_offsets(h: Harness, version: int, timestamp: int, *, replica_id: int = -1) -> Any:
    body = {"replica_id": replica_id, "isolation_level": 0, "timeout_ms": 1000,
            "topics": [{"name": TOPIC, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                                       "timestamp": timestamp, "max_num_offsets": 1}]}]}
    request = decode_request(encode_request(2, version, 7, body)[4:])
    broker = SimpleNamespace(replica_manager=h.rm, metadata=h, authorizer=None, config=BrokerConfig({}))
    ctx = RequestContext(broker=broker, session=None, request=request)  # type: ignore[arg-type]
    answer = await list_offsets_handler.handle(ctx)
    _, decoded = decode_response(2, version, encode_response(2, version, 7, answer)[4:])
    return decoded.topics[0].partitions[0]


@pytest.mark.anyio
async def test_a_new_leader_with_a_lagging_high_watermark_hides_the_latest_offset(h: Harness) -> None:
    plog = h.open_log(records=5)
    plog.update_high_watermark(2)  # the previous leader had committed up to 2
    h.set_partition(replicas=[1, 2], isr=[1, 2], epoch=1)  # epoch 1 starts at 5
    assert (await _list_offsets(h, 5, -1)).error_code == ErrorCode.OFFSET_NOT_AVAILABLE
    assert (await _list_offsets(h, 4, -1)).error_code == ErrorCode.LEADER_NOT_AVAILABLE
    # A timestamp no visible record reaches: nothing below the HW.
    assert (await _list_offsets(h, 7, 1_700_000_000_001)).error_code == ErrorCode.OFFSET_NOT_AVAILABLE
    assert (await _list_offsets(h, 5, 0)).offset == 0  # found below the HW
    earliest = await _list_offsets(h, 5, -2)
    assert earliest.error_code == ErrorCode.NONE and earliest.offset == 0
    follower = await _list_offsets(h, 5, -1, replica_id=2)  # a replica reads to the log end
    assert follower.error_code == ErrorCode.NONE and follower.offset == 5
    await h.follower_fetch(2, 5, epoch=1)
    assert plog.high_watermark == 5
    latest = await _list_offsets(h, 5, -1)
    assert latest.error_code == ErrorCode.NONE and latest.offset == 5


# -- a partition state naming brokers that are not its replicas --------------------------------------

class _Log:
    """What LeaderState reads of a log."""

    def __init__(self, leo: int, min_isr: int) -> None:
        self.log_end_offset = leo
        self.high_watermark = 0
        self.config = SimpleNamespace(min_insync_replicas=min_isr)

    def update_high_watermark(self, offset: int) -> int:
        self.high_watermark = max(self.high_watermark, min(offset, self.log_end_offset))
        return self.high_watermark


def test_isr_members_that_are_not_replicas_do_not_count_for_min_insync_replicas() -> None:
    from kbroker.common import TopicPartition
    from kbroker.metadata.model import PartitionInfo
    from kbroker.replica.partition_state import LeaderState

    # A foreign or broken state: broker 7 is in the ISR without being a replica (no fetch of it is
    # ever followed), broker 2 is a replica that never fetched.
    info = PartitionInfo(TOPIC, 0, 1, 3, [1, 2], [1, 7])
    plog = _Log(leo=10, min_isr=2)
    state = LeaderState(TopicPartition(TOPIC, 0), info, plog, 1, 1_000, lambda: True)  # type: ignore[arg-type]
    assert not state.maybe_increment_hw(1_000, 30_000)
    assert plog.high_watermark == 0
    assert state.check_acks(10) == (False, ErrorCode.NONE)
    plog.high_watermark = 10  # reached (e.g. before the ISR changed): under min ISR after append
    assert state.check_acks(10) == (True, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)


def test_an_acks_all_produce_is_refused_when_the_isr_counts_brokers_that_are_not_replicas() -> None:
    from kbroker.common import TopicPartition
    from kbroker.metadata.model import PartitionInfo
    from kbroker.replica.errors import PartitionError
    from kbroker.replica.manager import ReplicaManager

    info = PartitionInfo(TOPIC, 0, 1, 3, [1, 2], [1, 7])
    config = SimpleNamespace(min_insync_replicas=2)
    with pytest.raises(PartitionError) as e:
        ReplicaManager._check_target(TopicPartition(TOPIC, 0), info, config, -1, False)  # type: ignore[arg-type]
    assert e.value.error_code == ErrorCode.NOT_ENOUGH_REPLICAS
    ReplicaManager._check_target(TopicPartition(TOPIC, 0), info, config, 1, False)  # type: ignore[arg-type]
