"""build_batch inputs and options, control batches, and the build/iterate round-trip property."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch

from kbroker.records.batch import INVALID_RECORD, BatchError, parse_header, validate_batches, verify_crc
from kbroker.records.builder import NewRecord, build_batch, build_control_batch
from kbroker.records.record import (
    ControlType,
    EndTxnMarker,
    Record,
    control_record_type,
    end_txn_marker,
    iter_records,
)

TS = 1_700_000_000_000


def test_tuple_inputs_take_consecutive_offsets() -> None:
    data = build_batch([(b"a", b"1"), (None, b"2", [("h", b"x")]), (b"c", None, (), TS)], base_offset=10)
    recs = list(iter_records(data))
    assert [r.offset for r in recs] == [10, 11, 12]
    assert [(r.key, r.value, r.headers) for r in recs] == [
        (b"a", b"1", ()),
        (None, b"2", (("h", b"x"),)),
        (b"c", None, ()),
    ]
    assert recs[2].timestamp == TS


def test_missing_timestamp_is_now() -> None:
    before = time.time_ns() // 1_000_000
    [r] = iter_records(build_batch([NewRecord(b"k", b"v")]))
    assert before <= r.timestamp <= time.time_ns() // 1_000_000


def test_records_keep_their_offsets_for_compaction() -> None:
    """Decoded records re-encoded keep gaps; the last offset may be pinned past the last record."""
    src = build_batch([NewRecord(b"k%d" % i, b"v", (), TS + i) for i in range(6)], base_offset=100)
    kept = [r for r in iter_records(src) if r.offset in (101, 104)]
    data = build_batch(kept, base_offset=100, last_offset_delta=5)
    h = parse_header(data)
    assert (h.record_count, h.last_offset_delta, h.next_offset) == (2, 5, 106)
    assert verify_crc(data)
    assert list(iter_records(data)) == kept
    assert [r.offset for r in DefaultRecordBatch(data)] == [101, 104]
    with pytest.raises(BatchError) as exc:  # a producer batch may not have gaps
        validate_batches(data)
    assert exc.value.error_code == INVALID_RECORD


def test_empty_batch() -> None:
    data = build_batch(
        [], base_offset=50, last_offset_delta=3, producer_id=9, producer_epoch=1, base_sequence=0
    )
    h = parse_header(data)
    assert (h.record_count, h.last_offset, h.base_timestamp, h.max_timestamp) == (0, 53, -1, -1)
    assert verify_crc(data)
    assert list(iter_records(data)) == []
    with pytest.raises(ValueError):
        build_batch([])


def test_builder_rejects_bad_input() -> None:
    recs = [Record(5, TS, b"a", b"b"), Record(5, TS, b"a", b"b")]
    with pytest.raises(ValueError):
        build_batch(recs)  # offsets must increase
    with pytest.raises(ValueError):
        build_batch([Record(3, TS, None, None)], base_offset=4)
    with pytest.raises(ValueError):
        build_batch([(b"k", b"v")], compression=5)
    with pytest.raises(ValueError):
        build_batch([(b"k", b"v"), (b"k", b"v")], last_offset_delta=0)


def test_attributes_and_producer_fields() -> None:
    data = build_batch(
        [(b"k", b"v", (), TS)],
        compression=3,
        producer_id=1 << 40,
        producer_epoch=32000,
        base_sequence=(1 << 31) - 1,
        transactional=True,
        partition_leader_epoch=12,
        timestamp_type_log_append=True,
    )
    h = parse_header(data)
    assert h.attributes == 3 | 0x08 | 0x10
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.partition_leader_epoch) == (
        1 << 40,
        32000,
        (1 << 31) - 1,
        12,
    )
    assert h.last_sequence == (1 << 31) - 1


@pytest.mark.parametrize("ctype", [ControlType.ABORT, ControlType.COMMIT])
def test_control_batch_round_trip(ctype: ControlType) -> None:
    data = build_control_batch(
        ctype,
        producer_id=4000,
        producer_epoch=7,
        coordinator_epoch=3,
        base_offset=99,
        timestamp=TS,
        partition_leader_epoch=2,
    )
    h = parse_header(data)
    assert h.is_control and h.is_transactional and h.compression == 0
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (4000, 7, -1)
    assert (h.base_offset, h.record_count, h.last_offset_delta, h.partition_leader_epoch) == (99, 1, 0, 2)
    assert validate_batches(data) == [h]
    assert control_record_type(data) == ctype
    assert end_txn_marker(data) == EndTxnMarker(ctype, 3)
    [r] = iter_records(data)
    assert (r.offset, r.timestamp, r.key, r.value, r.headers) == (
        99,
        TS,
        b"\x00\x00\x00" + bytes([ctype]),
        b"\x00\x00\x00\x00\x00\x03",
        (),
    )
    # kafka-python's reader sees a control record of the same type.
    kb = DefaultRecordBatch(data)
    assert kb.validate_crc() and kb.is_control_batch and kb.is_transactional
    [cr] = list(kb)
    assert (cr.version, cr.type, cr.commit) == (0, int(ctype), ctype == ControlType.COMMIT)


def test_control_helpers_on_other_batches() -> None:
    data = build_batch([(b"k", b"v")])
    assert control_record_type(data) is None
    assert end_txn_marker(data) is None
    # A control batch that is not a transaction marker (e.g. a KRaft leader change).
    leader_change = build_batch([(b"\x00\x00\x00\x02", b"...")], control=True)
    assert control_record_type(leader_change) == ControlType.LEADER_CHANGE
    assert end_txn_marker(leader_change) is None
    for bad_key in (b"\x00", None, b"\xff\xff\x00\x01"):
        bad = build_batch([(bad_key, b"\x00\x00\x00\x00\x00\x00")], control=True)
        with pytest.raises(BatchError) as exc:
            control_record_type(bad)
        assert exc.value.error_code == INVALID_RECORD
    with pytest.raises(ValueError):
        build_control_batch(2, producer_id=1, producer_epoch=0, coordinator_epoch=0)


# --- property: what goes in comes out --------------------------------------------------------

nullable_bytes = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=20), nullable_bytes), max_size=4)
records = st.lists(
    st.builds(NewRecord, nullable_bytes, nullable_bytes, headers, st.integers(0, 1 << 45)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recs=records,
    codec=st.sampled_from([0, 1, 2, 3, 4]),
    base_offset=st.integers(0, 1 << 60),
    log_append=st.booleans(),
)
def test_build_then_iterate(recs: list[NewRecord], codec: int, base_offset: int, log_append: bool) -> None:
    data = build_batch(recs, base_offset=base_offset, compression=codec, timestamp_type_log_append=log_append)
    h = validate_batches(data)[0]
    assert h.compression == codec and h.size == len(data)
    max_ts = max(r.timestamp or 0 for r in recs)
    assert (h.base_timestamp, h.max_timestamp) == (recs[0].timestamp, max_ts)
    want = [
        Record(base_offset + i, max_ts if log_append else r.timestamp or 0, r.key, r.value, tuple(r.headers))
        for i, r in enumerate(recs)
    ]
    got = list(iter_records(data))
    assert got == want
    # Re-encoding decoded records gives the same batch (LogAppendTime has dropped the create times).
    if not log_append:
        assert build_batch(got, base_offset=base_offset, compression=codec) == data
    # kafka-python agrees.
    kp = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in DefaultRecordBatch(data)]
    assert kp == [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in want]
