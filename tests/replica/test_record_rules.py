"""Timestamp rules and topic compression of the produce path (kbroker.replica.record_validation)."""

from __future__ import annotations

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.log.config import LogConfig
from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    iter_headers,
    parse_header,
)
from kbroker.records.builder import NewRecord, build_batch, build_control_batch
from kbroker.records.record import ControlType, iter_records
from kbroker.replica.errors import PartitionError
from kbroker.replica.record_validation import check_timestamps, recompress_for_topic

NOW = 1_800_000_000_000
HOUR = 3_600_000


def _refusal(records: bytes, **kw: object) -> PartitionError:
    with pytest.raises(PartitionError) as e:
        check_timestamps(records, NOW, kw.pop("before", None), kw.pop("after", HOUR), **kw)  # type: ignore[arg-type]
    assert e.value.error_code == ErrorCode.INVALID_TIMESTAMP
    assert e.value.message == "One or more records have been rejected due to invalid timestamp"
    return e.value


@pytest.mark.parametrize("codec", [COMPRESSION_NONE, COMPRESSION_GZIP])
def test_each_record_out_of_range_is_named_as_kafka_names_it(codec: int) -> None:
    # Out of order: record 1 lies before the batch's base timestamp, record 2 past the hour.
    records = build_batch([NewRecord(None, b"a", (), NOW), NewRecord(None, b"b", (), NOW - 600_000),
                           NewRecord(None, b"c", (), NOW + 2 * HOUR)], compression=codec)
    err = _refusal(records, before=60_000)
    bounds = f"[{NOW - 60_000}, {NOW + HOUR}]"
    assert err.record_errors == [
        (1, f"Timestamp {NOW - 600_000} of message with offset 1 is out of range. The timestamp should be within {bounds}"),
        (2, f"Timestamp {NOW + 2 * HOUR} of message with offset 2 is out of range. The timestamp should be within {bounds}"),
    ]


def test_a_record_below_the_base_timestamp_is_caught_only_through_the_records() -> None:
    records = build_batch([NewRecord(None, b"a", (), NOW), NewRecord(None, b"b", (), NOW - 600_000)])
    h = parse_header(records)
    assert h.base_timestamp == NOW  # the header alone would let it through
    assert _refusal(records, before=60_000).record_errors[0][0] == 1
    check_timestamps(records, NOW, 600_000, HOUR)  # at the bound: accepted


def test_unbounded_side_shows_kafkas_long_arithmetic() -> None:
    records = build_batch([NewRecord(None, b"a", (), NOW + 2 * HOUR)])
    err = _refusal(records)  # before unbounded: now - Long.MAX
    assert err.record_errors[0][1].endswith(f"[{NOW - (2**63 - 1)}, {NOW + HOUR}]")
    records = build_batch([NewRecord(None, b"a", (), 5)])
    err = _refusal(records, before=1000, after=None)  # after unbounded: now + Long.MAX wraps negative
    assert err.record_errors[0][1].endswith(f"[{NOW - 1000}, {NOW + 2**63 - 1 - 2**64}]")


def test_in_range_and_untimed_records_pass() -> None:
    check_timestamps(build_batch([NewRecord(None, b"a", (), NOW + HOUR)]), NOW, None, HOUR)
    check_timestamps(build_batch([NewRecord(None, b"a", (), 1)]), NOW, None, HOUR)
    untimed = build_batch([NewRecord(None, b"a", (), -1)])  # NO_TIMESTAMP
    check_timestamps(untimed, NOW, 0, 0)
    check_timestamps(build_batch([NewRecord(None, b"a", (), 10**15)]), NOW, None, None)


def test_producer_log_append_time_batches() -> None:
    lat = build_batch([NewRecord(b"k", b"vv", (), NOW)], timestamp_type_log_append=True)
    # On a LogAppendTime topic a producer may not pick the type.
    err = _refusal(lat, log_append_time=True)
    assert err.record_errors == [(0, f"Invalid timestamp type in message DefaultRecord(offset=0, timestamp={NOW}, "
                                    "key=1 bytes, value=2 bytes). Producer should not set timestamp type to "
                                    "LogAppendTime.")]
    check_timestamps(build_batch([NewRecord(b"k", b"vv", (), 1)]), NOW, 0, 0, log_append_time=True)
    # On a CreateTime topic its max timestamp is every record's: range-checked, or refused when -1.
    check_timestamps(lat, NOW, 0, 0)
    untimed = build_batch([NewRecord(None, b"vv", (), NOW)], timestamp_type_log_append=True, max_timestamp=-1)
    assert "timestamp=-1, key=0 bytes, value=2 bytes" in _refusal(untimed).record_errors[0][1]
    assert _refusal(build_batch([NewRecord(None, b"v", (), NOW + 2 * HOUR)], timestamp_type_log_append=True))


def _config(**kw: object) -> LogConfig:
    return LogConfig(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("topic_codec", "codec"), [("uncompressed", COMPRESSION_NONE), ("gzip", COMPRESSION_GZIP),
                                                     ("snappy", COMPRESSION_SNAPPY), ("lz4", COMPRESSION_LZ4),
                                                     ("zstd", COMPRESSION_ZSTD)])
