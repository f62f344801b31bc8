"""Split a byte stream into size-prefixed frames, sans-I/O."""

from __future__ import annotations

import struct

from kbroker.codec.errors import CodecError

_SIZE = struct.Struct(">i")


class FrameTooLarge(CodecError):
    """A frame's declared size exceeds the limit (socket.request.max.bytes)."""


class FrameReader:
    """Feed bytes in with :meth:`feed`; take whole frames out with :meth:`next_frame`."""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next whole frame (without its size prefix), or None until more bytes arrive."""
        avail = len(self._buf) - self._pos
        if avail < 4:
            return None
        (size,) = _SIZE.unpack_from(self._buf, self._pos)
        if size < 0 or size > self.max_frame_size:
            raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {self.max_frame_size} bytes")
        if avail < 4 + size:
            return None
        start = self._pos + 4
        frame = bytes(self._buf[start : start + size])
        self._pos = start + size
        if self._pos > 1 << 20:  # compact now and then so the buffer does not grow without bound
            del self._buf[: self._pos]
            self._pos = 0
        return frame

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos
