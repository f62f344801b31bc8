"""Responses over TLS: send_parts writes a response's buffers through a TLS stream in bounded
slices, in order and complete, with the peer reading slowly or not."""

from __future__ import annotations

import os
import socket
import ssl
import threading

import anyio
import pytest

from kbroker.config import BrokerConfig
from kbroker.security.tls import server_context
from kbroker.server.connection import send_parts, tls_handshake
from tools.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _read_all(port: int, pki: Pki, out: list[bytes], delay: float) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        if delay:
            threading.Event().wait(delay)  # a slow reader: the writer must wait, not drop
        chunks = []
        try:
            while chunk := s.recv(1 << 20):
                chunks.append(chunk)
        except ssl.SSLEOFError:  # the server closes without close_notify, as Kafka's clients allow
            pass
        out.append(b"".join(chunks))


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_parts_arrive_in_order_over_tls(pki: Pki, delay: float) -> None:
    config = BrokerConfig.from_sources(overrides={"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM",
                                                  "ssl.keystore.location": str(pki.server)}, environ={})
    context = server_context(config, "SSL")
    parts: list[bytes | bytearray | memoryview] = [
        b"head", os.urandom(8 << 20), *[bytes([i]) * 100 for i in range(200)], os.urandom(256 * 1024),
        memoryview(os.urandom((256 * 1024) + 1)), bytearray(b"mid"), os.urandom(3 << 20), b"tail"]
    got: list[bytes] = []

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = threading.Thread(target=_read_all, args=(port, pki, got, delay))
        client.start()
        raw = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        stream = await tls_handshake(raw, context)
        await send_parts(stream, parts)
        await send_parts(stream, [b"end!"])
        await stream.aclose()
        await listener.aclose()
        await anyio.to_thread.run_sync(client.join)

    anyio.run(main)
    # Decrypted whole by the client: nothing went past TLS straight to the socket.
    assert got == [b"".join(parts) + b"end!"]

