from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, PartitionLog


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_log(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., PartitionLog]]:
    """Open ``<tmp>/logs/topic-0`` with a LogConfig built from keyword overrides."""
    opened: list[PartitionLog] = []

    def make(name: str = "topic-0", *, clean: bool = True, recovery_point: int = 0,
             log_start_offset: int | None = None, **overrides: object) -> PartitionLog:
        config = dataclasses.replace(LogConfig(), **overrides)  # type: ignore[arg-type]
        plog = PartitionLog(tmp_path / "logs" / name, config, clock, had_clean_shutdown=clean,
                            recovery_point=recovery_point, log_start_offset=log_start_offset)
        opened.append(plog)
        return plog

    yield make
    for plog in opened:
        plog.close()
