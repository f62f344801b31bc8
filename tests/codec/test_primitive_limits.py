"""Limits of the codec's primitives, as Kafka's readers have them: unsigned varints, string lengths."""

from __future__ import annotations

import pytest
from construct import StreamError

from kbroker.codec.primitives import UVarInt
from kbroker.records.varint import encode_uvarint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31 - 1, 2**32 - 1])
def test_round_trip(value: int) -> None:
    data = encode_uvarint(value)
    assert UVarInt().parse(data) == value
    assert UVarInt().build(value) == data


def test_more_than_five_bytes_is_refused() -> None:
    with pytest.raises(StreamError, match="longer than 5 bytes"):
        UVarInt().parse(b"\x80\x80\x80\x80\x80\x01")


def test_truncated_is_refused() -> None:
    with pytest.raises(StreamError):
        UVarInt().parse(b"\x80\x80")


@pytest.mark.parametrize("compact", [False, True])
def test_strings_longer_than_32767_bytes_are_refused(compact: bool) -> None:
    """As Kafka's generated readers: a string field over 0x7fff bytes is an invalid request."""
    from kbroker.codec.primitives import KString

    k = KString(nullable=False, compact=compact)
    assert k.parse(k.build("x" * 0x7FFF)) == "x" * 0x7FFF
    over = encode_uvarint(0x8000 + 1) + b"x" * 0x8000
    if compact:
        with pytest.raises(StreamError, match="invalid string length"):
            k.parse(over)
    with pytest.raises(StreamError, match="longer than 32767"):
        k.build("x" * 0x8000)


def test_error_messages_quoting_long_input_are_cut_not_refused() -> None:
    """A response's error message may echo a 32767-byte config value; it is cut to the limit."""
    from kbroker.codec import decode_response, encode_response

    long_value = "a" * 0x7FFF
    body = {"throttle_time_ms": 0, "topics": [{"name": "t", "error_code": 40, "num_partitions": -1,
                                               "replication_factor": -1, "configs": None,
                                               "error_message": f"Invalid value {long_value} for segment.bytes"}]}
    frame = encode_response(19, 5, 7, body)
    _, decoded = decode_response(19, 5, frame[4:])
    message = decoded.topics[0].error_message
    assert len(message.encode()) == 0x7FFF and message.startswith("Invalid value aaa")
