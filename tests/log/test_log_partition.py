"""PartitionLog: append, read, rolls, timestamps, deletion."""

from __future__ import annotations

import os

import pytest
from log_helpers import batch_of_size, batch_offsets, build_batch

from kbroker.log import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP, OffsetOutOfRange
from kbroker.records.batch import BatchError, iter_headers, parse_header, verify_crc


def test_append_assigns_offsets_epoch_and_reads_back(make_log):
    plog = make_log()
    info = plog.append(build_batch([b"a", b"b", b"c"], base_offset=999), leader_epoch=7)
    assert (info.base_offset, info.last_offset, info.record_count, info.batch_count) == (0, 2, 3, 1)
    assert info.log_append_time_ms == -1 and info.log_start_offset == 0
    info2 = plog.append(build_batch([b"d"]) + build_batch([b"e", b"f"]), leader_epoch=8)
    assert (info2.base_offset, info2.last_offset, info2.batch_count) == (3, 5, 2)
    assert plog.log_end_offset == plog.high_watermark == 6
    data = plog.read(0, 1 << 20)
    assert batch_offsets(data) == [(0, 2), (3, 3), (4, 5)]
    epochs = [h.partition_leader_epoch for _, h in iter_headers(data)]
    assert epochs == [7, 8, 8]
    assert all(verify_crc(data, pos) for pos, _ in iter_headers(data))


def test_read_at_log_end_is_empty_and_out_of_range_raises(make_log):
    plog = make_log()
    plog.append(build_batch([b"a"]), leader_epoch=0)
    assert plog.read(1, 1000) == b""
    with pytest.raises(OffsetOutOfRange) as e:
        plog.read(2, 1000)
    assert e.value.error_code == 1
    plog.append(build_batch([b"b"]), leader_epoch=0)
    plog.delete_records_before(1)
    with pytest.raises(OffsetOutOfRange):
        plog.read(0, 1000)
    assert batch_offsets(plog.read(1, 1000)) == [(1, 1)]


def test_fetch_inside_a_batch_returns_that_whole_batch(make_log):
    plog = make_log()
    plog.append(build_batch([b"x"] * 5), leader_epoch=0)
    plog.append(build_batch([b"y"] * 5), leader_epoch=0)
    assert batch_offsets(plog.read(3, 1 << 20)) == [(0, 4), (5, 9)]
    assert batch_offsets(plog.read(7, 1 << 20)) == [(5, 9)]


