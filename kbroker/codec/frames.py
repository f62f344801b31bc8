"""Whole request and response frames: header plus body, as bytes and back.

Sans-I/O: these functions take and return bytes and objects only. A frame here is
the message without its 4-byte size prefix unless a name says ``framed``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, NoReturn

from construct import Container

from kbroker.codec.apis import Api, api_table
from kbroker.codec.compiled import Codec, Decoder, Encoder, Invalid, Truncated, codec_for
from kbroker.codec.errors import (
    CodecError,
    EncodeError,
    InvalidFrame,
    TruncatedFrame,
    UnknownApiKey,
    UnsupportedVersion,
)
from kbroker.codec.schema import load_message

_PREFIX = struct.Struct(">hhi")
#: Pieces of a response at least this large (record data) are sent as they are; smaller
#: ones are joined: a copy is cheaper than another buffer in the write below this size.
LARGE_PART = 16 * 1024
_SIZE = struct.Struct(">i")


@dataclass(frozen=True)
class RequestHeader:
    """The request header (v1/v2)."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True)
class Request:
    """A decoded request: its header, its API and its body."""

    header: RequestHeader
    api: Api = field(repr=False)
    body: Container = field(default_factory=Container)

    @property
    def api_key(self) -> int:
        return self.header.api_key

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def correlation_id(self) -> int:
        return self.header.correlation_id


def _compiled(api: Api, kind: str, version: int) -> tuple[Codec, Codec, str]:
    """The compiled header and body codecs of one API's requests or responses at ``version``,
    and the name errors give the body."""
    if kind == "request":
        header = codec_for(load_message("RequestHeader"), api.request_header_version(version))
        return header, codec_for(api.request, version), f"{api.name}Request v{version}"
    header = codec_for(load_message("ResponseHeader"), api.response_header_version(version))
    return header, codec_for(api.response, version), f"{api.name}Response v{version}"


def _decoders(api: Api, kind: str, version: int) -> tuple[Decoder, Decoder, str]:
    """The compiled header and body decoders of one API's requests or responses at ``version``."""
    key = (api.key, kind, version)
    entry = _decoder_table.get(key)
    if entry is None:
        header, body, what = _compiled(api, kind, version)
        entry = _decoder_table[key] = (header.decode, body.decode, what)
    return entry


def _encoders(api: Api, kind: str, version: int) -> tuple[Encoder, Encoder, str]:
    """The compiled header and body encoders of one API's requests or responses at ``version``."""
    key = (api.key, kind, version)
    entry = _encoder_table.get(key)
    if entry is None:
        header, body, what = _compiled(api, kind, version)
        entry = _encoder_table[key] = (header.encode, body.encode, what)
    return entry


_decoder_table: dict[tuple[int, str, int], tuple[Decoder, Decoder, str]] = {}
_encoder_table: dict[tuple[int, str, int], tuple[Encoder, Encoder, str]] = {}
#: Per request (API key, version): the API, its header and body decoders, the body's name.
_request_table: dict[tuple[int, int], tuple[Api, Decoder, Decoder, str]] = {}


def _parse(dec: Decoder, buf: bytes, pos: int, end: int, what: str, **ids: Any) -> tuple[Any, int]:
    """Run a compiled decoder, its failures turned into the codec's errors."""
    try:
        return dec(buf, pos, end)
    except Invalid as e:
        raise InvalidFrame(f"{what}: {e}", **ids) from e
    except Truncated as e:
        raise TruncatedFrame(f"{what}: frame ended early", **ids) from e
    except (ValueError, OverflowError, MemoryError) as e:
        raise InvalidFrame(f"{what}: {e}", **ids) from e


