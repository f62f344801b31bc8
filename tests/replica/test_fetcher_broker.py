"""A follower's requests against a real single kbroker: the frames round-trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from kbroker.clock import SYSTEM_CLOCK
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.records.batch import iter_headers
from kbroker.replica.fetcher import FETCH, FETCH_VERSION, LIST_OFFSETS, LIST_OFFSETS_VERSION, ReplicaFetchers
from kbroker.replica.peer import PeerConnection
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic, produce_one
from tests.broker.replica_wire import batch as client_batch

from .follower_log import open_follower_log

pytestmark = pytest.mark.anyio

#: What a broker not (yet) leading for followers may answer a replica's request with.
REPLICA_REFUSALS = {ErrorCode.NONE, ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ErrorCode.UNKNOWN_LEADER_EPOCH,
                    ErrorCode.FENCED_LEADER_EPOCH}


async def test_a_replica_fetch_v12_round_trips_with_a_real_broker(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:
        create_topic(broker, "rep")
        wire = WireClient(broker.bootstrap)
        try:
            assert produce_one(wire, "rep", 0, client_batch([b"a", b"b", b"c"])).error_code == 0
        finally:
            wire.close()
        host, port = broker.bootstrap.rsplit(":", 1)
        peer = PeerConnection(host, int(port), client_id="kbroker-replica-2", timeout_s=10, backoff_s=0.1)
        try:
            body = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                    "session_id": 0, "session_epoch": -1, "topics": [{"topic": "rep", "partitions": [
                        {"partition": 0, "current_leader_epoch": 0, "fetch_offset": 0, "last_fetched_epoch": -1,
                         "log_start_offset": 0, "partition_max_bytes": 1 << 20}]}]}
            with anyio.fail_after(20):
                resp = await peer.request(FETCH, FETCH_VERSION, body)
            assert resp.error_code in REPLICA_REFUSALS
            (topic,) = resp.responses
            (part,) = topic.partitions
            assert (topic.topic, part.partition_index) == ("rep", 0)
            assert part.error_code in REPLICA_REFUSALS
            if part.error_code == ErrorCode.NONE:
                # A leader answers a replica up to its log end, the records as stored.
                assert [(h.base_offset, h.last_offset_delta) for _, h in iter_headers(part.records)] == [(0, 2)]
                assert part.high_watermark == 3
            lo_body = {"replica_id": 2, "isolation_level": 0, "topics": [{"name": "rep", "partitions": [
                {"partition_index": 0, "current_leader_epoch": 0, "timestamp": -1}]}]}
            with anyio.fail_after(20):
                offsets = await peer.request(LIST_OFFSETS, LIST_OFFSETS_VERSION, lo_body)
            (lo_part,) = offsets.topics[0].partitions
            assert lo_part.error_code in REPLICA_REFUSALS
            if lo_part.error_code == ErrorCode.NONE:
                assert lo_part.offset == 3
        finally:
            await peer.aclose()


async def test_a_follower_replicates_a_real_broker_partition(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:
        create_topic(broker, "rep")
        wire = WireClient(broker.bootstrap)
        host, port = broker.bootstrap.rsplit(":", 1)
        follower_log = open_follower_log(tmp_path / "follower" / "rep-0", SYSTEM_CLOCK)
        changed = anyio.Event()

        def on_change(tp: TopicPartition) -> None:
            nonlocal changed
            changed.set()
            changed = anyio.Event()

        async def until(predicate: Callable[[], bool]) -> None:
            with anyio.fail_after(20):
                while not predicate():
                    await changed.wait()

        fetchers = ReplicaFetchers(
            node_id=2, config=ConfigHolder(BrokerConfig({"replica.fetch.wait.max.ms": "100"})), clock=SYSTEM_CLOCK,
            endpoint=lambda node: (host, int(port)) if node == 1 else None,
            logs=lambda t, p: follower_log if (t, p) == ("rep", 0) else None, on_change=on_change)
        try:
            for values in ([b"a", b"b"], [b"c"], [b"d", b"e", b"f"]):
                assert produce_one(wire, "rep", 0, client_batch(values)).error_code == 0
            async with anyio.create_task_group() as tg:
                await fetchers.start(tg)
                fetchers.add(TopicPartition("rep", 0), 1, 0)
                await until(lambda: follower_log.log_end_offset == 6 and follower_log.high_watermark == 6)
                # Appended as they are on the leader: same offsets, same bytes.
                leader_bytes = broker.call(lambda: bytes(broker.broker.log_manager.get_log("rep", 0).read(0, 1 << 20)))
                assert bytes(follower_log.read(0, 1 << 20)) == leader_bytes
                # New data follows within a long poll.
                assert produce_one(wire, "rep", 0, client_batch([b"g"])).error_code == 0
                await until(lambda: follower_log.log_end_offset == 7 and follower_log.high_watermark == 7)
                with anyio.fail_after(5):
                    await fetchers.stop()
        finally:
            wire.close()
            follower_log.close()
