"""The Kafka wire codec: schemas as data, built into ``construct`` structs; sans-I/O."""

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
