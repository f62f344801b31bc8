"""Live figures (throughput in and out, per-topic rates) for pages open in a browser.

Nothing here runs while nobody looks: a page's server-sent-events stream enters
:meth:`Live.watching`; the first viewer installs :class:`FetchCounter` among the broker's
interceptors (bytes out) and the last one to leave removes it and forgets the history. There is
no background task: each stream ticks on its own and asks :meth:`Live.sample` for the figures,
which measures at most once per :data:`SAMPLE_SECONDS` however many streams ask. Bytes in are
read from the logs this broker leads (their sizes and end offsets), so the produce path is never wrapped.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from kbroker.console.backend import ConsoleBackend
from kbroker.server.intercept import Body, Exchange, Handle

FETCH_KEY = 1
#: Shortest time between two measurements; streams tick at this pace.
SAMPLE_SECONDS = 1.0
#: Samples kept for the sparklines (two minutes at one a second).
HISTORY = 120


class FetchCounter:
    """An interceptor counting record bytes sent to consumers in Fetch responses, by topic
    (followers' fetches are replication, not consumption)."""

    def __init__(self, topic_name: Callable[[uuid.UUID], str | None]) -> None:
        self.topic_name = topic_name
        #: Record bytes sent, by topic, since installed.
        self.bytes_out: Counter[str] = Counter()

    async def __call__(self, exchange: Exchange, handle: Handle) -> Body:
        body = await handle()
        if exchange.api_key == FETCH_KEY and body:
            self._count(exchange.request, body, exchange.api_version)
        return body

    def _count(self, request: Any, body: Any, version: int) -> None:
        replica_id = request["replica_state"]["replica_id"] if version >= 15 else request.get("replica_id", -1)
        if replica_id >= 0:
            return
        for t in body.get("responses", ()):
            size = sum(len(p["records"]) for p in t["partitions"] if p.get("records"))
            if size:
                name = self.topic_name(t["topic_id"]) if version >= 13 else t["topic"]
                if name is not None:
                    self.bytes_out[name] += size

    @property
    def total(self) -> int:
        """Bytes out since installed."""
        return sum(self.bytes_out.values())


@dataclass
class Sample:
    """One measurement: cumulative counters, and the rates since the previous one."""

    at: float
    log_bytes: int
    bytes_out: int
    #: Per watched topic: sum of its partitions' log end offsets, and its bytes out.
    topic_offsets: dict[str, int] = field(default_factory=dict)
    topic_out: dict[str, int] = field(default_factory=dict)
    bytes_in_rate: float = 0.0
    bytes_out_rate: float = 0.0
    #: Per watched topic: (messages produced per second, bytes consumed per second).
    topic_rates: dict[str, tuple[float, float]] = field(default_factory=dict)


class Live:
    """The console's live figures; see the module's docstring."""

    def __init__(self, backend: ConsoleBackend, clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.clock = clock
        #: Streams open now.
        self.viewers = 0
        #: The installed counter (None while nobody watches).
        self.counter: FetchCounter | None = None
        self.last: Sample | None = None
        #: (bytes in/s, bytes out/s), oldest first.
        self.history: deque[tuple[float, float]] = deque(maxlen=HISTORY)
        self.topic_history: dict[str, deque[tuple[float, float]]] = {}
        self._topics: Counter[str] = Counter()

    @asynccontextmanager
    async def watching(self, topic: str | None = None) -> AsyncIterator[Live]:
        """Held by one open stream (watching ``topic``'s rates too, when given)."""
        self.viewers += 1
        if self.counter is None:
            metadata = self.backend.services.metadata

            def topic_name(topic_id: uuid.UUID) -> str | None:
                info = metadata.topic_by_id(topic_id)
                return None if info is None else info.name

            self.counter = FetchCounter(topic_name)
            self.backend.interceptors.add(self.counter)
        if topic is not None:
            self._topics[topic] += 1
            self.topic_history.setdefault(topic, deque(maxlen=HISTORY))
        try:
            yield self
        finally:
            self.viewers -= 1
            if topic is not None:
                self._topics[topic] -= 1
                if self._topics[topic] <= 0:
                    del self._topics[topic]
                    self.topic_history.pop(topic, None)
            if self.viewers == 0:
                if self.counter is not None:
                    self.backend.interceptors.remove(self.counter)
                self.counter = None
                self.last = None
                self.history.clear()

    def sample(self) -> Sample:
        """The figures now (measured at most once per :data:`SAMPLE_SECONDS`)."""
        now = self.clock()
        last = self.last
        if last is not None and now - last.at < SAMPLE_SECONDS * 0.9:
            return last
        counter = self.counter
        watched = set(self._topics)
        log_bytes = 0
        offsets: dict[str, int] = dict.fromkeys(watched, 0)
        services = self.backend.services
        topics, node_id = services.metadata.topics, services.node_id
        for tp, log in services.log_manager.all_logs().items():
            info = topics.get(tp.topic)
            partition = info.partitions.get(tp.partition) if info is not None else None
            if partition is None or partition.leader != node_id:
                continue  # a follower's copy grows by replication: not bytes in (as Kafka's BytesInPerSec)
            log_bytes += log.size_in_bytes
            if tp.topic in offsets:
                offsets[tp.topic] += log.log_end_offset
        out = counter.bytes_out if counter is not None else Counter()
        sample = Sample(now, log_bytes, sum(out.values()), offsets, {t: out.get(t, 0) for t in watched})
        if last is not None:
            dt = max(now - last.at, 1e-3)
            # Retention and compaction shrink the logs: a drop is no negative throughput.
            sample.bytes_in_rate = max(0, log_bytes - last.log_bytes) / dt
            sample.bytes_out_rate = max(0, sample.bytes_out - last.bytes_out) / dt
            self.history.append((sample.bytes_in_rate, sample.bytes_out_rate))
            for topic in watched:
                if topic in last.topic_offsets:
                    rate = (max(0, offsets[topic] - last.topic_offsets[topic]) / dt,
                            max(0, sample.topic_out[topic] - last.topic_out.get(topic, 0)) / dt)
                    sample.topic_rates[topic] = rate
                    self.topic_history.setdefault(topic, deque(maxlen=HISTORY)).append(rate)
        self.last = sample
        return sample


_LIVE: weakref.WeakKeyDictionary[object, Live] = weakref.WeakKeyDictionary()


def live_for(console: object, backend: ConsoleBackend) -> Live:
    """The one :class:`Live` of ``console``."""
    live = _LIVE.get(console)
    if live is None:
        live = _LIVE[console] = Live(backend)
    return live


def stopping_of(backend: ConsoleBackend) -> Callable[[], bool]:
    """Whether the broker is shutting down (open streams then end, so it need not wait for them)."""
    return backend.extras.get("stopping") or (lambda: False)


async def pause(seconds: float, stopping: Callable[[], bool]) -> bool:
    """Sleep ``seconds``, looking every tenth of a second whether the broker stops; False if it does."""
    end = time.monotonic() + seconds
    while not stopping():
        left = end - time.monotonic()
        if left <= 0:
            return True
        await anyio.sleep(min(0.1, left))
    return False


def sse_event(name: str, data: str) -> str:
    """One server-sent event named ``name`` carrying ``data`` (several lines allowed)."""
    lines = "".join(f"data: {line}\n" for line in (data.splitlines() or [""]))
    return f"event: {name}\n{lines}\n"


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB, GiB or TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