def peek_request_header(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """``(api_key, api_version, correlation_id)`` of a frame; TruncatedFrame if shorter than 8 bytes."""
    if len(frame) < 8:
        raise TruncatedFrame("request frame shorter than its header")
    key, version, correlation_id = _PREFIX.unpack_from(frame)
    return key, version, correlation_id


def _request_entry(key: int, version: int, correlation_id: int) -> tuple[Api, Decoder, Decoder, str]:
    ids = {"api_key": key, "api_version": version, "correlation_id": correlation_id}
    api = api_table().get(key)
    if api is None:
        raise UnknownApiKey(f"unknown API key {key}", **ids)
    if version not in api.versions:
        raise UnsupportedVersion(f"{api.name} v{version} is not supported ({api.versions})", **ids)
    header, body, what = _decoders(api, "request", version)
    entry = _request_table[(key, version)] = (api, header, body, what)
    return entry


def decode_request(frame: bytes | bytearray | memoryview) -> Request:
    """Decode a request frame (without its size prefix).

    Raises a :class:`CodecError` subclass carrying whatever ids were readable.
    """
    if len(frame) < 8:
        raise TruncatedFrame("request frame shorter than its header")
    key, version, correlation_id = _PREFIX.unpack_from(frame)
    entry = _request_table.get((key, version))
    if entry is None:
        entry = _request_entry(key, version, correlation_id)
    api, header, body, what = entry
    if type(frame) is not bytes:
        frame = bytes(frame)  # decoded bytes values are ``bytes``, as the reference reads them
    end = len(frame)
    try:
        h, pos = header(frame, 0, end)
    except Exception as e:
        _raise_decode_error(e, "request header", key, version, correlation_id)
    try:
        obj, pos = body(frame, pos, end)
    except Exception as e:
        _raise_decode_error(e, what, key, version, correlation_id)
    # Bytes after the body are ignored, as Kafka does: some clients (librdkafka's
    # Metadata v13) send fields of other versions that Kafka never reads.
    return Request(RequestHeader(key, version, correlation_id, h.get("client_id")), api, obj)


def _raise_decode_error(e: Exception, what: str, key: int, version: int, correlation_id: int) -> NoReturn:
    ids = {"api_key": key, "api_version": version, "correlation_id": correlation_id}
    if isinstance(e, Invalid):
        raise InvalidFrame(f"{what}: {e}", **ids) from e
    if isinstance(e, Truncated):
        raise TruncatedFrame(f"{what}: frame ended early", **ids) from e
    if isinstance(e, ValueError | OverflowError | MemoryError):
        raise InvalidFrame(f"{what}: {e}", **ids) from e
    raise e


def _framed(parts: list[Any]) -> bytes:
    """The pieces joined behind a 4-byte size prefix (``parts[0]`` is its placeholder)."""
    parts[0] = _SIZE.pack(sum(map(len, parts)))
    return b"".join(parts)


def _framed_parts(parts: list[Any]) -> list[Any]:
    """The frame as a few buffers: runs of small pieces joined, pieces of ``LARGE_PART``
    bytes or more (record data) kept as they are, uncopied, for a vectored write."""
    sizes = list(map(len, parts))
    parts[0] = _SIZE.pack(sum(sizes))
    if max(sizes) < LARGE_PART:
        return [b"".join(parts)]
    out: list[Any] = []
    start = 0
    for i, size in enumerate(sizes):
        if size >= LARGE_PART:
            part = parts[i]
            if i > start:
                out.append(b"".join(parts[start:i]))
            out.append(part)
            start = i + 1
    if start == 0:
        return [b"".join(parts)]
    if start < len(parts):
        out.append(b"".join(parts[start:]))
    return out


def _encode(enc: Encoder, obj: Any, ap: Any, what: str) -> None:
    try:
        enc(obj, ap)
    except Exception as e:
        raise EncodeError(f"{what}: {e}") from e


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> bytes:
    """Encode a response (header and body) with its 4-byte size prefix."""
    return _framed(_encode_response(api_key, api_version, correlation_id, body))


def _encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> list[Any]:
    entry = _response_table.get((api_key, api_version))
    if entry is None:
        entry = _response_table[(api_key, api_version)] = _encoders(api_table()[api_key], "response", api_version)
    header, enc, what = entry
    parts: list[Any] = [b""]
    ap = parts.append
    try:
        header({"correlation_id": correlation_id}, ap)
    except Exception as e:
        raise EncodeError(f"response header: {e}") from e
    try:
        enc(body, ap)
    except Exception as e:
        raise EncodeError(f"{what}: {e}") from e
    return parts


_response_table: dict[tuple[int, int], tuple[Encoder, Encoder, str]] = {}


def encode_response_parts(api_key: int, api_version: int, correlation_id: int, body: Any) -> list[Any]:
    """Like :func:`encode_response`, as buffers for a vectored write: record data is not
    copied into one frame (a fetch response can be tens of MB)."""
    return _framed_parts(_encode_response(api_key, api_version, correlation_id, body))


def encode_request(api_key: int, api_version: int, correlation_id: int, body: Any,
                   client_id: str | None = "kbroker") -> bytes:
    """Encode a request with its size prefix (for the CLI client and tests)."""
    header, enc, what = _encoders(api_table()[api_key], "request", api_version)
    parts: list[Any] = [b""]
    ap = parts.append
    _encode(header, {"request_api_key": api_key, "request_api_version": api_version,
                     "correlation_id": correlation_id, "client_id": client_id}, ap, "request header")
    _encode(enc, body, ap, what)
    return _framed(parts)


def decode_response(api_key: int, api_version: int, frame: bytes | bytearray | memoryview) -> tuple[int, Container]:
    """Decode a response frame (without size prefix) to ``(correlation_id, body)``."""
    header, dec, what = _decoders(api_table()[api_key], "response", api_version)
    if type(frame) is not bytes:
        frame = bytes(frame)
    end = len(frame)
    h, pos = _parse(header, frame, 0, end, "response header")
    body, pos = _parse(dec, frame, pos, end, what)
    if pos != end:
        raise InvalidFrame(f"{what}: trailing bytes")
    return h.correlation_id, body


def encode_body(api: Api, kind: str, version: int, body: Any) -> bytes:
    """Encode just a request or response body (no header)."""
    spec = api.request if kind == "request" else api.response
    parts: list[Any] = []
    _encode(codec_for(spec, version).encode, body, parts.append, f"{spec.name} v{version}")
    return b"".join(parts)


def decode_body(api: Api, kind: str, version: int, data: bytes | bytearray | memoryview) -> Container:
    """Decode just a request or response body (no header); the whole input must be used."""
    spec = api.request if kind == "request" else api.response
    if type(data) is not bytes:
        data = bytes(data)
    what = f"{spec.name} v{version}"
    body, pos = _parse(codec_for(spec, version).decode, data, 0, len(data), what)
    if pos != len(data):
        raise InvalidFrame(f"{what}: trailing bytes")
    return body


__all__ = [
    "CodecError", "Request", "RequestHeader", "decode_request", "encode_response", "encode_response_parts",
    "encode_request",
    "decode_response", "encode_body", "decode_body", "peek_request_header",
]
