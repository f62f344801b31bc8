"""A small HTTP server in the broker's own event loop, for what the broker serves besides
the Kafka protocol (metrics, health, fault rules). Starlette routes under uvicorn; both are
imported only when an HTTP port is configured, so a broker without one starts as fast as before.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

log = logging.getLogger(__name__)


class HttpEndpoint:
    """Serves ``routes`` (Starlette routes) on ``host:port`` (0: an ephemeral port) until stopped."""

    def __init__(self, host: str, port: int, routes: Sequence[Any], middleware: Sequence[Any] = ()) -> None:
        """``middleware``: Starlette ``Middleware`` entries wrapping every route (outermost first)."""
        self.host = host
        self.requested_port = port
        self.routes = list(routes)
        self.middleware = list(middleware)
        #: The bound port, once :meth:`start` returned.
        self.port = 0
        self._server: Any = None
        self._done = anyio.Event()

    async def start(self, tg: TaskGroup) -> None:
        """Bind (raising OSError when the port is taken) and serve in ``tg``."""
        import uvicorn
        from starlette.applications import Starlette

        class _Server(uvicorn.Server):
            # The broker owns the process's signals: uvicorn must not take them over.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        app = Starlette(routes=self.routes, middleware=self.middleware)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = _Server(config)

        async def serve() -> None:
            try:
                await self._server.serve(sockets=[sock])
            except Exception:
                log.exception("the HTTP endpoint on %s:%d failed", self.host, self.port)
            finally:
                sock.close()
                self._done.set()

        tg.start_soon(serve)
        while not self._server.started and not self._done.is_set():
            await anyio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving (open connections are closed)."""
        if self._server is None:
            return
        self._server.should_exit = True
        with anyio.move_on_after(1):
            await self._done.wait()
        if not self._done.is_set():
            # A response still streaming (server-sent events) never ends by itself, and uvicorn
            # waits for it: closing its connection tells the app the client left, which ends it.
            for conn in list(self._server.server_state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.close()
        with anyio.move_on_after(5):
            await self._done.wait()
