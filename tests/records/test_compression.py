"""Codecs: round trips, the snappy framings Kafka clients send, and interop with kafka-python's codec."""

from __future__ import annotations

import os
import struct
import zlib

import cramjam
import lz4.frame
import pytest
import zstandard
from kafka import codec as kp

from kbroker.records import compression as c
from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
)

CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD]
PAYLOADS = [b"x", b"kafka " * 20000, os.urandom(70_000), bytes(200_000)]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("payload", PAYLOADS, ids=["one", "text", "random", "zeros"])
def test_roundtrip(codec: int, payload: bytes) -> None:
    packed = c.compress(codec, payload)
    assert c.decompress(codec, packed) == payload
    assert c.decompress(codec, memoryview(bytearray(packed))) == payload


KP_DECODERS = {
    COMPRESSION_GZIP: kp.gzip_decode,
    COMPRESSION_SNAPPY: kp.snappy_decode,
    COMPRESSION_LZ4: kp.lz4_decode,
    COMPRESSION_ZSTD: kp.zstd_decode,
}
KP_ENCODERS = {
    COMPRESSION_GZIP: kp.gzip_encode,
    COMPRESSION_SNAPPY: kp.snappy_encode,
    COMPRESSION_LZ4: kp.lz4_encode,
    COMPRESSION_ZSTD: kp.zstd_encode,
}


@pytest.mark.parametrize("codec", CODECS[1:])
def test_interop_with_kafka_python_codecs(codec: int) -> None:
    payload = b"interop " * 10_000 + os.urandom(1000)
    assert KP_DECODERS[codec](c.compress(codec, payload)) == payload
    assert c.decompress(codec, KP_ENCODERS[codec](payload)) == payload


def test_snappy_output_is_xerial_framed_in_32k_blocks() -> None:
    payload = os.urandom(100_000)
    packed = c.snappy_compress(payload)
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    pos, blocks = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        blocks.append(bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + n])))
        pos += 4 + n
    assert [len(b) for b in blocks] == [32768, 32768, 32768, 100_000 - 3 * 32768]
    assert b"".join(blocks) == payload


@pytest.mark.parametrize("payload", PAYLOADS, ids=["one", "text", "random", "zeros"])
def test_snappy_accepts_raw_xerial_and_framed(payload: bytes) -> None:
    raw = bytes(cramjam.snappy.compress_raw(payload))
    assert c.snappy_compress(payload, xerial=False) == raw
    assert c.decompress(COMPRESSION_SNAPPY, raw) == payload
    assert c.decompress(COMPRESSION_SNAPPY, kp.snappy_encode(payload, xerial_compatible=True)) == payload
    assert c.decompress(COMPRESSION_SNAPPY, kp.snappy_encode(payload, xerial_compatible=False)) == payload
    assert c.decompress(COMPRESSION_SNAPPY, bytes(cramjam.snappy.compress(payload))) == payload


def test_snappy_xerial_with_little_endian_version_fields() -> None:
    payload = b"redpanda " * 1000
    packed = bytearray(c.snappy_compress(payload))
    packed[8:16] = struct.pack("<ii", 1, 1)
    assert c.snappy_decompress(packed) == payload


def test_lz4_frame_has_independent_blocks() -> None:
    packed = c.lz4_compress(b"a" * 300_000)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg, bd = packed[4], packed[5]
    assert flg & 0x20, "block independence flag"
    assert (bd >> 4) & 0x7 == 4, "64 KiB max block size"


def test_concatenated_frames() -> None:
    a, b = b"first " * 100, b"second " * 100
    assert c.gzip_decompress(c.gzip_compress(a) + c.gzip_compress(b)) == a + b
    assert c.lz4_decompress(c.lz4_compress(a) + c.lz4_compress(b)) == a + b
    assert c.zstd_decompress(c.zstd_compress(a) + c.zstd_compress(b)) == a + b


def test_zstd_without_content_size() -> None:
    payload = os.urandom(5000) * 40
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(payload)
    assert zstandard.get_frame_parameters(streamed).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert c.decompress(COMPRESSION_ZSTD, streamed) == payload
    # A streaming writer (as zstd-jni and librdkafka produce) too.
    cobj = zstandard.ZstdCompressor().compressobj()
    chunks = cobj.compress(payload[:1000]) + cobj.compress(payload[1000:]) + cobj.flush()
    assert c.decompress(COMPRESSION_ZSTD, chunks) == payload


