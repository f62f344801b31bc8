"""Rebuilding a batch in another codec (kbroker.records.recompress), as Kafka's LogValidator."""

from __future__ import annotations

import hashlib
import itertools
import struct
from random import Random

import lz4.frame
import pytest

from kbroker.records import compression as c
from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CORRUPT_MESSAGE,
    HEADER_SIZE,
    INVALID_RECORD,
    BatchError,
    pack_header,
    parse_header,
    verify_crc,
)
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.crc import crc32c
from kbroker.records.recompress import recompress_batch, record_prefixes, records_section
from kbroker.records.record import iter_records
from kbroker.records.varint import encode_varint, encode_varlong

CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD]
LIMIT = 64 * 1024 * 1024
T0 = 1_700_000_000_000

RECORDS = [
    NewRecord(b"k0", b"v0" * 50, (("h", b"1"), ("n", None)), T0),
    NewRecord(None, b"v1", (), T0 - 5_000),  # out of order: the delta is negative
    NewRecord(b"k2", None, (), T0 + 7),  # a tombstone
    NewRecord(b"k3", b"x" * 3000, (), T0 + 3),
]


def _view(rec: object) -> tuple[object, ...]:
    return (rec.offset, rec.timestamp, rec.key, rec.value, tuple(rec.headers))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("source", "target"), [p for p in itertools.product(CODECS, CODECS) if p[0] != p[1]])
def test_every_codec_pair_keeps_records_and_producer_fields(source: int, target: int) -> None:
    batch = build_batch(RECORDS, compression=source, base_offset=0, producer_id=4242, producer_epoch=7,
                        base_sequence=19, transactional=True, partition_leader_epoch=3)
    h = parse_header(batch)
    out = recompress_batch(batch, h, target, limit=LIMIT)
    n = parse_header(out)
    assert verify_crc(out)
    assert n.compression == target
    assert (n.producer_id, n.producer_epoch, n.base_sequence, n.is_transactional, n.is_control) == (4242, 7, 19,
                                                                                                   True, False)
    assert (n.record_count, n.last_offset_delta, n.partition_leader_epoch) == (4, 3, 3)
    assert (n.base_timestamp, n.max_timestamp, n.log_append_time) == (T0, T0 + 7, False)
    assert [_view(r) for r in iter_records(out)] == [_view(r) for r in iter_records(batch)]
    # A well-formed producer's records are reused byte for byte.
    assert bytes(records_section(out, n, LIMIT)) == bytes(records_section(batch, h, LIMIT))


def test_log_append_time_sets_only_the_max_timestamp_and_type() -> None:
    batch = build_batch(RECORDS, compression=COMPRESSION_NONE)
    out = recompress_batch(batch, parse_header(batch), COMPRESSION_ZSTD, log_append_time_ms=T0 + 99_999, limit=LIMIT)
    n = parse_header(out)
    # As Kafka 4.1: the base timestamp stays the first record's, the max is the append time.
    assert (n.log_append_time, n.base_timestamp, n.max_timestamp) == (True, T0, T0 + 99_999)
    assert {r.timestamp for r in iter_records(out)} == {T0 + 99_999}
    assert verify_crc(out)


def _raw_batch(records: list[tuple[int, int, int, bytes]], *, base_ts: int, codec: int = 0,
               log_append_time: bool = False, max_ts: int | None = None) -> bytes:
    """A batch written record by record: (attributes, timestamp delta, offset delta, key/value/headers bytes)."""
    body = bytearray()
    for attrs, ts_delta, off_delta, rest in records:
        rec = bytes([attrs]) + encode_varlong(ts_delta) + encode_varint(off_delta) + rest
        body += encode_varint(len(rec)) + rec
    payload = c.compress(codec, body) if codec else bytes(body)
    h = parse_header(build_batch([(None, b"x")]))._replace(
        batch_length=HEADER_SIZE - 12 + len(payload), attributes=codec | (0x08 if log_append_time else 0),
        last_offset_delta=len(records) - 1, base_timestamp=base_ts,
        max_timestamp=base_ts if max_ts is None else max_ts, record_count=len(records))
    out = bytearray(pack_header(h)) + payload
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def _kv(key: bytes | None, value: bytes) -> bytes:
    return (encode_varint(-1) if key is None else encode_varint(len(key)) + key) + encode_varint(len(value)) + value + b"\x00"


