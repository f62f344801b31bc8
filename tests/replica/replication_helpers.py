"""A replicated ReplicaManager on real logs, with a scripted cluster (fake seam) around it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from kbroker.clock import ManualClock
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log import LogConfig, PartitionLog
from kbroker.metadata.model import PartitionInfo
from kbroker.records.builder import NewRecord, build_batch
from kbroker.replica.manager import ReplicaManager
from kbroker.replica.types import AppendResult, FetchParams, FetchResult, PartitionFetch

ME = 1
TOPIC = "t"
TP = TopicPartition(TOPIC, 0)
LAG_MS = 10_000


class EpochLog(PartitionLog):
    """A log with the leader-epoch methods the log layer provides, where it does not yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch_entries: list[tuple[int, int]] = []

    def assign_leader_epoch(self, epoch: int) -> None:
        if not self.epoch_entries or epoch > self.epoch_entries[-1][0]:
            self.epoch_entries.append((epoch, self.log_end_offset))

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        # Kafka's LeaderEpochFileCache.endOffsetFor.
        entries = self.epoch_entries
        if not entries:
            return -1, -1
        if epoch == entries[-1][0]:
            return epoch, self.log_end_offset
        higher = [(e, start) for e, start in entries if e > epoch]
        if not higher:
            return -1, -1  # newer than any epoch here
        floor = [e for e, _ in entries if e <= epoch]
        return (floor[-1] if floor else epoch), higher[0][1]


#: The real log when it has the epoch methods, else the stand-in above.
LogClass: type[PartitionLog] = PartitionLog if hasattr(PartitionLog, "end_offset_for_epoch") else EpochLog


class FakeFetchers:
    """Records what the replica manager asks of the follower side."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def add(self, tp: TopicPartition, leader: int, leader_epoch: int) -> None:
        self.calls.append(("add", tp, leader, leader_epoch))

    def remove(self, tp: TopicPartition) -> None:
        self.calls.append(("remove", tp))


class FakeSeam:
    """The cluster: a lease that can lapse, an ISR compare-and-swap that can lose or fail, racks."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.lease = True
        self.fetchers = FakeFetchers()
        self.racks: dict[int, str] = {}
        #: Brokers fenced or shutting down: they may not join an ISR.
        self.ineligible: set[int] = set()
        self.alters: list[tuple[PartitionInfo, list[int]]] = []
        #: "commit" (CAS succeeds), "lose" (None), "fail" (raises).
        self.outcome = "commit"
        #: When set, alter_isr waits for it (an ISR change in flight).
        self.gate: anyio.Event | None = None
        self.altered = anyio.Event()

    def lease_valid(self) -> bool:
        return self.lease

    async def alter_isr(self, expected: PartitionInfo, isr: list[int]) -> PartitionInfo | None:
        self.alters.append((expected, list(isr)))
        self.altered.set()
        self.altered = anyio.Event()
        if self.gate is not None:
            await self.gate.wait()
        if self.outcome == "fail":
            raise OSError("etcd unavailable")
        if self.outcome == "lose":
            return None
        new = dataclasses.replace(expected, isr=list(isr), partition_epoch=expected.partition_epoch + 1)
        self.harness.infos[(new.topic, new.index)] = new
        return new

    def rack_of(self, node_id: int) -> str | None:
        return self.racks.get(node_id)

    def isr_eligible(self, node_id: int) -> bool:
        return node_id not in self.ineligible


class Harness:
    """Node 1's ReplicaManager in a cluster, its partitions' metadata and real logs."""

    def __init__(self, root: Path, clock: ManualClock, *, node_id: int = ME, **config: str) -> None:
        self.root = root
        self.node_id = node_id
        self.clock = clock
        self.infos: dict[tuple[str, int], PartitionInfo] = {}
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.seam = FakeSeam(self)
        settings = {"replica.lag.time.max.ms": str(LAG_MS), **config}
        self.rm = ReplicaManager(node_id=node_id, config=ConfigHolder(BrokerConfig(settings)), partitions=self,
                                 logs=lambda t, p: self.logs.get((t, p)), clock=clock, replication=self.seam)

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        return self.infos.get((topic, index))

    def open_log(self, topic: str = TOPIC, index: int = 0, *, min_isr: int = 1, records: int = 0) -> PartitionLog:
        """A replica's log as the log manager of a cluster opens it (the HW does not follow appends)."""
        plog = LogClass(self.root / f"{topic}-{index}", LogConfig(min_insync_replicas=min_isr), self.clock)
        if records:
            plog.append(batch(records), leader_epoch=0)
        plog.high_watermark_follows_leo = False
        self.logs[(topic, index)] = plog
        return plog

    def set_partition(self, leader: int | None = None, *, replicas: Sequence[int] = (1, 2, 3), isr: Sequence[int] | None = None,
                      epoch: int = 0, partition_epoch: int = 0, topic: str = TOPIC, index: int = 0) -> PartitionInfo:
        """Publish a partition state and tell the replica manager (as the metadata does)."""
        old = self.infos.get((topic, index))
        new = PartitionInfo(topic, index, self.node_id if leader is None else leader, epoch, list(replicas), list(replicas if isr is None else isr),
                            partition_epoch=partition_epoch)
        self.infos[(topic, index)] = new
        self.rm.apply_partitions([(old, new)])
        return new

    def remove_partition(self, topic: str = TOPIC, index: int = 0) -> None:
        old = self.infos.pop((topic, index))
        self.rm.apply_partitions([(old, None)])

    async def produce(self, n: int = 1, *, acks: int = -1, timeout_ms: int = 5_000) -> AppendResult:
        return (await self.rm.append_records({TP: batch(n, self.clock.time_ms())}, acks=acks,
                                             timeout_ms=timeout_ms))[TP]

    async def follower_fetch(self, replica: int, offset: int, *, epoch: int = 0, last_fetched_epoch: int = -1,
                             log_start: int = 0, max_wait_ms: int = 0) -> FetchResult:
        req = PartitionFetch(offset, 1 << 20, current_leader_epoch=epoch, last_fetched_epoch=last_fetched_epoch,
                             log_start_offset=log_start)
        return (await self.rm.fetch([(TP, req)], FetchParams(max_wait_ms=max_wait_ms, replica_id=replica)))[0][1]

    async def consumer_fetch(self, offset: int, *, rack: str | None = None, epoch: int = -1,
                             max_wait_ms: int = 0) -> FetchResult:
        req = PartitionFetch(offset, 1 << 20, current_leader_epoch=epoch)
        params = FetchParams(max_wait_ms=max_wait_ms, client_rack=rack)
        return (await self.rm.fetch([(TP, req)], params))[0][1]

    def close(self) -> None:
        for plog in self.logs.values():
            plog.close()


def batch(n: int, ts: int = 1_700_000_000_000) -> bytes:
    return build_batch([NewRecord(None, b"v%d" % i, (), ts) for i in range(n)])
