"""Header patching keeps the CRC right; corruption and malformed batches give the right BatchError."""

from __future__ import annotations

import struct

import pytest

from kbroker.records.batch import (
    CORRUPT_MESSAGE,
    CRC_START,
    HEADER_SIZE,
    INVALID_RECORD,
    MESSAGE_TOO_LARGE,
    BatchError,
    compute_crc,
    iter_headers,
    parse_header,
    peek_size,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batches,
    verify_crc,
)
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import iter_records
from kbroker.records.varint import encode_varint

TS = 1_700_000_000_000
RECORDS = [NewRecord(b"k%d" % i, b"value-%d " % i * 20, [("h", b"%d" % i)], TS + i) for i in range(5)]


def fix_crc(buf: bytearray) -> bytearray:
    struct.pack_into(">I", buf, 17, compute_crc(buf, 0, len(buf)))
    return buf


def patched(batch: bytes | bytearray, offset: int, fmt: str, value: int, crc: bool = True) -> bytearray:
    buf = bytearray(batch)
    struct.pack_into(fmt, buf, offset, value)
    return fix_crc(buf) if crc else buf


def error_code(buf: bytes | bytearray) -> int:
    with pytest.raises(BatchError) as exc:
        validate_batches(buf)
    return exc.value.error_code


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_patch_offset_and_epoch_keep_crc(codec: int) -> None:
    buf = bytearray(build_batch(RECORDS, compression=codec))
    crc = parse_header(buf).crc
    set_base_offset(buf, 0, 123_456_789_000)
    set_partition_leader_epoch(buf, 0, 42)
    h = parse_header(buf)
    assert (h.base_offset, h.partition_leader_epoch, h.crc) == (123_456_789_000, 42, crc)
    assert verify_crc(buf)
    assert validate_batches(buf) == [h]
    assert [r.offset for r in iter_records(buf)] == [123_456_789_000 + i for i in range(5)]


def test_patch_inside_a_larger_buffer() -> None:
    a, b = build_batch(RECORDS[:2]), build_batch(RECORDS[2:], compression=3)
    buf = bytearray(a + b)
    set_base_offset(buf, len(a), 2)
    set_partition_leader_epoch(buf, len(a), 7)
    heads = validate_batches(buf)
    assert [(h.base_offset, h.partition_leader_epoch) for h in heads] == [(0, -1), (2, 7)]
    assert [pos for pos, _ in iter_headers(buf)] == [0, len(a)]
    assert peek_size(buf, len(a)) == len(b)
    assert peek_size(buf[:11]) is None


@pytest.mark.parametrize("codec", [0, 2])
def test_set_log_append_time(codec: int) -> None:
    buf = bytearray(build_batch(RECORDS, compression=codec))
    set_log_append_time(buf, 0, len(buf), TS + 10_000)
    h = parse_header(buf)
    assert h.log_append_time
    assert h.compression == codec
    assert h.max_timestamp == TS + 10_000
    assert verify_crc(buf)
    validate_batches(buf)
    assert {r.timestamp for r in iter_records(buf)} == {TS + 10_000}


def test_every_flipped_byte_in_crc_range_is_caught() -> None:
    batch = build_batch(RECORDS, compression=1)
    for i in range(CRC_START, len(batch)):
        buf = bytearray(batch)
        buf[i] ^= 0x01
        assert not verify_crc(buf), i
        assert error_code(buf) == CORRUPT_MESSAGE, i


def test_flipped_crc_field_is_caught() -> None:
    for i in range(17, CRC_START):
        buf = bytearray(build_batch(RECORDS))
        buf[i] ^= 0x80
        assert not verify_crc(buf)
        assert error_code(buf) == CORRUPT_MESSAGE


def test_truncated_payloads() -> None:
    batch = build_batch(RECORDS)
    for n in (1, 11, 12, 17, 60, HEADER_SIZE, HEADER_SIZE + 1, len(batch) - 1):
        assert error_code(batch[:n]) == CORRUPT_MESSAGE, n
    assert error_code(b"") == CORRUPT_MESSAGE
    # A whole batch followed by a partial one.
    assert error_code(batch + batch[:30]) == CORRUPT_MESSAGE
    assert [p for p, _ in iter_headers(batch + batch[:70])] == [0]


def test_bad_lengths() -> None:
    batch = build_batch(RECORDS)
    assert error_code(patched(batch, 8, ">i", 48)) == CORRUPT_MESSAGE  # shorter than a header
    assert error_code(patched(batch, 8, ">i", len(batch))) == CORRUPT_MESSAGE  # past the end
    assert error_code(patched(batch, 8, ">i", -5)) == CORRUPT_MESSAGE


