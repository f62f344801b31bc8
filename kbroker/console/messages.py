"""Console pages: the message browser. A window of a topic's records read straight from its logs
(what a read_uncommitted consumer sees: up to the high watermark, control batches left out),
from an offset, a timestamp or the newest N, at most :data:`MAX_MESSAGES` records and
:data:`MAX_WINDOW_BYTES` of batches (compressed batches decompressed within the same bound as
the fetch path's); keys, values and headers shown as text, JSON pretty-printed, or hex; a search
within the window; and a follow mode whose stream appends new records as they arrive."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from kbroker.console.backend import ConsoleBackend
from kbroker.console.context import Console
from kbroker.console.live import pause, sse_event, stopping_of
from kbroker.console.topics import int_param, may_describe
from kbroker.log.errors import OffsetOutOfRange
from kbroker.records.batch import BatchError, iter_headers
from kbroker.records.compression import CompressionError, iter_decompress
from kbroker.records.record import iter_records
from kbroker.security.model import ResourceType

#: Records one window shows at most.
MAX_MESSAGES = 500
#: Newest records shown when no position is given.
DEFAULT_NEWEST = 50
#: Batch bytes read from one partition for one window, and what its compressed batches may
#: decompress to in all.
MAX_WINDOW_BYTES = 4 * 1024 * 1024
MAX_DECOMPRESSED = 32 * 1024 * 1024
#: Characters of a key or value shown (the rest is cut, saying how much there was).
MAX_SHOWN = 10_000
#: How often a follow stream looks for new records.
FOLLOW_SECONDS = 0.5


@dataclass
class Shown:
    """A key, value or header value as shown: its text and how it was rendered."""

    text: str
    format: str  # text | json | hex | null
    size: int


@dataclass
class Message:
    """One record as the browser shows it."""

    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: Shown
    value: Shown
    headers: list[tuple[str, Shown]] = field(default_factory=list)

    @property
    def time(self) -> str:
        """The timestamp as an ISO date (UTC)."""
        try:
            return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC).isoformat(timespec="milliseconds")
        except (OverflowError, OSError, ValueError):
            return str(self.timestamp)

    def matches(self, needle: str) -> bool:
        """Whether ``needle`` (lower case) is in the key, the value or a header."""
        texts = [self.key.text, self.value.text, *(k for k, _ in self.headers), *(v.text for _, v in self.headers)]
        return any(needle in t.lower() for t in texts)


def show(data: bytes | None) -> Shown:
    """``data`` as text (pretty-printed when it is a JSON object or array), hex when it is not UTF-8 text."""
    if data is None:
        return Shown("null", "null", 0)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Shown(_cut(data[: MAX_SHOWN // 2].hex(" "), len(data), MAX_SHOWN), "hex", len(data))
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        return Shown(_cut(data[: MAX_SHOWN // 2].hex(" "), len(data), MAX_SHOWN), "hex", len(data))
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and len(text) <= 1_000_000:
        try:
            return Shown(_cut(json.dumps(json.loads(text), indent=2, ensure_ascii=False), len(data)), "json",
                         len(data))
        except ValueError:
            pass
    return Shown(_cut(text, len(data)), "text", len(data))


def _cut(text: str, size: int, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({size} bytes in all)"


def read_window(log: Any, partition: int, start: int, limit: int) -> tuple[list[Message], int, str | None]:
    """Up to ``limit`` records of ``log`` from ``start`` below its high watermark, the offset
    after the last one read, and a note when a batch could not be shown."""
    out: list[Message] = []
    end = log.high_watermark
    start = max(start, log.log_start_offset)
    position = start
    note = None
    decompressed = 0
    while position < end and len(out) < limit:
        try:
            data = log.read(position, MAX_WINDOW_BYTES, upper_bound=end)
        except OffsetOutOfRange:
            break
        if not data:
            break
        buf = memoryview(data)
        progressed = False
        for pos, h in iter_headers(buf):
            progressed = True
            position = max(position, h.next_offset)
            if h.is_control:
                continue
            batch = buf[pos : pos + h.size]
            if h.compression:
                try:
                    # Bounded as the fetch path bounds it: a small batch cannot blow up memory here.
                    decompressed += sum(len(c) for c in iter_decompress(h.compression, batch[61:],
                                                                        MAX_DECOMPRESSED - decompressed))
                except CompressionError as e:
                    note = f"batch at offset {h.base_offset} not shown: {e}"
                    break
            kind = "LogAppendTime" if h.log_append_time else "CreateTime"
            try:
                for r in iter_records(batch):
                    if r.offset < start:
                        continue
                    out.append(Message(partition, r.offset, r.timestamp, kind, show(r.key), show(r.value),
                                       [(k, show(v)) for k, v in r.headers]))
                    if len(out) >= limit:
                        return out, r.offset + 1, note
            except BatchError as e:
                note = f"batch at offset {h.base_offset} not shown: {e}"
                break
        if note is not None or not progressed:
            break
    return out, position, note


def _position(log: Any, offset: int | None, timestamp: int | None, newest: int | None) -> int:
    if offset is not None:
        return offset
    if timestamp is not None:
        found = log.offset_for_timestamp(timestamp)
        return log.high_watermark if found is None else int(found[0])
    return max(log.log_start_offset, log.high_watermark - (newest or DEFAULT_NEWEST))


@dataclass
class Window:
    """What one request of the browser asked for."""

    partitions: list[int]
    offset: int | None
    timestamp: int | None
    newest: int | None
    query: str
    follow: bool


def parse_window(request: Request, partitions: int) -> Window:
    """The query's position parameters, checked (400 on bad numbers or an unknown partition)."""
    params = request.query_params
    partition = int_param(params.get("partition"), "partition", minimum=0)
    if partition is not None and partition >= partitions:
        raise HTTPException(400, f"partition {partition} does not exist (the topic has {partitions})")
    offset = int_param(params.get("offset"), "offset", minimum=0)
    timestamp = int_param(params.get("timestamp"), "timestamp", minimum=0)
    newest = int_param(params.get("newest"), "newest", minimum=1, maximum=MAX_MESSAGES)
    if sum(x is not None for x in (offset, timestamp, newest)) > 1:
        raise HTTPException(400, "give one of offset, timestamp and newest")
    return Window([partition] if partition is not None else list(range(partitions)), offset, timestamp, newest,
                  params.get("q", "")[:200], params.get("follow") in ("1", "true", "on"))


