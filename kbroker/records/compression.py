"""Record batch compression codecs, by Kafka attribute id (0-4).

Output matches what the Java client writes: gzip members, xerial-framed snappy
(32 KiB blocks), LZ4 frames with independent 64 KiB blocks (Kafka's own framing),
zstd frames; gzip, LZ4 and zstd take Kafka's levels (KIP-390).
Decompression is lenient the way Kafka's readers are: snappy may be raw, xerial
or framed; gzip/LZ4/zstd may be several concatenated frames; zstd frames need
not carry their content size.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import cramjam
import lz4.block
import lz4.frame
import zstandard

from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
)

Buffer = bytes | bytearray | memoryview

CODEC_NAMES = {
    COMPRESSION_NONE: "none",
    COMPRESSION_GZIP: "gzip",
    COMPRESSION_SNAPPY: "snappy",
    COMPRESSION_LZ4: "lz4",
    COMPRESSION_ZSTD: "zstd",
}

# xerial snappy-java stream: magic, then version and compat ints (both 1).
XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
# The snappy framing format's stream identifier chunk (not used by Kafka, but cheap to accept).
_SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
_BLOCK_LEN = struct.Struct(">i")


class CompressionError(ValueError):
    """Data that a codec cannot decompress, or an unknown codec id."""


class DecompressionLimitError(CompressionError):
    """Decompressing would produce more than the caller's limit."""


#: Kafka's default levels (``CompressionType.defaultLevel``): gzip -1 is zlib's own default (6);
#: lz4 9 selects the fast compressor, any other level the high-compression one at that level.
GZIP_DEFAULT_LEVEL, LZ4_DEFAULT_LEVEL, ZSTD_DEFAULT_LEVEL = -1, 9, 3


_JAVA_GZIP_XFL_OS = b"\x00\xff"


def gzip_compress(data: Buffer, level: int = GZIP_DEFAULT_LEVEL) -> bytes:
    """One gzip member (``wbits=31``) at zlib ``level`` (1-9; -1 is zlib's default, 6).

    The header's extra-flags and OS bytes are Java's (0 and 255, "unknown"), so the output
    is byte for byte what Kafka's gzip writer produces.
    """
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = bytearray(c.compress(data))
    out += c.flush()
    out[8:10] = _JAVA_GZIP_XFL_OS
    return bytes(out)


def gzip_decompress(data: Buffer) -> bytes:
    """Decompress one or more gzip members (zlib streams are accepted too)."""
    out = []
    rest = bytes(data)
    try:
        while rest:
            d = zlib.decompressobj(47)  # 32+15: auto-detect gzip or zlib header
            out.append(d.decompress(rest))
            if not d.eof:
                raise CompressionError("truncated gzip data")
            rest = d.unused_data
    except zlib.error as e:
        raise CompressionError(f"bad gzip data: {e}") from None
    if not out:
        raise CompressionError("empty gzip data")
    return b"".join(out)


