"""Batches cross-checked with kafka-python's own v2 batch builder and reader."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from kbroker.records.batch import (
    COMPRESSION_NONE,
    HEADER_SIZE,
    parse_header,
    validate_batches,
    verify_crc,
)
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import Record, iter_records

CODECS = [0, 1, 2, 3, 4]
BASE_TS = 1_700_000_000_000

# Compressible values so kafka-python's builder does not fall back to no compression.
SAMPLE = [
    NewRecord(b"key-0", b"value " * 50, [], BASE_TS),
    NewRecord(None, b"null key " * 30, [("trace", b"abc"), ("empty", b"")], BASE_TS + 5),
    NewRecord(b"tombstone", None, [("h", None)], BASE_TS - 3),
    NewRecord(b"", b"", [("ünïcode", b"\x00\xff")], BASE_TS + 1000),
    NewRecord(None, None, [], BASE_TS + 2),
    NewRecord(b"k" * 300, b"v" * 5000, [("a", b"1"), ("a", b"2"), ("b", None)], BASE_TS + 7),
]


def kp_batch(records: list[NewRecord], codec: int, transactional: bool = False) -> bytes:
    """A batch built by kafka-python, as its producer would send it."""
    pid, epoch, seq = (4242, 3, 17) if transactional else (-1, -1, -1)
    builder = DefaultRecordBatchBuilder(2, codec, transactional, pid, epoch, seq, 1 << 24)
    for i, r in enumerate(records):
        assert builder.append(i, r.timestamp, r.key, r.value, list(r.headers)) is not None
    return bytes(builder.build())


def expected(records: list[NewRecord], base_offset: int = 0) -> list[Record]:
    return [
        Record(base_offset + i, r.timestamp or 0, r.key, r.value, tuple(r.headers))
        for i, r in enumerate(records)
    ]


@pytest.mark.parametrize("transactional", [False, True])
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_batches_decode(codec: int, transactional: bool) -> None:
    data = kp_batch(SAMPLE, codec, transactional)
    h = parse_header(data)
    assert h.compression == codec
    assert h.size == len(data)
    assert h.record_count == len(SAMPLE)
    assert h.last_offset_delta == len(SAMPLE) - 1
    assert h.base_timestamp == BASE_TS
    assert h.max_timestamp == BASE_TS + 1000
    assert h.is_transactional is transactional
    assert not h.is_control
    if transactional:
        assert (h.producer_id, h.producer_epoch, h.base_sequence) == (4242, 3, 17)
        assert h.last_sequence == 17 + len(SAMPLE) - 1
    assert verify_crc(data)
    assert validate_batches(data) == [h]
    assert list(iter_records(data)) == expected(SAMPLE)
    assert list(iter_records(memoryview(bytearray(data)))) == expected(SAMPLE)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_single_record(codec: int) -> None:
    recs = [NewRecord(None, b"x" * 1000, [], BASE_TS)]
    data = kp_batch(recs, codec)
    assert list(iter_records(data)) == expected(recs)


def kp_read(data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    records = MemoryRecords(data)
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        out.extend((r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch)
    return out


@pytest.mark.parametrize("transactional", [False, True])
@pytest.mark.parametrize("codec", CODECS)
def test_our_batches_decode_with_kafka_python(codec: int, transactional: bool) -> None:
    extra = dict(producer_id=77, producer_epoch=1, base_sequence=1000) if transactional else {}
    data = build_batch(
        SAMPLE,
        base_offset=500,
        compression=codec,
        transactional=transactional,
        partition_leader_epoch=9,
        **extra,  # type: ignore[arg-type]
    )
    want = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in expected(SAMPLE, 500)]
    assert kp_read(data) == want
    kb = DefaultRecordBatch(data)
    assert kb.compression_type == codec
    assert kb.base_offset == 500
    assert kb.leader_epoch == 9
    assert kb.is_transactional is transactional
    assert kb.first_timestamp == BASE_TS
    assert kb.max_timestamp == BASE_TS + 1000
    assert kb.last_offset_delta == len(SAMPLE) - 1
    if transactional:
        assert (kb.producer_id, kb.producer_epoch, kb.base_sequence) == (77, 1, 1000)
    else:
        assert (kb.producer_id, kb.producer_epoch, kb.base_sequence) == (-1, -1, -1)
    assert validate_batches(data)[0].size == len(data)


def test_uncompressed_batch_matches_kafka_python_bytes() -> None:
    """Without compression both builders write the very same bytes."""
    ours = build_batch(SAMPLE, compression=COMPRESSION_NONE)
    theirs = kp_batch(SAMPLE, COMPRESSION_NONE)
    assert ours[HEADER_SIZE:] == theirs[HEADER_SIZE:]
    # The headers differ only in the fields the broker assigns (partition leader epoch -1 vs 0).
    assert ours[16:] == theirs[16:]


def test_several_batches_in_one_buffer() -> None:
    data = b"".join(
        build_batch(SAMPLE[:2], base_offset=o, compression=c) for o, c in ((0, 0), (2, 3), (4, 4))
    )
    assert [h.base_offset for h in validate_batches(data)] == [0, 2, 4]
    assert [r[0] for r in kp_read(data)] == [0, 1, 2, 3, 4, 5]


def test_log_append_time_read_like_kafka_python() -> None:
    data = build_batch(SAMPLE, compression=1, timestamp_type_log_append=True, max_timestamp=BASE_TS + 99)
    assert {r.timestamp for r in iter_records(data)} == {BASE_TS + 99}
    assert {r.timestamp for r in DefaultRecordBatch(data)} == {BASE_TS + 99}
