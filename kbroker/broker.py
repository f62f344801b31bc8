"""The broker: wires config, clock, storage, metadata and the listeners together."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketStream, TaskGroup

from kbroker import heap
from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.server.connection import Connection

if TYPE_CHECKING:
    from kbroker.config import BrokerConfig

log = logging.getLogger("kbroker")


class Broker:
    """One broker process's state; handlers reach everything through it."""

    def __init__(self, config: BrokerConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        from kbroker.groups import GroupCoordinator
        from kbroker.log import LogManager
        from kbroker.metadata.manager import MetadataManager
        from kbroker.replica.manager import ReplicaManager
        from kbroker.txn.producer_ids import ProducerIdManager

        self.config = config
        self.clock = clock
        self.node_id: int = config.node_id
        self.stopping = False
        #: Whether this broker is its process's only tenant (``kbroker serve``): it may then
        #: tune process-wide state such as the garbage collector (see :mod:`kbroker.heap`).
        self.owns_process = False
        self.log_dirs = [Path(d) for d in config.log_dirs]
        #: Advertised (host, port) per listener name, known once the listeners are bound.
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.log_manager = LogManager(self.log_dirs, clock, self.default_log_config())
        self.metadata = MetadataManager(self)
        self.replica_manager = ReplicaManager(self)
        self.groups = GroupCoordinator.for_broker(self)
        self.producer_ids = ProducerIdManager(self.log_dirs[0])
        self._connections: set[Connection] = set()

    def default_log_config(self):  # type: ignore[no-untyped-def]
        from kbroker.metadata.log_config import log_config_for

        return log_config_for(self.config, {})

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the first listener, for clients."""
        host, port = next(iter(self.endpoints.values()))
        return f"{host}:{port}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Broker]:
        """Bind every listener and serve until the block exits, then stop cleanly."""
        from kbroker.handlers import registry

        registry()  # import every handler now: a missing one fails start-up, not a request
        async with anyio.create_task_group() as tg:
            await self._bind(tg)
            await self.replica_manager.start(tg)
            await self.groups.start(tg)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
                tg.cancel_scope.cancel()

    async def _bind(self, tg: TaskGroup) -> None:
        advertised = {ls.name: ls for ls in self.config.advertised_listeners}
        for ls in self.config.listeners:
            host = ls.host or "0.0.0.0"
            listener = await anyio.create_tcp_listener(local_host=host, local_port=ls.port, reuse_port=False)
            port = ls.port
            for sock_listener in listener.listeners:
                port = sock_listener.extra(anyio.abc.SocketAttribute.local_port)
                break
            adv = advertised.get(ls.name)
            adv_host = (adv.host if adv and adv.host else host) or "127.0.0.1"
            adv_port = adv.port if adv and adv.port else port
            self.endpoints[ls.name] = (adv_host, adv_port)
            tg.start_soon(listener.serve, self._handler(ls.name))

    def _handler(self, name: str):  # type: ignore[no-untyped-def]
        async def handle(stream: SocketStream) -> None:
            conn = Connection(self, stream, name)
            self._connections.add(conn)
            try:
                await conn.run()
            finally:
                self._connections.discard(conn)

        return handle

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop taking requests, let in-flight ones finish, then flush and close the logs."""
        if self.stopping:
            return
        self.stopping = True
        await self.groups.shutdown()  # answer blocked JoinGroup/SyncGroup calls so connections drain
        # Release long-polling fetches so they answer now instead of at their max wait.
        await self.replica_manager.stop()
        with anyio.move_on_after(grace_seconds):
            while True:
                for conn in list(self._connections):
                    if not conn.busy:
                        conn.close_when_idle()
                if not any(c.busy for c in self._connections):
                    break
                await anyio.sleep(0.01)
        self.log_manager.shutdown()


def run(config: BrokerConfig) -> int:
    """Run a broker until SIGTERM or SIGINT; the ``kbroker serve`` entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        broker = Broker(config)
        broker.owns_process = True
        # Logs, indexes and metadata are loaded: keep them out of full collections.
        heap.settle("start-up", collect=True)
        async with broker.running():
            listeners = ", ".join(f"{n}://{h}:{p}" for n, (h, p) in broker.endpoints.items())
            print(f"kbroker {broker.node_id} listening on {listeners}, data in "
                  f"{', '.join(str(d) for d in broker.log_dirs)}", flush=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for sig in signals:
                    log.info("received %s, shutting down", signal.Signals(sig).name)
                    break

    backend_options = {}
    if sys.platform != "win32":
        try:
            import uvloop  # noqa: F401

            backend_options["use_uvloop"] = True
        except ImportError:
            pass
    anyio.run(main, backend="asyncio", backend_options=backend_options)
    return 0