@pytest.mark.parametrize(("magic", "code"), [(0, INVALID_RECORD), (1, INVALID_RECORD), (3, CORRUPT_MESSAGE)])
def test_wrong_magic(magic: int, code: int) -> None:
    buf = bytearray(build_batch(RECORDS))
    buf[16] = magic
    assert error_code(buf) == code
    assert error_code(buf[:40]) == code  # judged even when too short for a v2 header
    with pytest.raises(BatchError) as exc:
        list(iter_records(buf))
    assert exc.value.error_code == CORRUPT_MESSAGE


@pytest.mark.parametrize(
    ("count", "last_delta"),
    [(0, 4), (0, -1), (-1, -2), (4, 4), (6, 4), (5, 3)],
)
def test_bad_record_counts(count: int, last_delta: int) -> None:
    buf = patched(build_batch(RECORDS), 57, ">i", count)
    buf = patched(buf, 23, ">i", last_delta)
    assert verify_crc(buf)
    assert error_code(buf) == INVALID_RECORD


@pytest.mark.parametrize("count", [-1, 4, 6, 1000])
@pytest.mark.parametrize("codec", [0, 4])
def test_iter_records_with_wrong_count(codec: int, count: int) -> None:
    buf = patched(build_batch(RECORDS, compression=codec), 57, ">i", count)
    with pytest.raises(BatchError) as exc:
        list(iter_records(buf))
    assert exc.value.error_code == INVALID_RECORD


def test_max_batch_size() -> None:
    batch = build_batch(RECORDS)
    validate_batches(batch, max_batch_size=len(batch))
    with pytest.raises(BatchError) as exc:
        validate_batches(batch, max_batch_size=len(batch) - 1)
    assert exc.value.error_code == MESSAGE_TOO_LARGE


def test_unknown_codec_in_attributes() -> None:
    buf = patched(build_batch(RECORDS), 21, ">h", 5)
    assert error_code(buf) == CORRUPT_MESSAGE
    with pytest.raises(BatchError) as exc:
        list(iter_records(buf))
    assert exc.value.error_code == CORRUPT_MESSAGE


def test_garbage_compressed_payload() -> None:
    """Flagged as compressed but the bytes are not: CRC is fine, decoding fails."""
    buf = patched(build_batch(RECORDS), 21, ">h", 4)
    validate_batches(buf)
    with pytest.raises(BatchError) as exc:
        list(iter_records(buf))
    assert exc.value.error_code == CORRUPT_MESSAGE


def rec(body: bytes, length: int | None = None) -> bytes:
    """A record: its varint length (the body's unless given), then ``body``."""
    return encode_varint(len(body) if length is None else length) + body


def batch_with_records_section(section: bytes, count: int = 1) -> bytearray:
    """A valid single-record batch whose records section is replaced by ``section``."""
    head = bytearray(build_batch([NewRecord(b"k", b"v", (), TS)])[:HEADER_SIZE])
    buf = head + section
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    struct.pack_into(">i", buf, 57, count)
    return fix_crc(buf)


GOOD_BODY = b"\x00\x00\x00\x02k\x02v\x00"  # attrs, ts delta, offset delta, key, value, 0 headers


@pytest.mark.parametrize(
    "section",
    [
        b"",  # no record at all
        b"\x80",  # truncated length varint
        rec(GOOD_BODY, length=20),  # length past the end
        rec(GOOD_BODY, length=5),  # declared shorter than it is
        rec(GOOD_BODY[:-1] + b"\x01"),  # negative header count
        rec(GOOD_BODY[:-1] + b"\x02\x01\x02v"),  # null header key
        rec(GOOD_BODY[:-1] + b"\x02\x04\xff\xfe\x00"),  # header key not utf-8
        rec(b"\x00\x00\x00\x04k\x02v\x00"),  # key length runs into the value
        rec(GOOD_BODY) + b"\x00",  # a spare byte after the last record
        rec(b"\x00\x00\x00\x02k\x02v\x00\x00"),  # body longer than its fields
        rec(b"\x00" + b"\xff" * 10 + b"\x01\x00\x02k\x02v\x00"),  # overlong timestamp varlong
    ],
)
def test_malformed_records(section: bytes) -> None:
    buf = batch_with_records_section(section)
    validate_batches(buf)  # the header is fine; only decoding notices
    with pytest.raises(BatchError) as exc:
        list(iter_records(buf))
    assert exc.value.error_code == INVALID_RECORD


def test_hand_made_record_decodes() -> None:
    buf = batch_with_records_section(rec(GOOD_BODY))
    [r] = iter_records(buf)
    assert (r.offset, r.timestamp, r.key, r.value, r.headers) == (0, TS, b"k", b"v", ())
