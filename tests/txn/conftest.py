"""Fixtures for the idempotent producer tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, PartitionLog
from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_log(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., PartitionLog]]:
    """Open ``<tmp>/logs/t-0`` (again, after a close) with LogConfig keyword overrides."""
    opened: list[PartitionLog] = []

    def make(*, clean: bool = True, **overrides: object) -> PartitionLog:
        config = dataclasses.replace(LogConfig(), **overrides)  # type: ignore[arg-type]
        plog = PartitionLog(tmp_path / "logs" / "t-0", config, clock, had_clean_shutdown=clean)
        opened.append(plog)
        return plog

    yield make
    for plog in opened:
        plog.close(snapshot=False)
