"""Turn one request frame into one response frame (or none), by API key."""

from __future__ import annotations

import logging
import struct

import anyio

from kbroker.codec import (
    CodecError,
    EncodeError,
    UnsupportedVersion,
    decode_request,
    encode_response_parts,
    peek_request_header,
)
from kbroker.codec.apis import API_VERSIONS_KEY, api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.handlers import registry
from kbroker.handlers.api import (
    BrokerServices,
    CloseConnection,
    DetachedBody,
    EncodedBody,
    RequestContext,
    Session,
)
from kbroker.handlers.api_versions import unsupported_version_response
from kbroker.handlers.produce import API_KEY as PRODUCE_KEY
from kbroker.server.intercept import Exchange, Interceptors
from kbroker.server.throttling import Meter

log = logging.getLogger(__name__)


#: SaslHandshake, ApiVersions and SaslAuthenticate: what a client may send before authenticating.
_SASL_EXCHANGE = frozenset({17, 18, 36})
#: Frames from this size are decoded in a worker thread (see dispatch).
LARGE_FRAME = 256 * 1024


def _mostly_records(frame: bytes) -> bool:
    # Produce: its size is record data, decoded as one bytes field, quick whatever its size.
    return len(frame) >= 2 and int.from_bytes(frame[:2], "big", signed=True) == PRODUCE_KEY


#: A framed response as buffers to write in order (record data among them uncopied).
ResponseParts = list[bytes | bytearray | memoryview]
_SIZE_AND_ID = struct.Struct(">ii")


def _framed(api_key: int, api_version: int, correlation_id: int, body: EncodedBody) -> ResponseParts:
    """The frame of an already encoded body: size prefix, response header, body."""
    encoded = body.encoded
    if api_table()[api_key].response_header_version(api_version) == 0:
        return [_SIZE_AND_ID.pack(4 + len(encoded), correlation_id) + encoded]
    # Header v1: the correlation id and an empty tagged-field section.
    return [_SIZE_AND_ID.pack(5 + len(encoded), correlation_id) + b"\0" + encoded]


