"""Tests for the ``kbroker serve`` command line (no server is started)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.cli import main
from kbroker.config import BrokerConfig, Listener


@pytest.fixture(autouse=True)
def _restore_root_log_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[BrokerConfig]:
    """Replace ``kbroker.broker`` with a stub whose ``run`` records the config."""
    seen: list[BrokerConfig] = []
    module = types.ModuleType("kbroker.broker")

    def run(config: BrokerConfig) -> int:
        seen.append(config)
        return 0

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kbroker.broker", module)
    for name in [n for n in os.environ if n.startswith("KBROKER_")]:
        monkeypatch.delenv(name)
    return seen


def test_serve_builds_config_and_runs(
    tmp_path: Path, fake_run: list[BrokerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    props = tmp_path / "server.properties"
    props.write_text("num.partitions=2\nlog.segment.bytes=1000\nmessage.max.bytes=5000\n")
    monkeypatch.setenv("KBROKER_LOG_SEGMENT_BYTES", "2000")
    monkeypatch.setenv("KBROKER_MESSAGE_MAX_BYTES", "6000")
    code = main(
        [
            "serve",
            "--config", str(props),
            "--override", "message.max.bytes=7000",
            "--override", "listeners=PLAINTEXT://127.0.0.1:0",
            "--log-level", "debug",
        ]
    )  # fmt: skip
    assert code == 0
    (config,) = fake_run
    assert config.num_partitions == 2
    assert config.log_segment_bytes == 2000
    assert config.message_max_bytes == 7000
    assert config.listeners == [Listener("PLAINTEXT", "127.0.0.1", 0)]


def test_serve_defaults(fake_run: list[BrokerConfig]) -> None:
    assert main(["serve"]) == 0
    assert fake_run[0].listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]


def test_override_without_equals_exits_2(
    fake_run: list[BrokerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--override", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kbroker: error: ")
    assert "bad" in err
    assert fake_run == []


def test_bad_value_exits_2_naming_key(
    fake_run: list[BrokerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--override", "num.partitions=lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kbroker: error: ") and "num.partitions" in err
    assert fake_run == []


def test_bad_listener_exits_2(fake_run: list[BrokerConfig], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--override", "listeners=localhost:9092"]) == 2
    assert "listeners" in capsys.readouterr().err


def test_missing_config_file_exits_2(
    tmp_path: Path, fake_run: list[BrokerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.properties")]) == 2
    assert "kbroker: error: cannot read config file" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["serve", "--no-such-flag"]) == 2
    assert main(["serve", "--log-level", "LOUD"]) == 2
    assert main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out


def test_run_exit_code_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("kbroker.broker")
    module.run = lambda config: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kbroker.broker", module)
    assert main(["serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0"]) == 3


def test_python_dash_m_reports_config_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kbroker", "serve", "--override", "bad"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        # KBROKER_* variables in the caller's environment are config too (and warn when unknown).
        env={k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kbroker: error: ")
