"""The transaction coordinator (Kafka's TransactionCoordinator, TransactionStateManager and
TransactionMarkerChannelManager, for transaction version 1 clients).

A single broker leads every ``__transaction_state`` partition, so it coordinates every
transactional id and loads them all at start. In a cluster the coordinator serves the
ids of the partitions this broker leads: it is told of leadership changes
(:meth:`TransactionCoordinator.on_partitions_changed`), loads a partition when it becomes
its leader (COORDINATOR_LOAD_IN_PROGRESS for its ids meanwhile), drops its ids when it
loses it (NOT_COORDINATOR from then on), and writes markers with the partition's leader
epoch as coordinator epoch, so that the partitions' leaders refuse (TRANSACTION_COORDINATOR_FENCED)
the markers of a coordinator that has been replaced. State changes are written to that topic before they take effect;
ending a transaction writes PrepareCommit/PrepareAbort, answers the client, writes the
markers to every partition of the transaction through the :data:`WriteMarkers` seam
(retrying retriable failures) and then writes CompleteCommit/CompleteAbort.

Everything runs on the event loop: a check and the pending mark it leads to happen
with no await in between, which is what Kafka's per-id lock gives it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from kbroker.clock import Clock
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition, partition_for, start_guarded
from kbroker.config import ConfigHolder
from kbroker.metadata.model import PartitionInfo, leadership_changes
from kbroker.txn.log import TRANSACTION_STATE, KeyValue, TransactionLog
from kbroker.txn.markers import TxnMarker, WriteMarkers
from kbroker.txn.producer_ids import ProducerIdManager, ProducerIdsUnavailable
from kbroker.txn.records import TransactionRecordError, decode_key, decode_value, encode_key, encode_value
from kbroker.txn.state import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    IllegalTransition,
    TransactionMetadata,
    TransactionState,
    TxnTransitMetadata,
)

log = logging.getLogger(__name__)

S = TransactionState
TRANSACTION_TIMEOUT_MS = "transaction.max.timeout.ms"
ABORT_INTERVAL_MS = "transaction.abort.timed.out.transaction.cleanup.interval.ms"
EXPIRATION_MS = "transactional.id.expiration.ms"
EXPIRATION_INTERVAL_MS = "transaction.remove.expired.transaction.cleanup.interval.ms"
#: A single broker leads every state partition from its first start: one coordinator epoch.
COORDINATOR_EPOCH = 0
#: Pause before resending markers or the completion record after a retriable failure.
RETRY_BACKOFF_S = 0.1
INVALID_REGULAR_EXPRESSION = ErrorCode.INVALID_REGULAR_EXPRESSION
#: Matching time one ListTransactions pattern may take over all transactional ids: a
#: backtracking pattern must not hold up the event loop (the regex module can stop a match).
PATTERN_BUDGET_S = 0.05
#: Largest size a ListTransactions pattern may have once its bounded repetitions are
#: multiplied out: the regex module unrolls them when compiling, so ``(?:x{65535}){65535}``
#: (19 bytes) would take gigabytes before any matching budget applies.
MAX_PATTERN_SIZE = 100_000
_REPEAT = re.compile(r"\{([0-9]*)(?:,([0-9]*))?\}")

#: Marker errors that are retried (Kafka's TransactionMarkerRequestCompletionHandler).
_RETRIABLE_MARKER_ERRORS = frozenset({
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT, ErrorCode.KAFKA_STORAGE_ERROR,
})
#: Marker errors after which the coordinator stops: a newer coordinator or producer owns the partition.
_FENCED_MARKER_ERRORS = frozenset({ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED})
#: The partition's broker cannot take markers: it is dropped from the transaction.
_UNSUPPORTED_MARKER_ERRORS = frozenset({ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT, ErrorCode.UNSUPPORTED_VERSION})


def _latest(records: Iterable[KeyValue]) -> list[KeyValue]:
    """Each key's last record, folded while reading: nothing compacts ``__transaction_state``,
    so holding its whole history would take memory in proportion to every transaction ever run."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        latest[bytes(key)] = None if value is None else bytes(value)
    return list(latest.items())