def test_lz4_with_content_size_and_checksums() -> None:
    payload = b"lz4 " * 50_000
    packed = lz4.frame.compress(payload, store_size=True, content_checksum=True, block_checksum=True)
    assert c.decompress(COMPRESSION_LZ4, packed) == payload


@pytest.mark.parametrize("codec", CODECS[1:])
def test_corrupt_and_truncated_input(codec: int) -> None:
    good = c.compress(codec, b"some data " * 500)
    for bad in (b"", b"not compressed at all, really", good[: len(good) // 2]):
        with pytest.raises(c.CompressionError):
            c.decompress(codec, bad)


def test_unknown_codec() -> None:
    with pytest.raises(c.CompressionError):
        c.compress(5, b"x")
    with pytest.raises(c.CompressionError):
        c.decompress(7, b"x")


def _streamed(codec: int, data: bytes) -> bytes:
    return b"".join(c.iter_decompress(codec, data, 1 << 30))


@pytest.mark.parametrize("checksum", [False, True])
def test_a_zstd_frame_cut_short_is_refused_by_the_streaming_decoder(checksum: bool) -> None:
    """Every byte of a frame counts: a frame missing its final (empty) block or checksum still
    yields all its content, but librdkafka's consumers refuse it ("Invalid compressed data"),
    so a batch holding it must not be stored (it was, and blocked the partition's consumers)."""
    payload = b"some data " * 500
    if checksum:
        good = zstandard.ZstdCompressor(write_checksum=True).compress(payload)
    else:
        good = c.zstd_compress(payload)  # Kafka's writer: the data block, then an empty last block
    assert _streamed(COMPRESSION_ZSTD, good) == payload
    for cut in (1, 3, 4, len(good) // 2, len(good) - 5):
        with pytest.raises(c.CompressionError, match="truncated"):
            _streamed(COMPRESSION_ZSTD, good[:-cut])
        with pytest.raises(c.CompressionError):
            c.decompress(COMPRESSION_ZSTD, good[:-cut])
    # Whole frames pass: several, a skippable one between them, multi-block ones.
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    big = os.urandom(300_000)
    many = good + skippable + c.zstd_compress(big) + zstandard.ZstdCompressor().compress(b"")
    assert _streamed(COMPRESSION_ZSTD, many) == payload + big
    with pytest.raises(c.CompressionError, match="truncated"):
        _streamed(COMPRESSION_ZSTD, good + skippable[:-1])


def test_the_streaming_decoder_refuses_what_kafkas_clients_cannot_read() -> None:
    """What iter_decompress accepts is what a stored batch may hold. Kafka 4.1.1 refuses a
    zlib stream in a gzip batch (Java's GZIPInputStream cannot read it), the snappy framing
    format and an lz4 batch of two frames; librdkafka fails on the last two. kbroker stored all
    three, each a batch that stopped its partition's consumers."""
    payload = b"some data " * 500
    refused = {
        COMPRESSION_GZIP: zlib.compress(payload),
        COMPRESSION_SNAPPY: bytes(cramjam.snappy.compress(payload)),  # the framing format
        COMPRESSION_LZ4: c.lz4_compress(payload[:7]) + c.lz4_compress(payload[7:]),
    }
    for codec, data in refused.items():
        with pytest.raises(c.CompressionError):
            _streamed(codec, data)
    with pytest.raises(c.CompressionError, match="after the lz4 frame"):
        _streamed(COMPRESSION_LZ4, c.lz4_compress(payload) + b"junk")
    # What Kafka and its clients read still passes: gzip members one after another (Java's
    # reader takes them all), raw and xerial snappy, linked lz4 blocks.
    assert _streamed(COMPRESSION_GZIP, c.gzip_compress(payload[:7]) + c.gzip_compress(payload[7:])) == payload
    assert _streamed(COMPRESSION_SNAPPY, bytes(cramjam.snappy.compress_raw(payload))) == payload
    assert _streamed(COMPRESSION_SNAPPY, c.snappy_compress(payload)) == payload
    assert _streamed(COMPRESSION_LZ4, lz4.frame.compress(payload, block_linked=True)) == payload
