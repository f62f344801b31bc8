"""Transaction coordinator fail-over in a cluster: load on election, unload on resignation,
NOT_COORDINATOR for ids led elsewhere, coordinator epoch = the partition's leader epoch."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log import LogConfig, LogManager
from kbroker.log.producer_state import ProducerStateError
from kbroker.metadata.model import PartitionInfo
from kbroker.records.batch import iter_headers
from kbroker.records.record import end_txn_marker
from kbroker.txn.coordinator import TransactionCoordinator
from kbroker.txn.log import TRANSACTION_STATE, KeyValue, MemoryTransactionLog
from kbroker.txn.markers import MarkerResults, TxnMarker, WriteMarkers
from kbroker.txn.producer_ids import ProducerIdManager, ProducerIdsUnavailable
from kbroker.txn.records import decode_value
from kbroker.txn.state import TransactionState

from .coordinator_helpers import RecordingMarkers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

ME, OTHER = 1, 2
TP = TopicPartition("t", 0)
S = TransactionState


def led(partition: int, leader: int, epoch: int, topic: str = TRANSACTION_STATE) -> PartitionInfo:
    return PartitionInfo(topic, partition, leader, epoch, [ME, OTHER], [ME, OTHER])


class Node:
    """A cluster-mode coordinator of broker ``node_id`` over a shared state log."""

    def __init__(self, coord: TransactionCoordinator, markers: WriteMarkers) -> None:
        self.coord = coord
        self.markers = markers

    def elect(self, txn_id: str, epoch: int) -> int:
        p = self.coord.partition_for(txn_id)
        self.coord.on_partitions_changed([(None, led(p, self.coord.node_id, epoch))])
        return p

    async def loaded(self, txn_id: str) -> None:
        with anyio.fail_after(5):
            while self.coord.coordinator_epoch(txn_id) is None or self.coord._not_ready(txn_id) is not None:
                await anyio.sleep(0.002)

    async def begin(self, txn_id: str = "tx") -> tuple[int, int]:
        error, pid, epoch = await self.coord.init_producer_id(txn_id, 60_000)
        assert error == ErrorCode.NONE
        assert await self.coord.add_partitions(txn_id, pid, epoch, [TP]) == {TP: ErrorCode.NONE}
        return pid, epoch


@asynccontextmanager
async def node(tmp_path: Path, log: MemoryTransactionLog, node_id: int, markers: WriteMarkers | None = None,
               producer_ids: ProducerIdManager | None = None) -> AsyncIterator[Node]:
    config = ConfigHolder(BrokerConfig({}))
    (tmp_path / str(node_id)).mkdir(exist_ok=True)
    markers = markers if markers is not None else RecordingMarkers()
    coord = TransactionCoordinator(config, ManualClock(), producer_ids or ProducerIdManager(tmp_path / str(node_id)),
                                   log, markers, offsets_partition=lambda g: 0, partition_exists=lambda tp: True,
                                   node_id=node_id, clustered=True)
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        try:
            yield Node(coord, markers)
        finally:
            await coord.shutdown()
            tg.cancel_scope.cancel()


def states(log: MemoryTransactionLog, partition: int) -> list[TransactionState]:
    assert log.partitions is not None
    return [decode_value(v).state for _, v in log.partitions[partition] if v is not None]


async def test_nothing_is_served_before_election(tmp_path: Path) -> None:
    log = MemoryTransactionLog(5)
    async with node(tmp_path, log, ME) as n:
        c = n.coord
        assert await c.init_producer_id("tx", 60_000) == (ErrorCode.NOT_COORDINATOR, -1, -1)
        assert await c.add_partitions("tx", 1, 0, [TP]) == {TP: ErrorCode.NOT_COORDINATOR}
        assert await c.add_offsets("tx", 1, 0, "g") == ErrorCode.NOT_COORDINATOR
        assert await c.end_transaction("tx", 1, 0, True) == ErrorCode.NOT_COORDINATOR
        assert c.verify_partitions("tx", 1, 0, [TP]) == {TP: ErrorCode.NOT_COORDINATOR}
        assert c.describe(["tx"])[0].error == ErrorCode.NOT_COORDINATOR
        assert c.coordinator_epoch("tx") is None
        assert log.appends == 0
        # A partition led by another broker, or of another topic, changes nothing.
        p = c.partition_for("tx")
        c.on_partitions_changed([(None, led(p, OTHER, 1)), (None, led(p, ME, 1, "__consumer_offsets"))])
        assert await c.init_producer_id("tx", 60_000) == (ErrorCode.NOT_COORDINATOR, -1, -1)


class BlockingLog(MemoryTransactionLog):
    """Replay (in the loading worker thread) waits for ``release``."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.release = threading.Event()
        self.reading = threading.Event()

    def replay(self, partition: int) -> Iterator[KeyValue]:
        self.reading.set()
        assert self.release.wait(10)
        yield from super().replay(partition)


