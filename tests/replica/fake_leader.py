"""A small leader broker for follower tests: an anyio TCP server speaking Kafka frames.

It answers Fetch, OffsetForLeaderEpoch and ListOffsets from in-memory partitions (batches
with their offsets and leader epochs), records every request, and can be told to answer
an error, hold a fetch (long poll), cut a batch short, or drop connections.
"""

from __future__ import annotations

import bisect
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from kbroker.codec import Request, decode_request, encode_response
from kbroker.records.batch import parse_header
from kbroker.records.builder import build_batch

FETCH, LIST_OFFSETS, OFFSET_FOR_LEADER_EPOCH = 1, 2, 23
_SIZE = struct.Struct(">i")


def batch(base_offset: int, count: int, epoch: int, *, value: bytes = b"v", timestamp: int = 1_700_000_000_000
          ) -> bytes:
    """One uncompressed batch of ``count`` records at ``base_offset`` written in ``epoch``."""
    return build_batch([(None, value + str(i).encode(), [], timestamp + i) for i in range(count)],
                       base_offset=base_offset, partition_leader_epoch=epoch)


@dataclass
class LeaderPartition:
    """A leader's replica of one partition: whole batches, its epochs, HW and log start."""

    leader_epoch: int = 0
    batches: list[bytes] = field(default_factory=list)
    high_watermark: int = 0
    log_start_offset: int = 0
    #: Error code answered to every request on this partition (0: none).
    error: int = 0
    #: The next fetch answers this diverging epoch ``(epoch, end offset)`` instead of records.
    diverging: tuple[int, int] | None = None
    #: OffsetForLeaderEpoch answers this ``(epoch, end offset)`` instead of the log's.
    epoch_answer: tuple[int, int] | None = None

    @property
    def log_end_offset(self) -> int:
        if not self.batches:
            return self.log_start_offset
        h = parse_header(self.batches[-1])
        return h.base_offset + h.last_offset_delta + 1

    def append(self, count: int, epoch: int | None = None, *, commit: bool = True) -> bytes:
        """Append a batch of ``count`` records at the LEO (in ``epoch``, default the leader's)."""
        data = batch(self.log_end_offset, count, self.leader_epoch if epoch is None else epoch)
        self.batches.append(data)
        if commit:
            self.high_watermark = self.log_end_offset
        return data

    def epochs(self) -> list[tuple[int, int]]:
        """``(epoch, start offset)`` of each epoch in the log, then the current one."""
        out: list[tuple[int, int]] = []
        for data in self.batches:
            h = parse_header(data)
            if not out or out[-1][0] != h.partition_leader_epoch:
                out.append((h.partition_leader_epoch, h.base_offset))
        if not out or out[-1][0] != self.leader_epoch:
            out.append((self.leader_epoch, self.log_end_offset))
        return out

    def end_offset_for(self, epoch: int) -> tuple[int, int]:
        """Kafka's ``LeaderEpochFileCache.endOffsetFor`` over :meth:`epochs`."""
        entries = self.epochs()
        if epoch == entries[-1][0]:
            return epoch, self.log_end_offset
        epochs = [e for e, _ in entries]
        i = bisect.bisect_right(epochs, epoch)
        if i == len(entries):
            return -1, -1
        higher_start = entries[i][1]
        if i == 0:
            return epoch, higher_start
        return entries[i - 1][0], higher_start

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from the one holding ``offset`` within ``max_bytes`` (the first always)."""
        out = bytearray()
        for data in self.batches:
            h = parse_header(data)
            if h.base_offset + h.last_offset_delta < offset:
                continue
            if out and len(out) + len(data) > max_bytes:
                break
            out += data
        return bytes(out)


async def refused_endpoint() -> tuple[str, int]:
    """A loopback port nothing listens on any more (connections to it are refused)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return "127.0.0.1", port


