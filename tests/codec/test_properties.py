"""Property tests of our codec alone: round trips, fuzzed frames, framing."""

from __future__ import annotations

import contextlib
import struct
from functools import cache
from typing import Any

import pytest
from codec_helpers import INT_RANGES, ZERO_UUID, Gen, all_api_versions, container, is_tagged, plain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbroker.codec import (
    CodecError,
    FrameReader,
    FrameTooLarge,
    InvalidFrame,
    TruncatedFrame,
    UnknownApiKey,
    UnsupportedVersion,
    api_by_name,
    api_table,
    decode_body,
    decode_request,
    decode_response,
    encode_body,
    encode_request,
    encode_response,
)
from kbroker.codec.schema import FieldSpec, MessageSpec
from kbroker.codec.structs import default_value

CASES = all_api_versions()
BOUNDED = settings(max_examples=4, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- strategies from the schema


def _scalar(t: str) -> st.SearchStrategy[Any]:
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.integers(lo, hi)
    if t == "float64":
        return st.floats(allow_nan=False)
    if t == "bool":
        return st.booleans()
    if t == "string":
        return st.text(max_size=12)
    if t in ("bytes", "records"):
        return st.binary(max_size=24)
    if t == "uuid":
        return st.uuids() | st.just(ZERO_UUID)
    raise AssertionError(t)


def _field(f: FieldSpec, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    if f.is_array:
        elem = _struct(f.fields, version, flexible) if f.is_struct else _scalar(f.element_type)
        s: st.SearchStrategy[Any] = st.lists(elem, max_size=3)
    elif f.is_struct:
        s = _struct(f.fields, version, flexible)
    else:
        s = _scalar(f.type)
    if version in f.nullable:
        s = st.none() | s
    if is_tagged(f, version, flexible):
        s = st.just(plain(default_value(f, version))) | s
    return s


def _struct(fields: tuple[FieldSpec, ...] | None, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({f.attr: _field(f, version, flexible) for f in fields or ()
                                  if version in f.versions})


@cache
def message_strategy(spec: MessageSpec, version: int) -> st.SearchStrategy[Any]:
    return _struct(spec.fields, version, version in spec.flexible)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["request", "response"])
@pytest.mark.parametrize(("name", "key", "version"), CASES, ids=[f"{n}-v{v}" for n, _, v in CASES])
def test_round_trip(name: str, key: int, version: int, kind: str) -> None:
    api = api_table()[key]
    spec = api.request if kind == "request" else api.response

    def check(x: dict[str, Any]) -> None:
        data = encode_body(api, kind, version, container(x))
        back = decode_body(api, kind, version, data)
        assert plain(back) == x
        assert encode_body(api, kind, version, back) == data

    for mode, seed in (("empty", 0), ("full", 0), ("random", 4)):
        check(Gen(mode, seed).message(spec, version))

    @BOUNDED
    @given(message_strategy(spec, version))
    def prop(x: dict[str, Any]) -> None:
        check(x)

    prop()


@pytest.mark.parametrize("name", ["ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "GetTelemetrySubscriptions"])
def test_hand_written_apis_frame_round_trip(name: str) -> None:
    api = api_by_name(name)
    for v in range(api.versions.low, api.versions.high + 1):
        for mode in ("empty", "full"):
            x = Gen(mode, 1).message(api.request, v)
            req = decode_request(encode_request(api.key, v, 5, x, client_id="c")[4:])
            assert plain(req.body) == x and req.header.client_id == "c"
            y = Gen(mode, 1).message(api.response, v)
            assert plain(decode_response(api.key, v, encode_response(api.key, v, 6, y)[4:])[1]) == y


# ---------------------------------------------------------------- fuzzed frames


@cache
def valid_frames() -> list[bytes]:
    """A valid request frame (no size prefix) per API at its lowest and highest version."""
    frames = []
    for key, api in api_table().items():
        for v in sorted({api.versions.low, api.versions.high}):
            for mode in ("empty", "full"):
                frames.append(encode_request(key, v, 1234, Gen(mode, key).message(api.request, v))[4:])
    return frames


def _decode(frame: bytes | memoryview) -> None:
    """Decode or raise a CodecError; anything else propagates and fails the test."""
    with contextlib.suppress(CodecError):
        decode_request(frame)


def test_every_truncation_is_a_codec_error() -> None:
    for frame in valid_frames():
        decode_request(frame)  # the whole frame is fine
        for n in range(len(frame)):
            with pytest.raises(CodecError) as e:
                decode_request(frame[:n])
            if n >= 8:
                assert e.value.correlation_id == 1234


def test_every_byte_flip_decodes_or_is_a_codec_error() -> None:
    for frame in valid_frames()[::3]:
        for i in range(8, len(frame)):
            for b in (0x00, 0xFF, frame[i] ^ 0x80):
                _decode(frame[:i] + bytes([b]) + frame[i + 1:])


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _decode(data)


@FUZZ
@given(st.integers(0, 10_000), st.data())
def test_random_mutations_of_valid_frames(seed: int, data: st.DataObject) -> None:
    frames = valid_frames()
    frame = bytearray(frames[seed % len(frames)])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(8, max(8, len(frame) - 1)))
        if op == "flip" and i < len(frame):
            frame[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            frame[i:i] = data.draw(st.binary(min_size=1, max_size=5))
        elif i < len(frame):
            del frame[i]
    _decode(bytes(frame))
    _decode(memoryview(frame))


def _frame(key: int, version: int, body: bytes, cid: int = 77, flexible: bool = False) -> bytes:
    header = struct.pack(">hhih", key, version, cid, 1) + b"c"
    return header + (b"\x00" if flexible else b"") + body


def test_unknown_api_key() -> None:
    for key in (-1, 1000, 32767, max(api_table()) + 1):
        with pytest.raises(UnknownApiKey) as e:
            decode_request(_frame(key, 0, b""))
        assert e.value.correlation_id == 77 and e.value.api_key == key
        assert e.value.error_code == 35


def test_unsupported_version() -> None:
    produce = api_by_name("Produce")
    for v in (-1, produce.versions.low - 1, produce.versions.high + 1, 32767):
        with pytest.raises(UnsupportedVersion) as e:
            decode_request(_frame(produce.key, v, b""))
        assert (e.value.api_key, e.value.api_version, e.value.correlation_id) == (produce.key, v, 77)


@pytest.mark.parametrize("n", range(8))
def test_frame_shorter_than_8_bytes(n: int) -> None:
    with pytest.raises(TruncatedFrame):
        decode_request(_frame(3, 1, b"")[:n])


def test_negative_and_huge_lengths() -> None:
    md = api_by_name("Metadata")  # v1: topics is a nullable int32 array of structs {name: string}
    bad_bodies = [
        struct.pack(">i", -2),  # array length below -1
        struct.pack(">i", -(2**31)),
        struct.pack(">i", 2**31 - 1),  # 2 billion topics in 4 bytes
        struct.pack(">i", 1) + struct.pack(">h", -2),  # string length below -1
        struct.pack(">i", 1) + struct.pack(">h", -1),  # null for a non-nullable string
        struct.pack(">i", 1) + struct.pack(">h", 32767) + b"x",  # string longer than the frame
    ]
    for body in bad_bodies:
        with pytest.raises(CodecError) as e:
            decode_request(_frame(md.key, 1, body))
        assert e.value.correlation_id == 77
    # flexible (v9+): compact lengths are varints; huge, overlong and -2 (0 is null) counts
    flex_bodies = [
        b"\xff\xff\xff\xff\x0f",  # 2**32 - 1 elements
        b"\xff" * 12,  # a varint that never ends within 10 bytes
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a 64-bit count
        b"\x02" + b"\xff\xff\xff\xff\x07",  # one topic whose name claims 2 GiB
        b"\x02" + b"\x00",  # one topic with a null name (nullable only from v10)
        b"\x01\x00\x00\x00" + b"\x05" + b"\x01\xff\xff\xff\x0f",  # no topics, 3 bools, a 4 GiB tagged field
    ]
    for body in flex_bodies:
        with pytest.raises(CodecError):
            decode_request(_frame(md.key, 9, body, flexible=True))
    produce = api_by_name("Produce")  # records: int32 length, nullable
    body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + struct.pack(">h", 1) + b"t"
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", 2**31 - 1)
    with pytest.raises(TruncatedFrame):
        decode_request(_frame(produce.key, 3, body))
    body = body[:-4] + struct.pack(">i", -5)
    with pytest.raises(InvalidFrame):
        decode_request(_frame(produce.key, 3, body))


def test_trailing_bytes() -> None:
    # Requests tolerate trailing bytes as Kafka does (librdkafka sends some); responses do not.
    for frame in valid_frames()[:40]:
        assert decode_request(frame + b"\x00\x01\x02").body == decode_request(frame).body
    api = api_by_name("Metadata")
    body = encode_body(api, "response", 12, {})
    with pytest.raises(InvalidFrame):
        decode_body(api, "response", 12, body + b"\x00")
    with pytest.raises(InvalidFrame):
        decode_response(api.key, 12, encode_response(api.key, 12, 1, {})[4:] + b"\x01")


def test_invalid_utf8() -> None:
    md = api_by_name("Metadata")
    good = encode_request(md.key, 1, 77, {"topics": [{"name": "abc"}]})[4:]
    assert good.endswith(b"abc")
    for bad in (b"\xff\xfe\xfd", b"a\xc3(", b"\xed\xa0\x80"):  # invalid, truncated sequence, surrogate
        with pytest.raises(InvalidFrame) as e:
            decode_request(good[:-3] + bad)
        assert e.value.correlation_id == 77
    header_bad = struct.pack(">hhih", md.key, 1, 77, 2) + b"\xc3("  # invalid client id
    with pytest.raises(InvalidFrame):
        decode_request(header_bad + struct.pack(">i", 0))


def test_codec_errors_carry_error_codes() -> None:
    assert TruncatedFrame("x").error_code == 2
    assert InvalidFrame("x").error_code == 42
    assert UnsupportedVersion("x").error_code == UnknownApiKey("x").error_code == 35
    assert issubclass(FrameTooLarge, CodecError)


# ---------------------------------------------------------------- FrameReader


def _framed(payloads: list[bytes]) -> bytes:
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_frame_reader_splits_any_feed(payloads: list[bytes], cuts: list[int]) -> None:
    stream = _framed(payloads)
    reader = FrameReader(max_frame_size=1000)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        reader.feed(stream[pos:pos + n])
        pos += n
        while (frame := reader.next_frame()) is not None:
            got.append(frame)
    assert got == payloads
    assert reader.buffered == 0 and reader.next_frame() is None


def test_frame_reader_partial_and_multiple() -> None:
    reader = FrameReader(max_frame_size=100)
    assert reader.next_frame() is None
    reader.feed(b"\x00\x00")
    assert reader.next_frame() is None and reader.buffered == 2
    reader.feed(b"\x00\x03ab")
    assert reader.next_frame() is None
    reader.feed(bytearray(b"c\x00\x00\x00\x00\x00\x00\x00\x01z"))
    assert reader.next_frame() == b"abc"
    assert reader.next_frame() == b""
    assert reader.next_frame() == b"z"
    assert reader.next_frame() is None and reader.buffered == 0
    reader.feed(memoryview(b"\x00\x00\x00\x01q"))
    assert reader.next_frame() == b"q"


def test_frame_reader_large_stream_compacts() -> None:
    reader = FrameReader(max_frame_size=1 << 20)
    payload = b"p" * 70_000
    for _ in range(40):  # 2.8 MB through one reader
        reader.feed(_framed([payload, b"s"]))
        assert reader.next_frame() == payload
        assert reader.next_frame() == b"s"
    assert reader.buffered == 0 and not reader._chunks  # nothing retained once consumed


def test_frame_reader_too_large() -> None:
    reader = FrameReader(max_frame_size=100)
    reader.feed(struct.pack(">i", 100) + b"x" * 100)
    assert reader.next_frame() == b"x" * 100
    reader.feed(struct.pack(">i", 101))
    with pytest.raises(FrameTooLarge):
        reader.next_frame()
    for size in (-1, -(2**31), 2**31 - 1):
        r = FrameReader(max_frame_size=100)
        r.feed(struct.pack(">i", size))
        with pytest.raises(FrameTooLarge):
            r.next_frame()


def test_bytes_like_values_and_frames() -> None:
    """Records may be given as bytes, bytearray or memoryview; frames may arrive as any of them."""
    produce = api_by_name("Produce")
    records = bytes(range(256)) * 40

    def body(r: Any) -> dict[str, Any]:
        return {"acks": 1, "timeout_ms": 5, "topic_data": [
            {"name": "t", "partition_data": [{"index": 0, "records": r}, {"index": 1, "records": None}]}]}

    frames = {encode_request(produce.key, v, 9, body(r))
              for v in (3,) for r in (records, bytearray(records), memoryview(records))}
    assert len(frames) == 1
    frame = frames.pop()
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    for f in (frame[4:], bytearray(frame[4:]), memoryview(frame)[4:]):
        req = decode_request(f)
        parts = req.body.topic_data[0].partition_data
        assert parts[0].records == records and parts[1].records is None
