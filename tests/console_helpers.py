"""A web console served around a running :class:`BrokerThread` (the console's own tests build it
themselves, settings and all, instead of going through ``console.port``)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import httpx

from kbroker.console.app import build_middleware, build_routes
from kbroker.console.backend import ConsoleBackend, ConsoleSettings
from kbroker.console.context import Console
from kbroker.server.http import HttpEndpoint
from kbroker.testing import BrokerThread


class Served:
    """A console served on an ephemeral port from the broker's own event loop."""

    def __init__(self, thread: BrokerThread, settings: ConsoleSettings) -> None:
        self.thread = thread
        self.settings = settings
        self.console: Console | None = None
        self.endpoint: HttpEndpoint | None = None
        self._task: Any = None

    def __enter__(self) -> Served:
        async def boot() -> None:
            broker = self.thread.broker
            self.console = Console(ConsoleBackend(broker, broker.interceptors, version="test"), self.settings)
            self.endpoint = HttpEndpoint("127.0.0.1", 0, build_routes(self.console), build_middleware(self.console))
            ready = anyio.Event()

            async def run() -> None:
                async with anyio.create_task_group() as tg:
                    assert self.endpoint is not None
                    await self.endpoint.start(tg)
                    ready.set()

            self._task = asyncio.ensure_future(run())
            await ready.wait()

        self.thread.call(boot)
        return self

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return f"http://127.0.0.1:{self.endpoint.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self.endpoint is not None
            await self.endpoint.stop()
            await self._task

        self.thread.call(stop)
