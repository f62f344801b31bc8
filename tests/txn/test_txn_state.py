"""The transaction state machine: Kafka's ids, names, legal transitions and epoch rules."""

from __future__ import annotations

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.txn.state import MAX_EPOCH, IllegalTransition, TransactionMetadata, TransactionState

S = TransactionState
TP = TopicPartition("t", 0)


def meta(state: TransactionState = S.EMPTY, epoch: int = 0, last_epoch: int = -1) -> TransactionMetadata:
    return TransactionMetadata("tx", 7, -1, epoch, last_epoch, 60_000, state,
                               {TP} if state not in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT) else set(), 5, 5)


def test_ids_and_names_are_kafkas() -> None:
    assert [(s.value, s.kafka_name) for s in S] == [
        (0, "Empty"), (1, "Ongoing"), (2, "PrepareCommit"), (3, "PrepareAbort"), (4, "CompleteCommit"),
        (5, "CompleteAbort"), (6, "Dead"), (7, "PrepareEpochFence")]
    assert S.from_name("PrepareEpochFence") is S.PREPARE_EPOCH_FENCE and S.from_name("ongoing") is None


def test_legal_transitions() -> None:
    legal = {(a, b) for b in S for a in b.valid_previous}
    assert (S.ONGOING, S.PREPARE_COMMIT) in legal and (S.PREPARE_COMMIT, S.COMPLETE_COMMIT) in legal
    assert (S.EMPTY, S.PREPARE_COMMIT) not in legal and (S.PREPARE_ABORT, S.COMPLETE_COMMIT) not in legal
    assert (S.ONGOING, S.DEAD) not in legal and (S.COMPLETE_ABORT, S.DEAD) in legal
    assert S.PREPARE_EPOCH_FENCE.valid_previous == {S.ONGOING}
    assert {s for s in S if s.expiration_allowed} == {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}


def test_illegal_transition_raises_and_leaves_nothing_pending() -> None:
    m = meta(S.EMPTY)
    with pytest.raises(IllegalTransition):
        m.prepare_abort_or_commit(S.PREPARE_COMMIT, 10)
    assert m.pending_state is None


def test_one_pending_transition_at_a_time() -> None:
    m = meta(S.EMPTY)
    transit = m.prepare_add_partitions({TP}, 10)
    assert m.pending_transition_in_progress
    with pytest.raises(IllegalTransition):
        m.prepare_add_partitions({TP}, 11)
    m.complete_transition(transit)
    assert (m.state, m.partitions, m.start_timestamp, m.pending_state) == (S.ONGOING, {TP}, 10, None)


def test_completing_a_transit_that_is_not_pending_raises() -> None:
    m = meta(S.EMPTY)
    transit = m.prepare_add_partitions({TP}, 10)
    m.pending_state = None
    with pytest.raises(IllegalTransition):
        m.complete_transition(transit)


def test_adding_partitions_keeps_the_start_time_of_an_ongoing_transaction() -> None:
    m = meta(S.ONGOING)
    m.start_timestamp = 3
    transit = m.prepare_add_partitions({TopicPartition("t", 1)}, 99)
    assert transit.start_timestamp == 3 and transit.last_update_timestamp == 99
    assert transit.partitions == {TP, TopicPartition("t", 1)}


@pytest.mark.parametrize(("epoch", "last", "expected", "result"), [
    (0, -1, None, (1, -1)),  # a fresh InitProducerId
    (3, -1, 3, (4, 3)),  # KIP-360: the producer names its current epoch
    (4, 3, 3, (4, 3)),  # a retry of that bump: the same epoch again
    (4, 3, 2, ErrorCode.PRODUCER_FENCED),  # older than both
    (-1, -1, 5, (0, -1)),  # a brand-new id
])
def test_increment_producer_epoch(epoch: int, last: int, expected: int | None,
                                  result: tuple[int, int] | ErrorCode) -> None:
    m = meta(S.COMPLETE_COMMIT, epoch, last)
    out = m.prepare_increment_producer_epoch(30_000, expected, 10)
    if isinstance(result, ErrorCode):
        assert out == result and m.pending_state is None
    else:
        assert not isinstance(out, ErrorCode)
        assert (out.producer_epoch, out.last_producer_epoch, out.state, out.timeout_ms) == (*result, S.EMPTY, 30_000)


def test_exhausted_epoch_rotates_the_producer_id() -> None:
    m = meta(S.EMPTY, MAX_EPOCH - 1)
    assert m.epoch_exhausted
    with pytest.raises(IllegalTransition):
        m.prepare_increment_producer_epoch(1000, None, 1)
    t = m.prepare_producer_id_rotation(99, 1000, 1, record_last_epoch=True)
    assert (t.producer_id, t.last_producer_id, t.producer_epoch, t.last_producer_epoch) == (99, 7, 0, MAX_EPOCH - 1)


def test_fence_bumps_once_even_after_a_failed_fence() -> None:
    m = meta(S.ONGOING, 5)
    assert m.prepare_fence_producer_epoch().producer_epoch == 6
    m.pending_state = None
    m.has_failed_epoch_fence = True
    assert m.prepare_fence_producer_epoch().producer_epoch == 5
    m.pending_state = None
    m.producer_epoch = MAX_EPOCH
    with pytest.raises(IllegalTransition):
        m.prepare_fence_producer_epoch()


def test_complete_clears_partitions_and_the_failed_fence() -> None:
    m = meta(S.PREPARE_ABORT)
    m.has_failed_epoch_fence = True
    t = m.prepare_complete(50)
    assert (t.state, t.partitions, m.has_failed_epoch_fence) == (S.COMPLETE_ABORT, frozenset(), False)
    m.complete_transition(t)
    assert m.state == S.COMPLETE_ABORT and not m.partitions