def _expanded_size(pattern: str) -> int:
    """An upper bound of ``pattern``'s size once the regex module's compiler has unrolled its
    bounded repetitions (``{m}``, ``{m,n}``, ``{m,}``): its length times the product of all
    repetition counts, whatever the nesting. Verbose mode allows whitespace and comments
    inside the braces, even between digits (``{3 #c<newline>0}`` is 30), so for a pattern
    with whitespace or ``#`` every digit after its first ``{`` counts as a factor of 10."""
    if "#" in pattern or any(c.isspace() for c in pattern):
        brace = pattern.find("{")
        digits = 0 if brace < 0 else sum(c in "0123456789" for c in pattern[brace:])
        return len(pattern) * 10 ** min(digits, 9)
    size = len(pattern)
    for m in _REPEAT.finditer(pattern):
        for count in m.groups():
            if size > MAX_PATTERN_SIZE:
                return size
            if count:  # a run too long for int() (Python limits digits) is over the bound anyway
                size *= max(int(count), 1) if len(count) <= 18 else MAX_PATTERN_SIZE + 1
    return size


@dataclass(eq=False)
class _OwnedPartition:
    """A ``__transaction_state`` partition this broker leads (cluster mode)."""

    #: The partition's leader epoch: the coordinator epoch its markers carry.
    epoch: int
    loaded: bool = False


@dataclass(frozen=True)
class TransactionDescription:
    """One DescribeTransactions entry (an entry with an error carries Kafka's zero defaults)."""

    transactional_id: str
    error: ErrorCode
    state: str = ""
    timeout_ms: int = 0
    start_time_ms: int = 0
    producer_id: int = 0
    producer_epoch: int = 0
    partitions: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TransactionListing:
    """One ListTransactions entry."""

    transactional_id: str
    producer_id: int
    state: str


#: Verification by another broker's coordinator: (transactional id, producer id, producer epoch,
#: ``__transaction_state`` partition, partitions) -> each partition's error.
RemoteVerify = Callable[[str, int, int, int, Sequence[TopicPartition]], Awaitable[dict[TopicPartition, ErrorCode]]]


