"""Split a byte stream into size-prefixed frames, sans-I/O."""

from __future__ import annotations

import struct
from collections import deque

from kbroker.codec.errors import CodecError

_SIZE = struct.Struct(">i")


class FrameTooLarge(CodecError):
    """A frame's declared size exceeds the limit (socket.request.max.bytes)."""


class FrameReader:
    """Feed bytes in with :meth:`feed`; take whole frames out with :meth:`next_frame`.

    Received chunks are kept as they are (not appended to a growing buffer); a frame is
    copied exactly once, when it is cut out: a slice of the chunk holding it, or one
    join of the pieces of the chunks it spans.
    """

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._chunks: deque[bytes] = deque()
        self._off = 0  # consumed bytes of the first chunk
        self._avail = 0  # unconsumed bytes over all chunks
        self._size = -1  # size of the frame being assembled, once its prefix is read

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse a mutable buffer
        self._chunks.append(data)
        self._avail += len(data)

    def _take(self, n: int) -> bytes:
        """Remove and return the next ``n`` (<= available) bytes, copying them once."""
        if n == 0:
            return b""
        chunks = self._chunks
        first = chunks[0]
        off = self._off
        end = off + n
        self._avail -= n
        if end < len(first):
            self._off = end
            return first[off:end]
        if end == len(first):
            chunks.popleft()
            self._off = 0
            return first if off == 0 else first[off:]
        parts: list[bytes | memoryview] = []
        left = n
        while left:
            chunk = chunks[0]
            piece = len(chunk) - off
            if piece <= left:
                parts.append(memoryview(chunk)[off:] if off else chunk)
                chunks.popleft()
                left -= piece
                off = 0
            else:
                parts.append(memoryview(chunk)[off : off + left])
                off += left
                left = 0
        self._off = off
        return b"".join(parts)

    def next_frame(self) -> bytes | None:
        """The next whole frame (without its size prefix), or None until more bytes arrive."""
        size = self._size
        if size < 0 and self._chunks:
            # Fast path: prefix and frame both inside the first chunk.
            first = self._chunks[0]
            off = self._off
            if len(first) - off >= 4:
                (size,) = _SIZE.unpack_from(first, off)
                end = off + 4 + size
                if 0 <= size <= self.max_frame_size and end < len(first):
                    self._off = end
                    self._avail -= 4 + size
                    return first[off + 4 : end]
            size = -1
        if size < 0:
            if self._avail < 4:
                return None
            (size,) = _SIZE.unpack(self._take(4))
            if size < 0 or size > self.max_frame_size:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {self.max_frame_size} bytes")
            self._size = size
        if self._avail < size:
            return None
        self._size = -1
        return self._take(size)

    @property
    def frame_size(self) -> int:
        """Declared size of the frame being assembled once its prefix is read, else -1."""
        return self._size

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame (a read size prefix included)."""
        return self._avail + (4 if self._size >= 0 else 0)