async def test_load_in_progress_then_served_with_the_leader_epoch(tmp_path: Path) -> None:
    log = BlockingLog(5)
    log.ensure()
    async with node(tmp_path, log, ME) as n:
        n.elect("tx", 7)
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(log.reading.wait)
        assert await n.coord.init_producer_id("tx", 60_000) == (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, -1, -1)
        assert n.coord.describe(["tx"])[0].error == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        assert n.coord.list_transactions()[0] == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        log.release.set()
        await n.loaded("tx")
        pid, epoch = await n.begin()
        assert await n.coord.end_transaction("tx", pid, epoch, True) == ErrorCode.NONE
        assert isinstance(n.markers, RecordingMarkers)
        with anyio.fail_after(5):
            while n.coord.transactions["tx"].state != S.COMPLETE_COMMIT:
                await anyio.sleep(0.002)
        assert [m.coordinator_epoch for m in n.markers.calls] == [7]  # the partition's leader epoch


async def test_resignation_while_loading_discards_what_was_read(tmp_path: Path) -> None:
    log = BlockingLog(5)
    log.release.set()
    async with node(tmp_path, log, ME) as writer:
        writer.elect("tx", 1)
        await writer.loaded("tx")
        await writer.begin()
    log.release.clear()
    log.reading.clear()
    async with node(tmp_path, log, OTHER) as n:
        p = n.elect("tx", 2)
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(log.reading.wait)
        n.coord.on_partitions_changed([(led(p, OTHER, 2), led(p, ME, 3))])
        log.release.set()
        for _ in range(50):
            await anyio.sleep(0.002)
        assert n.coord.transactions == {}
        assert await n.coord.init_producer_id("tx", 60_000) == (ErrorCode.NOT_COORDINATOR, -1, -1)


async def test_resignation_unloads_and_stops_markers_and_timers(tmp_path: Path) -> None:
    log = MemoryTransactionLog(5)
    markers = RecordingMarkers()
    markers.block = anyio.Event()
    async with node(tmp_path, log, ME, markers) as n:
        p = n.elect("tx", 1)
        await n.loaded("tx")
        other = next(t for t in (f"o{i}" for i in range(100)) if n.coord.partition_for(t) != p)
        n.elect(other, 1)
        await n.loaded(other)
        pid, epoch = await n.begin()
        await n.begin(other)
        assert await n.coord.end_transaction("tx", pid, epoch, True) == ErrorCode.NONE  # markers now blocked
        await anyio.sleep(0.01)
        n.coord.on_partitions_changed([(led(p, ME, 1), led(p, OTHER, 2))])
        assert "tx" not in n.coord.transactions and other in n.coord.transactions
        markers.block.set()
        for _ in range(50):
            await anyio.sleep(0.002)
        # The in-flight marker write finished, but the completion is left to the new coordinator.
        assert states(log, p)[-1] == S.PREPARE_COMMIT
        assert await n.coord.end_transaction("tx", pid, epoch, True) == ErrorCode.NOT_COORDINATOR
        # The timeout sweep no longer sees the unloaded transaction (the other one it does abort).
        n.coord.clock.advance(120_000)  # type: ignore[attr-defined]
        await n.coord.abort_timed_out_transactions()
        assert states(log, p)[-1] == S.PREPARE_COMMIT
        assert n.coord.transactions[other].state == S.PREPARE_ABORT


async def test_new_leader_completes_what_the_old_one_prepared(tmp_path: Path) -> None:
    log = MemoryTransactionLog(5)
    old_markers = RecordingMarkers()
    old_markers.block = anyio.Event()  # the old leader never gets its markers out
    async with node(tmp_path, log, ME, old_markers) as old:
        p = old.elect("tx", 4)
        await old.loaded("tx")
        pid, epoch = await old.begin()
        assert await old.coord.end_transaction("tx", pid, epoch, False) == ErrorCode.NONE
        old.coord.on_partitions_changed([(led(p, ME, 4), led(p, OTHER, 5))])
        async with node(tmp_path, log, OTHER) as new:
            new.elect("tx", 5)
            await new.loaded("tx")
            assert isinstance(new.markers, RecordingMarkers)
            with anyio.fail_after(5):
                while new.coord.transactions["tx"].state != S.COMPLETE_ABORT:
                    await anyio.sleep(0.002)
            assert [(m.producer_id, m.commit, m.coordinator_epoch) for m in new.markers.calls] == [(pid, False, 5)]
            assert states(log, p)[-2:] == [S.PREPARE_ABORT, S.COMPLETE_ABORT]
            # The producer carries on with the new coordinator: its epoch is bumped from the loaded state.
            error, pid2, epoch2 = await new.coord.init_producer_id("tx", 60_000, pid, epoch)
            assert (error, pid2, epoch2) == (ErrorCode.NONE, pid, epoch + 1)


