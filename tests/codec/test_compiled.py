"""The compiled codec against the reference (the ``construct`` structs): same bytes, same values,
same errors, for every message (requests, responses, headers, data) at every version.

Decoding compares outcomes: the value (with the same types, nested, keys in the same order) and
the bytes used, or the error class (invalid vs truncated). Encoding compares the bytes, the
buffers a response is cut into, and EncodeError vs success.
"""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from codec_helpers import Gen, container, plain
from construct import ConstructError, Container

from kbroker.codec import (
    CodecError,
    EncodeError,
    FrameReader,
    api_by_name,
    api_table,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    encode_response_parts,
)
from kbroker.codec import reference as ref
from kbroker.codec.compiled import Invalid, Truncated, codec_for
from kbroker.codec.frames import LARGE_PART
from kbroker.codec.primitives import ValueError_
from kbroker.codec.schema import FieldSpec, MessageSpec, all_messages, load_message
from kbroker.codec.structs import message_struct

MESSAGES = [(name, v) for name, spec in all_messages().items() for v in range(spec.valid.low, spec.valid.high + 1)]
MODES = [("empty", 0), ("full", 0), ("random", 1), ("random", 2), ("random", 3)]
_CTX = Container()


def _ids(cases: list[tuple[str, int]]) -> list[str]:
    return [f"{n}-v{v}" for n, v in cases]


# ---------------------------------------------------------------- outcomes of both codecs


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (keys in the same order)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)


def ref_decode(spec: MessageSpec, version: int, data: bytes) -> tuple[Any, ...]:
    """The reference's outcome: ``("ok", value, bytes used)`` or ``("invalid"|"truncated",)``
    (the error mapping of the frame functions)."""
    stream = io.BytesIO(data)
    try:
        value = message_struct(spec, version)._parse(stream, _CTX, "x")
    except ValueError_:
        return ("invalid",)
    except ConstructError:
        return ("truncated",)
    except (ValueError, OverflowError, MemoryError):
        return ("invalid",)
    return ("ok", value, stream.tell())


def new_decode(spec: MessageSpec, version: int, data: bytes) -> tuple[Any, ...]:
    try:
        value, pos = codec_for(spec, version).decode(data, 0, len(data))
    except Invalid:
        return ("invalid",)
    except Truncated:
        return ("truncated",)
    except (ValueError, OverflowError, MemoryError):
        return ("invalid",)
    return ("ok", value, pos)


def check_decode(spec: MessageSpec, version: int, data: bytes) -> tuple[Any, ...]:
    a, b = ref_decode(spec, version, data), new_decode(spec, version, data)
    assert a[0] == b[0], f"{spec.name} v{version} {data.hex()}: reference {a[0]}, compiled {b[0]}"
    if a[0] == "ok":
        assert a[2] == b[2], f"{spec.name} v{version} {data.hex()}: used {a[2]} vs {b[2]} bytes"
        assert same(a[1], b[1]), f"{spec.name} v{version} {data.hex()}:\n {a[1]!r}\n {b[1]!r}"
    return a


def ref_encode(spec: MessageSpec, version: int, value: Any) -> tuple[Any, ...]:
    """``("ok", pieces)`` or ``("error", exception class name)`` (EncodeError as the frame
    functions raise it; anything else as it escapes them)."""
    out = ref._Chunks()
    try:
        try:
            message_struct(spec, version)._build(value, out, _CTX, "x")
        except (ConstructError, ValueError, TypeError, OverflowError, AttributeError) as e:
            raise EncodeError(str(e)) from e
        joined = b"".join(out.parts)
    except Exception as e:
        return ("error", type(e).__name__)
    return ("ok", joined, out.parts)


def new_encode(spec: MessageSpec, version: int, value: Any) -> tuple[Any, ...]:
    parts: list[Any] = []
    try:
        try:
            codec_for(spec, version).encode(value, parts.append)
        except Exception as e:
            raise EncodeError(str(e)) from e
        joined = b"".join(parts)
    except Exception as e:
        return ("error", type(e).__name__)
    return ("ok", joined, parts)


