"""PeerConnection: round trips, correlation ids, timeouts, broken answers, reconnect back-off."""

from __future__ import annotations

import struct
from collections.abc import Callable

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from kbroker.codec import decode_request
from kbroker.replica.peer import PeerConnection, PeerError

from .fake_leader import FETCH, FakeLeader, refused_endpoint

pytestmark = pytest.mark.anyio

FETCH_BODY = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "session_epoch": -1,
              "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                          "partition_max_bytes": 1024}]}]}


def peer_for(endpoint: tuple[str, int], *, timeout_s: float = 3.0, backoff_s: float = 0.05) -> PeerConnection:
    return PeerConnection(*endpoint, client_id="kbroker-replica-2", timeout_s=timeout_s, backoff_s=backoff_s)


async def serve_raw(tg: anyio.abc.TaskGroup, reply: Callable[[int], bytes]) -> int:
    """A server answering each request with ``reply(correlation_id)`` as raw bytes."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            try:
                while True:
                    (size,) = struct.unpack(">i", await reader.receive_exactly(4))
                    request = decode_request(await reader.receive_exactly(size))
                    await stream.send(reply(request.correlation_id))
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                pass

    tg.start_soon(listener.serve, handle)
    return listener.extra(anyio.abc.SocketAttribute.local_port)


async def test_round_trip_with_increasing_correlation_ids() -> None:
    async with FakeLeader() as leader:
        leader.partition("t").append(2)
        peer = peer_for(leader.endpoint)
        first = await peer.request(FETCH, 12, FETCH_BODY)
        second = await peer.request(FETCH, 12, FETCH_BODY)
        assert first.responses[0].partitions[0].high_watermark == 2
        assert second.responses[0].partitions[0].records
        assert [r.correlation_id for r in leader.requests] == [1, 2]
        assert {r.header.client_id for r in leader.requests} == {"kbroker-replica-2"}
        assert leader.connections == 1 and peer.connected
        await peer.aclose()
        with pytest.raises(PeerError, match="closed"):
            await peer.request(FETCH, 12, FETCH_BODY)


async def test_refused_connection_then_back_off_before_reconnecting() -> None:
    peer = peer_for(await refused_endpoint(), backoff_s=0.3)
    with pytest.raises(PeerError, match="failed"):
        await peer.request(FETCH, 12, FETCH_BODY)
    assert not peer.connected
    assert 0 < peer.backoff_remaining() <= 0.3
    started = anyio.current_time()
    with pytest.raises(PeerError):
        await peer.request(FETCH, 12, FETCH_BODY)
    assert anyio.current_time() - started >= 0.25


async def test_timeout_drops_the_connection_and_the_next_request_reconnects() -> None:
    async with FakeLeader() as leader:
        leader.hold_empty_fetch = 30.0
        peer = peer_for(leader.endpoint, timeout_s=0.2, backoff_s=0.0)
        with pytest.raises(PeerError, match="timed out"):
            await peer.request(FETCH, 12, FETCH_BODY)
        assert not peer.connected
        leader.hold_empty_fetch = 0.0
        leader.partition("t").append(1)
        resp = await peer.request(FETCH, 12, FETCH_BODY)
        assert resp.responses[0].partitions[0].high_watermark == 1
        assert leader.connections == 2


async def test_a_wrong_correlation_id_is_an_error() -> None:
    async with FakeLeader() as leader:
        leader.correlation_skew = 1
        peer = peer_for(leader.endpoint)
        with pytest.raises(PeerError, match="correlation id 2, expected 1"):
            await peer.request(FETCH, 12, FETCH_BODY)
        assert not peer.connected


async def test_a_closed_connection_is_an_error() -> None:
    async with FakeLeader() as leader:
        leader.drop_next = 1
        peer = peer_for(leader.endpoint, backoff_s=0.0)
        with pytest.raises(PeerError, match="failed"):
            await peer.request(FETCH, 12, FETCH_BODY)
        assert (await peer.request(FETCH, 12, FETCH_BODY)).error_code == 0


@pytest.mark.parametrize("reply", [
    lambda cid: struct.pack(">ii", 8, cid) + b"\x00\x01\x02\x03",  # a body that does not decode
    lambda cid: struct.pack(">i", -5),  # a negative frame size
    lambda cid: struct.pack(">i", 1 << 30),  # a frame above the limit
])
async def test_broken_answers_are_errors(reply: Callable[[int], bytes]) -> None:
    async with anyio.create_task_group() as tg:
        port = await serve_raw(tg, reply)
        peer = peer_for(("127.0.0.1", port))
        with pytest.raises(PeerError):
            await peer.request(FETCH, 12, FETCH_BODY)
        assert not peer.connected
        tg.cancel_scope.cancel()


async def test_cancelling_a_request_drops_the_connection() -> None:
    async with FakeLeader() as leader:
        leader.hold_empty_fetch = 30.0
        peer = peer_for(leader.endpoint)
        with anyio.move_on_after(0.2):
            await peer.request(FETCH, 12, FETCH_BODY)
        assert not peer.connected
        # No back-off: a cancellation is not the peer's failure.
        assert peer.backoff_remaining() == 0
