"""A transactional id's state: Kafka's ``TransactionState`` and ``TransactionMetadata``.

Every change goes through a *transit*: ``prepare_*`` validates the move and marks it
pending (no other change may start meanwhile), the coordinator writes the transit to
``__transaction_state``, and :meth:`TransactionMetadata.complete_transition` applies it
once the write succeeded (or the pending mark is dropped when it failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
#: Short.MaxValue: the highest epoch a producer id can carry.
MAX_EPOCH = 2**15 - 1


class TransactionState(IntEnum):
    """States with Kafka's ids (the ``TransactionStatus`` byte of the log value)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name DescribeTransactions and ListTransactions use (``CompleteCommit``...)."""
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        """The state Kafka calls ``name``, or None for an unknown name."""
        return _BY_NAME.get(name)

    @property
    def valid_previous(self) -> frozenset[TransactionState]:
        """The states this one may be entered from."""
        return _VALID_PREVIOUS[self]

    @property
    def expiration_allowed(self) -> bool:
        """Whether an idle transactional id in this state may be expired."""
        return self in (TransactionState.EMPTY, TransactionState.COMPLETE_COMMIT, TransactionState.COMPLETE_ABORT)


S = TransactionState
_NAMES = {S.EMPTY: "Empty", S.ONGOING: "Ongoing", S.PREPARE_COMMIT: "PrepareCommit",
          S.PREPARE_ABORT: "PrepareAbort", S.COMPLETE_COMMIT: "CompleteCommit",
          S.COMPLETE_ABORT: "CompleteAbort", S.DEAD: "Dead", S.PREPARE_EPOCH_FENCE: "PrepareEpochFence"}