def _leaves(x: Any) -> Iterator[Any]:
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def check_encode(spec: MessageSpec, version: int, value: Any) -> tuple[Any, ...]:
    a, b = ref_encode(spec, version, value), new_encode(spec, version, value)
    assert a[:2] == b[:2], f"{spec.name} v{version} {value!r}:\n reference {a[:2]}\n compiled  {b[:2]}"
    if a[0] == "ok":
        # The same large pieces (separate buffers of a response); values given are not copied.
        large_a = [p for p in a[2] if len(p) >= LARGE_PART]
        large_b = [p for p in b[2] if len(p) >= LARGE_PART]
        assert len(large_a) == len(large_b)
        given = {id(v) for v in _leaves(value)}
        for pa, pb in zip(large_a, large_b, strict=True):
            assert pb is pa if id(pa) in given else pa == pb
    return a


# ---------------------------------------------------------------- values and corruptions


def values(spec: MessageSpec, version: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for mode, seed in MODES:
        yield f"{mode}{seed}", Gen(mode, seed).message(spec, version)


def corruptions(data: bytes, rnd: random.Random, n: int) -> Iterator[bytes]:
    """Bytes flipped to 0x00, 0xFF and with the top bit toggled; inserted and deleted bytes."""
    if not data:
        return
    positions = sorted(rnd.sample(range(len(data)), min(n, len(data))))
    for i in positions:
        for b in (0x00, 0xFF, data[i] ^ 0x80, 0x7F, 0x80):
            yield data[:i] + bytes([b]) + data[i + 1:]
        yield data[:i] + data[i + 1:]
        yield data[:i] + b"\x80" + data[i:]
        yield data[:i] + b"\xff\xff\xff\xff\x0f" + data[i:]


@pytest.mark.parametrize(("name", "version"), MESSAGES, ids=_ids(MESSAGES))
def test_generated_values_every_truncation_and_corruptions(name: str, version: int) -> None:
    spec = all_messages()[name]
    rnd = random.Random(f"{name}-{version}")
    for label, x in values(spec, version):
        a = check_encode(spec, version, container(x))
        assert a[0] == "ok", label
        data = a[1]
        ok = check_decode(spec, version, data)
        assert ok[0] == "ok" and ok[2] == len(data) and plain(ok[1]) == x
        for n in range(len(data)):
            assert check_decode(spec, version, data[:n])[0] != "ok"
        for bad in corruptions(data, rnd, 12):
            check_decode(spec, version, bad)
        check_decode(spec, version, data + b"\x00\x01")
        # Plain dicts and memoryviews/bytearrays for bytes values encode alike.
        check_encode(spec, version, x)
        # Missing keys take their defaults; tagged fields left out are written as absent.
        check_encode(spec, version, {})
        check_encode(spec, version, dict(list(x.items())[::2]))


def _struct_paths(fields: tuple[FieldSpec, ...], version: int, x: Any, path: tuple[Any, ...] = ()
                  ) -> Iterator[tuple[tuple[Any, ...], FieldSpec]]:
    """Every (path to a field's value in ``x``, field) that ``x`` holds."""
    if not isinstance(x, dict):
        return
    for f in fields:
        if version not in f.versions or f.attr not in x:
            continue
        p = (*path, f.attr)
        yield p, f
        v = x[f.attr]
        if f.is_struct:
            if f.is_array and isinstance(v, list):
                for i, e in enumerate(v):
                    yield from _struct_paths(f.fields or (), version, e, (*p, i))
            elif isinstance(v, dict):
                yield from _struct_paths(f.fields or (), version, v, p)
        elif f.is_array and isinstance(v, list) and v:
            yield (*p, 0), FieldSpec(f.name, "element", f.element_type, f.versions, f.tagged, f.tagged, None,
                                     None, f.flexible, None)  # only its type matters here


def _replace(x: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(x, list):
        return [_replace(e, rest, value) if i == head else e for i, e in enumerate(x)]
    out = Container(x)
    out[head] = _replace(x[head], rest, value)
    return out


_INT_BOUNDS = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}
_UINT_BOUNDS = {"uint16": 16, "uint32": 32}


def bad_values(f: FieldSpec) -> list[Any]:
    """Values that do not fit field ``f`` (and a few that do, through a conversion)."""
    t = f.type
    common: list[Any] = [None, object(), 1.5, "x", b"x", [], {}]
    if f.is_array:
        return [*common, "ab", (), [None], [object()], {"k": 1}, 7]
    if f.is_struct:
        return [*common, Container(), [Container()], 3]
    if t in _INT_BOUNDS:
        b = _INT_BOUNDS[t]
        return [*common, 2**b, -(2**b) - 1, 2**b - 1, -(2**b), True, 2**200]
    if t in _UINT_BOUNDS:
        b = _UINT_BOUNDS[t]
        return [*common, -1, 2**b, 2**b - 1, 0]
    if t == "float64":
        return [*common, 10**400, float("inf"), float("nan"), 3]
    if t == "bool":
        return [*common, 2, 0]
    if t == "string":
        return [*common, "é" * 0x4000, "x" * 0x7FFF, "x" * 0x8000, "\ud800", 5]
    if t in ("bytes", "records"):
        return [*common, bytearray(b"ab"), memoryview(b"abc"), "text", 5, b"r" * LARGE_PART]
    if t == "uuid":
        return [*common, str(uuid.UUID(int=5)), "not-a-uuid", 0, uuid.UUID(int=0)]
    raise AssertionError(t)


@pytest.mark.parametrize(("name", "version"), MESSAGES, ids=_ids(MESSAGES))
def test_bad_values_fail_alike(name: str, version: int) -> None:
    spec = all_messages()[name]
    x = container(Gen("full", 0).message(spec, version))
    for path, f in _struct_paths(spec.fields, version, x):
        for bad in bad_values(f):
            check_encode(spec, version, _replace(x, path, bad))
    for bad in (None, [], "x", 5):
        check_encode(spec, version, bad)


# ---------------------------------------------------------------- whole frames


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        r = fn()
    except CodecError as e:
        return (type(e).__name__, e.api_key, e.api_version, e.correlation_id, e.error_code)
    except Exception as e:  # noqa: BLE001 - compared between both codecs
        return ("raised", type(e).__name__)
    return ("ok", r)


def check_request(frame: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    a = _outcome(lambda: ref.decode_request(frame))
    b = _outcome(lambda: decode_request(frame))
    assert a[0] == b[0], f"{bytes(frame).hex()}: {a} vs {b}"
    if a[0] == "ok":
        ra, rb = a[1], b[1]
        assert ra.header == rb.header and ra.api is rb.api
        assert same(ra.body, rb.body)
    else:
        assert a == b, bytes(frame).hex()
    return a


API_VERSIONS = [(api.name, key, v) for key, api in api_table().items()
                for v in range(api.versions.low, api.versions.high + 1)]


@pytest.mark.parametrize(("name", "key", "version"), API_VERSIONS, ids=[f"{n}-v{v}" for n, _, v in API_VERSIONS])
def test_frames(name: str, key: int, version: int) -> None:
    api = api_table()[key]
    for i, (_label, x) in enumerate(values(api.request, version)):
        client_id = [None, "", "kbroker-tést", "c" * 100, "client-1"][i]
        cid = [0, -1, 2**31 - 1, 7, -(2**31)][i]
        frame = encode_request(key, version, cid, container(x), client_id=client_id)
        assert frame == ref.encode_request(key, version, cid, container(x), client_id=client_id)
        for f in (frame[4:], bytearray(frame[4:]), memoryview(frame)[4:], frame[4:] + b"\x01\x02"):
            check_request(f)
        for n in range(len(frame) - 4):
            assert check_request(frame[4:4 + n])[0] != "ok"
    for i, (_label, y) in enumerate(values(api.response, version)):
        cid = [0, -1, 2**31 - 1, 7, -(2**31)][i]
        frame = encode_response(key, version, cid, container(y))
        assert frame == ref.encode_response(key, version, cid, container(y))
        parts, ref_parts = encode_response_parts(key, version, cid, y), ref.encode_response_parts(key, version, cid, y)
        assert parts == ref_parts
        a = _outcome(lambda frame=frame: ref.decode_response(key, version, frame[4:]))
        b = _outcome(lambda frame=frame: decode_response(key, version, frame[4:]))
        assert a[0] == b[0] == "ok" and a[1][0] == b[1][0] == cid and same(a[1][1], b[1][1])
        for data in [frame[4:4 + n] for n in range(len(frame) - 4)] + [frame[4:] + b"\x00"]:
            a = _outcome(lambda data=data: ref.decode_response(key, version, data))
            b = _outcome(lambda data=data: decode_response(key, version, data))
            assert a == b and a[0] != "ok"
    # Encode errors carry the same class through the frame functions.
    for cid in (2**31, None, "1"):
        a = _outcome(lambda cid=cid: encode_response(key, version, cid, {}))
        assert a == _outcome(lambda cid=cid: ref.encode_response(key, version, cid, {}))
        assert a[0] == "EncodeError"


def test_headers_and_unknown_apis_fail_alike() -> None:
    produce = api_by_name("Produce")
    for frame in (b"", b"\x00", b"\x00\x00\x00\x03\x00\x09\x00\x00\x00\x07",
                  b"\x7f\xff\x00\x00\x00\x00\x00\x07\x00\x00", b"\x00\x00\x7f\x00\x00\x00\x00\x07\x00\x00",
                  produce.key.to_bytes(2, "big") + b"\x00\x09\x00\x00\x00\x07\x00\x02\xc3(\x00",
                  produce.key.to_bytes(2, "big") + b"\x00\x09\x00\x00\x00\x07\x00\x00\x01\x05\x01",
                  produce.key.to_bytes(2, "big") + b"\x00\x09\x00\x00\x00\x07\xff\xff\x00\x80\x80\x80\x80\x80"):
        check_request(frame)


def test_fuzz_corpus_decodes_alike() -> None:
    """The fuzzer's cases (valid requests of every served API, captured client frames, and
    their field, payload, byte and framing mutations) decode alike, frame by frame."""
    from tools.fuzz.cli import make_mutator

    m = make_mutator(3)
    checked = 0
    for i in range(3000):
        reader = FrameReader(100 * 1024 * 1024)
        try:
            reader.feed(m.case(i).wire)
            while (frame := reader.next_frame()) is not None:
                check_request(frame)
                checked += 1
        except CodecError:
            continue
    assert checked > 2000


def test_error_messages_are_cut_alike() -> None:
    api = api_by_name("CreateTopics")
    for n in (0x7FFF - 1, 0x7FFF, 0x7FFF + 1, 0x9000):
        for s in ("a" * n, "é" * (n // 2), "x" + "😀" * (n // 4)):
            body = {"topics": [{"name": "t", "error_code": 40, "error_message": s}]}
            assert encode_response(api.key, 5, 1, body) == ref.encode_response(api.key, 5, 1, body)


def test_tagged_field_sections_alike() -> None:
    """Tags out of order, repeated, unknown (skipped), with trailing bytes, truncated, huge."""
    spec = all_messages()["FetchResponse"]
    v = spec.valid.high
    base = Gen("empty", 0).message(spec, v)
    parts: list[Any] = []
    codec_for(spec, v).encode(base, parts.append)
    body = b"".join(parts)
    assert body.endswith(b"\x00")
    stem = body[:-1]
    for section in (b"\x01\x00\x00", b"\x02\x00\x00\x00\x00", b"\x02\x05\x00\x03\x00", b"\x01\x03\x04abcd",
                    b"\x01\x00\x04\x00\x00\x00\x07", b"\x01\x00\x05\x00\x00\x00\x07\x00", b"\x01\x00\x03\x00\x00",
                    b"\x01\x63\x00", b"\x01\x80\x80\x80\x80\x80\x00", b"\x01\x00\xff\xff\xff\xff\x0f",
                    b"\x80\x80\x80\x80\x10", b"\x03\x01\x00\x02\x00\x01\x00", b"\x01\x00"):
        check_decode(spec, v, stem + section)


def test_compiled_per_spec_identity() -> None:
    """Kafka's schema alone (no kbroker extensions) compiles apart from the extended one."""
    ext, kafka = load_message("FetchRequest"), load_message("FetchRequest", extensions=False)
    for v in (4, 12, ext.valid.high):
        a, b = codec_for(ext, v), codec_for(kafka, v)
        assert a.spec is ext and b.spec is kafka
        assert codec_for(ext, v) is a and codec_for(kafka, v) is b


def test_string_and_bytes_lengths_at_the_limits_alike() -> None:
    """Compact and int16 strings at 32767 and 32768 bytes, bytes with huge and negative lengths."""
    from kbroker.records.varint import encode_uvarint

    md = all_messages()["MetadataRequest"]  # v12: compact array of {topic_id, nullable compact name}
    for n in (0x7FFF, 0x8000, 0x8001):
        for raw in (b"x" * n, b"x" * (n - 1)):
            entry = bytes(16) + encode_uvarint(n + 1) + raw + b"\x00"
            check_decode(md, 12, b"\x02" + entry + b"\x00\x00\x00")
            check_decode(md, 12, b"\x02" + bytes(16) + encode_uvarint(0) + b"\x00\x00\x00\x00")
        check_decode(md, 1, (1).to_bytes(4, "big") + n.to_bytes(2, "big") + b"x" * n)
    sasl = all_messages()["SaslAuthenticateRequest"]  # v0: int32 bytes; v2: compact bytes
    for prefix in ((-1).to_bytes(4, "big", signed=True), (-2).to_bytes(4, "big", signed=True),
                   (2**31 - 1).to_bytes(4, "big"), (3).to_bytes(4, "big")):
        check_decode(sasl, 0, prefix + b"abc")
    for prefix in (b"\x00", b"\x01", b"\xff\xff\xff\xff\x0f", b"\x04"):
        check_decode(sasl, 2, prefix + b"abc\x00")


def test_nullable_struct_markers_alike() -> None:
    """A nullable struct's int8 marker: -1 is null, any other byte a present struct."""
    spec = all_messages()["DescribeTopicPartitionsRequest"]  # ..., Cursor: nullable struct
    stem = b"\x01" + (100).to_bytes(4, "big")
    cursor = b"\x02a" + (3).to_bytes(4, "big") + b"\x00"
    for marker in (b"\xff", b"\x00", b"\x01", b"\x7f", b"\x80", b"\xfe"):
        for rest in (cursor, b"", cursor[:3]):
            for tail in (b"\x00", b""):
                check_decode(spec, 0, stem + marker + rest + tail)
    assert check_decode(spec, 0, stem + b"\xff\x00")[1].cursor is None
    assert check_decode(spec, 0, stem + b"\x00" + cursor + b"\x00")[1].cursor.partition_index == 3
    for value in (None, {}, {"topic_name": "t", "partition_index": 2}, {"topic_name": None}, []):
        check_encode(spec, 0, {"topics": [], "response_partition_limit": 5, "cursor": value})


def _max_strings(x: Any, fields: tuple[FieldSpec, ...], version: int) -> Any:
    """``x`` with every string at the longest length Kafka allows (multi-byte characters)."""
    out = Container(x)
    for f in fields:
        if version not in f.versions or f.attr not in x or x[f.attr] is None:
            continue
        v = x[f.attr]
        if f.is_struct:
            out[f.attr] = [_max_strings(e, f.fields or (), version) for e in v] if f.is_array \
                else _max_strings(v, f.fields or (), version)
        elif f.element_type == "string":
            longest = "é" * (0x7FFF // 2) + "x"
            out[f.attr] = [longest for _ in v] if f.is_array else longest
    return out


@pytest.mark.parametrize(("name", "version"), MESSAGES, ids=_ids(MESSAGES))
def test_longest_strings_alike(name: str, version: int) -> None:
    spec = all_messages()[name]
    rnd = random.Random(f"longest-{name}-{version}")
    x = _max_strings(container(Gen("full", 0).message(spec, version)), spec.fields, version)
    a = check_encode(spec, version, x)
    assert a[0] == "ok"
    data = a[1]
    assert check_decode(spec, version, data)[2] == len(data)
    for n in sorted(rnd.sample(range(len(data)), min(40, len(data)))):
        assert check_decode(spec, version, data[:n])[0] != "ok"


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 1000])
def test_scalar_arrays_of_any_length_alike(n: int) -> None:
    """Arrays of fixed-width elements, short (a struct per length) and long, both ways."""
    for name, version in (("MetadataResponse", 12), ("MetadataResponse", 1), ("AddPartitionsToTxnRequest", 3),
                          ("ListOffsetsResponse", 0), ("GetTelemetrySubscriptionsResponse", 0)):
        spec = all_messages()[name]
        x = Gen("full", n).message(spec, version)

        def fill(v: Any, fields: tuple[FieldSpec, ...]) -> Any:
            for f in fields:
                if f.attr not in v or v[f.attr] is None:
                    continue
                if f.is_struct:
                    for e in (v[f.attr] if f.is_array else [v[f.attr]]):
                        fill(e, f.fields or ())
                elif f.is_array and f.element_type in ("int8", "int16", "int32", "int64"):
                    v[f.attr] = [(i * 37) % 100 - 50 for i in range(n)]
            return v

        x = fill(x, spec.fields)
        a = check_encode(spec, version, x)
        assert a[0] == "ok"
        data = a[1]
        decoded = check_decode(spec, version, data)
        assert decoded[2] == len(data) and plain(decoded[1]) == x
        for cut in {0, len(data) // 3, len(data) // 2, len(data) - 1}:
            assert check_decode(spec, version, data[:cut])[0] != "ok"