def snappy_compress(data: Buffer, xerial: bool = True) -> bytes:
    """Snappy, xerial-framed in 32 KiB blocks as Java's producer writes it, or raw."""
    if not xerial:
        return bytes(cramjam.snappy.compress_raw(data))
    mv = memoryview(data)
    parts = [_XERIAL_HEADER]
    for i in range(0, len(mv), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(mv[i : i + _XERIAL_BLOCK]))
        parts.append(_BLOCK_LEN.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _xerial_blocks(mv: memoryview) -> Iterator[memoryview]:
    """The compressed blocks of xerial-framed snappy (after its 16-byte header).

    The header's version/compat ints are ignored: some producers write them little-endian.
    """
    pos, end = 16, len(mv)
    while pos < end:
        if end - pos < 4:
            raise CompressionError("truncated xerial snappy block header")
        (n,) = _BLOCK_LEN.unpack_from(mv, pos)
        pos += 4
        if n < 0 or pos + n > end:
            raise CompressionError("truncated xerial snappy block")
        yield mv[pos : pos + n]
        pos += n


def snappy_decompress(data: Buffer) -> bytes:
    """Decompress raw, xerial-framed or framing-format snappy."""
    mv = memoryview(data)
    try:
        if mv[:8] == XERIAL_MAGIC and len(mv) >= 16:
            return b"".join(bytes(cramjam.snappy.decompress_raw(block)) for block in _xerial_blocks(mv))
        if mv[:10] == _SNAPPY_FRAMED_MAGIC:
            return bytes(cramjam.snappy.decompress(mv))
        return bytes(cramjam.snappy.decompress_raw(mv))
    except cramjam.DecompressionError as e:
        raise CompressionError(f"bad snappy data: {e}") from None


# Kafka's LZ4 frame header (Lz4BlockOutputStream): magic, FLG (version 1, independent blocks,
# no checksums, no content size), BD (64 KiB blocks) and the descriptor checksum byte.
_LZ4_FRAME_HEADER = lz4.frame.compress(b"", block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
                                       store_size=False)[:7]
_LZ4_BLOCK = 64 * 1024
_LZ4_UNCOMPRESSED_BLOCK = 0x80000000
_LE32 = struct.Struct("<I")


def lz4_compress(data: Buffer, level: int = LZ4_DEFAULT_LEVEL) -> bytes:
    """An LZ4 frame of independent 64 KiB blocks, as Kafka's ``Lz4BlockOutputStream`` writes it.

    Level 9 (Kafka's default) uses LZ4's fast compressor, any other level (1-17) the
    high-compression one at that level (KIP-390). A block that does not shrink is stored
    uncompressed; the frame ends with an empty block and carries no checksums (Kafka's
    reader rejects linked blocks and needs none).
    """
    mv = memoryview(data)
    parts = [_LZ4_FRAME_HEADER]
    for i in range(0, len(mv), _LZ4_BLOCK):
        block = mv[i : i + _LZ4_BLOCK]
        if level == LZ4_DEFAULT_LEVEL:
            packed = lz4.block.compress(block, mode="default", store_size=False)
        else:
            packed = lz4.block.compress(block, mode="high_compression", compression=level, store_size=False)
        if len(packed) >= len(block):
            parts.append(_LE32.pack(len(block) | _LZ4_UNCOMPRESSED_BLOCK))
            parts.append(bytes(block))
        else:
            parts.append(_LE32.pack(len(packed)))
            parts.append(packed)
    parts.append(_LE32.pack(0))  # end mark
    return b"".join(parts)


def lz4_decompress(data: Buffer) -> bytes:
    """Decompress one or more LZ4 frames."""
    out = []
    rest = bytes(data)
    try:
        while rest:
            d = lz4.frame.LZ4FrameDecompressor()
            out.append(d.decompress(rest))
            if not d.eof:
                raise CompressionError("truncated lz4 frame")
            rest = d.unused_data
    except RuntimeError as e:  # lz4 reports corrupt frames as RuntimeError
        raise CompressionError(f"bad lz4 data: {e}") from None
    if not out:
        raise CompressionError("empty lz4 data")
    return b"".join(out)


def zstd_compress(data: Buffer, level: int = ZSTD_DEFAULT_LEVEL) -> bytes:
    """One zstd frame at ``level`` (-131072 to 22, Kafka's default 3; negative levels are the fast ones).

    Written as a stream, as Kafka's zstd writer does: no content size in the frame header,
    the window of a stream, the data flushed as a block and then an empty last block; the
    output is byte for byte Kafka's.
    """
    stream = zstandard.ZstdCompressor(level=level, write_content_size=False).compressobj()
    return (stream.compress(data) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            + stream.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))


def zstd_decompress(data: Buffer) -> bytes:
    """Decompress one or more zstd frames, with or without a content size in the header."""
    out = []
    rest = bytes(data)
    dctx = zstandard.ZstdDecompressor()
    try:
        while rest:
            d = dctx.decompressobj()
            out.append(d.decompress(rest))
            if not d.eof:
                raise CompressionError("truncated zstd frame")
            rest = d.unused_data
    except zstandard.ZstdError as e:
        raise CompressionError(f"bad zstd data: {e}") from None
    if not out:
        raise CompressionError("empty zstd data")
    return b"".join(out)


