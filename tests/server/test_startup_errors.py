"""``kbroker serve`` start-up failures: one clear line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.config import BrokerConfig, ConfigError

#: Each test starts `kbroker serve` as a subprocess.
pytestmark = pytest.mark.integration


def _serve(*overrides: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "kbroker", "serve"]
    for o in overrides:
        args += ["--override", o]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def _assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kbroker: error:")]
    assert len(errors) == 1, result.stderr
    assert all(w in errors[0] for w in words), errors[0]
    assert "listening on" not in result.stdout


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={tmp_path / 'd'}")
    _assert_one_error_line(result, f"127.0.0.1:{port}", "in use")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = _serve("listeners=PLAINTEXT://127.0.0.1:0", f"log.dirs={tmp_path / 'f'}")
    _assert_one_error_line(result, str(tmp_path / "f"))


def test_data_dir_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = _serve("listeners=PLAINTEXT://127.0.0.1:0", f"log.dirs={tmp_path / 'f' / 'd'}")
    _assert_one_error_line(result, str(tmp_path / "f" / "d"), "Not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_data_dir_not_writable(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        result = _serve("listeners=PLAINTEXT://127.0.0.1:0", f"log.dirs={d}")
    finally:
        d.chmod(0o755)
    _assert_one_error_line(result, str(d), "ermission denied")


def test_unknown_key_is_ignored_with_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kbroker.config"):
        config = BrokerConfig.load(overrides=["log.retension.ms=5"], env={"KBROKER_LOG_RETENSION_MS": "5"})
    assert config.unknown == {"log.retension.ms": "5"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("log.retension.ms" in m and "did you mean 'log.retention.ms'?" in m for m in messages), messages
    assert any("KBROKER_LOG_RETENSION_MS" in m and "did you mean 'KBROKER_LOG_RETENTION_MS'?" in m
               for m in messages), messages


def test_unknown_dynamic_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'log.retention.ms'"):
        BrokerConfig({}).with_dynamic({"log.retension.ms": "5"})
