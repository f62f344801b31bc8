"""Producer state on a PartitionLog: sequences, epochs, duplicates, atomic appends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.log.producer_state import ProducerStateError
from kbroker.log.producer_state_entry import INT32_MAX, decrement_sequence, in_sequence
from kbroker.records.batch import BatchError, iter_headers
from kbroker.records.builder import build_batch

from .helpers import pbatch

MakeLog = Callable[..., PartitionLog]


def _error(plog: PartitionLog, data: bytes) -> int:
    with pytest.raises(ProducerStateError) as info:
        plog.append(data, leader_epoch=0)
    return info.value.error_code


def test_sequence_helpers_wrap_int32() -> None:
    assert in_sequence(4, 5) and in_sequence(INT32_MAX, 0) and in_sequence(-1, 0)
    assert not in_sequence(4, 6) and not in_sequence(INT32_MAX, 1)
    assert decrement_sequence(2, 5) == INT32_MAX - 2
    assert decrement_sequence(9, 3) == 6


def test_in_sequence_appends_and_gaps(make_log: MakeLog) -> None:
    plog = make_log()
    assert plog.append(pbatch(7, 0, 0, 3), leader_epoch=0).base_offset == 0
    assert plog.append(pbatch(7, 0, 3, 2), leader_epoch=0).base_offset == 3
    assert _error(plog, pbatch(7, 0, 6)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # gap
    assert plog.log_end_offset == 5
    entry = plog.producer_state.last_entry(7)
    assert entry is not None and (entry.producer_epoch, entry.last_seq, entry.last_offset) == (0, 4, 4)


def test_duplicate_of_each_recent_batch_returns_original_offsets(make_log: MakeLog) -> None:
    plog = make_log()
    firsts = [plog.append(pbatch(1, 0, i * 2, 2), leader_epoch=0).base_offset for i in range(6)]
    size = plog.size_in_bytes
    for i in range(1, 6):  # the five most recent batches
        info = plog.append(pbatch(1, 0, i * 2, 2), leader_epoch=0)
        assert (info.base_offset, info.last_offset, info.record_count) == (firsts[i], firsts[i] + 1, 0)
    assert plog.size_in_bytes == size and plog.log_end_offset == 12
    # The sixth-newest is no longer remembered: an old sequence is out of order.
    assert _error(plog, pbatch(1, 0, 0, 2)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    # A batch overlapping but not matching a remembered one is not a duplicate.
    assert _error(plog, pbatch(1, 0, 10, 1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_epochs_fence_and_restart_sequences(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(pbatch(5, 3, 0, 2), leader_epoch=0)
    assert _error(plog, pbatch(5, 2, 2)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert _error(plog, pbatch(5, 4, 2)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # new epoch must start at 0
    assert plog.append(pbatch(5, 4, 0), leader_epoch=0).base_offset == 2
    assert _error(plog, pbatch(5, 3, 2)) == ErrorCode.INVALID_PRODUCER_EPOCH  # the old epoch is now fenced
    # A retry of the old epoch's batch is no duplicate any more: the new epoch cleared them.
    assert _error(plog, pbatch(5, 3, 0, 2)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert plog.append(pbatch(5, 4, 1), leader_epoch=0).base_offset == 3


def test_unknown_producer_may_start_at_any_sequence(make_log: MakeLog) -> None:
    # Current Kafka: only a known producer's sequence is checked (KIP-360).
    plog = make_log()
    assert plog.append(pbatch(9, 0, 42), leader_epoch=0).base_offset == 0
    assert _error(plog, pbatch(9, 0, 44)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert plog.append(pbatch(9, 0, 43), leader_epoch=0).base_offset == 1


def test_sequence_wraps_after_int32_max(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(pbatch(2, 0, INT32_MAX - 1, 3), leader_epoch=0)  # sequences MAX-1, MAX, 0
    assert plog.producer_state.producers[2].last_seq == 0
    assert plog.append(pbatch(2, 0, INT32_MAX - 1, 3), leader_epoch=0).base_offset == 0  # duplicate
    assert plog.append(pbatch(2, 0, 1), leader_epoch=0).base_offset == 3


def test_non_idempotent_batches_are_untracked(make_log: MakeLog) -> None:
    plog = make_log()
    data = build_batch([(None, b"x")])
    assert plog.append(data, leader_epoch=0).base_offset == 0
    assert plog.append(data, leader_epoch=0).base_offset == 1  # no dedup without a producer id
    assert plog.producer_state.producers == {}


def test_multi_batch_payload_is_all_or_nothing(make_log: MakeLog) -> None:
    plog = make_log()
    plog.append(pbatch(3, 0, 0), leader_epoch=0)
    bad = pbatch(3, 0, 1) + pbatch(4, 0, 0) + pbatch(3, 0, 5)
    assert _error(plog, bad) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert plog.log_end_offset == 1 and 4 not in plog.producer_state.producers
    assert plog.producer_state.producers[3].last_seq == 0
    info = plog.append(pbatch(3, 0, 1) + pbatch(4, 0, 0) + pbatch(3, 0, 2), leader_epoch=0)
    assert (info.base_offset, info.last_offset) == (1, 3)
    assert plog.producer_state.producers[3].last_seq == 2


def test_producer_state_error_is_a_batch_error() -> None:
    # The replica manager answers BatchErrors with their code: no extra mapping needed.
    assert issubclass(ProducerStateError, BatchError)


def test_create_time_duplicate_reports_its_batch_timestamp_as_append_time(make_log: MakeLog) -> None:
    # Kafka 4.1.1 answers a duplicate with the remembered batch's timestamp as log_append_time_ms,
    # for CreateTime topics too (the first append says -1).
    plog = make_log()
    first = plog.append(pbatch(1, 0, 0, 2, ts=5000), leader_epoch=0)
    again = plog.append(pbatch(1, 0, 0, 2, ts=5000), leader_epoch=0)
    assert first.log_append_time_ms == -1
    assert (again.base_offset, again.log_append_time_ms) == (0, 5000)


def test_log_append_time_is_remembered_for_duplicates(make_log: MakeLog, clock) -> None:  # type: ignore[no-untyped-def]
    plog = make_log(message_timestamp_type="LogAppendTime")
    first = plog.append(pbatch(1, 0, 0, ts=5), leader_epoch=0)
    clock.advance(1000)
    again = plog.append(pbatch(1, 0, 0, ts=5), leader_epoch=0)
    assert first.log_append_time_ms == again.log_append_time_ms == clock.time_ms() - 1000
    assert again.base_offset == first.base_offset == 0
    assert [h.base_offset for _, h in iter_headers(plog.read(0, 1 << 20))] == [0]
