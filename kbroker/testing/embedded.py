"""A real kbroker inside the calling process, served from a background thread.

``BrokerThread`` serves on an ephemeral 127.0.0.1 port from a daemon thread with its own
event loop, so synchronous clients (kafka-python, confluent-kafka) and async ones (aiokafka,
on the caller's own loop) can all talk to it over a real socket. ``Broker`` is the same with
a temporary data folder of its own, for use without any test framework::

    with Broker() as kafka:
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbroker.clock import SYSTEM_CLOCK, Clock, ManualClock

if TYPE_CHECKING:  # imported when used: starting a broker should not pay for the cluster tools
    from kbroker.localcluster import LocalCluster
    from kbroker.testing.admin import KafkaAdmin


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
    """A broker serving from a daemon thread between :meth:`start` and :meth:`stop`
    (or as a context manager). ``data_dir`` None means a temporary folder, removed on stop
    (none with ``log.dirs=:memory:`` in ``overrides``)."""

    #: Embedded: the broker's internals (``broker``, ``call``, ``advance``) are at hand.
    external = False

    def __init__(self, data_dir: Path | str | None = None, overrides: Mapping[str, str] | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        from kbroker.fs import MEMORY_LOG_DIRS  # imported when used: the kit loads fast

        self._tmp: str | None = None
        if data_dir is None and (overrides or {}).get("log.dirs") == MEMORY_LOG_DIRS:
            data_dir = MEMORY_LOG_DIRS  # data in memory: no temporary folder on disk either
        elif data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="kbroker-")
            data_dir = Path(self._tmp) / "data"
        self.data_dir = Path(data_dir)
        if isinstance(clock, ManualClock) and "group.initial.rebalance.delay.ms" not in (overrides or {}):
            # The delay is a timer on the clock: on a manual one, a classic group would wait for
            # the test to advance it before its first member joins.
            overrides = {**(overrides or {}), "group.initial.rebalance.delay.ms": "0"}
        self.config = make_config(self.data_dir, overrides)
        self.clock = clock
        self.broker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        #: The failure in ``_error`` was raised to the caller already.
        self._reported = False
        self._thread = threading.Thread(target=self._run, name="kbroker", daemon=True)

    def start(self, timeout: float = 10.0) -> BrokerThread:
        """Start serving; returns once the listener is bound. Raises RuntimeError when the
        broker cannot start (its cause attached), does not start within ``timeout`` seconds,
        or was started before (a BrokerThread serves once: make a new one to start again)."""
        if self._thread.ident is not None:
            raise RuntimeError("this broker was already started (a BrokerThread serves once)")
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("broker did not start in time")
        if self._error is not None:
            self._remove_tmp()
            self._reported = True  # stop() need not raise it again
            raise RuntimeError("broker failed to start") from self._error
        return self

    @property
    def running(self) -> bool:
        """Whether the broker is serving (started, not stopped, not failed)."""
        return self._started.is_set() and self._error is None and self._thread.is_alive()

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>`` of the broker's listener."""
        if self.broker is None or not self._started.is_set():
            raise RuntimeError("the broker is not started")
        return str(self.broker.bootstrap)

    @property
    def bootstrap_servers(self) -> str:
        """The ``bootstrap.servers`` value for a client (the same as :attr:`bootstrap`)."""
        return self.bootstrap

    @property
    def port(self) -> int:
        """The listener's port."""
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

    def call(self, fn: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Run ``fn(*args)`` on the broker's loop thread (awaiting it when it is a coroutine
        function) and return its result. TimeoutError after ``timeout`` seconds; RuntimeError
        when the broker is not running or stops before the call completed."""
        if self._loop is None or not self.running:
            raise RuntimeError("the broker is not running")
        fut = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        deadline = time.monotonic() + timeout
        while True:
            try:
                # In short steps: a broker stopping meanwhile closes its loop without running the
                # call, and nothing would ever complete the future.
                return fut.result(max(min(deadline - time.monotonic(), 0.05), 0))
            except TimeoutError:
                if not self._thread.is_alive():
                    fut.cancel()
                    raise RuntimeError("the broker stopped before the call completed") from None
                if time.monotonic() >= deadline:
                    raise

    def advance(self, ms: int) -> None:
        """Move the broker's virtual clock ``ms`` milliseconds forward and let everything due
        by then happen (session timeouts, retention, long polls). The broker must have been
        started with a :class:`kbroker.clock.ManualClock`."""
        if ms < 0:
            raise ValueError(f"the clock only moves forward (asked for {ms} ms)")
        if self.broker is None:
            raise RuntimeError("the broker is not started")
        self.call(self.broker.advance_clock, ms)

    @property
    def faults(self) -> Any:
        """The broker's fault rules (a :class:`kbroker.server.faults.FaultInjector`), changed
        from the test's thread while the broker serves."""
        if self.broker is None:
            raise RuntimeError("the broker is not started")
        return self.broker.faults

    def start_recording(self, path: str | Path, payloads: bool = False) -> None:
        """Record every request the broker serves to ``path`` (see ``Broker.start_recording``)."""
        self.call(self.broker.start_recording, path, payloads)

    def stop_recording(self) -> None:
        """Stop recording; the file is complete when this returns."""
        self.call(self.broker.stop_recording)

    def admin(self) -> KafkaAdmin:
        """A new :class:`KafkaAdmin` connected to this broker (close it, or use ``with``)."""
        from kbroker.testing.admin import KafkaAdmin

        return KafkaAdmin(self.bootstrap)

    def reset(self, timeout: float = 30.0) -> None:
        """Delete every topic and group (internal topics stay): the broker is as new."""
        with self.admin() as admin:
            admin.reset(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving, wait for the thread, and remove a temporary data folder. Raises
        RuntimeError (once) when the broker failed while serving; a failure :meth:`start`
        raised is not raised again. Stopping again does nothing."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            # The loop may be closing on its own (a failed start, a crash): nothing to tell then.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._remove_tmp()
        if self._error is not None and not self._reported and not isinstance(self._error, asyncio.CancelledError):
            self._reported = True
            raise RuntimeError("broker failed") from self._error

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Broker(BrokerThread):
    """An embedded broker for programs and any test framework: data in a temporary folder
    unless ``data_dir`` is given, broker configs in ``overrides``::

        with Broker({"num.partitions": "3"}) as kafka:
            print(kafka.bootstrap_servers)
    """

    def __init__(self, overrides: Mapping[str, str] | None = None, *, data_dir: Path | str | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(data_dir, overrides, clock)

    def __enter__(self) -> Broker:
        self.start()
        return self


async def _call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if asyncio.iscoroutine(result):
        result = await result
    return result


class ExternalKafka:
    """A Kafka (or kbroker) the tests did not start, at ``bootstrap_servers``: what the
    session fixtures give when ``--kafka-bootstrap`` or ``KBROKER_TEST_BOOTSTRAP`` is set."""

    #: Not embedded: there is no broker object, clock or fault injector to reach.
    external = True

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    @property
    def bootstrap(self) -> str:
        """The same as :attr:`bootstrap_servers`."""
        return self.bootstrap_servers

    def admin(self) -> KafkaAdmin:
        """A new :class:`KafkaAdmin` connected to this Kafka."""
        from kbroker.testing.admin import KafkaAdmin

        return KafkaAdmin(self.bootstrap_servers)

    def reset(self, timeout: float = 30.0) -> None:
        """Delete every topic and group (internal topics stay)."""
        with self.admin() as admin:
            admin.reset(timeout)


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
