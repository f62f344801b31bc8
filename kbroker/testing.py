"""Run a real kbroker inside a test process; also a pytest plugin.

``BrokerThread`` serves on an ephemeral 127.0.0.1 port from a background thread with
its own event loop, so synchronous clients (kafka-python, confluent-kafka) and async
ones (aiokafka, on the test's own loop) can both talk to it over a real socket.

The plugin provides the ``kafka_broker`` fixture (a fresh broker per test, data in
the test's ``tmp_path``) and ``kafka_bootstrap`` (its ``host:port``).

A cluster (etcd and several broker subprocesses, :class:`kbroker.localcluster.LocalCluster`):
``with local_cluster(brokers=3) as c: ... c.bootstrap_servers`` without pytest, or the
``kafka_cluster`` fixture (``@pytest.mark.kafka_cluster(brokers=..., overrides={...})`` to
shape it). Without etcd installed the fixture skips, and fails when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kbroker.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:  # imported when used: the plugin loads in every pytest session
    from kbroker.localcluster import LocalCluster


def make_config(data_dir: Path, overrides: Mapping[str, str] | None = None) -> Any:
    """A BrokerConfig listening on an ephemeral loopback port with data in ``data_dir``."""
    from kbroker.config import BrokerConfig

    values = {
        "listeners": "PLAINTEXT://127.0.0.1:0",
        "log.dirs": str(data_dir),
        # Short, not zero: kafka-python's first JoinGroup can race its own metadata fetch, and a
        # leader that assigns before the metadata arrives hands out nothing until it rejoins.
        "group.initial.rebalance.delay.ms": "200",
    }
    values.update(overrides or {})
    return BrokerConfig.from_sources(overrides=values, environ={})


class BrokerThread:
    """A broker serving from a daemon thread until :meth:`stop`."""

    def __init__(self, data_dir: Path, overrides: Mapping[str, str] | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = make_config(data_dir, overrides)
        self.clock = clock
        self.broker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kbroker", daemon=True)

    def start(self, timeout: float = 10.0) -> BrokerThread:
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("broker did not start in time")
        if self._error is not None:
            raise RuntimeError("broker failed to start") from self._error
        return self

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>`` of the broker's listener."""
        return str(self.broker.bootstrap)

    @property
    def faults(self) -> Any:
        """The broker's fault rules (a :class:`kbroker.server.faults.FaultInjector`), changed
        from the test's thread while the broker serves."""
        return self.broker.faults

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def _run(self) -> None:
        from kbroker.broker import Broker

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                self.broker = Broker(self.config, self.clock)
                async with self.broker.running():
                    self._started.set()
                    await self._stop.wait()
            except BaseException as e:  # surfaced to start()/stop()
                self._error = e
                self._started.set()

        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's loop thread and return its result."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return fut.result(30)

    def start_recording(self, path: str | Path, payloads: bool = False) -> None:
        """Record every request the broker serves to ``path`` (see ``Broker.start_recording``)."""
        self.call(self.broker.start_recording, path, payloads)

    def stop_recording(self) -> None:
        """Stop recording; the file is complete when this returns."""
        self.call(self.broker.stop_recording)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise RuntimeError("broker failed") from self._error

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if asyncio.iscoroutine(result):
        result = await result
    return result


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A running broker on an ephemeral port, data under the test's tmp_path."""
    with BrokerThread(tmp_path / "kbroker-data") as b:
        yield b


@pytest.fixture
def kafka_bootstrap(kafka_broker: BrokerThread) -> str:
    """``host:port`` of the ``kafka_broker`` fixture."""
    return kafka_broker.bootstrap


@contextmanager
def local_cluster(root: Path | None = None, brokers: int = 3,
                  overrides: Mapping[str, str] | None = None) -> Iterator[LocalCluster]:
    """A running :class:`LocalCluster` (etcd and ``brokers`` subprocesses), stopped on exit;
    its folder is ``root``, or a temporary directory removed afterwards."""
    from kbroker.localcluster import LocalCluster

    if root is not None:
        with LocalCluster(root, brokers, overrides) as cluster:
            yield cluster
        return
    with tempfile.TemporaryDirectory(prefix="kbroker-cluster-") as tmp, \
            LocalCluster(Path(tmp), brokers, overrides) as cluster:
        yield cluster


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``kafka_cluster`` marker."""
    config.addinivalue_line(
        "markers", "kafka_cluster(brokers=3, overrides=None): shape of the kafka_cluster fixture's cluster")


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A running local cluster (3 brokers unless the ``kafka_cluster`` marker says otherwise),
    its folder under the test's tmp_path. Skips without etcd; in CI (``CI`` set) that fails."""
    from kbroker.etcd.server import EtcdNotFound, EtcdServer

    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(str(e))
    marker = request.node.get_closest_marker("kafka_cluster")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    with local_cluster(tmp_path / "kbroker-cluster", options.get("brokers", 3), options.get("overrides")) as c:
        yield c
