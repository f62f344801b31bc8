"""The reference codec: whole frames through the ``construct`` structs of :mod:`kbroker.codec.structs`.

These are the frame functions as :mod:`kbroker.codec.frames` had them before its compiled
decoders and encoders; they stay as the definition those must match (the differential tests
run both over every message) and as a fallback for anyone who needs the structs themselves.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from construct import ConstructError, Container

from kbroker.codec.apis import Api, api_table
from kbroker.codec.errors import (
    EncodeError,
    InvalidFrame,
    TruncatedFrame,
    UnknownApiKey,
    UnsupportedVersion,
)
from kbroker.codec.frames import LARGE_PART, Request, RequestHeader, peek_request_header
from kbroker.codec.primitives import ValueError_
from kbroker.codec.schema import load_message
from kbroker.codec.structs import KStruct, build_struct, message_struct

_SIZE = struct.Struct(">i")
_CTX = Container()


_header_structs: dict[tuple[str, int], KStruct] = {}


def _header_struct(kind: str, version: int) -> KStruct:
    key = (kind, version)
    s = _header_structs.get(key)
    if s is None:
        spec = load_message(kind)
        s = build_struct(spec.fields, version, version in spec.flexible)
        _header_structs[key] = s
    return s


def _parse(con: KStruct, stream: io.BytesIO, what: str, **ids: Any) -> Any:
    try:
        return con._parse(stream, _CTX, what)
    except ValueError_ as e:
        raise InvalidFrame(f"{what}: {e}", **ids) from e
    except ConstructError as e:
        raise TruncatedFrame(f"{what}: frame ended early", **ids) from e
    except (ValueError, OverflowError, MemoryError) as e:
        raise InvalidFrame(f"{what}: {e}", **ids) from e


def decode_request(frame: bytes | bytearray | memoryview) -> Request:
    """Decode a request frame (without its size prefix).

    Raises a :class:`CodecError` subclass carrying whatever ids were readable.
    """
    key, version, correlation_id = peek_request_header(frame)
    ids = {"api_key": key, "api_version": version, "correlation_id": correlation_id}
    api = api_table().get(key)
    if api is None:
        raise UnknownApiKey(f"unknown API key {key}", **ids)
    if version not in api.versions:
        raise UnsupportedVersion(f"{api.name} v{version} is not supported ({api.versions})", **ids)
    stream = io.BytesIO(frame)
    h = _parse(_header_struct("RequestHeader", api.request_header_version(version)), stream,
               "request header", **ids)
    body = _parse(message_struct(api.request, version), stream, f"{api.name}Request v{version}", **ids)
    # Bytes after the body are ignored, as Kafka does: some clients (librdkafka's
    # Metadata v13) send fields of other versions that Kafka never reads.
    return Request(RequestHeader(key, version, correlation_id, h.get("client_id")), api, body)


class _Chunks:
    """A write-only stream that keeps the written pieces and joins them once at the end.

    Growing a ``BytesIO`` by large writes (record batches) between small ones reallocates
    and copies the buffer again and again; joining the pieces copies each byte once.
    """

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> int:
        self.parts.append(data)
        n = len(data)
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def _prefix(self) -> None:
        self.parts[0] = _SIZE.pack(self.size - 4)  # the first piece is its placeholder

    def framed(self) -> bytes:
        """The pieces joined behind a 4-byte size prefix."""
        self._prefix()
        return b"".join(self.parts)

    def framed_parts(self) -> list[Any]:
        """The frame as a few buffers: runs of small pieces joined, pieces of ``LARGE_PART``
        bytes or more (record data) kept as they are, uncopied, for a vectored write."""
        self._prefix()
        out: list[Any] = []
        run: list[Any] = []
        for part in self.parts:
            if len(part) >= LARGE_PART:
                if run:
                    out.append(b"".join(run))
                    run = []
                out.append(part)
            else:
                run.append(part)
        if run:
            out.append(b"".join(run))
        return out


def _encode(con: KStruct, obj: Any, out: Any, what: str) -> None:
    try:
        con._build(obj, out, _CTX, what)
    except (ConstructError, ValueError, TypeError, OverflowError, AttributeError) as e:
        raise EncodeError(f"{what}: {e}") from e


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> bytes:
    """Encode a response (header and body) with its 4-byte size prefix."""
    return _encode_response(api_key, api_version, correlation_id, body).framed()


def _encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> _Chunks:
    api = api_table()[api_key]
    out = _Chunks()
    out.write(b"\0\0\0\0")
    hv = api.response_header_version(api_version)
    _encode(_header_struct("ResponseHeader", hv), {"correlation_id": correlation_id}, out, "response header")
    _encode(message_struct(api.response, api_version), body, out, f"{api.name}Response v{api_version}")
    return out


def encode_response_parts(api_key: int, api_version: int, correlation_id: int, body: Any) -> list[Any]:
    """Like :func:`encode_response`, as buffers for a vectored write: record data is not
    copied into one frame (a fetch response can be tens of MB)."""
    return _encode_response(api_key, api_version, correlation_id, body).framed_parts()


def encode_request(api_key: int, api_version: int, correlation_id: int, body: Any,
                   client_id: str | None = "kbroker") -> bytes:
    """Encode a request with its size prefix (for the CLI client and tests)."""
    api = api_table()[api_key]
    out = _Chunks()
    out.write(b"\0\0\0\0")
    header = {"request_api_key": api_key, "request_api_version": api_version,
              "correlation_id": correlation_id, "client_id": client_id}
    _encode(_header_struct("RequestHeader", api.request_header_version(api_version)), header, out,
            "request header")
    _encode(message_struct(api.request, api_version), body, out, f"{api.name}Request v{api_version}")
    return out.framed()


def decode_response(api_key: int, api_version: int, frame: bytes | bytearray | memoryview) -> tuple[int, Container]:
    """Decode a response frame (without size prefix) to ``(correlation_id, body)``."""
    api = api_table()[api_key]
    stream = io.BytesIO(frame)
    h = _parse(_header_struct("ResponseHeader", api.response_header_version(api_version)), stream,
               "response header")
    body = _parse(message_struct(api.response, api_version), stream, f"{api.name}Response v{api_version}")
    if stream.tell() != len(frame):
        raise InvalidFrame(f"{api.name}Response v{api_version}: trailing bytes")
    return h.correlation_id, body


def encode_body(api: Api, kind: str, version: int, body: Any) -> bytes:
    """Encode just a request or response body (no header)."""
    spec = api.request if kind == "request" else api.response
    out = _Chunks()
    _encode(message_struct(spec, version), body, out, f"{spec.name} v{version}")
    return b"".join(out.parts)


def decode_body(api: Api, kind: str, version: int, data: bytes | bytearray | memoryview) -> Container:
    """Decode just a request or response body (no header); the whole input must be used."""
    spec = api.request if kind == "request" else api.response
    stream = io.BytesIO(data)
    body = _parse(message_struct(spec, version), stream, f"{spec.name} v{version}")
    if stream.tell() != len(data):
        raise InvalidFrame(f"{spec.name} v{version}: trailing bytes")
    return body
