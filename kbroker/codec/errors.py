"""Errors the codec reports as values the server can answer with a Kafka error code."""

from __future__ import annotations


class CodecError(Exception):
    """Any frame or message the codec cannot turn into an object (or back).

    ``error_code`` is the Kafka error to answer with; ``correlation_id`` and
    ``api_key``/``api_version`` are filled in when the header was readable, so the
    server can still address a response.
    """

    error_code = 42  # INVALID_REQUEST

    def __init__(self, message: str, *, api_key: int | None = None, api_version: int | None = None,
                 correlation_id: int | None = None) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class TruncatedFrame(CodecError):
    """The frame ended before the message did."""

    error_code = 2  # CORRUPT_MESSAGE


class InvalidFrame(CodecError):
    """A bad length, trailing bytes, an impossible value or an invalid UTF-8 string."""

    error_code = 42  # INVALID_REQUEST


class UnknownApiKey(CodecError):
    """The request names an API key the codec has no schema for."""

    error_code = 35  # UNSUPPORTED_VERSION


class UnsupportedVersion(CodecError):
    """The API is known but not at the requested version."""

    error_code = 35  # UNSUPPORTED_VERSION


class EncodeError(CodecError):
    """A value does not fit its field (programming error in a handler)."""