async def dispatch(broker: BrokerServices, session: Session, frame: bytes,
                   interceptors: Interceptors | None = None) -> ResponseParts | None:
    """Serve one request frame; returns the framed response, or None when none is due.
    ``interceptors`` (when any are installed) wrap the handler's serving of the request."""
    if session.sasl is not None and session.sasl.authenticating:
        early = _sasl_gate(session, frame)
        if early is not None:
            return early
    try:
        # A frame of many thousands of array items (a DeleteRecords or ListOffsets naming 100k
        # partitions) takes a good part of a second to decode: that is done off the event loop.
        if len(frame) >= LARGE_FRAME and not _mostly_records(frame):
            request = await anyio.to_thread.run_sync(decode_request, frame)
        else:
            request = decode_request(frame)
    except UnsupportedVersion as e:
        if e.api_key == API_VERSIONS_KEY and e.correlation_id is not None:
            # KIP-511: answer in v0 so the client can retry with a version we know.
            return encode_response_parts(API_VERSIONS_KEY, 0, e.correlation_id, unsupported_version_response())
        raise CloseConnection(str(e)) from e
    except CodecError as e:
        raise CloseConnection(f"malformed request: {e}") from e

    header = request.header
    key, version, correlation_id = header.api_key, header.api_version, header.correlation_id
    handler = registry().get(key)
    if handler is None or version not in handler.versions:
        if key == API_VERSIONS_KEY:
            return encode_response_parts(API_VERSIONS_KEY, 0, correlation_id, unsupported_version_response())
        raise CloseConnection(f"{request.api.name} v{version} is not implemented")

    session.last_client_id = header.client_id
    sasl = session.sasl
    if sasl is not None:  # a SASL listener: what the connection's SASL state allows
        refusal = sasl.refuse(key)
        if refusal is not None:
            return _refuse(key, version, correlation_id, refusal.reason, refusal.answer)
    ctx = RequestContext(broker, session, request)
    # Client quotas: with none configured, this flag is all the request path pays.
    quotas = broker.client_quotas
    meter = Meter(quotas, session, header.client_id, key, request.body, len(frame)) if quotas.enabled else None
    try:
        if interceptors:
            exchange = Exchange(session, key, version, correlation_id, header.client_id, request.body,
                                len(frame), broker.clock.monotonic())
            body = await interceptors.serve(
                exchange, lambda: handler.handle(ctx) if meter is None else meter.timed(handler.handle(ctx)))
        else:
            body = await (handler.handle(ctx) if meter is None else meter.timed(handler.handle(ctx)))
    except CloseConnection:
        raise
    except Exception:
        body = _error_body(key, version)
        if body is None:
            raise  # the connection closes, and logs it once
        log.exception("%s answered UNKNOWN_SERVER_ERROR", describe_request(session, key, version))
    if meter is not None:
        if isinstance(body, EncodedBody):
            body = dict(body)  # quotas may put a throttle time in it: encoded as any other
        body = meter.after_handle(body)
    if body is None:
        return None
    try:
        if isinstance(body, EncodedBody):
            return _framed(key, version, correlation_id, body)
        if isinstance(body, DetachedBody):
            parts = await anyio.to_thread.run_sync(encode_response_parts, key, version, correlation_id, body)
        else:
            parts = encode_response_parts(key, version, correlation_id, body)
        if meter is not None:
            parts = meter.after_encode(body, parts, lambda b: encode_response_parts(key, version, correlation_id, b))
        return parts
    except EncodeError:
        fallback = _error_body(key, version)
        if fallback is None:
            raise  # the connection closes, and logs it once
        log.exception("cannot encode the response to %s; answered UNKNOWN_SERVER_ERROR",
                      describe_request(session, key, version))
        return encode_response_parts(key, version, correlation_id, fallback)


def _sasl_gate(session: Session, frame: bytes) -> ResponseParts | None:
    """While a SASL connection authenticates, refuse any API but the SASL exchange's from its
    header alone, as Kafka does, so an unauthenticated client cannot make the broker decode
    other requests. The exchange's own requests are checked once decoded (None here)."""
    try:
        key, version, correlation_id = peek_request_header(frame)
    except CodecError as e:
        raise CloseConnection(f"malformed request: {e}") from e
    if key in _SASL_EXCHANGE:
        return None
    refusal = session.sasl.refuse(key)
    if refusal is None:
        return None
    return _refuse(key, version, correlation_id, refusal.reason, refusal.answer)


def _refuse(api_key: int, version: int, correlation_id: int, reason: str, answer: bool) -> ResponseParts:
    """A request the SASL state does not allow: Kafka closes the connection, after answering
    ILLEGAL_SASL_STATE when authentication was under way (and the API has an error code)."""
    api = api_table().get(api_key)
    body = _error_body(api_key, version) if answer and api is not None and version in api.versions else None
    if body is None:
        raise CloseConnection(reason)
    body["error_code"] = ErrorCode.ILLEGAL_SASL_STATE
    return encode_response_parts(api_key, version, correlation_id, body)


def describe_request(session: Session, api_key: int, api_version: int) -> str:
    """``Metadata v12 from client 'x' at host:port``, for log lines about one request."""
    api = api_table().get(api_key)
    name = api.name if api is not None else f"API key {api_key}"
    return (f"{name} v{api_version} from client {session.last_client_id!r} at "
            f"{session.client_host}:{session.client_port}")


def _error_body(api_key: int, version: int) -> dict[str, int] | None:
    """A body with only a top-level UNKNOWN_SERVER_ERROR, for APIs that have that field."""
    spec = api_table()[api_key].response
    for f in spec.fields:
        if f.attr == "error_code" and version in f.versions:
            return {"error_code": -1}
    return None
