"""Blocking socket reads for tests that speak raw frames (``from socket_helpers import read_frame``)."""

from __future__ import annotations

import socket
import struct


def read_exact(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; ConnectionError if the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_frame(s: socket.socket) -> bytes:
    """One size-prefixed frame, without its prefix."""
    (size,) = struct.unpack(">i", read_exact(s, 4))
    return read_exact(s, size)