_BY_NAME = {v: k for k, v in _NAMES.items()}
_VALID_PREVIOUS: dict[TransactionState, frozenset[TransactionState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    # Empty and Complete* lead here only with transaction version 2 (an abort without partitions).
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


class IllegalTransition(Exception):
    """A transition Kafka's state machine forbids; a coordinator bug, never a client error."""


@dataclass(frozen=True, slots=True)
class TxnTransitMetadata:
    """What a transactional id becomes once a pending transition is written (Kafka's ``TxnTransitMetadata``)."""

    producer_id: int
    last_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: TransactionState
    partitions: frozenset[TopicPartition]
    start_timestamp: int
    last_update_timestamp: int


class TransactionMetadata:
    """The coordinator's view of one transactional id."""

    def __init__(self, transactional_id: str, producer_id: int, last_producer_id: int, producer_epoch: int,
                 last_producer_epoch: int, timeout_ms: int, state: TransactionState,
                 partitions: set[TopicPartition] | None = None, start_timestamp: int = -1,
                 last_update_timestamp: int = -1) -> None:
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.last_producer_id = last_producer_id
        self.producer_epoch = producer_epoch
        self.last_producer_epoch = last_producer_epoch
        self.timeout_ms = timeout_ms
        self.state = state
        self.partitions: set[TopicPartition] = set(partitions or ())
        self.start_timestamp = start_timestamp
        self.last_update_timestamp = last_update_timestamp
        #: The state a transition being written leads to; None when no change is in flight.
        self.pending_state: TransactionState | None = None
        #: A fencing epoch bump whose write failed: the next fence reuses the bumped epoch.
        self.has_failed_epoch_fence = False

    def __repr__(self) -> str:
        return (f"TransactionMetadata({self.transactional_id!r}, pid={self.producer_id}, epoch={self.producer_epoch}, "
                f"state={self.state.kafka_name}, pending={self.pending_state}, partitions={sorted(self.partitions)})")

    @property
    def pending_transition_in_progress(self) -> bool:
        """Whether a transition is being written (requests then get CONCURRENT_TRANSACTIONS)."""
        return self.pending_state is not None

    @property
    def epoch_exhausted(self) -> bool:
        """Kafka keeps the last epoch free for fencing: from MAX_EPOCH - 1 on, a new producer id is due."""
        return self.producer_epoch >= MAX_EPOCH - 1

    def transit(self) -> TxnTransitMetadata:
        """The current state as a transit (what loading a record yields)."""
        return TxnTransitMetadata(self.producer_id, self.last_producer_id, self.producer_epoch,
                                  self.last_producer_epoch, self.timeout_ms, self.state,
                                  frozenset(self.partitions), self.start_timestamp, self.last_update_timestamp)

    # -- preparing transitions -----------------------------------------------------------
    def _prepare(self, state: TransactionState, *, producer_id: int | None = None,
                 last_producer_id: int | None = None, producer_epoch: int | None = None,
                 last_producer_epoch: int | None = None, timeout_ms: int | None = None,
                 partitions: frozenset[TopicPartition] | None = None, start_timestamp: int | None = None,
                 update_timestamp: int | None = None) -> TxnTransitMetadata:
        if self.pending_state is not None:
            raise IllegalTransition(f"{self.transactional_id}: transition to {state.kafka_name} while "
                                    f"{self.pending_state.kafka_name} is pending")
        epoch = self.producer_epoch if producer_epoch is None else producer_epoch
        last_epoch = self.last_producer_epoch if last_producer_epoch is None else last_producer_epoch
        # An id whose first InitProducerId failed to be written still has no epoch; it may only expire.
        if (epoch < 0 and state != TransactionState.DEAD) or last_epoch < NO_PRODUCER_EPOCH:
            raise IllegalTransition(f"{self.transactional_id}: invalid epochs {epoch}/{last_epoch}")
        if self.state not in state.valid_previous:
            raise IllegalTransition(f"{self.transactional_id}: {self.state.kafka_name} -> {state.kafka_name}")
        self.pending_state = state
        return TxnTransitMetadata(
            self.producer_id if producer_id is None else producer_id,
            self.last_producer_id if last_producer_id is None else last_producer_id,
            epoch, last_epoch, self.timeout_ms if timeout_ms is None else timeout_ms, state,
            frozenset(self.partitions) if partitions is None else partitions,
            self.start_timestamp if start_timestamp is None else start_timestamp,
            self.last_update_timestamp if update_timestamp is None else update_timestamp)

    def prepare_increment_producer_epoch(self, timeout_ms: int, expected_epoch: int | None,
                                         now: int) -> TxnTransitMetadata | ErrorCode:
        """InitProducerId on an idle id: the next epoch, or a retry's same epoch (KIP-360), or PRODUCER_FENCED."""
        if self.epoch_exhausted:
            raise IllegalTransition(f"{self.transactional_id}: cannot bump exhausted epoch {self.producer_epoch}")
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last_epoch = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last_epoch = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            # A retry of a bump whose answer was lost: hand out the current epoch again.
            epoch, last_epoch = self.producer_epoch, self.last_producer_epoch
        else:
            return ErrorCode.PRODUCER_FENCED
        return self._prepare(TransactionState.EMPTY, producer_epoch=epoch, last_producer_epoch=last_epoch,
                             timeout_ms=timeout_ms, partitions=frozenset(), start_timestamp=-1,
                             update_timestamp=now)

    def prepare_producer_id_rotation(self, new_producer_id: int, timeout_ms: int, now: int,
                                     record_last_epoch: bool) -> TxnTransitMetadata:
        """A new producer id at epoch 0 once the epoch is exhausted."""
        return self._prepare(TransactionState.EMPTY, producer_id=new_producer_id, last_producer_id=self.producer_id,
                             producer_epoch=0,
                             last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
                             timeout_ms=timeout_ms, partitions=frozenset(), start_timestamp=-1, update_timestamp=now)

    def prepare_fence_producer_epoch(self) -> TxnTransitMetadata:
        """Bump the epoch of an ongoing transaction so that it can be aborted under the new one."""
        if self.producer_epoch == MAX_EPOCH:
            raise IllegalTransition(f"{self.transactional_id}: cannot fence epoch {self.producer_epoch}")
        # A fence whose write failed already bumped the epoch in memory: do not bump twice.
        epoch = self.producer_epoch if self.has_failed_epoch_fence else self.producer_epoch + 1
        return self._prepare(TransactionState.PREPARE_EPOCH_FENCE, producer_epoch=epoch,
                             last_producer_epoch=NO_PRODUCER_EPOCH)

    def prepare_add_partitions(self, added: set[TopicPartition], now: int) -> TxnTransitMetadata:
        """Ongoing with ``added`` partitions too; a new transaction starts its clock now."""
        idle = self.state in (TransactionState.EMPTY, TransactionState.COMPLETE_ABORT, TransactionState.COMPLETE_COMMIT)
        return self._prepare(TransactionState.ONGOING, partitions=frozenset(self.partitions | added),
                             start_timestamp=now if idle else self.start_timestamp, update_timestamp=now)

    def prepare_abort_or_commit(self, state: TransactionState, now: int) -> TxnTransitMetadata:
        """PrepareCommit or PrepareAbort."""
        return self._prepare(state, update_timestamp=now)

    def prepare_complete(self, now: int) -> TxnTransitMetadata:
        """CompleteCommit or CompleteAbort, once every marker is written."""
        state = (TransactionState.COMPLETE_COMMIT if self.state == TransactionState.PREPARE_COMMIT
                 else TransactionState.COMPLETE_ABORT)
        # The prepare state reached the log: a failed fence is behind us.
        self.has_failed_epoch_fence = False
        return self._prepare(state, partitions=frozenset(), update_timestamp=now)

    def prepare_dead(self) -> TxnTransitMetadata:
        """The expiring id's tombstone."""
        return self._prepare(TransactionState.DEAD, partitions=frozenset())

    # -- completing ----------------------------------------------------------------------
    def complete_transition(self, transit: TxnTransitMetadata) -> None:
        """Apply ``transit`` after it was written; it must be the pending one."""
        if self.pending_state != transit.state:
            raise IllegalTransition(f"{self.transactional_id}: completing {transit.state.kafka_name} but "
                                    f"{self.pending_state} is pending")
        same_producer = (S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
        if transit.state in same_producer and (transit.producer_id, transit.producer_epoch) != (
                self.producer_id, self.producer_epoch):
            raise IllegalTransition(f"{self.transactional_id}: producer changed under {transit}")
        self.producer_id = transit.producer_id
        self.last_producer_id = transit.last_producer_id
        self.producer_epoch = transit.producer_epoch
        self.last_producer_epoch = transit.last_producer_epoch
        self.timeout_ms = transit.timeout_ms
        self.state = transit.state
        self.partitions = set(transit.partitions)
        self.start_timestamp = transit.start_timestamp
        self.last_update_timestamp = transit.last_update_timestamp
        self.pending_state = None

    @classmethod
    def from_transit(cls, transactional_id: str, t: TxnTransitMetadata) -> TransactionMetadata:
        """The metadata a ``__transaction_state`` record describes."""
        return cls(transactional_id, t.producer_id, t.last_producer_id, t.producer_epoch, t.last_producer_epoch,
                   t.timeout_ms, t.state, set(t.partitions), t.start_timestamp, t.last_update_timestamp)