def browse(backend: ConsoleBackend, topic: str, window: Window) -> tuple[list[Message], dict[int, int], list[str]]:
    """The window's messages (by timestamp, then partition and offset), the position after it per
    partition, and notes on what could not be shown."""
    messages: list[Message] = []
    positions: dict[int, int] = {}
    notes: list[str] = []
    # Each partition gets its share of the cap (the newest N: N from each, then the newest N overall).
    share = window.newest or max(1, MAX_MESSAGES // max(1, len(window.partitions)))
    for p in window.partitions:
        log = backend.services.log_manager.get_log(topic, p)  # type: ignore[attr-defined]
        if log is None:
            notes.append(f"partition {p} is not hosted on this broker")
            continue
        start = _position(log, window.offset, window.timestamp, window.newest)
        got, positions[p], note = read_window(log, p, start, min(share, MAX_MESSAGES))
        messages += got
        if note:
            notes.append(f"partition {p}: {note}")
    messages.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
    if window.newest is not None or (window.offset is None and window.timestamp is None):
        messages = messages[-(window.newest or DEFAULT_NEWEST):]
    messages = messages[:MAX_MESSAGES]
    if window.query:
        needle = window.query.lower()
        messages = [m for m in messages if m.matches(needle)]
    return messages, positions, notes


def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    backend = console.backend
    row = console.templates.env.get_template("message_rows.html")

    def topic_partitions(request: Request) -> tuple[str, int]:
        name = request.path_params["name"]
        info = backend.services.metadata.topics.get(name)
        if info is None or not may_describe(backend, request, ResourceType.TOPIC, name):
            raise HTTPException(404, f"no topic {name}")
        return name, len(info.partitions)

    async def page(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in backend.services.metadata.topics:
            return console.render(request, "not_found.html", status_code=404, what=f"Topic {name}")
        name, count = topic_partitions(request)
        window = parse_window(request, count)
        # Reading and decoding up to a window's bound is done off the event loop: clients' requests go on meanwhile.
        messages, positions, notes = await anyio.to_thread.run_sync(browse, backend, name, window)
        follow_from = ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))
        return console.render(request, "messages.html", name=name, partitions=count, window=window,
                              messages=messages, notes=notes, follow_from=follow_from, cap=MAX_MESSAGES,
                              params=request.query_params)

    async def follow(request: Request) -> Response:
        name, count = topic_partitions(request)
        positions: dict[int, int] = {}
        for part in request.query_params.get("from", "").split(","):
            if not part:
                continue
            p, sep, o = part.partition(":")
            number = int_param(p, "from partition", minimum=0, maximum=count - 1)
            offset = int_param(o, "from offset", minimum=0)
            if not sep or number is None or offset is None:
                raise HTTPException(400, f"from: expected partition:offset, got {part!r}")
            positions[number] = offset
        if not positions:
            raise HTTPException(400, "from: which partitions and offsets to follow from?")
        needle = request.query_params.get("q", "")[:200].lower()
        stopping = stopping_of(backend)

        async def events() -> AsyncIterator[str]:
            while True:
                new: list[Message] = []
                for p, offset in positions.items():
                    log = backend.services.log_manager.get_log(name, p)  # type: ignore[attr-defined]
                    if log is None or log.high_watermark <= offset:
                        continue
                    got, positions[p], _ = await anyio.to_thread.run_sync(read_window, log, p, offset, MAX_MESSAGES)
                    new += got
                new = [m for m in new if not needle or m.matches(needle)]
                if new:
                    new.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
                    yield sse_event("message", row.render(messages=new[-MAX_MESSAGES:]))
                else:
                    yield ": idle\n\n"  # a comment: finds a closed connection
                if not await pause(FOLLOW_SECONDS, stopping):
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return [Route("/topics/{name}/messages", page, name="messages"),
            Route("/live/topics/{name}/messages", follow, name="follow-messages")]

