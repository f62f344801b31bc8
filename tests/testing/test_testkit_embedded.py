"""kbroker.testing without pytest: the embedded Broker/BrokerThread as context managers, its
temporary data folder, its errors, and advance() on the virtual clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.testing import Broker, BrokerThread

# Starts brokers (also through Broker and KafkaContainer, which tests/conftest.py does not see).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_importable_and_usable_without_pytest(tmp_path: Path) -> None:
    """A program with no pytest (its import blocked) starts a broker and serves a client; the
    plugin's fixtures are left out and no part of pytest is loaded."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # as if pytest were not installed: importing it fails
        import kbroker.testing as kt
        from confluent_kafka import Consumer, Producer, TopicPartition

        with kt.Broker() as kafka:
            p = Producer({"bootstrap.servers": kafka.bootstrap_servers})
            p.produce("plain", b"no pytest here")
            assert p.flush(10) == 0
            c = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "g"})
            c.assign([TopicPartition("plain", 0, 0)])
            m = c.poll(10)
            c.close()
            print(m.value().decode(), hasattr(kt, "kafka_broker"),
                  sorted(n for n in sys.modules if n.split(".")[0] in ("pytest", "_pytest") and sys.modules[n]))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "no pytest here False []"


def test_broker_context_manager_removes_its_temporary_folder() -> None:
    with Broker({"num.partitions": "2"}) as kafka:
        data_dir = kafka.data_dir
        assert kafka.running and data_dir.is_dir()
        assert kafka.bootstrap_servers == kafka.bootstrap == f"127.0.0.1:{kafka.port}"
        with kafka.admin() as admin:
            admin.create_topic("t", partitions=-1)
            assert admin.partitions("t") == 2
    assert not kafka.running
    assert not data_dir.exists() and not data_dir.parent.exists()


def test_given_data_dir_is_kept(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d") as kafka, kafka.admin() as admin:
        admin.create_topic("kept")
    assert any(p.name.startswith("kept-") for p in (tmp_path / "d").iterdir())
    with Broker(data_dir=tmp_path / "d") as again, again.admin() as admin:
        assert admin.topics() == ["kept"]


def test_a_broker_that_cannot_start_says_why_and_leaves_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = Broker({"listeners": f"PLAINTEXT://127.0.0.1:{port}"})
        tmp = broker.data_dir.parent
        with pytest.raises(RuntimeError, match="failed to start") as e:
            broker.start()
        assert e.value.__cause__ is not None
        assert not tmp.exists()


def test_not_started_broker_refuses_calls() -> None:
    broker = Broker()
    with pytest.raises(RuntimeError, match="not started"):
        broker.bootstrap_servers  # noqa: B018
    with pytest.raises(RuntimeError, match="not running"):
        broker.call(lambda: None)
    with pytest.raises(RuntimeError, match="not started"):
        broker.advance(1)
    broker.stop()  # never started: nothing to stop, the temporary folder goes


def test_call_runs_on_the_broker_loop() -> None:
    with Broker() as kafka:
        async def endpoints() -> list[str]:
            return sorted(kafka.broker.endpoints)

        assert kafka.call(endpoints) == ["PLAINTEXT"]
        assert kafka.call(lambda a, b: a + b, 2, 3) == 5


def test_advance_on_the_system_clock_is_a_clear_error() -> None:
    with Broker() as kafka, pytest.raises(TypeError, match="ManualClock"):
        kafka.advance(1000)


def test_advance_moves_the_virtual_clock() -> None:
    clock = ManualClock()
    with Broker(clock=clock) as kafka:
        before = clock.time_ms()
        kafka.advance(60_000)
        assert clock.time_ms() == before + 60_000


def test_advance_refuses_going_back() -> None:
    with Broker(clock=ManualClock()) as kafka, pytest.raises(ValueError, match="forward"):
        kafka.advance(-1)


def test_the_plugin_loads_light() -> None:
    """kbroker.testing loads in every pytest session: the client and config code wait until used."""
    script = ("import sys, kbroker.testing as kt; heavy = sorted(m for m in ('kbroker.client', 'kbroker.config', "
              "'kbroker.broker') if m in sys.modules); kt.KafkaAdmin; print(heavy, 'kbroker.client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[] True"


def test_a_memory_broker_makes_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # log.dirs=:memory: keeps the data in memory: the kit must not create a folder on disk either.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with BrokerThread(overrides={"log.dirs": ":memory:"}) as broker:
        assert broker.running
        assert list(tmp_path.iterdir()) == []


def test_a_call_pending_when_the_broker_stops_fails_at_once() -> None:
    # A call (or advance) racing stop(): the loop closes without running it; the caller must hear
    # so at once, not wait out the call's timeout for a future nothing will complete.
    import asyncio
    import threading
    import time

    outcome: list[BaseException] = []
    with BrokerThread(overrides={"log.dirs": ":memory:"}) as broker:
        def call() -> None:
            try:
                broker.call(asyncio.sleep, 60, timeout=30)
            except BaseException as e:  # noqa: BLE001 - the outcome is the test's subject
                outcome.append(e)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.2)
    started = time.monotonic()
    caller.join(10)
    assert not caller.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], RuntimeError) and "stopped" in str(outcome[0])


def test_start_twice_and_stop_after_a_failed_start_say_what_happened() -> None:
    broker = BrokerThread(overrides={"log.dirs": ":memory:"})
    with broker, pytest.raises(RuntimeError, match="already started"):
        broker.start()
    with pytest.raises(RuntimeError, match="already started"):
        broker.start()
    broker.stop()  # again: nothing to do
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        failed = BrokerThread(overrides={"log.dirs": ":memory:",
                                         "listeners": f"PLAINTEXT://127.0.0.1:{taken.getsockname()[1]}"})
        with pytest.raises(RuntimeError, match="failed to start"):
            failed.start()
        failed.stop()  # start() reported the failure: the cleanup in a finally does not raise it again


def test_a_manual_clock_broker_has_no_initial_rebalance_delay() -> None:
    # The delay is a timer on the broker's clock: on a manual clock a classic group's first
    # member waited until the test advanced it.
    with Broker(clock=ManualClock()) as kafka:
        assert kafka.broker.config.get("group.initial.rebalance.delay.ms") == 0
    with Broker(overrides={"group.initial.rebalance.delay.ms": "50"}, clock=ManualClock()) as kafka:
        assert kafka.broker.config.get("group.initial.rebalance.delay.ms") == 50
    with Broker() as kafka:
        assert kafka.broker.config.get("group.initial.rebalance.delay.ms") == 200