class LogMarkers:
    """A WriteMarkers appending to real partition logs (what the partitions' leaders do)."""

    def __init__(self, logs: LogManager, block: anyio.Event | None = None) -> None:
        self.logs = logs
        self.block = block
        self.results: MarkerResults = []

    async def __call__(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        if self.block is not None:
            await self.block.wait()
        out: MarkerResults = []
        for m in markers:
            codes = {}
            for tp in m.partitions:
                plog = self.logs.get_or_create_log(tp.topic, tp.partition)
                try:
                    plog.append_marker(m.producer_id, m.producer_epoch, m.coordinator_epoch, m.commit,
                                       leader_epoch=0)
                    codes[tp] = 0
                except ProducerStateError as e:
                    codes[tp] = e.error_code
            out.append(codes)
        self.results.extend(out)
        return out


async def test_old_coordinator_is_fenced_by_the_coordinator_epoch(tmp_path: Path) -> None:
    """A deposed coordinator that has not heard of its deposition yet (a stale view) sends its
    markers late: the partition's log refuses them, and it writes no completion."""
    logs = LogManager([tmp_path / "data"], ManualClock(), LogConfig())
    try:
        log = MemoryTransactionLog(5)
        stale = LogMarkers(logs, anyio.Event())
        async with node(tmp_path, log, ME, stale) as old:
            p = old.elect("tx", 1)
            await old.loaded("tx")
            pid, epoch = await old.begin()
            assert await old.coord.end_transaction("tx", pid, epoch, True) == ErrorCode.NONE
            async with node(tmp_path, log, OTHER, LogMarkers(logs)) as new:
                new.elect("tx", 2)
                await new.loaded("tx")
                with anyio.fail_after(5):
                    while new.coord.transactions["tx"].state != S.COMPLETE_COMMIT:
                        await anyio.sleep(0.002)
                assert stale.block is not None
                stale.block.set()
                with anyio.fail_after(5):
                    while not stale.results:
                        await anyio.sleep(0.002)
                assert stale.results == [{TP: ErrorCode.TRANSACTION_COORDINATOR_FENCED}]
                for _ in range(50):
                    await anyio.sleep(0.002)
                assert states(log, p).count(S.COMPLETE_COMMIT) == 1  # the new coordinator's only
                plog = logs.get_log(TP.topic, TP.partition)
                assert plog is not None
                data = bytes(plog.read(0, 1 << 20))
                control = [data[pos:pos + h.size] for pos, h in iter_headers(data) if h.is_control]
                assert [end_txn_marker(b).coordinator_epoch for b in control] == [2]  # type: ignore[union-attr]
    finally:
        logs.shutdown()


async def test_producer_ids_from_a_block_source(tmp_path: Path) -> None:
    calls: list[int] = []
    fail = True
    next_start = 5000

    async def source(size: int) -> int:
        nonlocal next_start
        calls.append(size)
        await anyio.sleep(0)  # a real source awaits the network
        if fail:
            raise ConnectionError("etcd down")
        next_start += size
        return next_start - size

    log = MemoryTransactionLog(5)
    ids = ProducerIdManager(tmp_path, block_size=2, block_source=source)
    async with node(tmp_path, log, ME, producer_ids=ids) as n:
        n.elect("a", 1)
        await n.loaded("a")
        # No block to be had: retriable, nothing written.
        assert await n.coord.init_producer_id("a", 60_000) == (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, -1, -1)
        assert log.appends == 0
        with pytest.raises(ProducerIdsUnavailable):
            ids.generate_producer_id()
        fail = False
        pids = []
        for txn_id in ("a", "b", "c"):
            n.elect(txn_id, 1)
            await n.loaded(txn_id)
            error, pid, _ = await n.coord.init_producer_id(txn_id, 60_000)
            assert error == ErrorCode.NONE
            pids.append(pid)
        assert pids == [5000, 5001, 5002] and calls == [2, 2, 2]  # a failed fetch, then two blocks


async def test_election_before_start_loads_at_start(tmp_path: Path) -> None:
    log = MemoryTransactionLog(5)
    async with node(tmp_path, log, ME) as writer:
        p = writer.elect("tx", 1)
        await writer.loaded("tx")
        pid, epoch = await writer.begin()
    coord = TransactionCoordinator(ConfigHolder(BrokerConfig({})), ManualClock(), ProducerIdManager(tmp_path), log,
                                   RecordingMarkers(), offsets_partition=lambda g: 0,
                                   partition_exists=lambda tp: True, node_id=OTHER, clustered=True)
    coord.on_partitions_changed([(None, led(p, OTHER, 2))])  # the metadata's first image, before start
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        await Node(coord, RecordingMarkers()).loaded("tx")
        assert coord.coordinator_epoch("tx") == 2
        assert coord.verify_partitions("tx", pid, epoch, [TP]) == {TP: ErrorCode.NONE}
        await coord.shutdown()
        tg.cancel_scope.cancel()


async def test_init_producer_id_handler_without_a_block_is_retriable(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from kbroker.codec import decode_request, decode_response, encode_request, encode_response
    from kbroker.handlers import init_producer_id
    from kbroker.handlers.api import RequestContext, Session

    up = False

    async def source(size: int) -> int:
        if not up:
            raise ConnectionError("etcd down")
        return 70_000

    broker = SimpleNamespace(authorizer=None, producer_ids=ProducerIdManager(tmp_path, block_source=source))

    async def call() -> tuple[int, int, int]:
        body = {"transactional_id": None, "transaction_timeout_ms": -1, "producer_id": -1, "producer_epoch": -1}
        request = decode_request(encode_request(22, 4, 1, body)[4:])
        out = await init_producer_id.handle(RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1),
                                                           request))  # type: ignore[arg-type]
        _, resp = decode_response(22, 4, encode_response(22, 4, 1, out)[4:])
        return resp.error_code, resp.producer_id, resp.producer_epoch

    assert await call() == (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, -1, -1)
    up = True
    assert await call() == (ErrorCode.NONE, 70_000, 0)
    assert await call() == (ErrorCode.NONE, 70_001, 0)


