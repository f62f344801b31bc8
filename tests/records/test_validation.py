"""The walk over a client batch's records: framing, counts, bounded decompression."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from kbroker.records import compression, validation
from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CONTROL_BIT,
    CORRUPT_MESSAGE,
    CRC_START,
    INVALID_RECORD,
    MAGIC_V2,
    BatchError,
    BatchHeader,
    pack_header,
    parse_header,
)
from kbroker.records.builder import build_batch
from kbroker.records.crc import crc32c
from kbroker.records.validation import check_client_batch, validate_records
from kbroker.records.varint import encode_varint, encode_varlong

CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD]
MiB = 1024 * 1024


def record(value: bytes | None, *, offset_delta: int = 0, key: bytes | None = None,
           headers: list[tuple[bytes, bytes | None]] | None = None) -> bytes:
    """One record's bytes (length prefix included), written field by field."""
    body = bytearray(b"\x00") + encode_varlong(0) + encode_varint(offset_delta)
    for field in (key, value):
        body += encode_varint(-1) if field is None else encode_varint(len(field)) + field
    body += encode_varint(len(headers or []))
    for hk, hv in headers or []:
        body += encode_varint(len(hk)) + hk
        body += encode_varint(-1) if hv is None else encode_varint(len(hv)) + hv
    return encode_varint(len(body)) + bytes(body)


def craft(records: bytes, count: int, *, attributes: int = 0, last_offset_delta: int | None = None,
          producer_id: int = -1, base_sequence: int = -1) -> bytes:
    """A batch around ``records`` (already compressed if ``attributes`` says so) with a valid CRC."""
    h = BatchHeader(0, 49 + len(records), -1, MAGIC_V2, 0, attributes,
                    count - 1 if last_offset_delta is None else last_offset_delta, 0, 0,
                    producer_id, 0 if producer_id >= 0 else -1, base_sequence, count)
    buf = bytearray(pack_header(h) + records)
    buf[17:21] = crc32c(buf[CRC_START:]).to_bytes(4, "big")
    return bytes(buf)


def check(batch: bytes, **kw: object) -> None:
    validate_records(batch, parse_header(batch), **kw)  # type: ignore[arg-type]


def refused(batch: bytes, **kw: object) -> BatchError:
    with pytest.raises(BatchError) as e:
        check(batch, **kw)
    return e.value


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("codec", CODECS)
def test_client_batches_pass(codec: int, full: bool) -> None:
    recs = [(b"k%d" % i if i % 3 else None, os.urandom(i * 37 % 300) if i % 5 else None,
             [("h", b"v"), ("n", None)] if i % 4 == 0 else (), None) for i in range(500)]
    recs.append((b"big", os.urandom(20_000), (), None))  # a record with a 3-byte length
    check(build_batch(recs, compression=codec), full=full)


@pytest.mark.parametrize("full", [False, True])
def test_count_larger_than_the_records(full: bool) -> None:
    e = refused(craft(record(b"x"), 2**31 - 1), full=full)
    assert e.error_code == INVALID_RECORD and "declares 2147483647 records" in str(e)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("codec", CODECS)
def test_more_records_than_the_count(codec: int, full: bool) -> None:
    recs = b"".join(record(b"v", offset_delta=i) for i in range(3))
    data = compression.compress(codec, recs) if codec else recs
    e = refused(craft(data, 1, attributes=codec), full=full)
    assert e.error_code == INVALID_RECORD and "remaining after the declared 1 records" in str(e)


@pytest.mark.parametrize("garbage", [b"\xff" * 40, b"\x00" * 40, b"\x7f" + b"\x00" * 20, b"\x8f\xff\xce"])
def test_garbage_records(garbage: bytes) -> None:
    assert refused(craft(garbage, 1)).error_code == INVALID_RECORD
    assert refused(craft(garbage, 1), full=True).error_code == INVALID_RECORD


@pytest.mark.parametrize("codec", CODECS[1:])
def test_garbage_under_a_compression_flag(codec: int) -> None:
    e = refused(craft(b"not compressed at all, but the CRC is right" * 3, 1, attributes=codec))
    assert e.error_code == CORRUPT_MESSAGE


def test_truncated_compressed_records() -> None:
    recs = b"".join(record(os.urandom(100), offset_delta=i) for i in range(50))
    for codec in (COMPRESSION_GZIP, COMPRESSION_LZ4, COMPRESSION_ZSTD):
        packed = compression.compress(codec, recs)
        assert refused(craft(packed[:-20], 50, attributes=codec)).error_code in (CORRUPT_MESSAGE, INVALID_RECORD)


