"""Cleaning one log: what survives, how batches look afterwards, partial passes, idempotence."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cleaner_helpers import (
    all_batches,
    all_records,
    append,
    clean,
    expected_compaction,
    recovery_accepts,
    segment_bytes,
)

from kbroker.clock import ManualClock
from kbroker.log import PartitionLog
from kbroker.log.cleaner.offset_map import BYTES_PER_ENTRY
from kbroker.records.batch import DELETE_HORIZON_BIT
from kbroker.records.record import iter_records

MakeLog = Callable[..., PartitionLog]


def fill(plog: PartitionLog, n: int, keys: int, *, per_batch: int = 1, compression: int = 0,
         roll_every: int | None = None) -> None:
    """``n`` batches of ``per_batch`` records over ``keys`` keys, rolling every ``roll_every`` batches."""
    i = 0
    for b in range(n):
        append(plog, [(b"k%d" % ((i + j) % keys), b"v%d" % (i + j)) for j in range(per_batch)],
               compression=compression)
        i += per_batch
        if roll_every and (b + 1) % roll_every == 0:
            plog.roll()


def test_latest_value_per_key_is_kept_with_offsets_preserved(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1500)
    fill(plog, 120, 9)
    before = all_records(plog)
    segments_before = len(plog.segments)
    end = plog.active_segment.base_offset
    result = clean(plog, clock)
    after = all_records(plog)
    assert after == expected_compaction(before, end)
    assert result.end_offset == end
    # Every key's latest value below the end, and everything at or past it.
    assert {k for off, k, _ in after if off < end} == {b"k%d" % i for i in range(9)}
    assert result.summary.cleaned_up_to == end
    assert result.summary.records_read == end and result.summary.records_retained == 9
    assert result.summary.bytes_after < result.summary.bytes_before
    assert plog.last_cleaning == result.summary
    assert len(plog.segments) <= segments_before
    assert plog.log_end_offset == 120
    recovery_accepts(plog.dir)
    # A restart with full recovery finds the same log.
    plog.close()
    again = make_log(segment_bytes=1500, clean=False, recovery_point=0)
    assert all_records(again) == after and again.log_end_offset == 120
    assert not [p for p in again.dir.iterdir() if p.suffix in (".cleaned", ".swap", ".deleted")]


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_compressed_batches_are_re_encoded_in_their_codec(make_log: MakeLog, clock: ManualClock, codec: int) -> None:
    plog = make_log(segment_bytes=4000)
    # Five-record batches over 7 keys: most batches keep some records and lose others.
    fill(plog, 30, 7, per_batch=5, compression=codec, roll_every=6)
    before = all_records(plog)
    end = plog.active_segment.base_offset
    clean(plog, clock)
    batches = all_batches(plog)
    assert all(h.compression == codec for h, _ in batches if h.record_count)
    assert all_records(plog) == expected_compaction(before, end)
    partial = [h for h, _ in batches if 0 < h.record_count < 5 and h.base_offset < end]
    assert partial, "some batch should have been re-encoded with fewer records"
    for h in partial:  # the original offset range stays, gaps inside
        assert h.last_offset_delta == 4
    recovery_accepts(plog.dir)


def test_a_batch_keeping_everything_is_copied_byte_for_byte(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"a", b"1"), (b"b", b"2")], compression=2)
    append(plog, [(b"c", b"3")])
    original = [raw for _, raw in all_batches(plog)]
    plog.roll()
    append(plog, [(b"a", b"4")])  # in the active segment: uncleanable
    clean(plog, clock)
    assert [raw for _, raw in all_batches(plog)][:2] == original


def test_tombstones_kept_until_the_delete_horizon_then_removed(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(delete_retention_ms=10_000)
    append(plog, [(b"a", b"1"), (b"b", b"1")])
    append(plog, [(b"a", None), (b"c", b"1")], ts=5_000)  # offsets 2-3: a tombstone
    append(plog, [(b"d", b"1")])
    plog.roll()
    append(plog, [(b"e", b"1")])
    first_now = clock.time_ms()
    clean(plog, clock)
    assert [(o, k, v) for o, k, v in all_records(plog)] == [
        (1, b"b", b"1"), (2, b"a", None), (3, b"c", b"1"), (4, b"d", b"1"), (5, b"e", b"1")]
    h, raw = next((h, raw) for h, raw in all_batches(plog) if h.base_offset == 2)
    # KIP-534: the first cleaning stamps the horizon into the base timestamp, bit 6 set.
    assert h.attributes & DELETE_HORIZON_BIT
    assert h.base_timestamp == first_now + 10_000
    assert [r.timestamp for r in iter_records(raw)] == [5_000, 5_001]  # record timestamps unchanged
    assert h.max_timestamp == 5_001
    files = segment_bytes(plog.dir)
    # Before the horizon a later pass keeps the tombstone and changes nothing.
    clock.advance(9_999)
    clean(plog, clock)
    assert segment_bytes(plog.dir) == files
    clock.advance(1)
    clean(plog, clock)
    assert [(o, k, v) for o, k, v in all_records(plog)] == [
        (1, b"b", b"1"), (3, b"c", b"1"), (4, b"d", b"1"), (5, b"e", b"1")]
    h = next(h for h, _ in all_batches(plog) if h.base_offset == 2)
    assert h.attributes & DELETE_HORIZON_BIT and h.base_timestamp == first_now + 10_000
    recovery_accepts(plog.dir)


def test_a_batch_without_tombstones_gets_no_horizon(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"a", b"1"), (b"b", b"1")], ts=7_000)
    append(plog, [(b"a", b"2")])
    plog.roll()
    append(plog, [(b"z", b"1")])
    clean(plog, clock)
    h = all_batches(plog)[0][0]
    assert h.record_count == 1 and not h.attributes & DELETE_HORIZON_BIT
    assert h.base_timestamp == 7_001  # the first kept record's timestamp, as Kafka's builder


def test_second_pass_changes_nothing(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(segment_bytes=1200)
    fill(plog, 80, 6, per_batch=2, compression=3)
    append(plog, [(b"k1", None)])
    plog.roll()
    append(plog, [(b"x", b"y")])
    clean(plog, clock)
    batches = [raw for _, raw in all_batches(plog)]
    segments = len(plog.segments)
    clean(plog, clock)
    # The same batches byte for byte; segments emptied by the first pass are merged now
    # (Kafka groups segments by their size, which shrank).
    assert [raw for _, raw in all_batches(plog)] == batches
    assert len(plog.segments) < segments
    files = segment_bytes(plog.dir)
    clean(plog, clock)
    assert segment_bytes(plog.dir) == files


def test_keys_are_deduplicated_only_from_the_dirty_section(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])  # 0-2: cleaned before
    append(plog, [(b"a", b"2")])  # 3: dirty from here
    plog.roll()
    append(plog, [(b"b", b"2")])  # 4: active, uncleanable
    result = clean(plog, clock, first_dirty=3, end=4)
    assert result.end_offset == 4
    # b's newer value is past the first uncleanable offset: its older one stays.
    assert all_records(plog) == [(1, b"b", b"1"), (2, b"c", b"1"), (3, b"a", b"2"), (4, b"b", b"2")]


def test_a_full_map_cleans_up_to_where_it_ends(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    for i in range(20):  # offsets 0-19, keys k0..k19 once each
        append(plog, [(b"k%d" % i, b"old")])
    plog.roll()
    for i in range(20):  # offsets 20-39: every key again
        append(plog, [(b"k%d" % i, b"new")])
    plog.roll()
    append(plog, [(b"z", b"1")])
    # Room for exactly 5 keys: Kafka's slots (budget / 24) times the load factor 0.9.
    dedupe = 6 * BYTES_PER_ENTRY
    result = clean(plog, clock, first_dirty=20, dedupe=dedupe, load_factor=5 / 6)
    assert result.end_offset == 25  # the map held offsets 20-24 when it was full
    recs = all_records(plog)
    old = sorted(int(k[1:]) for o, k, v in recs if v == b"old")
    assert old == list(range(5, 20))  # only k0-k4 were deduplicated
    assert [o for o, k, v in recs if v == b"new"] == list(range(20, 40))
    # The next pass starts at the checkpoint and finishes the job.
    result = clean(plog, clock, first_dirty=result.end_offset, dedupe=dedupe, load_factor=5 / 6)
    assert result.end_offset == 30
    assert sorted(int(k[1:]) for o, k, v in all_records(plog) if v == b"old") == list(range(10, 20))


def test_records_without_a_key_are_dropped_from_the_mapped_range(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log()
    append(plog, [(None, b"keyless"), (b"a", b"1")])
    plog.roll()
    append(plog, [(b"b", b"1")])
    clean(plog, clock)
    assert all_records(plog) == [(1, b"a", b"1"), (2, b"b", b"1")]


def test_reads_and_list_offsets_by_timestamp_after_cleaning(make_log: MakeLog, clock: ManualClock) -> None:
    plog = make_log(index_interval_bytes=100, segment_bytes=3000)
    for i in range(60):
        append(plog, [(b"k%d" % (i % 10), b"v" * 30)], ts=10_000 + i * 10)
    end = plog.active_segment.base_offset
    clean(plog, clock)
    kept = all_records(plog)
    assert [o for o, _, _ in kept if o < end] == list(range(end - 10, end))
    # The first record at or after a timestamp whose record was cleaned away is the next kept one.
    assert plog.offset_for_timestamp(10_000) == (end - 10, 10_000 + (end - 10) * 10)
    assert plog.offset_for_timestamp(10_000 + (end - 5) * 10) == (end - 5, 10_000 + (end - 5) * 10)
    assert plog.max_timestamp() == (10_000 + 590, 59)
    # Reading from a cleaned-away offset starts at the next batch that is there.
    data = plog.read(3, 1 << 20)
    assert next(iter_records(data)).offset >= 3
    # The indexes of the cleaned segments lead reads to every kept offset.
    for off in range(end - 10, plog.log_end_offset):
        assert next(iter_records(plog.read(off, 1 << 20))).offset == off


def test_list_offsets_by_timestamp_skips_batches_the_cleaner_kept_empty(make_log: MakeLog, clock: ManualClock) -> None:
    # An active producer's last batch stays, emptied, with its max timestamp: ListOffsets
    # looks past it (and past records older than the target) to the first record that qualifies.
    plog = make_log()
    append(plog, [(b"k", b"old")], ts=1_000, producer_id=7, producer_epoch=0, base_sequence=0)  # 0
    append(plog, [(b"j", b"x")], ts=100)  # 1
    append(plog, [(b"k", b"new")], ts=2_000)  # 2
    plog.roll()
    append(plog, [(b"z", b"1")], ts=3_000)  # 3
    clean(plog, clock)
    layout = [(h.base_offset, h.record_count) for h, _ in all_batches(plog)]
    assert layout == [(0, 0), (1, 1), (2, 1), (3, 1)]
    assert plog.offset_for_timestamp(900) == (2, 2_000)
    assert plog.offset_for_timestamp(50) == (1, 100)
