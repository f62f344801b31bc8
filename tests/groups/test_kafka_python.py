"""kafka-python consumers against the in-process broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from kbroker.testing import BrokerThread

from .clients import BROKER_OVERRIDES, KafkaPythonWorker, Options, join_leave_scenario


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", BROKER_OVERRIDES) as b:
        yield b


@pytest.mark.parametrize("assignor", [RangePartitionAssignor, RoundRobinPartitionAssignor,
                                      StickyPartitionAssignor], ids=["range", "roundrobin", "sticky"])
def test_members_join_and_leave_without_loss_or_duplicates(broker: BrokerThread, assignor: Any) -> None:
    def make(name: str) -> KafkaPythonWorker:
        return KafkaPythonWorker(name, broker.bootstrap, f"kp-{assignor.name}", "orders",
                                 Options(extra={"partition_assignment_strategy": [assignor]}))

    join_leave_scenario(broker, "orders", make)
