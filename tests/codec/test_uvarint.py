"""Unsigned varints in the codec (compact lengths, tags) decode as Kafka's readUnsignedVarint."""

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