def test_records_are_rewritten_as_kafkas_builder_writes_them() -> None:
    # Record attributes set, offset deltas not from 0, a first timestamp delta that is not 0:
    # Kafka's builder writes attributes 0, deltas 0.. and timestamps from the first record's.
    batch = _raw_batch([(0x40, 10, 5, _kv(b"a", b"1")), (0, 30, 9, _kv(None, b"22"))], base_ts=T0, codec=COMPRESSION_GZIP)
    out = recompress_batch(batch, parse_header(batch), COMPRESSION_NONE, limit=LIMIT)
    n = parse_header(out)
    assert (n.base_timestamp, n.max_timestamp) == (T0 + 10, T0 + 30)
    assert [(r.offset, r.timestamp, r.key, r.value) for r in iter_records(out)] == [
        (0, T0 + 10, b"a", b"1"), (1, T0 + 30, None, b"22")]
    prefixes = record_prefixes(records_section(out, n, LIMIT), 2)
    assert [(p.attributes, p.timestamp_delta, p.offset_delta) for p in prefixes] == [(0, 0, 0), (0, 20, 1)]


def test_a_producers_log_append_time_batch_gives_every_record_its_max_timestamp() -> None:
    batch = _raw_batch([(0, 0, 0, _kv(b"a", b"1")), (0, 4, 1, _kv(b"b", b"2"))], base_ts=T0, log_append_time=True,
                       max_ts=T0 + 50)
    out = recompress_batch(batch, parse_header(batch), COMPRESSION_LZ4, limit=LIMIT)
    n = parse_header(out)
    assert not n.log_append_time and (n.base_timestamp, n.max_timestamp) == (T0 + 50, T0 + 50)
    assert [r.timestamp for r in iter_records(out)] == [T0 + 50, T0 + 50]


def _compressible() -> bytes:
    return b"".join(b"record %d of a fairly repetitive payload; " % (i % 97) for i in range(20_000))


@pytest.mark.parametrize(("codec", "levels"), [(COMPRESSION_GZIP, (1, 9)), (COMPRESSION_ZSTD, (-5, 19)),
                                               (COMPRESSION_LZ4, (9, 1, 17))])
def test_levels_change_the_output(codec: int, levels: tuple[int, ...]) -> None:
    data = _compressible()
    outs = [c.compress(codec, data, level) for level in levels]
    assert len({len(o) for o in outs}) == len(outs)
    assert all(c.decompress(codec, o) == data for o in outs)
    batch = build_batch([(None, data)])
    rebuilt = [recompress_batch(batch, parse_header(batch), codec, level=lv, limit=LIMIT) for lv in levels]
    assert len({len(b) for b in rebuilt}) == len(rebuilt)


def test_gzip_default_level_is_zlibs_default() -> None:
    data = _compressible()
    assert c.gzip_compress(data, -1) == c.gzip_compress(data, 6) == c.compress(COMPRESSION_GZIP, data)


def test_lz4_frame_is_kafkas_framing() -> None:
    data = _compressible() + bytes(range(256)) * 300  # several 64 KiB blocks
    packed = c.lz4_compress(data)
    # Kafka's Lz4BlockOutputStream header: magic, FLG 0x60 (v1, independent blocks), BD 0x40 (64 KiB).
    assert packed[:6] == b"\x04\x22\x4d\x18\x60\x40" and packed[-4:] == b"\x00\x00\x00\x00"
    assert lz4.frame.decompress(packed) == data
    noise = Random(1).randbytes(70_000)
    incompressible = c.lz4_compress(noise, 1)
    (first,) = struct.unpack_from("<I", incompressible, 7)
    assert c.lz4_decompress(incompressible) == noise
    assert first == 65536 | 0x80000000  # a block that does not shrink is stored raw, flagged


def test_decompression_is_capped() -> None:
    batch = build_batch([(None, bytes(200_000))], compression=COMPRESSION_ZSTD)
    with pytest.raises(BatchError) as e:
        recompress_batch(batch, parse_header(batch), COMPRESSION_GZIP, limit=100_000)
    assert e.value.error_code == INVALID_RECORD


def test_undecompressible_data_is_corrupt() -> None:
    good = build_batch([(None, b"v" * 100)], compression=COMPRESSION_GZIP)
    bad = bytearray(good)
    bad[HEADER_SIZE + 12 : HEADER_SIZE + 20] = b"\xff" * 8
    with pytest.raises(BatchError) as e:
        recompress_batch(bytes(bad), parse_header(bad), COMPRESSION_ZSTD, limit=LIMIT)
    assert e.value.error_code == CORRUPT_MESSAGE


