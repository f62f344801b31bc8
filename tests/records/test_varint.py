"""Zig-zag and unsigned varints against Kafka's known encodings and kafka-python's codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.util import decode_varint as kp_decode
from kafka.record.util import encode_varint as kp_encode

from kbroker.records.varint import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    VarintError,
    decode_uvarint,
    decode_varint,
    decode_varlong,
    encode_uvarint,
    encode_varint,
    encode_varlong,
    size_of_varint,
)

# (value, encoding) pairs as written by Kafka's ByteUtils.writeVarint.
VARINTS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (8191, "fe7f"),
    (-8192, "ff7f"),
    (8192, "808001"),
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
]


@pytest.mark.parametrize(("value", "hexed"), VARINTS)
def test_known_varints(value: int, hexed: str) -> None:
    raw = bytes.fromhex(hexed)
    assert encode_varint(value) == raw
    assert encode_varlong(value) == raw
    assert decode_varint(raw) == (value, len(raw))
    assert decode_varlong(memoryview(raw)) == (value, len(raw))
    assert size_of_varint(value) == len(raw)


def test_varlong_extremes() -> None:
    assert encode_varlong(INT64_MAX) == bytes.fromhex("feffffffffffffffff01")
    assert encode_varlong(INT64_MIN) == bytes.fromhex("ffffffffffffffffff01")
    for v in (INT64_MAX, INT64_MIN):
        assert decode_varlong(encode_varlong(v)) == (v, 10)
        assert size_of_varint(v) == 10


def test_decode_at_position() -> None:
    buf = bytearray(b"\xaa\xbb") + encode_varint(-300) + encode_varlong(1 << 40) + encode_uvarint(300)
    v, pos = decode_varint(buf, 2)
    assert v == -300
    v, pos = decode_varlong(buf, pos)
    assert v == 1 << 40
    assert decode_uvarint(buf, pos) == (300, len(buf))


def test_uvarint() -> None:
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(0xFFFFFFFF) == b"\xff\xff\xff\xff\x0f"
    assert decode_uvarint(b"\xff\xff\xff\xff\x0f") == (0xFFFFFFFF, 5)


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (encode_varint, INT32_MAX + 1),
        (encode_varint, INT32_MIN - 1),
        (encode_varlong, INT64_MAX + 1),
        (encode_uvarint, -1),
        (encode_uvarint, 1 << 32),
    ],
)
def test_encode_out_of_range(encode, value: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\xff\xff", b"\x80\x80\x80\x80"])
def test_truncated(raw: bytes) -> None:
    for decode in (decode_varint, decode_varlong, decode_uvarint):
        with pytest.raises(VarintError):
            decode(raw)


def test_too_long() -> None:
    with pytest.raises(VarintError):
        decode_varint(b"\xff\xff\xff\xff\xff\x01")
    with pytest.raises(VarintError):
        decode_uvarint(b"\x80\x80\x80\x80\x80\x00")
    with pytest.raises(VarintError):
        decode_varlong(b"\xff" * 10 + b"\x01")
    # A 5-byte varint is fine for a varlong decoder and vice versa within limits.
    assert decode_varlong(b"\x80\x80\x80\x80\x80\x01")[1] == 6


@given(st.integers(INT32_MIN, INT32_MAX))
def test_varint_roundtrip_and_matches_kafka_python(v: int) -> None:
    raw = encode_varint(v)
    assert decode_varint(raw) == (v, len(raw))
    out = bytearray()
    kp_encode(v, out.append)
    assert bytes(out) == raw
    assert kp_decode(raw, 0) == (v, len(raw))


@given(st.integers(INT64_MIN, INT64_MAX))
def test_varlong_roundtrip(v: int) -> None:
    raw = encode_varlong(v)
    assert decode_varlong(b"\x00" + raw, 1) == (v, len(raw) + 1)
    assert size_of_varint(v) == len(raw)


@given(st.integers(0, 0xFFFFFFFF))
def test_uvarint_roundtrip(v: int) -> None:
    raw = encode_uvarint(v)
    assert decode_uvarint(raw) == (v, len(raw))
