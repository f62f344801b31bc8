"""Process-wide interpreter settings belong to ``kbroker serve`` only (kbroker.heap)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import kbroker.broker as broker_module
from kbroker.config import BrokerConfig
from kbroker.heap import SWITCH_INTERVAL_S
from kbroker.testing import BrokerThread


def test_serve_shortens_the_thread_switch_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a background thread runs Python code, the event loop thread that wakes for a request
    waits for the interpreter up to the switch interval: ``kbroker serve`` makes it 0.5 ms."""
    seen: list[float] = []

    def fake_run(*_args: Any, **_kwargs: Any) -> None:
        seen.append(sys.getswitchinterval())

    before = sys.getswitchinterval()
    monkeypatch.setattr(broker_module.anyio, "run", fake_run)
    try:
        broker_module.run(BrokerConfig({"log.dirs": str(tmp_path)}))
    finally:
        sys.setswitchinterval(before)
    assert seen == [SWITCH_INTERVAL_S]
    assert SWITCH_INTERVAL_S < 0.005  # CPython's default, which left requests waiting behind threads


def test_an_embedded_broker_leaves_the_switch_interval_alone(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    with BrokerThread(tmp_path):
        assert sys.getswitchinterval() == before
    assert sys.getswitchinterval() == before
