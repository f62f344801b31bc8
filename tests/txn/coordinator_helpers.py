"""A TransactionCoordinator on a ManualClock, an in-memory state log and a recording marker writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.txn.coordinator import TransactionCoordinator
from kbroker.txn.log import MemoryTransactionLog
from kbroker.txn.markers import MarkerResults, TxnMarker
from kbroker.txn.producer_ids import ProducerIdManager


class RecordingMarkers:
    """A WriteMarkers that records every call; ``errors`` makes partitions fail (popped per attempt)."""

    def __init__(self) -> None:
        self.calls: list[TxnMarker] = []
        self.errors: dict[TopicPartition, list[int]] = {}
        self.block: anyio.Event | None = None

    async def __call__(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        if self.block is not None:
            await self.block.wait()
        self.calls.extend(markers)
        out: MarkerResults = []
        for m in markers:
            out.append({tp: (self.errors[tp].pop(0) if self.errors.get(tp) else 0) for tp in m.partitions})
        return out


class Harness:
    """A started coordinator and its fakes."""

    def __init__(self, coord: TransactionCoordinator, clock: ManualClock, log: MemoryTransactionLog,
                 markers: RecordingMarkers, existing: set[TopicPartition]) -> None:
        self.coord = coord
        self.clock = clock
        self.log = log
        self.markers = markers
        self.existing = existing

    async def settle(self) -> None:
        """Let background tasks (marker writes, completions) run to their next wait."""
        for _ in range(200):
            await anyio.lowlevel.checkpoint()

    async def begin(self, txn_id: str = "tx", *parts: TopicPartition, timeout_ms: int = 60_000) -> tuple[int, int]:
        """InitProducerId then AddPartitionsToTxn; returns (pid, epoch)."""
        error, pid, epoch = await self.coord.init_producer_id(txn_id, timeout_ms)
        assert error == ErrorCode.NONE
        errors = await self.coord.add_partitions(txn_id, pid, epoch, parts or (TopicPartition("t", 0),))
        assert set(errors.values()) == {ErrorCode.NONE}
        return pid, epoch

    def state(self, txn_id: str = "tx") -> Any:
        return self.coord.transactions[txn_id]


@asynccontextmanager
async def harness(tmp_path: Path, log: MemoryTransactionLog | None = None, **settings: Any
                  ) -> AsyncIterator[Harness]:
    config = ConfigHolder(BrokerConfig({k.replace("_", "."): str(v) for k, v in settings.items()}))
    clock = ManualClock()
    log = log or MemoryTransactionLog(num_partitions=5)
    markers = RecordingMarkers()
    existing = {TopicPartition(t, p) for t in ("t", "u", "__consumer_offsets") for p in range(3)}
    coord = TransactionCoordinator(config, clock, ProducerIdManager(tmp_path), log, markers,
                                   offsets_partition=lambda group: len(group) % 3,
                                   partition_exists=lambda tp: tp in existing)
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        with anyio.fail_after(5):
            while not coord.loaded:
                await anyio.sleep(0.001)
        h = Harness(coord, clock, log, markers, existing)
        try:
            yield h
        finally:
            await coord.shutdown()
            tg.cancel_scope.cancel()
