"""Console pages: the cluster overview (brokers, listeners, version, uptime, partitions, disk
use) with live throughput in and out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from kbroker.console.context import Console
from kbroker.console.live import SAMPLE_SECONDS, Live, human_bytes, live_for, pause, sse_event, stopping_of
from kbroker.console.svg import sparkline


def uptime_text(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``."""
    s = int(max(seconds, 0))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"


def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    backend = console.backend
    live = live_for(console, backend)

    async def overview(request: Request) -> Response:
        services = backend.services
        topics = services.metadata.topics
        brokers = backend.extras["brokers"]() if "brokers" in backend.extras else []
        listeners = backend.extras["listeners"]() if "listeners" in backend.extras else []
        disk = backend.extras["disk_use"]() if "disk_use" in backend.extras else {"logs": 0, "free": 0, "total": 0}
        last = live.last
        return console.render(
            request, "overview.html",
            uptime=uptime_text(time.time() - backend.started_at),
            brokers=brokers, listeners=listeners, node_id=services.node_id,
            topic_count=sum(1 for t in topics.values() if not t.internal),
            partition_count=sum(len(t.partitions) for t in topics.values()),
            disk_logs=human_bytes(disk["logs"]), disk_free=human_bytes(disk["free"]) if disk["total"] else None,
            throughput_in=human_bytes(last.bytes_in_rate) + "/s" if last else "…",
            throughput_out=human_bytes(last.bytes_out_rate) + "/s" if last else "…",
            chart=_chart(live))

    async def stream(request: Request) -> Response:
        return StreamingResponse(_overview_events(live, backend.started_at, stopping_of(backend)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return [Route("/", overview, name="overview"), Route("/live/overview", stream, name="live-overview")]


def _chart(live: Live) -> str:
    history = list(live.history)
    return sparkline([[h[0] for h in history], [h[1] for h in history]], labels=("in", "out"),
                     element_id="throughput-chart")


async def _overview_events(live: Live, started_at: float, stopping: Callable[[], bool]) -> AsyncIterator[str]:
    async with live.watching():
        while True:
            sample = live.sample()
            yield sse_event("throughput-in", human_bytes(sample.bytes_in_rate) + "/s")
            yield sse_event("throughput-out", human_bytes(sample.bytes_out_rate) + "/s")
            yield sse_event("throughput-chart", _chart(live))
            yield sse_event("uptime", uptime_text(time.time() - started_at))
            if not await pause(SAMPLE_SECONDS, stopping):
                return