class TransactionCoordinator:
    """Serves InitProducerId (transactional), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
    DescribeTransactions and ListTransactions, and verifies transactional produce."""

    def __init__(self, config: ConfigHolder, clock: Clock, producer_ids: ProducerIdManager, log: TransactionLog,
                 write_markers: WriteMarkers, *, offsets_partition: Callable[[str], int],
                 partition_exists: Callable[[TopicPartition], bool], node_id: int = -1,
                 clustered: bool = False) -> None:
        """``offsets_partition`` maps a group id to its ``__consumer_offsets`` partition;
        ``partition_exists`` tells markers for deleted partitions from retriable failures.
        ``clustered``: serve only the partitions :meth:`on_partitions_changed` says broker
        ``node_id`` leads, instead of loading every partition at start."""
        self._configs = config
        self.clock = clock
        self.producer_ids = producer_ids
        self.log = log
        self._write_markers = write_markers
        self._offsets_partition = offsets_partition
        self._partition_exists = partition_exists
        self.transactions: dict[str, TransactionMetadata] = {}
        self._tg: TaskGroup | None = None
        self._loaded = False
        self._stopped = False
        self.node_id = node_id
        self.clustered = clustered
        #: Cluster mode: the state partitions this broker leads (loading or loaded).
        self._owned: dict[int, _OwnedPartition] = {}
        #: Cluster mode: KIP-890 verification with the coordinator on another broker
        #: (transactional id, producer id, epoch, state partition, partitions -> errors).
        self.verify_elsewhere: RemoteVerify | None = None

    # ------------------------------------------------------------------ settings
    def _setting(self, key: str) -> int:
        return int(self._configs.current.get(key))

    def valid_timeout(self, timeout_ms: int) -> bool:
        """Kafka's check: positive and at most ``transaction.max.timeout.ms``."""
        return 0 < timeout_ms <= self._setting(TRANSACTION_TIMEOUT_MS)

    def partition_for(self, transactional_id: str) -> int:
        """The ``__transaction_state`` partition of ``transactional_id``."""
        return partition_for(transactional_id, self.log.num_partitions)

    def coordinates_elsewhere(self, transactional_id: str) -> bool:
        """Cluster mode: whether another broker coordinates ``transactional_id`` (this one does
        not lead its ``__transaction_state`` partition), so only that broker can verify it."""
        return self.clustered and self.partition_for(transactional_id) not in self._owned

    async def verify_partitions_anywhere(self, transactional_id: str, producer_id: int, producer_epoch: int,
                                         partitions: Collection[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """:meth:`verify_partitions` by whichever broker coordinates ``transactional_id``: this one
        (synchronously), or another through :attr:`verify_elsewhere` (Kafka's AddPartitionsToTxnManager)."""
        if not self.coordinates_elsewhere(transactional_id) or self.verify_elsewhere is None:
            return self.verify_partitions(transactional_id, producer_id, producer_epoch, partitions)
        if not transactional_id:
            return dict.fromkeys(partitions, ErrorCode.INVALID_REQUEST)
        return await self.verify_elsewhere(transactional_id, producer_id, producer_epoch,
                                           self.partition_for(transactional_id), list(partitions))

    # ------------------------------------------------------------------ lifecycle
    async def start(self, tg: TaskGroup) -> None:
        """Load ``__transaction_state`` in a worker thread and start the timers; requests get
        COORDINATOR_LOAD_IN_PROGRESS until loading is done."""
        self._tg = tg
        if self.clustered:
            # Only the partitions this broker is told it leads are loaded.
            self._loaded = True
            self._start_timers()
            for partition, owned in self._owned.items():  # elected before the start
                self._spawn(self._load_partition, partition, owned)
            return
        start_guarded(tg, log, "transaction coordinator", self._load_and_run)

    async def shutdown(self) -> None:
        """Stop serving; requests get NOT_COORDINATOR and marker retries stop."""
        self._stopped = True

    @property
    def active(self) -> bool:
        """Whether requests are being served."""
        return self._loaded and not self._stopped

    @property
    def loaded(self) -> bool:
        """Whether the state topic has been read."""
        return self._loaded

    def ensure_state_topic(self) -> bool:
        """Create ``__transaction_state`` if missing (FindCoordinator does, as Kafka's does)."""
        return self.log.ensure()

    def _not_ready(self, transactional_id: str) -> ErrorCode | None:
        """The error a request for ``transactional_id`` gets here, or None when it is served."""
        if self._stopped:
            return ErrorCode.NOT_COORDINATOR
        if not self._loaded:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if self.clustered:
            owned = self._owned.get(self.partition_for(transactional_id))
            if owned is None:
                return ErrorCode.NOT_COORDINATOR
            if not owned.loaded:
                return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return None

    def coordinator_epoch(self, transactional_id: str) -> int | None:
        """The coordinator epoch of ``transactional_id``'s partition here; None when not served."""
        if not self.clustered:
            return COORDINATOR_EPOCH
        owned = self._owned.get(self.partition_for(transactional_id))
        return owned.epoch if owned is not None else None

    def _owns(self, txn: TransactionMetadata) -> bool:
        """Whether ``txn`` is still this coordinator's (not unloaded, reloaded or expired)."""
        return not self._stopped and self.transactions.get(txn.transactional_id) is txn

    # ------------------------------------------------------------------ partition leadership (cluster)
    def on_partitions_changed(self, changes: Sequence[tuple[PartitionInfo | None, PartitionInfo | None]]) -> None:
        """Leadership changes of this broker's replicas: load the ``__transaction_state``
        partitions it now leads, unload those it no longer leads (Kafka's onElection /
        onResignation). Sync, on the event loop; loading runs in a worker thread."""
        if not self.clustered or self._stopped:
            return
        for partition, epoch in leadership_changes(changes, TRANSACTION_STATE, self.node_id):
            if epoch is None:
                self._resign(partition)
            else:
                self._elect(partition, epoch)

    def _elect(self, partition: int, epoch: int) -> None:
        owned = self._owned.get(partition)
        if owned is not None:
            if epoch <= owned.epoch:
                return  # e.g. only the ISR changed
            # A new leader epoch (leadership lost and regained in between, maybe unseen):
            # what is in memory may be stale, so reload under the new epoch (as Kafka).
            self._resign(partition)
        log.info("elected transaction coordinator for %s-%d at epoch %d; loading", TRANSACTION_STATE,
                 partition, epoch)
        owned = self._owned[partition] = _OwnedPartition(epoch)
        if self._tg is not None:  # else start() loads it (the metadata may speak first)
            self._spawn(self._load_partition, partition, owned)

    def _resign(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        if owned is None:
            return
        gone = [t for t in self.transactions if self.partition_for(t) == partition]
        for txn_id in gone:
            # Writes under way answer NOT_COORDINATOR; marker senders and timers stop (see _owns).
            del self.transactions[txn_id]
        log.info("resigned as transaction coordinator for %s-%d (epoch %d); unloaded %d transactional ids",
                 TRANSACTION_STATE, partition, owned.epoch, len(gone))

    async def _load_partition(self, partition: int, owned: _OwnedPartition) -> None:
        try:
            records = await anyio.to_thread.run_sync(
                lambda: _latest(self.log.replay(partition)) if self.log.exists() else [], abandon_on_cancel=True)
        except Exception:
            log.exception("loading %s-%d failed", TRANSACTION_STATE, partition)
            if self._owned.get(partition) is owned:
                del self._owned[partition]  # NOT_COORDINATOR: clients look for the coordinator again
            return
        if self._owned.get(partition) is not owned or self._stopped:
            return  # resigned (or re-elected) while reading
        self._install([records])
        owned.loaded = True
        log.info("loaded %s-%d at coordinator epoch %d", TRANSACTION_STATE, partition, owned.epoch)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._tg is not None, "coordinator not started"
        start_guarded(self._tg, log, "transaction coordinator", fn, *args)

    async def _load_and_run(self) -> None:
        records: list[list[KeyValue]] = []
        if self.log.exists():
            n = self.log.num_partitions
            records = await anyio.to_thread.run_sync(
                lambda: [_latest(self.log.replay(p)) for p in range(n)], abandon_on_cancel=True)
        self._install(records)
        self._loaded = True
        self._start_timers()

    def _start_timers(self) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._every, ABORT_INTERVAL_MS, self.abort_timed_out_transactions)
        self._tg.start_soon(self._every, EXPIRATION_INTERVAL_MS, self.expire_transactional_ids)

    def _install(self, partitions: Iterable[list[KeyValue]]) -> None:
        loaded: dict[str, TxnTransitMetadata] = {}
        for records in partitions:
            for key, value in records:
                try:
                    txn_id = decode_key(key)
                    if value is None:
                        loaded.pop(txn_id, None)
                    else:
                        loaded[txn_id] = decode_value(value)
                except (TransactionRecordError, UnicodeDecodeError) as e:
                    log.error("skipping unreadable %s record: %s", "__transaction_state", e)
        now = self.clock.time_ms()
        for txn_id, transit in loaded.items():
            txn = TransactionMetadata.from_transit(txn_id, transit)
            self.transactions[txn_id] = txn
            if txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                # The client was answered but the markers may not all be written: finish the job.
                complete = txn.prepare_complete(now)
                self._spawn(self._send_markers, txn, complete, txn.state == S.PREPARE_COMMIT)
        if loaded:
            log.info("loaded %d transactional ids from __transaction_state", len(loaded))

    async def _every(self, key: str, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        while not self._stopped:
            await self.clock.sleep(self._setting(key) / 1000)  # a manual clock's advance() wakes it
            if self._stopped:
                return
            try:
                await fn()
            except Exception:
                log.exception("transaction coordinator timer %s failed", key)

    # ------------------------------------------------------------------ writing state
    async def _append(self, txn: TransactionMetadata, transit: TxnTransitMetadata) -> ErrorCode:
        """Write ``transit`` and apply it; on failure drop the pending mark and say why."""
        value = None if transit.state == S.DEAD else encode_value(transit)
        error = await self.log.append(self.partition_for(txn.transactional_id),
                                      encode_key(txn.transactional_id), value)
        if self.transactions.get(txn.transactional_id) is not txn:
            return ErrorCode.NOT_COORDINATOR
        if error != ErrorCode.NONE:
            if txn.pending_state == transit.state:
                txn.pending_state = None
            log.info("writing %s of %r failed: %s", transit.state.kafka_name, txn.transactional_id, error.name)
            return error
        txn.complete_transition(transit)
        return ErrorCode.NONE

    # ------------------------------------------------------------------ InitProducerId
    async def init_producer_id(self, transactional_id: str, timeout_ms: int, producer_id: int = NO_PRODUCER_ID,
                               producer_epoch: int = NO_PRODUCER_EPOCH) -> tuple[ErrorCode, int, int]:
        """``(error, producer id, epoch)`` for a transactional producer."""
        def fail(error: ErrorCode) -> tuple[ErrorCode, int, int]:
            return error, NO_PRODUCER_ID, NO_PRODUCER_EPOCH

        if not transactional_id:
            return fail(ErrorCode.INVALID_REQUEST)
        if not self.valid_timeout(timeout_ms):
            return fail(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
            return fail(ErrorCode.INVALID_REQUEST)
        try:
            await self.producer_ids.ready()  # may fetch a block (cluster); nothing below awaits before allocating
        except ProducerIdsUnavailable as e:
            log.warning("no producer id for %r yet: %s", transactional_id, e)
            return fail(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        if (not_ready := self._not_ready(transactional_id)) is not None:
            return fail(not_ready)
        expected = None if producer_id == NO_PRODUCER_ID else (producer_id, producer_epoch)
        txn = self.transactions.get(transactional_id)
        if txn is None:
            txn = TransactionMetadata(transactional_id, self.producer_ids.generate_producer_id(), NO_PRODUCER_ID,
                                      NO_PRODUCER_EPOCH, NO_PRODUCER_EPOCH, timeout_ms, S.EMPTY, set(),
                                      -1, self.clock.time_ms())
            self.transactions[transactional_id] = txn
        result = self._prepare_init(txn, timeout_ms, expected)
        if isinstance(result, ErrorCode):
            return fail(result)
        if result.state == S.PREPARE_EPOCH_FENCE:
            # Abort the old producer's transaction first; the client retries and then gets its epoch.
            error = await self._end_transaction(txn, result.producer_id, result.producer_epoch, False,
                                                from_client=False)
            return fail(ErrorCode.CONCURRENT_TRANSACTIONS if error == ErrorCode.NONE else error)
        error = await self._append(txn, result)
        if error != ErrorCode.NONE:
            return fail(error)
        log.info("initialized transactional id %r with producer id %d and epoch %d on partition "
                 "__transaction_state-%d", transactional_id, result.producer_id, result.producer_epoch,
                 self.partition_for(transactional_id))
        return ErrorCode.NONE, result.producer_id, result.producer_epoch

    def _prepare_init(self, txn: TransactionMetadata, timeout_ms: int,
                      expected: tuple[int, int] | None) -> TxnTransitMetadata | ErrorCode:
        if txn.pending_transition_in_progress:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if expected is not None:
            pid, epoch = expected
            # Fenced unless the id is brand new, names the current producer id, or retries a
            # producer id rotation whose answer was lost.
            valid = (txn.producer_epoch == NO_PRODUCER_EPOCH or pid == txn.producer_id
                     or (pid == txn.last_producer_id and epoch >= 2**15 - 2))
            if not valid:
                return ErrorCode.PRODUCER_FENCED
        if txn.state in (S.PREPARE_ABORT, S.PREPARE_COMMIT):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        now = self.clock.time_ms()
        if txn.state in (S.COMPLETE_ABORT, S.COMPLETE_COMMIT, S.EMPTY):
            if txn.epoch_exhausted and (expected is None or expected[1] == txn.producer_epoch):
                return txn.prepare_producer_id_rotation(self.producer_ids.generate_producer_id(), timeout_ms, now,
                                                        expected is not None)
            return txn.prepare_increment_producer_epoch(timeout_ms, None if expected is None else expected[1], now)
        if txn.state == S.ONGOING:
            # The bumped epoch is never handed out: the client retries after the abort, bumping again.
            return txn.prepare_fence_producer_epoch()
        raise IllegalTransition(f"found {txn!r} in a state it should never be in")

    # ------------------------------------------------------------------ AddPartitionsToTxn
    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: Collection[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """Add ``partitions`` to the ongoing transaction; one error for them all, as Kafka."""
        error = await self._add_partitions(transactional_id, producer_id, producer_epoch, set(partitions))
        return {tp: error for tp in partitions}

    async def _add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                              partitions: set[TopicPartition]) -> ErrorCode:
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        if (not_ready := self._not_ready(transactional_id)) is not None:
            return not_ready
        txn = self.transactions.get(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if txn.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if txn.pending_transition_in_progress or txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if txn.state == S.ONGOING and partitions <= txn.partitions:
            return ErrorCode.NONE
        transit = txn.prepare_add_partitions(partitions, self.clock.time_ms())
        return await self._append(txn, transit)

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: Collection[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        """Whether each partition is in the producer's ongoing transaction (KIP-890 verification).

        Synchronous, so that a produce can verify and append without yielding in between.
        A partition not in the transaction gets TRANSACTION_ABORTABLE, as Kafka.
        """
        def every(error: ErrorCode) -> dict[TopicPartition, ErrorCode]:
            return {tp: error for tp in partitions}

        if not transactional_id:
            return every(ErrorCode.INVALID_REQUEST)
        if (not_ready := self._not_ready(transactional_id)) is not None:
            return every(not_ready)
        txn = self.transactions.get(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            return every(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if txn.producer_epoch != producer_epoch:
            return every(ErrorCode.PRODUCER_FENCED)
        if txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            return every(ErrorCode.CONCURRENT_TRANSACTIONS)
        return {tp: ErrorCode.NONE if tp in txn.partitions else ErrorCode.TRANSACTION_ABORTABLE for tp in partitions}

    async def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          group_id: str) -> ErrorCode:
        """Add the group's ``__consumer_offsets`` partition to the transaction (AddOffsetsToTxn)."""
        tp = TopicPartition("__consumer_offsets", self._offsets_partition(group_id))
        return await self._add_partitions(transactional_id, producer_id, producer_epoch, {tp})

    # ------------------------------------------------------------------ EndTxn
    async def end_transaction(self, transactional_id: str, producer_id: int, producer_epoch: int,
                              commit: bool) -> ErrorCode:
        """Commit or abort the producer's transaction (EndTxn)."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        if (not_ready := self._not_ready(transactional_id)) is not None:
            return not_ready
        txn = self.transactions.get(transactional_id)
        if txn is None:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        return await self._end_transaction(txn, producer_id, producer_epoch, commit, from_client=True)

    async def _end_transaction(self, txn: TransactionMetadata, producer_id: int, producer_epoch: int,
                               commit: bool, *, from_client: bool) -> ErrorCode:
        txn_id = txn.transactional_id
        if txn.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        # Clients must name the current epoch; the coordinator's own aborts may name a bumped one.
        if (from_client and producer_epoch != txn.producer_epoch) or producer_epoch < txn.producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if txn.pending_transition_in_progress and txn.pending_state != S.PREPARE_EPOCH_FENCE:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        state = txn.state
        epoch_fence = False
        if state == S.ONGOING:
            if not commit and txn.pending_state == S.PREPARE_EPOCH_FENCE:
                # Take the fencing epoch now; the PrepareAbort written next carries it.
                epoch_fence = True
                txn.pending_state = None
                txn.producer_epoch = producer_epoch
                txn.last_producer_epoch = NO_PRODUCER_EPOCH
            transit = txn.prepare_abort_or_commit(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT,
                                                  self.clock.time_ms())
        elif state == S.COMPLETE_COMMIT:
            return ErrorCode.NONE if commit else self._invalid_state(txn, commit)
        elif state == S.COMPLETE_ABORT:
            return ErrorCode.NONE if not commit else self._invalid_state(txn, commit)
        elif state == S.PREPARE_COMMIT:
            return ErrorCode.CONCURRENT_TRANSACTIONS if commit else self._invalid_state(txn, commit)
        elif state == S.PREPARE_ABORT:
            return ErrorCode.CONCURRENT_TRANSACTIONS if not commit else self._invalid_state(txn, commit)
        elif state == S.EMPTY:
            return self._invalid_state(txn, commit)
        else:
            raise IllegalTransition(f"found {txn!r} in a state it should never be in")

        error = await self._append(txn, transit)
        if error != ErrorCode.NONE:
            if epoch_fence and self.transactions.get(txn_id) is txn:
                # The epoch was bumped in memory but never written: the next fence reuses it.
                txn.has_failed_epoch_fence = True
                log.warning("writing the epoch fence of %r failed with %s; epoch %d was not handed out",
                            txn_id, error.name, txn.producer_epoch)
            return error
        # Re-check: the write yielded to the event loop.
        if txn.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if txn.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if txn.pending_transition_in_progress:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        expected = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
        if txn.state != expected:
            return self._invalid_state(txn, commit)
        complete = txn.prepare_complete(self.clock.time_ms())
        self._spawn(self._send_markers, txn, complete, commit)
        return ErrorCode.NONE

    @staticmethod
    def _invalid_state(txn: TransactionMetadata, commit: bool) -> ErrorCode:
        log.debug("transactional id %r is %s but was asked to %s", txn.transactional_id, txn.state.kafka_name,
                  "commit" if commit else "abort")
        return ErrorCode.INVALID_TXN_STATE

    # ------------------------------------------------------------------ markers
    async def _send_markers(self, txn: TransactionMetadata, complete: TxnTransitMetadata, commit: bool) -> None:
        """Write the markers of ``txn``'s partitions, then its Complete* state."""
        result = "COMMIT" if commit else "ABORT"
        while txn.partitions and self._owns(txn):
            for tp in [tp for tp in txn.partitions if not self._partition_exists(tp)]:
                log.info("dropping %s marker of %r for %s: the partition no longer exists",
                         result, txn.transactional_id, tp)
                txn.partitions.discard(tp)
            if not txn.partitions:
                break
            coordinator_epoch = self.coordinator_epoch(txn.transactional_id)
            if coordinator_epoch is None:
                return  # no longer this coordinator's partition
            marker = TxnMarker(txn.producer_id, txn.producer_epoch, coordinator_epoch, commit,
                               tuple(sorted(txn.partitions)))
            try:
                outcome = (await self._write_markers([marker]))[0]
            except Exception:
                log.exception("writing %s markers of %r failed; retrying", result, txn.transactional_id)
                outcome = {}
            for tp, code in outcome.items():
                if code == ErrorCode.NONE or code in _UNSUPPORTED_MARKER_ERRORS:
                    txn.partitions.discard(tp)
                elif code in _FENCED_MARKER_ERRORS:
                    # As Kafka: stop; the transaction stays prepared until the state is reloaded.
                    log.error("%s marker of %r for %s was refused with %s; not completing the transaction",
                              result, txn.transactional_id, tp, ErrorCode(code).name)
                    return
                elif code not in _RETRIABLE_MARKER_ERRORS:
                    log.error("%s marker of %r for %s failed with unexpected error %s; retrying",
                              result, txn.transactional_id, tp, code)
            if txn.partitions:
                await anyio.sleep(RETRY_BACKOFF_S)
        if txn.partitions:
            return  # stopped or unloaded: the next coordinator finishes from the prepared state
        while self._owns(txn):
            error = await self._append(txn, complete)
            if error == ErrorCode.NONE:
                log.debug("completed %s of %r", result, txn.transactional_id)
                return
            if self.transactions.get(txn.transactional_id) is not txn:
                return  # no longer this coordinator's to complete
            # This broker stays the coordinator, so even NOT_COORDINATOR (a storage error) is
            # transient: the pending mark was dropped by the failed write; set it again and retry.
            await anyio.sleep(RETRY_BACKOFF_S)
            if txn.pending_state is None and self.transactions.get(txn.transactional_id) is txn:
                complete = txn.prepare_complete(self.clock.time_ms())

    # ------------------------------------------------------------------ timers
    async def abort_timed_out_transactions(self) -> None:
        """Fence and abort every ongoing transaction older than its timeout."""
        now = self.clock.time_ms()
        timed_out = [txn for txn in self.transactions.values()
                     if txn.state == S.ONGOING and not txn.pending_transition_in_progress
                     and txn.start_timestamp + txn.timeout_ms < now]
        for txn in timed_out:
            if txn.state != S.ONGOING or txn.pending_transition_in_progress or not self._owns(txn):
                continue  # changed (or unloaded) while an earlier abort was written
            try:
                transit = txn.prepare_fence_producer_epoch()
            except IllegalTransition as e:  # one broken id must not keep the others from timing out
                log.error("cannot abort the timed out transaction of %r: %s", txn.transactional_id, e)
                continue
            log.info("aborting transaction of %r (producer id %d): it exceeded its %d ms timeout",
                     txn.transactional_id, txn.producer_id, txn.timeout_ms)
            error = await self._end_transaction(txn, transit.producer_id, transit.producer_epoch, False,
                                                from_client=False)
            if error not in (ErrorCode.NONE, ErrorCode.INVALID_PRODUCER_ID_MAPPING, ErrorCode.PRODUCER_FENCED,
                             ErrorCode.CONCURRENT_TRANSACTIONS):
                log.warning("rolling back the timed out transaction of %r failed: %s", txn.transactional_id,
                            error.name)

    async def expire_transactional_ids(self) -> None:
        """Tombstone every transactional id idle for ``transactional.id.expiration.ms``."""
        cutoff = self.clock.time_ms() - self._setting(EXPIRATION_MS)
        expired = [txn for txn in self.transactions.values()
                   if txn.state.expiration_allowed and not txn.pending_transition_in_progress
                   and txn.last_update_timestamp <= cutoff]
        for txn in expired:
            if not txn.state.expiration_allowed or txn.pending_transition_in_progress or not self._owns(txn):
                continue
            try:
                transit = txn.prepare_dead()
            except IllegalTransition as e:
                log.error("cannot expire transactional id %r: %s", txn.transactional_id, e)
                continue
            error = await self._append(txn, transit)
            if error == ErrorCode.NONE and self.transactions.get(txn.transactional_id) is txn:
                del self.transactions[txn.transactional_id]
                log.info("expired transactional id %r (producer id %d)", txn.transactional_id, txn.producer_id)
            elif error != ErrorCode.NONE:
                log.warning("expiring transactional id %r failed: %s", txn.transactional_id, error.name)

    # ------------------------------------------------------------------ describe / list
    def describe(self, transactional_ids: Iterable[str]) -> list[TransactionDescription]:
        """DescribeTransactions, one entry per id in request order."""
        out = []
        for txn_id in transactional_ids:
            if self._stopped or not self._loaded:
                out.append(TransactionDescription(txn_id, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
                                                  if not self._stopped else ErrorCode.COORDINATOR_NOT_AVAILABLE))
                continue
            if not txn_id:
                out.append(TransactionDescription(txn_id, ErrorCode.INVALID_REQUEST))
                continue
            if (not_ready := self._not_ready(txn_id)) is not None:
                out.append(TransactionDescription(txn_id, not_ready))  # another broker's, or loading
                continue
            txn = self.transactions.get(txn_id)
            if txn is None or txn.state == S.DEAD:
                out.append(TransactionDescription(txn_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND))
                continue
            topics: dict[str, list[int]] = {}
            for tp in sorted(txn.partitions):
                topics.setdefault(tp.topic, []).append(tp.partition)
            out.append(TransactionDescription(txn_id, ErrorCode.NONE, txn.state.kafka_name, txn.timeout_ms,
                                              txn.start_timestamp, txn.producer_id, txn.producer_epoch, topics))
        return out

    def list_transactions(self, states: Collection[str] = (), producer_ids: Collection[int] = (), duration_ms: int = -1,
             pattern: str | None = None) -> tuple[int, list[str], list[TransactionListing]]:
        """ListTransactions: ``(error, unknown state filters, matching transactions)``."""
        if self._stopped:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, [], []
        if not self._loaded or any(not owned.loaded for owned in self._owned.values()):
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, [], []
        wanted: set[TransactionState] = set()
        unknown: list[str] = []
        for name in states:
            state = TransactionState.from_name(name)
            if state is None:
                unknown.append(name)
            else:
                wanted.add(state)
        if states and not wanted:
            return ErrorCode.NONE, unknown, []  # only unknown states asked for: nothing matches
        matcher = None
        if pattern:
            import regex  # only ListTransactions with a pattern needs it; kept off start-up

            if _expanded_size(pattern) > MAX_PATTERN_SIZE:
                return INVALID_REGULAR_EXPRESSION, [], []
            try:
                matcher = regex.compile(pattern)
            except (regex.error, RecursionError, OverflowError, ValueError, MemoryError):  # deep nesting, huge repetitions
                return INVALID_REGULAR_EXPRESSION, [], []
        pids = set(producer_ids)
        now = self.clock.time_ms()
        deadline = self.clock.monotonic() + PATTERN_BUDGET_S
        out = []
        for txn in self.transactions.values():
            if txn.state == S.DEAD:
                continue  # being expired
            if pids and txn.producer_id not in pids:
                continue
            if wanted and txn.state not in wanted:
                continue
            if duration_ms >= 0 and now - txn.start_timestamp <= duration_ms:
                continue
            if matcher is not None:
                budget = deadline - self.clock.monotonic()
                try:
                    if budget <= 0:
                        raise TimeoutError
                    if not matcher.fullmatch(txn.transactional_id, timeout=budget):
                        continue
                except TimeoutError:
                    log.warning("ListTransactions pattern %r took over %.0f ms to match; refused",
                                (pattern or "")[:200], PATTERN_BUDGET_S * 1000)
                    return INVALID_REGULAR_EXPRESSION, [], []
            out.append(TransactionListing(txn.transactional_id, txn.producer_id, txn.state.kafka_name))
        return ErrorCode.NONE, unknown, out