async def test_reelection_on_a_real_log_loads_the_old_leaders_state(tmp_path: Path) -> None:
    """The old leader is a single broker writing ``__transaction_state`` on disk; a cluster-mode
    coordinator elected for the id's partition reads it back from that log."""
    from kbroker.broker import Broker
    from kbroker.testing import make_config

    async with Broker(make_config(tmp_path, {"transaction.state.log.num.partitions": "3"})).running() as b:
        assert b.transactions.ensure_state_topic()
        with anyio.fail_after(5):
            while not b.transactions.loaded:
                await anyio.sleep(0.002)
        error, pid, epoch = await b.transactions.init_producer_id("tx", 60_000)
        assert error == ErrorCode.NONE
        assert await b.transactions.add_partitions("tx", pid, epoch, [TP]) == {TP: ErrorCode.NONE}
        new = TransactionCoordinator(b.configs, ManualClock(), ProducerIdManager(tmp_path), b.transactions.log,
                                     RecordingMarkers(), offsets_partition=lambda g: 0,
                                     partition_exists=lambda tp: True, node_id=OTHER, clustered=True)
        async with anyio.create_task_group() as tg:
            await new.start(tg)
            n = Node(new, RecordingMarkers())
            n.elect("tx", 6)
            await n.loaded("tx")
            txn = new.transactions["tx"]
            assert (txn.producer_id, txn.producer_epoch, txn.state, txn.partitions) == (pid, epoch, S.ONGOING, {TP})
            assert new.coordinator_epoch("tx") == 6
            await new.shutdown()
            tg.cancel_scope.cancel()


async def test_verification_goes_to_the_coordinator_on_another_broker(tmp_path: Path) -> None:
    log = MemoryTransactionLog(5)
    log.ensure()
    asked: list[tuple[str, int, int, int, list[TopicPartition]]] = []

    async def elsewhere(txn_id: str, pid: int, epoch: int, state: int,
                        tps: Sequence[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        asked.append((txn_id, pid, epoch, state, list(tps)))
        return dict.fromkeys(tps, ErrorCode.TRANSACTION_ABORTABLE)

    async with node(tmp_path, log, ME) as n:
        c = n.coord
        c.verify_elsewhere = elsewhere
        # Led by another broker: asked there, with the id's state partition.
        assert c.coordinates_elsewhere("tx")
        assert await c.verify_partitions_anywhere("tx", 7, 1, [TP]) == {TP: ErrorCode.TRANSACTION_ABORTABLE}
        assert asked == [("tx", 7, 1, c.partition_for("tx"), [TP])]
        # Led here: answered here, as a produce on this broker verifies.
        n.elect("tx", 0)
        await n.loaded("tx")
        assert not c.coordinates_elsewhere("tx")
        pid, epoch = await n.begin("tx")
        assert await c.verify_partitions_anywhere("tx", pid, epoch, [TP]) == {TP: ErrorCode.NONE}
        assert len(asked) == 1