def compress(codec: int, data: Buffer, level: int | None = None) -> bytes:
    """Compress ``data`` with the codec whose attribute id is ``codec`` (0 returns a copy).

    ``level`` is the codec's level in Kafka's terms (``compression.<codec>.level``); None
    means Kafka's default. Snappy has no levels.
    """
    if codec == COMPRESSION_NONE:
        return bytes(data)
    if codec == COMPRESSION_GZIP:
        return gzip_compress(data, GZIP_DEFAULT_LEVEL if level is None else level)
    if codec == COMPRESSION_SNAPPY:
        return snappy_compress(data)
    if codec == COMPRESSION_LZ4:
        return lz4_compress(data, LZ4_DEFAULT_LEVEL if level is None else level)
    if codec == COMPRESSION_ZSTD:
        return zstd_compress(data, ZSTD_DEFAULT_LEVEL if level is None else level)
    raise CompressionError(f"unknown compression codec {codec}")


def decompress(codec: int, data: Buffer) -> bytes:
    """Decompress ``data`` compressed with codec ``codec``; raises CompressionError."""
    if codec == COMPRESSION_NONE:
        return bytes(data)
    if codec == COMPRESSION_GZIP:
        return gzip_decompress(data)
    if codec == COMPRESSION_SNAPPY:
        return snappy_decompress(data)
    if codec == COMPRESSION_LZ4:
        return lz4_decompress(data)
    if codec == COMPRESSION_ZSTD:
        return zstd_decompress(data)
    raise CompressionError(f"unknown compression codec {codec}")


# -- bounded streaming decompression ---------------------------------------------------------------

#: Output per step of the streaming decompressors: what one step can allocate.
STREAM_CHUNK = 64 * 1024


def iter_decompress(codec: int, data: Buffer, limit: int) -> Iterator[bytes]:
    """Decompress ``data`` piece by piece, never producing more than ``limit`` bytes in all.

    Yields chunks of at most :data:`STREAM_CHUNK` bytes (a snappy block is yielded whole,
    after its declared size is checked against what is left of ``limit``), so a caller
    that drops each chunk after use holds one chunk at a time. Raises
    :class:`DecompressionLimitError` before going past ``limit`` and CompressionError for
    data the codec cannot read. Stricter than :func:`decompress` where Kafka's readers
    are (what a batch to be stored may hold): gzip members only (no zlib stream), one lz4
    frame, no snappy framing format; zstd frames must be whole.
    """
    if codec == COMPRESSION_GZIP:
        chunks = _iter_gzip(data)
    elif codec == COMPRESSION_SNAPPY:
        chunks = _iter_snappy(data, limit)
    elif codec == COMPRESSION_LZ4:
        chunks = _iter_lz4(data)
    elif codec == COMPRESSION_ZSTD:
        chunks = _iter_zstd(data)
    else:
        raise CompressionError(f"unknown compression codec {codec}")
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise DecompressionLimitError(f"decompresses to more than {limit} bytes")
        yield chunk


def _iter_gzip(data: Buffer) -> Iterator[bytes]:
    rest = bytes(data)
    if not rest:
        raise CompressionError("empty gzip data")
    try:
        while rest:  # one member per pass
            d = zlib.decompressobj(31)  # gzip headers only: Java's GZIPInputStream reads no zlib stream
            pending = rest
            while True:
                out = d.decompress(pending, STREAM_CHUNK)
                if out:
                    yield out
                pending = d.unconsumed_tail
                if d.eof:
                    break
                if not pending and not out:
                    raise CompressionError("truncated gzip data")
            rest = d.unused_data
    except zlib.error as e:
        raise CompressionError(f"bad gzip data: {e}") from None


