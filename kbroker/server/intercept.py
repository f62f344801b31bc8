"""Interceptors: code that wraps the serving of every request, between the decoded request
and its response body (fault injection, the flight recorder, metrics, API version emulation).

An interceptor is ``async def __call__(exchange, handle) -> body``: it may look at the request,
wait, call ``handle()`` (the handler, and the interceptors inside it) or not, and return the
body to answer with. Returning ``None`` answers nothing (the client waits for a response that
never comes); raising :class:`~kbroker.handlers.api.CloseConnection` closes the connection,
before or after ``handle()`` applied the request. With none installed, dispatch calls the
handler directly: the request path pays one truth test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kbroker.handlers.api import Session

#: What a handler returns: a response body (a mapping, possibly an EncodedBody), or None for no response.
Body = Any
#: Serves the request (the next interceptor inward, the handler at the end) and returns its body.
Handle = Callable[[], Awaitable[Body]]


@dataclass(slots=True)
class Exchange:
    """One decoded request as interceptors see it; ``notes`` carries what one interceptor
    tells the ones outside it (the fault injector notes the rule it applied, say)."""

    session: Session
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    #: The decoded request body.
    request: Any
    #: Bytes of the request frame (without its size prefix).
    request_size: int
    #: ``clock.monotonic()`` when the request was decoded.
    received: float
    notes: dict[str, Any] = field(default_factory=dict)


class Interceptor(Protocol):
    """Wraps the serving of one request."""

    async def __call__(self, exchange: Exchange, handle: Handle) -> Body: ...


class Interceptors:
    """The broker's interceptors, outermost first; changed at run time (the flight recorder is
    switched on and off, fault rules come and go) by :meth:`add` and :meth:`remove`."""

    def __init__(self, items: Sequence[Interceptor] = ()) -> None:
        self._items: tuple[Interceptor, ...] = tuple(items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, interceptor: Interceptor, *, outermost: bool = False) -> None:
        """Install ``interceptor`` innermost (next to the handler), or outermost."""
        self._items = (interceptor, *self._items) if outermost else (*self._items, interceptor)

    def remove(self, interceptor: Interceptor) -> None:
        """Uninstall ``interceptor`` (no-op when absent)."""
        self._items = tuple(i for i in self._items if i is not interceptor)

    def __iter__(self) -> Any:
        return iter(self._items)

    async def serve(self, exchange: Exchange, handler: Handle) -> Body:
        """Run the request through every interceptor, the handler innermost."""
        items = self._items

        def at(i: int) -> Handle:
            if i == len(items):
                return handler
            return lambda: items[i](exchange, at(i + 1))

        return await at(0)()
