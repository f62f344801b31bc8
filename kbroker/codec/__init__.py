"""The Kafka wire codec, sans-I/O: schemas as data (:mod:`kbroker.codec.schema`), compiled into
a decode and an encode function per message and version (:mod:`kbroker.codec.compiled`); the
``construct`` structs built from the same schemas (:mod:`kbroker.codec.structs`,
:mod:`kbroker.codec.reference`) are the reference those functions are tested against."""

from kbroker.codec.apis import Api, api_by_name, api_table
from kbroker.codec.errors import (
    CodecError,
    EncodeError,
    InvalidFrame,
    TruncatedFrame,
    UnknownApiKey,
    UnsupportedVersion,
)
from kbroker.codec.frames import (
    Request,
    RequestHeader,
    decode_body,
    decode_request,
    decode_response,
    encode_body,
    encode_request,
    encode_response,
    encode_response_parts,
    peek_request_header,
)
from kbroker.codec.framing import FrameReader, FrameTooLarge

__all__ = [
    "Api", "api_by_name", "api_table", "CodecError", "EncodeError", "InvalidFrame", "TruncatedFrame",
    "UnknownApiKey", "UnsupportedVersion", "Request", "RequestHeader", "decode_body", "decode_request",
    "decode_response", "encode_body", "encode_request", "encode_response", "encode_response_parts",
    "peek_request_header",
    "FrameReader", "FrameTooLarge",
]