class FakeLeader:
    """The server; use ``async with FakeLeader() as leader`` inside a running event loop."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], LeaderPartition] = {}
        self.requests: list[Request] = []
        self.port = 0
        #: Bytes cut from the end of the next fetch answers' records (a partial trailing batch).
        self.cut_tail = 0
        #: Fetches with no data wait this long (seconds) before answering (a long poll).
        self.hold_empty_fetch = 0.0
        #: Close the connection instead of answering the next ``drop_next`` requests.
        self.drop_next = 0
        #: Answer with this correlation id offset (a confused broker).
        self.correlation_skew = 0
        #: Called with each request before it is answered (tests await events in it).
        self.on_request: Callable[[Request], Any] | None = None
        self.fetched = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.SocketListener | None = None
        self.connections = 0

    def partition(self, topic: str, index: int = 0) -> LeaderPartition:
        return self.partitions.setdefault((topic, index), LeaderPartition())

    @property
    def endpoint(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def __aenter__(self) -> FakeLeader:
        self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._listener.serve, self._serve)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()

    def requests_of(self, api_key: int) -> list[Request]:
        return [r for r in self.requests if r.api_key == api_key]

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                                     anyio.ClosedResourceError, OSError):
                while True:
                    (size,) = _SIZE.unpack(await reader.receive_exactly(4))
                    request = decode_request(await reader.receive_exactly(size))
                    self.requests.append(request)
                    if self.on_request is not None:
                        result = self.on_request(request)
                        if hasattr(result, "__await__"):
                            await result
                    if self.drop_next > 0:
                        self.drop_next -= 1
                        return
                    body = await self._answer(request)
                    await stream.send(encode_response(request.api_key, request.api_version,
                                                      request.correlation_id + self.correlation_skew, body))

    async def _answer(self, request: Request) -> dict[str, Any]:
        if request.api_key == FETCH:
            return await self._fetch(request)
        if request.api_key == OFFSET_FOR_LEADER_EPOCH:
            return self._offset_for_leader_epoch(request)
        if request.api_key == LIST_OFFSETS:
            return self._list_offsets(request)
        raise AssertionError(f"unexpected request {request.api.name}")

    async def _fetch(self, request: Request) -> dict[str, Any]:
        body = request.body

        def answer() -> tuple[list[dict[str, Any]], bool]:
            topics = []
            any_data = False
            for t in body.topics:
                parts = []
                for p in t.partitions:
                    lp = self.partition(t.topic, p.partition)
                    out: dict[str, Any] = {"partition_index": p.partition, "high_watermark": lp.high_watermark,
                                           "last_stable_offset": lp.high_watermark,
                                           "log_start_offset": lp.log_start_offset, "records": b""}
                    if lp.error:
                        out["error_code"] = lp.error
                    elif lp.diverging is not None:
                        out["diverging_epoch"] = {"epoch": lp.diverging[0], "end_offset": lp.diverging[1]}
                        lp.diverging = None
                    elif not lp.log_start_offset <= p.fetch_offset <= lp.log_end_offset:
                        out["error_code"] = 1  # OFFSET_OUT_OF_RANGE
                    else:
                        records = lp.read(p.fetch_offset, p.partition_max_bytes)
                        if records and self.cut_tail:
                            records = records[: len(records) - self.cut_tail]
                        out["records"] = records
                        any_data = any_data or bool(records)
                    parts.append(out)
                topics.append({"topic": t.topic, "partitions": parts})
            return topics, any_data

        topics, any_data = answer()
        if not any_data and self.hold_empty_fetch > 0:
            await anyio.sleep(self.hold_empty_fetch)
            topics, _ = answer()
        self.fetched.set()
        self.fetched = anyio.Event()
        return {"responses": topics}

    def _offset_for_leader_epoch(self, request: Request) -> dict[str, Any]:
        topics = []
        for t in request.body.topics:
            parts = []
            for p in t.partitions:
                lp = self.partition(t.topic, p.partition)
                if lp.error:
                    parts.append({"partition": p.partition, "error_code": lp.error})
                    continue
                epoch, end = lp.epoch_answer or lp.end_offset_for(p.leader_epoch)
                parts.append({"partition": p.partition, "leader_epoch": epoch, "end_offset": end})
            topics.append({"topic": t.topic, "partitions": parts})
        return {"topics": topics}

    def _list_offsets(self, request: Request) -> dict[str, Any]:
        topics = []
        for t in request.body.topics:
            parts = []
            for p in t.partitions:
                lp = self.partition(t.name, p.partition_index)
                if lp.error:
                    parts.append({"partition_index": p.partition_index, "error_code": lp.error})
                    continue
                offset = lp.log_end_offset if p.timestamp == -1 else lp.log_start_offset
                parts.append({"partition_index": p.partition_index, "offset": offset, "timestamp": -1})
            topics.append({"name": t.name, "partitions": parts})
        return {"topics": topics}
