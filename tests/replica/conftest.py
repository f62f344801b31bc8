"""Fixtures for the replica manager tests: one broker's partitions, logs in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.log import LogConfig, PartitionLog
from kbroker.metadata.model import PartitionInfo
from kbroker.replica.manager import ReplicaManager
from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401

NODE_ID = 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Cluster:
    """The partitions a test's ReplicaManager sees, and their logs."""

    def __init__(self, root: Path, clock: ManualClock) -> None:
        self.root = root
        self.clock = clock
        self.infos: dict[tuple[str, int], PartitionInfo] = {}
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.rm = ReplicaManager(node_id=NODE_ID, config=ConfigHolder(BrokerConfig({})), partitions=self,
                                 logs=lambda t, p: self.logs.get((t, p)), clock=clock)

    def partition(self, topic: str, index: int) -> PartitionInfo | None:
        return self.infos.get((topic, index))

    def add(self, topic: str, index: int = 0, *, leader: int = NODE_ID, leader_epoch: int = 0,
            config: LogConfig | None = None, replicas: list[int] | None = None) -> PartitionLog:
        self.infos[(topic, index)] = PartitionInfo(topic, index, leader, leader_epoch, replicas or [NODE_ID],
                                                   [NODE_ID])
        plog = PartitionLog(self.root / f"{topic}-{index}", config or LogConfig(), self.clock)
        self.logs[(topic, index)] = plog
        return plog

    def close(self) -> None:
        for plog in self.logs.values():
            plog.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, ManualClock())
    yield c
    c.close()