def test_records_that_do_not_fill_the_batch_are_refused() -> None:
    batch = _raw_batch([(0, 0, 0, _kv(b"a", b"1"))], base_ts=T0)
    h = parse_header(batch)
    with pytest.raises(BatchError) as e:
        recompress_batch(batch, h._replace(record_count=2), COMPRESSION_ZSTD, limit=LIMIT)
    assert e.value.error_code == INVALID_RECORD


# SHA-256 of the compressed records Apache Kafka 4.1.1 stored when the batch below was produced
# uncompressed to a topic with each compression.type / level (its payload after the 61-byte header).
KAFKA_4_1_1_PAYLOADS = {
    (COMPRESSION_LZ4, 9): "6fc8b0eb1abf6192eaa5ccd9f06bcc60c1eff93c2c82b7a232943546b86b693e",
    (COMPRESSION_LZ4, 1): "734b27c26abc102766fcc434ec809c2dba7a9d56e2c2cdf6b2099efc64430e3d",
    (COMPRESSION_LZ4, 17): "82b9b7dac504fd0f90b0b3108ebe29f3958babd9eaad1df0d3331cce4eabb49c",
    (COMPRESSION_ZSTD, 3): "cc959345cfc0e50ad25f58a343a6b71c33302305f8f4a4fa343c2a39e4a1de68",
    (COMPRESSION_ZSTD, 19): "67a406deadb8e0b5ba83d281c4f993666fafa99f2254fc1fb05f9f957eb033e8",
    (COMPRESSION_GZIP, 9): "f2fbf2741f88288ef1837824f354754a203d887f6b19466609bee8d3a9e63ec0",
    (COMPRESSION_SNAPPY, None): "821cefeff936e33908aebe53778ca85c3a696105f777ead81defa825caaaca0a",
}


@pytest.mark.parametrize(("codec", "level"), list(KAFKA_4_1_1_PAYLOADS))
def test_rewritten_payload_is_byte_for_byte_kafkas(codec: int, level: int | None) -> None:
    payload = b"".join(b"record %d of a fairly repetitive payload; " % (i % 97) for i in range(3000))
    batch = build_batch([NewRecord(b"k", payload, (), 1_795_000_000_000),
                         NewRecord(None, b"x" * 70000, (), 1_795_000_000_001)])
    out = recompress_batch(batch, parse_header(batch), codec, level=level, limit=LIMIT)
    assert hashlib.sha256(out[HEADER_SIZE:]).hexdigest() == KAFKA_4_1_1_PAYLOADS[(codec, level)]


def _many_records_batch(count: int, codec: int, attributes: int = 0) -> bytes:
    """A batch of ``count`` minimal records (no key, one-byte value): the shape of a
    decompression bomb, millions of records in a few megabytes."""
    body = bytearray()
    for i in range(count):
        rec = bytes([attributes]) + b"\x00" + encode_varint(i) + b"\x01\x01\x00"
        body += encode_varint(len(rec)) + rec
    payload = c.compress(codec, bytes(body))
    h = parse_header(build_batch([(None, b"x")]))._replace(
        batch_length=HEADER_SIZE - 12 + len(payload), attributes=codec, last_offset_delta=count - 1,
        base_timestamp=T0, max_timestamp=T0, record_count=count)
    out = bytearray(pack_header(h)) + payload
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


@pytest.mark.parametrize("rewrite", [False, True])
def test_memory_of_a_rewrite_is_bounded_by_the_bytes_not_the_record_count(rewrite: bool) -> None:
    """A 64 MB decompressed batch may hold ~9 million records: memory kept per record (it used
    to be a list of every record's prefix, ~250 bytes each) let a client make the broker
    allocate gigabytes with one produce request."""
    import tracemalloc

    count = 200_000
    # Record attributes set: Kafka's builder writes 0, so every record is rewritten.
    batch = _many_records_batch(count, COMPRESSION_GZIP, 0x40 if rewrite else 0)
    h = parse_header(batch)
    decompressed = len(records_section(batch, h, LIMIT))
    tracemalloc.start()
    try:
        out = recompress_batch(batch, h, COMPRESSION_ZSTD, limit=LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parse_header(out).record_count == count
    assert (bytes(records_section(out, parse_header(out), LIMIT)) == bytes(records_section(batch, h, LIMIT))) != rewrite
    assert peak < 4 * decompressed, (peak, decompressed)