def test_max_bytes_returns_whole_batches_and_first_even_if_larger(make_log):
    plog = make_log()
    for _ in range(3):
        plog.append(batch_of_size(1000), leader_epoch=0)
    size = len(plog.read(0, 1 << 20)) // 3
    assert batch_offsets(plog.read(0, 10)) == [(0, 0)]  # min_one_message
    assert plog.read(0, 10, min_one_message=False) == b""
    assert batch_offsets(plog.read(0, 2 * size + size // 2)) == [(0, 0), (1, 1)]
    assert batch_offsets(plog.read(0, 2 * size)) == [(0, 0), (1, 1)]
    assert batch_offsets(plog.read(1, 2 * size - 1)) == [(1, 1)]


def test_upper_bound_hides_batches_at_or_after_it(make_log):
    plog = make_log()
    plog.append(build_batch([b"a", b"b"]), leader_epoch=0)  # 0-1
    plog.append(build_batch([b"c", b"d"]), leader_epoch=0)  # 2-3
    plog.append(build_batch([b"e"]), leader_epoch=0)  # 4
    assert batch_offsets(plog.read(0, 1 << 20, upper_bound=2)) == [(0, 1)]
    assert batch_offsets(plog.read(0, 1 << 20, upper_bound=3)) == [(0, 1), (2, 3)]
    assert plog.read(2, 1 << 20, upper_bound=2) == b""
    assert plog.read(4, 1 << 20, upper_bound=4) == b""
    assert batch_offsets(plog.read(0, 1 << 20, upper_bound=100)) == [(0, 1), (2, 3), (4, 4)]


def test_upper_bound_across_segments(make_log):
    plog = make_log(segment_bytes=300)
    for _ in range(6):
        plog.append(batch_of_size(120), leader_epoch=0)
    assert len(plog.segments) == 3
    bases = [s.base_offset for s in plog.segments]
    assert bases == [0, 2, 4]
    assert batch_offsets(plog.read(2, 1 << 20, upper_bound=3)) == [(2, 2)]
    assert plog.read(2, 1 << 20, upper_bound=2) == b""
    assert batch_offsets(plog.read(0, 1 << 20, upper_bound=4)) == [(0, 0), (1, 1)]  # one segment per read


def test_roll_by_size_file_names_and_reads_across_segments(make_log):
    plog = make_log(segment_bytes=1024)
    size = len(batch_of_size(300))
    for _ in range(10):
        plog.append(batch_of_size(300), leader_epoch=0)
    segs = plog.segments
    per_seg = 1024 // size
    assert [s.base_offset for s in segs] == list(range(0, 10, per_seg))
    assert all(s.size <= 1024 for s in segs)
    names = sorted(os.listdir(plog.dir))
    for s in segs:
        stem = f"{s.base_offset:020d}"
        assert {stem + ".log", stem + ".index", stem + ".timeindex"} <= set(names)
    assert "partition.metadata" not in names  # no topic id given
    # Consume everything one fetch at a time.
    offset, seen = 0, []
    while offset < plog.log_end_offset:
        got = batch_offsets(plog.read(offset, 1 << 20))
        assert got
        seen += got
        offset = got[-1][1] + 1
    assert seen == [(i, i) for i in range(10)]


def test_roll_by_time_uses_the_clock(make_log, clock):
    plog = make_log(segment_ms=1000)
    plog.append(build_batch([b"a"]), leader_epoch=0)
    clock.advance(1000)
    plog.append(build_batch([b"b"]), leader_epoch=0)
    assert len(plog.segments) == 1  # not older than segment.ms yet
    clock.advance(1)
    plog.append(build_batch([b"c"]), leader_epoch=0)
    assert [s.base_offset for s in plog.segments] == [0, 2]
    clock.advance(5000)  # an empty or fresh segment's timer starts at its first append
    plog.append(build_batch([b"d"]), leader_epoch=0)
    assert [s.base_offset for s in plog.segments] == [0, 2, 3]
    assert batch_offsets(plog.read(0, 1 << 20)) == [(0, 0), (1, 1)]


def test_roll_when_index_is_full(make_log):
    plog = make_log(index_interval_bytes=0, segment_index_bytes=8 * 3)
    for _ in range(8):
        plog.append(build_batch([b"v"]), leader_epoch=0)
    for seg in plog.segments:
        assert seg.offset_index.entries <= 3
    assert len(plog.segments) > 1
    assert batch_offsets(plog.read(0, 1 << 20))[0] == (0, 0)


def test_index_entries_point_at_batches(make_log):
    plog = make_log(index_interval_bytes=200)
    for i in range(30):
        plog.append(build_batch([b"v" * (i * 7)] * (1 + i % 3)), leader_epoch=0)
    seg = plog.active_segment
    entries = seg.offset_index.entry_list()
    assert len(entries) > 3
    raw = seg.log_path.read_bytes()
    last_pos = 0
    for entry in entries:
        h = parse_header(raw, entry.position)
        assert h.base_offset == entry.offset
        assert entry.position - last_pos > 200
        last_pos = entry.position
    # Every offset is found through the index.
    for off in range(plog.log_end_offset):
        first = batch_offsets(plog.read(off, 1))[0]
        assert first[0] <= off <= first[1]
    # Time index entries hold increasing max timestamps at real batch base offsets.
    bases = {h.base_offset: h for _, h in iter_headers(raw)}
    prev = -1
    for ts, off in seg.time_index.entry_list():
        assert ts > prev
        prev = ts
        assert off in bases and bases[off].max_timestamp == ts


def test_invalid_batch_leaves_log_untouched(make_log):
    plog = make_log(max_message_bytes=500)
    plog.append(build_batch([b"ok"]), leader_epoch=0)
    before = plog.active_segment.log_path.read_bytes()
    good = build_batch([b"fine"])
    corrupt = bytearray(build_batch([b"bad"]))
    corrupt[-1] ^= 0xFF
    with pytest.raises(BatchError) as e:
        plog.append(good + bytes(corrupt), leader_epoch=0)
    assert e.value.error_code == 2
    with pytest.raises(BatchError) as e:
        plog.append(good + batch_of_size(600), leader_epoch=0)
    assert e.value.error_code == 10
    with pytest.raises(BatchError):
        plog.append(good[:-3], leader_epoch=0)
    with pytest.raises(BatchError):
        plog.append(b"", leader_epoch=0)
    assert plog.log_end_offset == 1
    assert plog.active_segment.log_path.read_bytes() == before


def test_record_set_larger_than_segment_is_rejected(make_log):
    plog = make_log(segment_bytes=200)
    with pytest.raises(BatchError) as e:
        plog.append(batch_of_size(300), leader_epoch=0)
    assert e.value.error_code == 18
    assert plog.log_end_offset == 0


def test_log_append_time(make_log, clock):
    plog = make_log(message_timestamp_type="LogAppendTime")
    info = plog.append(build_batch([b"a", b"b"], base_timestamp=5), leader_epoch=0)
    assert info.log_append_time_ms == clock.time_ms()
    h = parse_header(plog.read(0, 1000))
    assert h.log_append_time and h.max_timestamp == clock.time_ms()
    assert verify_crc(plog.read(0, 1000))
    plain = make_log("other-0")
    clock.advance(10)
    info = plain.append(build_batch([b"a"], base_timestamp=5), leader_epoch=0, log_append_time=True)
    assert info.log_append_time_ms == clock.time_ms()
    assert plain.offset_for_timestamp(clock.time_ms()) == (0, clock.time_ms())


def test_offset_for_timestamp_and_max_timestamp(make_log):
    plog = make_log(segment_bytes=400, index_interval_bytes=0)
    # Batches of 3 records; batch k holds timestamps 100k, 100k+10, 100k+20.
    for k in range(1, 11):
        plog.append(build_batch([b"v" * 20] * 3, timestamps=[100 * k, 100 * k + 10, 100 * k + 20]), leader_epoch=0)
    assert len(plog.segments) > 2
    assert plog.offset_for_timestamp(0) == (0, 100)
    assert plog.offset_for_timestamp(100) == (0, 100)
    # The exact record inside the batch, not just the batch.
    assert plog.offset_for_timestamp(105) == (1, 110)
    assert plog.offset_for_timestamp(120) == (2, 120)
    assert plog.offset_for_timestamp(121) == (3, 200)
    assert plog.offset_for_timestamp(500) == (12, 500)
    assert plog.offset_for_timestamp(1021) is None
    assert plog.offset_for_timestamp(EARLIEST_TIMESTAMP) == (0, -1)
    assert plog.offset_for_timestamp(LATEST_TIMESTAMP) == (30, -1)
    assert plog.max_timestamp() == (1020, 29)
    assert plog.offset_for_timestamp(MAX_TIMESTAMP) == tuple(reversed(plog.max_timestamp()))
    # Non-monotonic timestamps: the first batch reaching the target wins.
    other = make_log("other-0")
    for ts in (500, 300, 900, 700):
        other.append(build_batch([b"x"], base_timestamp=ts), leader_epoch=0)
    assert other.offset_for_timestamp(400) == (0, 500)
    assert other.offset_for_timestamp(600) == (2, 900)
    assert other.max_timestamp() == (900, 2)


def test_offset_for_timestamp_respects_log_start(make_log):
    plog = make_log()
    for k in range(5):
        plog.append(build_batch([b"x"], base_timestamp=100 * k), leader_epoch=0)
    plog.delete_records_before(3)
    assert plog.offset_for_timestamp(0) == (3, 300)
    multi = make_log("multi-0")
    multi.append(build_batch([b"a", b"b", b"c"], timestamps=[10, 30, 20]), leader_epoch=0)
    multi.delete_records_before(1)
    assert multi.offset_for_timestamp(0) == (1, 30)  # below the log start offset is invisible
    assert multi.offset_for_timestamp(25) == (1, 30)
    assert plog.max_timestamp() == (400, 4)
    assert make_log("empty-0").max_timestamp() == (-1, -1)
    assert make_log("empty-1").offset_for_timestamp(0) is None


def test_max_timestamp_counts_records_below_the_log_start_in_kept_segments(make_log):
    # Kafka's MAX_TIMESTAMP lookup reads the segments' max timestamps, not bounded by the log
    # start offset: after DeleteRecords it still names a deleted record of a kept segment.
    plog = make_log()
    for k in range(5):
        plog.append(build_batch([b"x"], base_timestamp=100 * k), leader_epoch=0)
    plog.delete_records_before(5)
    assert plog.max_timestamp() == (400, 4)
    assert plog.offset_for_timestamp(MAX_TIMESTAMP) == (4, 400)
    multi = make_log("multi-0")
    multi.append(build_batch([b"a", b"b", b"c"], timestamps=[30, 10, 20]), leader_epoch=0)
    multi.delete_records_before(1)
    assert multi.max_timestamp() == (30, 0)
    assert multi.offset_for_timestamp(0) == (1, 10)  # the timestamp search stays above the start


def test_delete_records_before_removes_whole_segments(make_log):
    plog = make_log(segment_bytes=300)
    for _ in range(8):
        plog.append(batch_of_size(120), leader_epoch=0)
    assert [s.base_offset for s in plog.segments] == [0, 2, 4, 6]
    old_files = list(plog.segments[0].log_path.parent.glob("00000000000000000000.*"))
    assert old_files
    assert plog.delete_records_before(3) == 3
    assert plog.log_start_offset == 3
    assert [s.base_offset for s in plog.segments] == [2, 4, 6]
    assert not any(p.exists() for p in old_files)
    assert batch_offsets(plog.read(3, 1 << 20)) == [(3, 3)]
    assert plog.delete_records_before(2) == 3  # never moves backwards
    assert plog.delete_records_before(8) == 8
    assert [s.base_offset for s in plog.segments] == [6]
    assert plog.read(8, 100) == b""
    with pytest.raises(OffsetOutOfRange):
        plog.delete_records_before(9)
    info = plog.append(build_batch([b"z"]), leader_epoch=0)
    assert info.base_offset == 8 and info.log_start_offset == 8


def test_detach_oldest_segments_seam(make_log):
    plog = make_log(segment_bytes=300)
    for _ in range(6):
        plog.append(batch_of_size(120), leader_epoch=0)
    assert plog.delete_segments_async(plog.detach_oldest_segments(lambda seg, nxt: seg.base_offset < 2)) == 1
    assert plog.log_start_offset == 2
    # Deleting everything rolls a fresh empty segment at the log end.
    assert plog.delete_segments_async(plog.detach_oldest_segments(lambda seg, nxt: True)) == 2
    assert [s.base_offset for s in plog.segments] == [6]
    assert plog.log_start_offset == plog.log_end_offset == 6


def test_truncate_to(make_log):
    plog = make_log(segment_bytes=300, index_interval_bytes=0)
    for _ in range(7):
        plog.append(batch_of_size(120), leader_epoch=0)
    plog.truncate_to(3)
    assert plog.log_end_offset == 3 and plog.high_watermark == 3
    assert [s.base_offset for s in plog.segments] == [0, 2]
    assert batch_offsets(plog.read(0, 1 << 20)) == [(0, 0), (1, 1)]
    assert batch_offsets(plog.read(2, 1 << 20)) == [(2, 2)]
    assert plog.append(build_batch([b"n"]), leader_epoch=1).base_offset == 3
    plog.truncate_to(0)
    assert plog.log_end_offset == 0 and [s.base_offset for s in plog.segments] == [0]
    assert plog.read(0, 100) == b""


def test_truncate_fully_and_start_at(make_log):
    plog = make_log()
    plog.append(build_batch([b"a"]), leader_epoch=0)
    plog.truncate_fully_and_start_at(100)
    assert (plog.log_start_offset, plog.log_end_offset) == (100, 100)
    assert plog.append(build_batch([b"b"]), leader_epoch=0).base_offset == 100
    assert plog.segments[0].log_path.name == "00000000000000000100.log"


def test_flush_interval_messages_moves_recovery_point(make_log):
    plog = make_log(flush_interval_messages=3)
    plog.append(build_batch([b"a", b"b"]), leader_epoch=0)
    assert plog.recovery_point == 0
    plog.append(build_batch([b"c"]), leader_epoch=0)
    assert plog.recovery_point == 3


def test_flush_interval_ms(make_log, clock):
    plog = make_log(flush_interval_ms=100)
    plog.append(build_batch([b"a"]), leader_epoch=0)
    assert plog.recovery_point == 0
    assert not plog.flush_if_due()
    clock.advance(100)
    assert plog.flush_if_due()
    assert plog.recovery_point == 1
    clock.advance(100)
    plog.append(build_batch([b"b"]), leader_epoch=0)  # appends leave flush.ms to the periodic flusher
    assert plog.recovery_point == 1
    assert plog.flush_if_due()
    assert plog.recovery_point == 2


def test_high_watermark_is_its_own_attribute(make_log):
    plog = make_log()
    plog.high_watermark_follows_leo = False
    plog.append(build_batch([b"a", b"b"]), leader_epoch=0)
    assert plog.high_watermark == 0
    assert plog.update_high_watermark(1) == 1
    assert plog.update_high_watermark(10) == 2


def test_closed_log_rejects_use(make_log):
    plog = make_log()
    plog.close()
    with pytest.raises(Exception, match="closed"):
        plog.append(build_batch([b"a"]), leader_epoch=0)


def test_delete_removes_directory(make_log):
    plog = make_log()
    plog.append(build_batch([b"a"]), leader_epoch=0)
    plog.delete()
    assert not plog.dir.exists()


def test_compressed_batches_from_kafka_python(make_log):
    """Batches built by a real client library (gzip) are stored byte for byte."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    plog = make_log()
    payloads = []
    for k in range(3):
        b = DefaultRecordBatchBuilder(magic=2, compression_type=1, is_transactional=False,
                                      producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
        for i in range(4):
            b.append(i, timestamp=1000 * k + 10 * i, key=None, value=b"payload-%d" % i, headers=[])
        payloads.append(bytes(b.build()))
        plog.append(payloads[-1], leader_epoch=3)
    data = plog.read(0, 1 << 20)
    assert batch_offsets(data) == [(0, 3), (4, 7), (8, 11)]
    # Only the base offset and leader epoch (outside the CRC) differ from what was sent.
    assert [data[pos + 16 : pos + h.size] for pos, h in iter_headers(data)] == [p[16:] for p in payloads]
    assert plog.offset_for_timestamp(1015) == (6, 1020)
    assert plog.max_timestamp() == (2030, 11)


def test_detach_records_before_leaves_the_file_work_to_the_caller(make_log):
    # DeleteRecords takes the segments out under the log's lock and deletes their files later
    # (in a worker thread): the log stops referring to them at once, the files go on
    # delete_segments_async (at once here: the log has no manager to delay the removal).
    plog = make_log(segment_bytes=300)
    for _ in range(8):
        plog.append(batch_of_size(120), leader_epoch=0)
    first = plog.segments[0].log_path
    start, detached = plog.detach_records_before(5)
    assert start == 5 and [s.base_offset for s in detached] == [0, 2]
    assert [s.base_offset for s in plog.segments] == [4, 6]
    assert first.exists()
    assert plog.delete_segments_async(detached) == 2
    assert not first.exists() and not detached[1].log_path.exists()
    assert not list(plog.dir.glob("*.deleted"))
    assert batch_offsets(plog.read(5, 1 << 20)) == [(5, 5)]


def test_delete_segments_async_stops_once_the_log_is_closed(make_log):
    # A deleted (closed) partition's directory may be renamed away and a new one made under the
    # old name: the detached segments' paths would then name the new log's files.
    plog = make_log(segment_bytes=300)
    for _ in range(4):
        plog.append(batch_of_size(120), leader_epoch=0)
    _, detached = plog.detach_records_before(3)
    assert detached
    plog.close()
    assert plog.delete_segments_async(detached) == 0
    assert detached[0].log_path.exists()


def test_deleted_segments_wait_out_file_delete_delay(make_log):
    # As Kafka: the files are renamed to .deleted at once and removed after file.delete.delay.ms
    # by whoever the log hands them to (the manager's background thread).
    plog = make_log(segment_bytes=300, file_delete_delay_ms=5000)
    for _ in range(6):
        plog.append(batch_of_size(120), leader_epoch=0)
    handed: list[tuple[list, int]] = []
    plog.on_delete_segments = lambda log, segs, delay: handed.append((segs, delay))
    first = plog.segments[0]
    old_path = first.log_path
    plog.delete_records_before(4)
    assert not old_path.exists()
    assert first.log_path.name == old_path.name + ".deleted" and first.log_path.exists()
    assert sorted(p.name for p in plog.dir.glob("*.deleted")) == sorted(
        name for seg in handed[0][0] for name in
        (seg.log_path.name, seg.offset_index.path.name, seg.time_index.path.name) if (plog.dir / name).exists())
    assert handed[0][1] == 5000 and [s.base_offset for s in handed[0][0]] == [0, 2]
    for seg in handed[0][0]:
        seg.delete()
    assert not list(plog.dir.glob("*.deleted"))


def test_a_renamed_segment_reopens_under_its_new_name(make_log):
    # A descriptor evicted from the LRU between the rename and the delete reopens the renamed file.
    from kbroker.log.handles import SEGMENT_FILES

    plog = make_log(segment_bytes=300)
    for _ in range(4):
        plog.append(batch_of_size(120), leader_epoch=0)
    seg = plog.segments[0]
    data = seg.read_batch(0, next(seg.iter_batches())[1])
    seg.change_file_suffixes("", ".deleted")
    SEGMENT_FILES.drop(seg)
    assert seg.read_batch(0, next(seg.iter_batches())[1]) == data
    seg.change_file_suffixes(".deleted", "")
    assert seg.log_path.name.endswith(".log") and seg.log_path.exists()
    with pytest.raises(ValueError):
        seg.change_file_suffixes(".swap", "")


def test_append_with_prevalidated_headers_matches_a_plain_append(make_log):
    # The replica manager hands over the headers its validation returned: the log must write
    # and answer exactly as when it validates the bytes itself.
    from kbroker.records.batch import validate_batches

    plain, given = make_log(), make_log()
    for payload in (build_batch([b"a", b"b"]), build_batch([b"c"]) + build_batch([b"d", b"e"]),
                    build_batch([b"f"], base_offset=77)):
        headers = validate_batches(payload, 1 << 20, check_crc=None)
        a = plain.append(payload, leader_epoch=3)
        b = given.append(payload, leader_epoch=3, headers=headers)
        assert a == b
    assert bytes(plain.read(0, 1 << 20)) == bytes(given.read(0, 1 << 20))
    assert plain.active_segment.offset_index.entry_list() == given.active_segment.offset_index.entry_list()


def test_append_with_prevalidated_headers_still_checks_uncompressed_crcs(make_log):
    from kbroker.records.batch import validate_batches

    plog = make_log()
    good = build_batch([b"a"])
    bad = bytearray(build_batch([b"b", b"c"]))
    bad[-1] ^= 0xFF  # a record byte: covered by the CRC
    for payload in (bytes(bad), good + bytes(bad)):
        headers = validate_batches(payload, 1 << 20, check_crc=None)  # passes: uncompressed CRCs left out
        with pytest.raises(BatchError) as e:
            plog.append(payload, leader_epoch=0, headers=headers)
        assert e.value.error_code == 2  # CORRUPT_MESSAGE
        assert plog.log_end_offset == 0  # nothing written
    plog.append(good, leader_epoch=0, headers=validate_batches(good, 1 << 20, check_crc=None))
    assert plog.log_end_offset == 1
