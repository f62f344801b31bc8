"""Connection quotas and the request memory budget, shared by every connection.

``max.connections`` and ``max.connections.per.ip`` (with its overrides) follow Kafka's
``ConnectionQuotas``: at the broker-wide limit the listener stops accepting until a
connection closes (the kernel's backlog holds new ones meanwhile); over an address's
limit a new connection is closed at once.

``queued.max.request.bytes`` follows Kafka's memory pool: request bytes read from the
sockets and not yet served are counted, and once the budget is spent connections stop
reading (backpressure) instead of buffering more.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio

from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.config.listeners import parse_ip_overrides
from kbroker.security.quotas import SampledRate

log = logging.getLogger(__name__)
_INT_MAX = 2**31 - 1


def _resolve(host: str) -> set[str]:
    """The addresses ``host`` stands for (itself when it is an address literal)."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except OSError as e:
        log.warning("max.connections.per.ip.overrides: cannot resolve %s: %s", host, e)
        return set()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _resolve_all(overrides: dict[str, int]) -> dict[str, int]:
    return {addr: n for name, n in overrides.items() for addr in _resolve(name)}


class ConnectionQuotas:
    """Counts open connections, overall, per listener and per client address, and
    measures how fast they are created.

    As Kafka's ConnectionQuotas: at ``listener.name.<l>.max.connections`` the listener
    stops accepting until one of its connections closes; over ``max.connection.creation.rate``
    (broker-wide, or the listener's own) the acceptor waits the throttle time before it
    takes the connection; over an IP's ``connection_creation_rate`` quota the new
    connection is not served and is closed after the throttle time.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, samples: int = 11, window_seconds: int = 1,
                 ip_rate: Callable[[str], float | None] = lambda host: None) -> None:
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.per_listener: Counter[str] = Counter()
        self._clock = clock
        self._samples = samples
        self._window_ms = window_seconds * 1000
        self._ip_rate = ip_rate
        #: Connection creation rates: broker-wide (key None), per listener and per address.
        self._rates: dict[tuple[str, str] | None, SampledRate] = {}
        self._slot: anyio.Event | None = None
        self._overrides_raw: str | None = None
        self._overrides: dict[str, int] = {}

    async def refresh(self, config: Any) -> None:
        """Take up a changed ``max.connections.per.ip.overrides`` (host names resolved off the loop)."""
        raw = config.get("max.connections.per.ip.overrides")
        if raw != self._overrides_raw:
            self._overrides_raw = raw
            try:
                parsed = parse_ip_overrides(raw)
                if any(not _is_address(name) for name in parsed):
                    self._overrides = await anyio.to_thread.run_sync(_resolve_all, parsed)
                else:
                    self._overrides = {str(ipaddress.ip_address(name)): n for name, n in parsed.items()}
            except Exception as e:  # validated when set; keep serving with what was in force
                log.error("cannot apply max.connections.per.ip.overrides=%r: %s", raw, e)

    def _limit_for(self, config: Any, host: str) -> int:
        return self._overrides.get(host, int(config.get("max.connections.per.ip")))

    async def wait_for_slot(self, config: Any, listener: str | None = None) -> None:
        """Return once fewer than ``max.connections`` connections are open (and fewer than
        the listener's ``max.connections`` on ``listener``)."""
        while (self.total >= int(config.get("max.connections"))
               or (listener is not None
                   and self.per_listener[listener] >= int(config.listener_get(listener, "max.connections")))):
            if self._slot is None or self._slot.is_set():
                self._slot = anyio.Event()
            await self._slot.wait()

    def wake(self) -> None:
        """Limits may have changed (a dynamic config): waiting acceptors look again."""
        if self._slot is not None:
            self._slot.set()

    def _rate(self, key: tuple[str, str] | None) -> SampledRate:
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = SampledRate(self._samples, self._window_ms)
        return rate

    def _record(self, key: tuple[str, str] | None, limit: float, now: int) -> int:
        rate = self._rate(key)
        rate.record(1.0, now)
        # Kafka bounds connection throttling by one quota window.
        return min(rate.throttle_ms(limit, now), self._window_ms)

    def creation_delay_ms(self, config: Any, listener: str) -> int:
        """Record a new connection on ``listener``; how long (ms) the acceptor waits before
        taking it, to keep within ``max.connection.creation.rate``."""
        broker_limit = int(config.get("max.connection.creation.rate"))
        listener_limit = int(config.listener_get(listener, "max.connection.creation.rate"))
        if broker_limit >= _INT_MAX and listener_limit >= _INT_MAX and not self._rates:
            return 0  # no rate limit configured, nor ever measured
        now = self._clock.time_ms()
        delay = self._record(None, broker_limit, now) if broker_limit < _INT_MAX else 0
        if listener_limit < _INT_MAX:
            delay = max(delay, self._record(("listener", listener), listener_limit, now))
        return delay

    def ip_throttle_ms(self, host: str, listener: str) -> int:
        """Record a new connection from ``host`` against its ``connection_creation_rate``
        quota; over it, the throttle time (ms) after which the refused connection is
        closed (the connection is then not counted anywhere)."""
        limit = self._ip_rate(host)
        if limit is None:
            return 0
        now = self._clock.time_ms()
        throttle = self._record(("ip", host), limit, now)
        if throttle > 0:
            for key in (("ip", host), None, ("listener", listener)):
                rate = self._rates.get(key)
                if rate is not None:
                    rate.record(-1.0, now)
        return throttle

    def admit(self, config: Any, host: str, listener: str | None = None) -> int | None:
        """Count a new connection from ``host``; returns the limit instead when it is over it.

        Call :meth:`refresh` first so that the overrides in force are used."""
        limit = self._limit_for(config, host)
        if self.per_ip[host] >= limit:
            return limit
        self.per_ip[host] += 1
        self.total += 1
        if listener is not None:
            self.per_listener[listener] += 1
        return None

    def release(self, host: str, listener: str | None = None) -> None:
        """A connection admitted by :meth:`admit` closed."""
        self.total -= 1
        if listener is not None:
            self.per_listener[listener] -= 1
        self.per_ip[host] -= 1
        if self.per_ip[host] <= 0:
            del self.per_ip[host]
        if self._slot is not None:
            self._slot.set()


class RequestMemory:
    """The budget of request bytes buffered over all connections (``queued.max.request.bytes``).

    A connection accounts what it buffers; a request is admitted in full once its size is
    known (as Kafka allocates a request's whole buffer), so an admitted request can always
    be read to its end while others wait. When no request is admitted one is, whatever its
    size, so the bytes of half-read requests cannot block each other for good. Buffered
    bytes therefore stay within the budget plus one request plus one socket read
    (256 KiB) per connection that was reading when the budget ran out.
    """

    def __init__(self, limit: int) -> None:
        #: The budget in bytes; <= 0 means unbounded.
        self.limit = limit
        #: Bytes accounted now, over all connections.
        self.used = 0
        #: Connections waiting for room.
        self.waiting = 0
        #: Connections holding an admitted request that is not yet served.
        self.admitted = 0
        self._released: anyio.Event | None = None

    @property
    def exhausted(self) -> bool:
        return 0 < self.limit <= self.used

    def try_admit(self, n: int) -> bool:
        """Account ``n`` more bytes to admit a request, if the budget allows."""
        if self.limit <= 0 or self.used + n <= self.limit or self.admitted == 0:
            self.used += n
            self.admitted += 1
            return True
        return False

    def take(self, n: int) -> None:
        """Account ``n`` bytes already in memory."""
        self.used += n

    def give(self, n: int, admitted: bool = False) -> None:
        """Return ``n`` accounted bytes (and an admission) and wake connections waiting for room."""
        if admitted:
            self.admitted -= 1
        if n <= 0 and not admitted:
            return
        self.used -= n
        if self._released is not None:
            self._released.set()
            self._released = None

    async def wait(self) -> None:
        """Wait until some bytes are returned."""
        if self._released is None:
            self._released = anyio.Event()
        self.waiting += 1
        try:
            await self._released.wait()
        finally:
            self.waiting -= 1
