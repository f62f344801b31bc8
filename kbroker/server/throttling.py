"""Client quotas on the request path: what one request records and how long its client
is throttled (KIP-219: the response says ``throttle_time_ms`` and the connection reads
nothing more for that long).

Dispatch builds a :class:`Meter` only when some quota is configured; otherwise the
request path pays a single flag check.

- Produce records the request's size against ``producer_byte_rate``.
- Fetch records the response's size against ``consumer_byte_rate``; a throttled fetch
  answers empty (the data is not sent, and its size is taken back) and a fetch is capped
  at what the quota window can take, as Kafka does, so one fetch cannot throttle forever.
- Every request with a ``throttle_time_ms`` field records its handling time against
  ``request_percentage`` (the share of one second spent serving the client, in percent).
  As Kafka counts a request thread's time and not a parked request's wait, only the time
  the handler runs on the event loop counts: a long-polling fetch's wait does not.
- A handler's own throttle (``controller_mutation_rate``) is kept when it is longer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

from kbroker.handlers.api import DetachedBody, Session
from kbroker.security.quotas import CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, QuotaManager

T = TypeVar("T")
PRODUCE_KEY = 0
FETCH_KEY = 1

#: A response frame as buffers (as dispatch returns it).
Parts = list[bytes | bytearray | memoryview]


class Meter:
    """The quota accounting of one request."""

    __slots__ = ("quotas", "session", "client_id", "api_key", "body", "frame_size", "incremental", "_busy",
                 "_throttle")

    def __init__(self, quotas: QuotaManager, session: Session, client_id: str | None, api_key: int,
                 body: Any, frame_size: int) -> None:
        self.quotas = quotas
        self.session = session
        self.client_id = client_id
        self.api_key = api_key
        self.frame_size = frame_size
        self._throttle = 0
        #: An incremental fetch session's request (its throttled answer keeps the session id).
        self.incremental = api_key == FETCH_KEY and body.get("session_epoch", -1) > 0
        if api_key == FETCH_KEY and body.get("replica_id", -1) < 0:
            cap = quotas.max_value_in_window(session.principal, client_id, CONSUMER_BYTE_RATE)
            if cap is not None:
                body["max_bytes"] = max(1, min(int(body["max_bytes"]), int(cap)))
        self._busy = 0.0

    async def timed(self, handler: Awaitable[T]) -> T:
        """Run ``handler``, adding the time its steps run on the event loop to the request's."""
        return await _Timed(self, handler)

    def after_handle(self, body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Record the request (its size, its handling time); put the throttle in ``body``."""
        quotas, principal, client_id = self.quotas, self.session.principal, self.client_id
        has_field = body is not None and "throttle_time_ms" in body
        throttle = 0
        if has_field or body is None:
            percent = self._busy * 100.0
            throttle = quotas.record(principal, client_id, REQUEST_PERCENTAGE, percent)
        if self.api_key == PRODUCE_KEY:
            throttle = max(throttle, quotas.record(principal, client_id, PRODUCER_BYTE_RATE, self.frame_size))
        if has_field:
            assert body is not None
            throttle = max(throttle, int(body["throttle_time_ms"]))
            if throttle and self.api_key != FETCH_KEY:
                # A copy of the same kind: a DetachedBody is still encoded off the event loop.
                body = (DetachedBody if isinstance(body, DetachedBody) else dict)(body, throttle_time_ms=throttle)
        self._throttle = throttle
        if self.api_key != FETCH_KEY:
            self.session.throttle_ms = throttle
        return body

    def after_encode(self, body: Mapping[str, Any], parts: Parts, encode: Callable[[Mapping[str, Any]], Parts]) -> Parts:
        """Fetch: record the response's size; a throttled fetch answers empty instead."""
        if self.api_key != FETCH_KEY:
            return parts
        quotas, principal, client_id = self.quotas, self.session.principal, self.client_id
        size = sum(len(p) for p in parts)
        bandwidth = quotas.record(principal, client_id, CONSUMER_BYTE_RATE, size)
        throttle = max(self._throttle, bandwidth)
        self.session.throttle_ms = throttle
        if throttle <= 0:
            return parts
        # As Kafka: the data is not sent, so it does not count against the quota either.
        quotas.unrecord(principal, client_id, CONSUMER_BYTE_RATE, size)
        return encode({"throttle_time_ms": throttle, "error_code": 0,
                       "session_id": body.get("session_id", 0) if self.incremental else 0, "responses": []})


class _Timed:
    """Awaits a coroutine step by step, timing each step (the time between two awaits)."""

    __slots__ = ("meter", "coro")

    def __init__(self, meter: Meter, awaitable: Awaitable[Any]) -> None:
        self.meter = meter
        self.coro = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, meter = self.coro.__await__(), self.meter
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as done:
                meter._busy += time.perf_counter() - started
                return done.value
            except BaseException:
                meter._busy += time.perf_counter() - started
                raise
            meter._busy += time.perf_counter() - started
            try:
                value, error = (yield yielded), None
            except BaseException as e:  # cancellation and the like: handed to the coroutine
                value, error = None, e