def test_full_walk_checks_fields_inside_a_record() -> None:
    good = record(b"value", key=b"key")
    bad = bytearray(good)
    bad[4] = 0x7E  # key length 63 inside a 14-byte record
    assert refused(craft(bytes(bad), 1), full=True).error_code == INVALID_RECORD
    check(craft(bytes(bad), 1))  # the hot path walks lengths only
    long_header = record(b"v", headers=[(b"h" * 10, b"x")])
    mangled = bytearray(long_header)
    mangled[-2] = 0x7E  # header value length past the record's end
    assert refused(craft(bytes(mangled), 1), full=True).error_code == INVALID_RECORD
    huge_header_count = record(b"v")[:-1] + b"\xfe\xff\xff\xff\x07"  # 2^31-1 headers: refused, not looped
    fixed = encode_varint(len(huge_header_count) - 1) + huge_header_count[1:]
    assert refused(craft(fixed, 1), full=True).error_code == INVALID_RECORD


def test_full_walk_checks_offset_deltas() -> None:
    recs = record(b"a", offset_delta=0) + record(b"b", offset_delta=2) + record(b"c", offset_delta=1)
    e = refused(craft(recs, 3), full=True)
    assert e.error_code == INVALID_RECORD and [i for i, _ in e.record_errors] == [1]


def test_keyless_records_are_listed() -> None:
    keyless: list[int] = []
    check(build_batch([(None, b"a"), (b"k", b"b"), (None, b"c")], compression=COMPRESSION_ZSTD), keyless=keyless)
    assert keyless == [0, 2]


def test_client_header_rules() -> None:
    with pytest.raises(BatchError) as e:
        check_client_batch(parse_header(craft(record(b"x"), 1, attributes=CONTROL_BIT)))
    assert e.value.error_code == INVALID_RECORD
    with pytest.raises(BatchError):
        check_client_batch(parse_header(craft(record(b"x"), 1, producer_id=7, base_sequence=-1)))
    check_client_batch(parse_header(craft(record(b"x"), 1, producer_id=7, base_sequence=0)))


# -- decompression bombs -----------------------------------------------------------------------


def _zstd_stream(parts: Iterator[bytes]) -> bytes:
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return b"".join(c.compress(p) for p in parts) + c.flush()


def _zeros(n: int, step: int = MiB) -> Iterator[bytes]:
    chunk = bytes(step)
    for _ in range(n // step):
        yield chunk


def _bounded_peak(batch: bytes, **kw: object) -> tuple[BatchError, int]:
    tracemalloc.start()
    try:
        e = refused(batch, **kw)
        return e, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("full", [False, True])
def test_bomb_of_one_huge_record_is_refused_before_buffering(full: bool) -> None:
    # One record claiming 1 GiB, then 512 MiB of zeros: 16 KB compressed.
    bomb = craft(_zstd_stream(iter([encode_varint(2**30), *_zeros(512 * MiB)])), 1, attributes=COMPRESSION_ZSTD)
    assert len(bomb) < 64 * 1024
    e, peak = _bounded_peak(bomb, full=full)
    assert e.error_code == INVALID_RECORD and "more than" in str(e)
    assert peak < 4 * MiB


@pytest.mark.parametrize("codec", CODECS[1:])
def test_bomb_of_many_records_stops_at_the_limit(codec: int, monkeypatch: pytest.MonkeyPatch) -> None:
    count = (4 * MiB) // len(record(b"\x00" * 200))  # 4 MiB of valid records against a 1 MiB limit
    packed = compression.compress(codec, b"".join(record(b"\x00" * 200, offset_delta=i) for i in range(count)))
    produced = 0
    real = compression.iter_decompress

    def counting(codec: int, data: bytes, limit: int) -> Iterator[bytes]:
        nonlocal produced
        for chunk in real(codec, data, limit):
            produced += len(chunk)
            yield chunk

    monkeypatch.setattr(validation, "iter_decompress", counting)
    e = refused(craft(packed, count, attributes=codec), limit=MiB)
    assert e.error_code == INVALID_RECORD and "more than" in str(e)
    assert produced <= MiB
    check(craft(packed, count, attributes=codec), limit=8 * MiB)  # the same batch under a larger limit


@pytest.mark.parametrize("codec", CODECS[1:])
def test_iter_decompress_matches_decompress(codec: int) -> None:
    for payload in (b"x", b"kafka " * 50_000, os.urandom(200_000)):
        packed = compression.compress(codec, payload)
        assert b"".join(compression.iter_decompress(codec, packed, len(payload))) == payload
        with pytest.raises(compression.DecompressionLimitError):
            b"".join(compression.iter_decompress(codec, packed, len(payload) - 1))


def test_iter_decompress_concatenated_gzip_members_and_truncation() -> None:
    packed = compression.gzip_compress(b"a" * 100_000) + compression.gzip_compress(b"b")
    assert b"".join(compression.iter_decompress(COMPRESSION_GZIP, packed, MiB)) == b"a" * 100_000 + b"b"
    with pytest.raises(compression.CompressionError):
        b"".join(compression.iter_decompress(COMPRESSION_GZIP, packed[:-30], MiB))
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    gz_bomb = z.compress(bytes(64 * MiB)) + z.flush()
    with pytest.raises(compression.DecompressionLimitError):
        for _ in compression.iter_decompress(COMPRESSION_GZIP, gz_bomb, MiB):
            pass


# -- the hot path's fast walk agrees with the careful one ----------------------------------------


def _careful_walk(batch: bytes, count: int) -> tuple[int, int] | None:
    try:
        return validation._walk_lengths(batch, 61, len(batch), 0, count)
    except (BatchError, validation._Incomplete):
        return None


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 5, 57, 58, 100, 3000]), min_size=1, max_size=300),
       flips=st.lists(st.tuples(st.integers(min_value=61), st.integers(0, 255)), max_size=3))