def test_topic_codec_rewrites_other_codecs_and_keeps_its_own(topic_codec: str, codec: int) -> None:
    config = _config(compression_type=topic_codec)
    for source in (COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD):
        records = build_batch([(b"k", b"v" * 100), (None, b"w")], compression=source, producer_id=9,
                              producer_epoch=1, base_sequence=0)
        out = recompress_for_topic(records, config, None)
        if source == codec:
            assert out is records  # stored as sent
            continue
        (_, h), = iter_headers(out)
        assert h.compression == codec and (h.producer_id, h.base_sequence) == (9, 0)
        assert [(r.key, r.value) for r in iter_records(out)] == [(b"k", b"v" * 100), (None, b"w")]


def test_levels_come_from_the_topic() -> None:
    records = build_batch([(None, b"".join(b"%d, " % (i % 50) for i in range(30_000)))])
    fast = recompress_for_topic(records, _config(compression_type="zstd", compression_zstd_level=1), None)
    best = recompress_for_topic(records, _config(compression_type="zstd", compression_zstd_level=19), None)
    assert len(best) < len(fast)
    g1 = recompress_for_topic(records, _config(compression_type="gzip", compression_gzip_level=1), None)
    g9 = recompress_for_topic(records, _config(compression_type="gzip", compression_gzip_level=9), None)
    assert len(g9) < len(g1)


def test_uncompressed_control_batches_stay_uncompressed() -> None:
    marker = build_control_batch(ControlType.COMMIT, producer_id=3, producer_epoch=0, coordinator_epoch=1)
    assert recompress_for_topic(marker, _config(compression_type="zstd"), None) is marker


def test_log_append_time_of_a_rewritten_batch() -> None:
    records = build_batch([NewRecord(None, b"a", (), NOW - 10), NewRecord(None, b"b", (), NOW - 5)])
    out = recompress_for_topic(records, _config(compression_type="gzip", message_timestamp_type="LogAppendTime"),
                               NOW)
    h = parse_header(out)
    assert (h.compression, h.log_append_time, h.base_timestamp, h.max_timestamp) == (COMPRESSION_GZIP, True,
                                                                                    NOW - 10, NOW)


def test_a_rewritten_batch_above_max_message_bytes_is_too_large() -> None:
    records = build_batch([(None, bytes(50_000))], compression=COMPRESSION_GZIP)
    assert len(records) < 1000
    config = _config(compression_type="uncompressed", max_message_bytes=10_000)
    with pytest.raises(PartitionError) as e:
        recompress_for_topic(records, config, None)
    # Kafka's RecordTooLargeException: MESSAGE_TOO_LARGE, with no error message in the answer.
    assert (e.value.error_code, e.value.message) == (ErrorCode.MESSAGE_TOO_LARGE, None)
    assert len(recompress_for_topic(records, _config(compression_type="uncompressed"), None)) > 50_000


def test_compacted_topic_keyless_and_late_records_answer_invalid_timestamp() -> None:
    from kbroker.replica.record_validation import timestamp_errors, validate_client_batches

    def errors(batch: memoryview, h: object) -> list[tuple[int, str]]:
        return timestamp_errors(batch, h, NOW, None, HOUR, False)  # type: ignore[arg-type]

    # Record 0 has no key and is late too (Kafka reports its key only), record 2 is late.
    records = build_batch([NewRecord(None, b"a", (), NOW + 2 * HOUR), NewRecord(b"k", b"b", (), NOW),
                           NewRecord(b"k", b"c", (), NOW + 3 * HOUR)])
    with pytest.raises(PartitionError) as e:
        validate_client_batches("t", 0, records, max_message_bytes=1 << 20, compacted=True, timestamp_errors=errors)
    assert e.value.error_code == ErrorCode.INVALID_TIMESTAMP
    assert [i for i, _ in e.value.record_errors] == [0, 2]
    assert e.value.record_errors[0][1].startswith("Compacted topic cannot accept message without key")
    assert e.value.record_errors[1][1].startswith(f"Timestamp {NOW + 3 * HOUR} of message with offset 2")
    # Keyless records alone stay INVALID_RECORD.
    only_keyless = build_batch([NewRecord(None, b"a", (), NOW + 2 * HOUR), NewRecord(b"k", b"b", (), NOW)])
    with pytest.raises(PartitionError) as e:
        validate_client_batches("t", 0, only_keyless, max_message_bytes=1 << 20, compacted=True,
                                timestamp_errors=errors)
    assert e.value.error_code == ErrorCode.INVALID_RECORD


def test_walking_a_bombs_records_keeps_nothing_per_record() -> None:
    """With ``message.timestamp.before.max.ms`` set every record is walked: a compressed batch of
    200 000 records (a 64 MB one may hold ~9 million) must not cost memory per record."""
    import tracemalloc

    records = build_batch([NewRecord(None, b"v", (), NOW)] * 200_000, compression=COMPRESSION_GZIP)
    tracemalloc.start()
    try:
        check_timestamps(records, NOW, HOUR, HOUR)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, peak  # the decompressed records are ~1.8 MB
