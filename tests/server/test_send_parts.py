"""A response's buffers go out in one vectored write, in order, with flow control."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from kbroker.server.connection import send_parts


def _backend_options(loop: str) -> dict[str, Any]:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
        return {"use_uvloop": True}
    return {}


LOOPS = ["asyncio", "uvloop"]


class _CountingTransport:
    """The stream's transport, counting writelines calls (uvloop's cannot be patched)."""

    def __init__(self, inner: Any, spy: dict[str, int]) -> None:
        self._inner = inner
        self._spy = spy

    def writelines(self, bufs: Any) -> None:
        self._spy["writelines"] += 1
        self._inner.writelines(bufs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _serve_once(parts: list[bytes], reader: Any, spy: dict[str, int], loop: str) -> None:
    """Accept one connection on 127.0.0.1, send ``parts`` with send_parts, let ``reader`` read."""

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = threading.Thread(target=reader, args=(port,))
        client.start()
        stream: SocketStream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        stream._transport = _CountingTransport(stream._transport, spy)  # type: ignore[attr-defined]
        await send_parts(stream, parts)
        await send_parts(stream, [b"end!"])
        await stream.aclose()
        await listener.aclose()
        await anyio.to_thread.run_sync(client.join)

    anyio.run(main, backend_options=_backend_options(loop))


def _recv_all(port: int, out: list[bytes], delay: float = 0.0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if delay:
            threading.Event().wait(delay)  # a slow reader: the writer must wait, not drop
        chunks = []
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
        out.append(b"".join(chunks))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_parts_arrive_in_order_through_writelines(delay: float, loop: str) -> None:
    parts = [b"head", os.urandom(8 << 20), b"middle", os.urandom(3 << 20), b"tail"]
    got: list[bytes] = []
    spy = {"writelines": 0}
    _serve_once(parts, lambda port: _recv_all(port, got, delay), spy, loop)
    assert got == [b"".join(parts) + b"end!"]
    assert spy["writelines"] == 1  # the multi-part response; the one-part one used send


@pytest.mark.parametrize("loop", LOOPS)
def test_a_closed_peer_is_a_broken_stream(loop: str) -> None:
    errors: list[BaseException] = []

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        s = socket.create_connection(("127.0.0.1", port))
        stream = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST: the next writes fail
        try:
            for _ in range(50):
                await send_parts(stream, [b"x" * 1024, os.urandom(1 << 20)])
                await anyio.sleep(0.01)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError) as e:
            errors.append(e)
        finally:
            await stream.aclose()
            await listener.aclose()

    anyio.run(main, backend_options=_backend_options(loop))
    assert errors, "writing to a reset connection must fail, not succeed silently"
