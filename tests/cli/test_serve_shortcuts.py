"""``kbroker serve --dev/--port/--data-dir/--emulate`` and ``KBROKER_BOOTSTRAP``, through the
real entry point where it matters."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from kbroker.cli import build_parser, main
from kbroker.cli.serve import build_config

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on PLAINTEXT://([0-9.]+):(\d+), data in (\S+)")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def _no_kbroker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KBROKER_"):
            monkeypatch.delenv(name)


# -- the config the options build ----------------------------------------------------------------

def test_dev_fills_only_what_no_layer_sets(tmp_path: Path) -> None:
    config = build_config(parse("--dev"), str(tmp_path))
    assert config.get("group.initial.rebalance.delay.ms") == 0
    assert config.get("auto.create.topics.enable") is True
    assert config.log_dirs == [tmp_path]
    mine = build_config(parse("--dev", "--override", "group.initial.rebalance.delay.ms=500",
                              "--override", "auto.create.topics.enable=false", "--data-dir", str(tmp_path / "d")),
                        str(tmp_path))
    assert mine.get("group.initial.rebalance.delay.ms") == 500
    assert mine.get("auto.create.topics.enable") is False
    assert mine.log_dirs == [tmp_path / "d"]
    assert build_config(parse()).get("group.initial.rebalance.delay.ms") == 3000  # no --dev: Kafka's


def test_port_keeps_the_listener_name_and_host(tmp_path: Path) -> None:
    assert build_config(parse("--port", "19092")).get("listeners") == ["PLAINTEXT://127.0.0.1:19092"]
    props = tmp_path / "server.properties"
    props.write_text("listeners=CLIENT://[::1]:9092,OTHER://127.0.0.1:9093\n"
                     "listener.security.protocol.map=CLIENT:PLAINTEXT,OTHER:PLAINTEXT\n")
    config = build_config(parse("--config", str(props), "--port", "0"))
    assert config.get("listeners") == ["CLIENT://[::1]:0", "OTHER://127.0.0.1:9093"]


def test_data_dir_and_emulate_set_their_keys(tmp_path: Path) -> None:
    config = build_config(parse("--data-dir", str(tmp_path), "--emulate", "3.6"))
    assert config.log_dirs == [tmp_path]
    assert config.get("emulate.version") == "3.6"
    # --override is given the last word.
    assert build_config(parse("--emulate", "3.6", "--override", "emulate.version=2.8")).get("emulate.version") == "2.8"


def test_bad_shortcut_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--emulate", "2.7"]) == 2
    assert "invalid choice: '2.7'" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "port 70000 is not in 0..65535" in capsys.readouterr().err
    assert main(["serve", "--port", "x"]) == 2


# -- through the real entry point ----------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


class Serve:
    """``python -m kbroker serve ARGS`` in ``cwd``; ended only by this object, by PID."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kbroker", "serve", *args], cwd=cwd, env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = _LISTENING.search(line)
            if m:
                self.bootstrap, self.data_dir = f"{m.group(1)}:{m.group(2)}", Path(m.group(3))
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("kbroker serve did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path, "--dev", "--port", "0")
    try:
        yield server
    finally:
        server.stop()


def test_serve_dev_starts_a_group_at_once_and_removes_its_data(dev: Serve, tmp_path: Path) -> None:
    assert dev.data_dir.is_dir() and dev.data_dir.name.startswith("kbroker-dev-")
    assert not any(tmp_path.iterdir())  # nothing written where it was started
    admin = KafkaAdminClient(bootstrap_servers=dev.bootstrap)
    described = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
    admin.close()
    [configs] = [c for by_name in described.values() for c in by_name.values()]
    assert configs["group.initial.rebalance.delay.ms"]["value"] == "0", configs

    producer = KafkaProducer(bootstrap_servers=dev.bootstrap)
    producer.send("dev-topic", b"hello").get(10)  # auto-created
    producer.close()
    started = time.monotonic()
    consumer = KafkaConsumer("dev-topic", bootstrap_servers=dev.bootstrap, group_id="dev-group",
                             auto_offset_reset="earliest", consumer_timeout_ms=10000)
    first = next(iter(consumer))
    joined = time.monotonic() - started
    consumer.close()
    assert first.value == b"hello"
    assert joined < 3.0, f"the group took {joined:.1f} s: the 3 s initial rebalance delay is still on"
    assert dev.stop() == 0
    assert not dev.data_dir.exists()


def test_serve_data_dir_keeps_the_data(tmp_path: Path) -> None:
    data = tmp_path / "kept"
    server = Serve(tmp_path, "--dev", "--port", "0", "--data-dir", str(data))
    try:
        assert server.data_dir == data
        producer = KafkaProducer(bootstrap_servers=server.bootstrap)
        producer.send("kept-topic", b"x").get(10)
        producer.close()
    finally:
        assert server.stop() == 0
    assert (data / "kept-topic-0").is_dir()


def test_serve_port_binds_that_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Serve(tmp_path, "--dev", "--port", str(port))
    try:
        assert server.bootstrap == f"127.0.0.1:{port}"
    finally:
        server.stop()


def test_kbroker_bootstrap_is_every_client_command_s_default(dev: Serve, tmp_path: Path) -> None:
    producer = KafkaProducer(bootstrap_servers=dev.bootstrap)
    producer.send("env-topic", b"x").get(10)
    producer.close()
    proc = subprocess.run([sys.executable, "-m", "kbroker", "topics", "--list"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=_env(KBROKER_BOOTSTRAP=dev.bootstrap))
    assert proc.returncode == 0, proc.stderr
    assert "env-topic" in proc.stdout.split()
    # An explicit --bootstrap-server still wins; an unreachable default is named in the error.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.run([sys.executable, "-m", "kbroker", "topics", "--list", "--bootstrap-server", dev.bootstrap],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env(KBROKER_BOOTSTRAP=dead))
    assert proc.returncode == 0 and "env-topic" in proc.stdout.split(), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kbroker", "topics", "--list", "--command-timeout", "2"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env(KBROKER_BOOTSTRAP=dead))
    assert proc.returncode == 1
    assert dead in proc.stderr


def test_kbroker_bootstrap_is_the_parsed_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KBROKER_BOOTSTRAP", "example:1234")
    args = build_parser().parse_args(["topics", "--list"])
    assert args.bootstrap_server == "example:1234"
    monkeypatch.setenv("KBROKER_BOOTSTRAP", "  ")  # blank: as unset
    assert build_parser().parse_args(["topics", "--list"]).bootstrap_server == "127.0.0.1:9092"


def test_the_client_bootstrap_variable_is_no_unknown_broker_config(caplog: pytest.LogCaptureFixture) -> None:
    from kbroker.config import BrokerConfig

    with caplog.at_level(logging.WARNING, logger="kbroker.config"):
        BrokerConfig.load(env={"KBROKER_BOOTSTRAP": "127.0.0.1:9092", "KBROKER_BOGUS_THING": "x"})
    assert "KBROKER_BOGUS_THING" in caplog.text  # still warned about: a misspelt key
    assert "KBROKER_BOOTSTRAP" not in caplog.text