def _iter_lz4(data: Buffer) -> Iterator[bytes]:
    rest = bytes(data)
    if not rest:
        raise CompressionError("empty lz4 data")
    try:
        while rest:  # one frame per pass
            d = lz4.frame.LZ4FrameDecompressor()
            out = d.decompress(rest, max_length=STREAM_CHUNK)
            while True:
                if out:
                    yield out
                if d.eof:
                    break
                if d.needs_input:
                    raise CompressionError("truncated lz4 frame")
                out = d.decompress(b"", max_length=STREAM_CHUNK)
            rest = d.unused_data
            if rest:
                # Kafka's reader (KafkaLZ4BlockInputStream) reads one frame: a second frame's
                # records are refused, and librdkafka fails on the batch.
                raise CompressionError("data after the lz4 frame")
    except RuntimeError as e:  # lz4 reports corrupt frames as RuntimeError
        raise CompressionError(f"bad lz4 data: {e}") from None


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_RLE, _ZSTD_BLOCK_RESERVED = 1, 3


def _check_zstd_frames(data: Buffer) -> None:
    """Raise CompressionError unless ``data`` is whole zstd frames (skippable ones allowed).

    The streaming reader ends quietly at the end of its input, so a frame cut short (its
    last block or checksum missing) would otherwise pass, and be stored for consumers whose
    decoders refuse it (librdkafka: "Invalid compressed data"; Kafka itself refuses it).
    Only the frame and block headers are read: no decompression, no output.
    """
    mv = memoryview(data)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < 4:
            raise CompressionError("truncated zstd frame")
        magic = int.from_bytes(mv[pos : pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: its size, then that many bytes
            if end - pos < 8:
                raise CompressionError("truncated zstd skippable frame")
            pos += 8 + int.from_bytes(mv[pos + 4 : pos + 8], "little")
            if pos > end:
                raise CompressionError("truncated zstd skippable frame")
            continue
        if magic != _ZSTD_MAGIC:
            return  # not a frame this walk knows: the decoder says what it is
        if end - pos < 5:
            raise CompressionError("truncated zstd frame header")
        descriptor = mv[pos + 4]
        single_segment = descriptor >> 5 & 1
        fcs_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
        pos += 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + fcs_size
        while True:  # the blocks, up to the one marked last
            if end - pos < 3:
                raise CompressionError("truncated zstd frame")
            header = int.from_bytes(mv[pos : pos + 3], "little")
            kind = header >> 1 & 3
            if kind == _ZSTD_BLOCK_RESERVED:
                raise CompressionError("bad zstd data: reserved block type")
            pos += 3 + (1 if kind == _ZSTD_BLOCK_RLE else header >> 3)
            if header & 1:
                break
        pos += 4 if descriptor & 4 else 0  # the content checksum
        if pos > end:
            raise CompressionError("truncated zstd frame")


def _iter_zstd(data: Buffer) -> Iterator[bytes]:
    if not len(data):
        raise CompressionError("empty zstd data")
    _check_zstd_frames(data)
    reader = zstandard.ZstdDecompressor().stream_reader(bytes(data), read_across_frames=True)
    try:
        while chunk := reader.read(STREAM_CHUNK):
            yield chunk
    except zstandard.ZstdError as e:
        raise CompressionError(f"bad zstd data: {e}") from None
    finally:
        reader.close()


def _snappy_block(block: Buffer, left: int) -> bytes:
    """One raw snappy block, refused before decompression if it declares more than ``left`` bytes."""
    if cramjam.snappy.decompress_raw_len(block) > left:
        raise DecompressionLimitError("snappy block decompresses past the limit")
    return bytes(cramjam.snappy.decompress_raw(block))


def _iter_snappy(data: Buffer, limit: int) -> Iterator[bytes]:
    mv = memoryview(data)
    left = limit
    try:
        if mv[:8] == XERIAL_MAGIC and len(mv) >= 16:
            for block in _xerial_blocks(mv):
                out = _snappy_block(block, left)
                left -= len(out)
                yield out
        elif mv[:10] == _SNAPPY_FRAMED_MAGIC:
            # Neither Kafka (which refuses it) nor librdkafka reads the framing format.
            raise CompressionError("snappy framing format: not a format Kafka's clients read")
        else:
            yield _snappy_block(mv, left)
    except cramjam.DecompressionError as e:
        raise CompressionError(f"bad snappy data: {e}") from None
