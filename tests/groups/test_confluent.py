"""confluent-kafka (librdkafka) consumers against the in-process broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.testing import BrokerThread

from .clients import BROKER_OVERRIDES, ConfluentWorker, Options, join_leave_scenario


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", BROKER_OVERRIDES) as b:
        yield b


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_members_join_and_leave_without_loss_or_duplicates(broker: BrokerThread, strategy: str) -> None:
    def make(name: str) -> ConfluentWorker:
        return ConfluentWorker(name, broker.bootstrap, f"ck-{strategy}", "orders",
                               Options(extra={"partition.assignment.strategy": strategy}))

    join_leave_scenario(broker, "orders", make)