def test_run_checks_never_pass_what_the_careful_walk_refuses(sizes: list[int], flips: list[tuple[int, int]]) -> None:
    # Runs of equal sizes (one- and two-byte lengths), then a few bytes overwritten.
    good = build_batch([(None, b"v" * n, (), 0) for n in sizes])
    assert validation._skip_lengths(good, 61, len(good), 0, len(sizes)) == (len(good), len(sizes))
    bad = bytearray(good)
    for at, value in flips:
        bad[61 + at % (len(bad) - 61)] = value
    for count in (len(sizes), len(sizes) + 1, max(1, len(sizes) - 1)):
        pos, index = validation._skip_lengths(bytes(bad), 61, len(bad), 0, count)
        # Every record skipped is one the careful walk accepts, ending at the same place.
        assert index == 0 or _careful_walk(bytes(bad), index) == (pos, index)


def _outcome(walk: object, batch: bytes, count: int) -> object:
    try:
        return walk(batch, 61, len(batch), 0, count)  # type: ignore[operator]
    except validation._Incomplete as e:
        return ("cut off", e.args)
    except BatchError as e:
        return ("refused", e.error_code)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.sampled_from([1, 57, 100, 9000]), min_size=1, max_size=100),
       flips=st.lists(st.tuples(st.integers(min_value=61), st.integers(0, 255)), max_size=2))
def test_fast_walk_matches_the_careful_walk(sizes: list[int], flips: list[tuple[int, int]]) -> None:
    # Records of 8 KiB and more (three-byte lengths) interrupt the runs; the fast walk resumes after them.
    bad = bytearray(build_batch([(None, b"v" * n, (), 0) for n in sizes]))
    for at, value in flips:
        bad[61 + at % (len(bad) - 61)] = value
    for count in (len(sizes), len(sizes) + 1):
        assert (_outcome(validation._walk_lengths_fast, bytes(bad), count)
                == _outcome(validation._walk_lengths, bytes(bad), count))


def test_run_broken_by_a_record_of_another_size_with_the_same_first_byte() -> None:
    # Two-byte lengths 87 and 151 (0xAE 0x01, 0xAE 0x02): the first bytes match, the sizes do not.
    recs = [record(b"v" * 80)] * 40 + [record(b"v" * 144)] * 3
    assert {r[:2] for r in recs} == {b"\xae\x01", b"\xae\x02"}
    data = b"".join(recs)
    check(craft(data, len(recs)))
    refused(craft(data, len(recs) - 1))
    refused(craft(data + recs[0][:30], len(recs)))
    # A record declaring 151 bytes in the space of an 87-byte one, inside a run of those.
    a = recs[0]
    liar = b"\xae\x02" + a[2:]
    assert refused(craft(a * 2 + liar, 3)).error_code == INVALID_RECORD


@pytest.mark.parametrize("codec", CODECS[1:])
def test_compressed_batches_are_walked_in_full(codec: int) -> None:
    """Offsets inside a compressed batch come from its records' deltas: wrong ones would make
    consumers read offsets that are not the log's, so every compressed record is checked,
    as Kafka's LogValidator iterates every record of a compressed batch."""
    recs = record(b"a", offset_delta=0) + record(b"b", offset_delta=0) + record(b"c", offset_delta=7)
    e = refused(craft(compression.compress(codec, recs), 3, attributes=codec))
    assert e.error_code == INVALID_RECORD and [i for i, _ in e.record_errors] == [1]
    bad = bytearray(record(b"value", key=b"key"))
    bad[4] = 0x7E  # a key length past the record's end
    e = refused(craft(compression.compress(codec, bytes(bad)), 1, attributes=codec))
    assert e.error_code == INVALID_RECORD
