"""The transaction coordinator's flows and error paths, on an in-memory log and a recording marker writer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition, partition_for
from kbroker.txn.coordinator import INVALID_REGULAR_EXPRESSION
from kbroker.txn.log import KeyValue, MemoryTransactionLog
from kbroker.txn.records import decode_key, decode_value, encode_key, encode_value
from kbroker.txn.state import MAX_EPOCH, TransactionState, TxnTransitMetadata

from .coordinator_helpers import Harness, harness

pytestmark = pytest.mark.anyio
S = TransactionState
E = ErrorCode
T0, T1, U0 = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def written(h: Harness, txn_id: str = "tx") -> list[tuple[S, int, int] | None]:
    """The (state, producer id, epoch) records of ``txn_id`` in its log partition; None for a tombstone."""
    assert h.log.partitions is not None
    out: list[tuple[S, int, int] | None] = []
    for key, value in h.log.partitions[partition_for(txn_id, h.log.num_partitions)]:
        if decode_key(key) == txn_id:
            t = decode_value(value) if value is not None else None
            out.append(None if t is None else (t.state, t.producer_id, t.producer_epoch))
    return out


async def test_init_producer_id_new_then_bump(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        first = await h.coord.init_producer_id("tx", 60_000)
        second = await h.coord.init_producer_id("tx", 30_000)
        other = await h.coord.init_producer_id("other", 60_000)
        assert first[0] == second[0] == E.NONE and first[1] == second[1] != other[1]
        assert (first[2], second[2]) == (0, 1)
        assert written(h) == [(S.EMPTY, first[1], 0), (S.EMPTY, first[1], 1)]
        assert h.state().timeout_ms == 30_000


@pytest.mark.parametrize(("txn_id", "timeout", "pid", "epoch", "error"), [
    ("", 60_000, -1, -1, E.INVALID_REQUEST),
    ("tx", 0, -1, -1, E.INVALID_TRANSACTION_TIMEOUT),
    ("tx", 900_001, -1, -1, E.INVALID_TRANSACTION_TIMEOUT),
    ("tx", 60_000, 5, -1, E.INVALID_REQUEST),
    ("tx", 60_000, -1, 5, E.INVALID_REQUEST),
])
async def test_init_producer_id_refusals(tmp_path: Path, txn_id: str, timeout: int, pid: int, epoch: int,
                                         error: ErrorCode) -> None:
    async with harness(tmp_path) as h:
        assert await h.coord.init_producer_id(txn_id, timeout, pid, epoch) == (error, -1, -1)
        assert h.log.appends == 0


async def test_max_timeout_setting_is_honoured(tmp_path: Path) -> None:
    async with harness(tmp_path, transaction_max_timeout_ms=1000) as h:
        assert (await h.coord.init_producer_id("tx", 1001))[0] == E.INVALID_TRANSACTION_TIMEOUT
        assert (await h.coord.init_producer_id("tx", 1000))[0] == E.NONE


async def test_kip360_bump_retry_and_fencing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        _, pid, epoch = await h.coord.init_producer_id("tx", 60_000)
        assert await h.coord.init_producer_id("tx", 60_000, pid, epoch) == (E.NONE, pid, 1)
        # The answer was lost and the producer retries with epoch 0: same epoch again.
        assert await h.coord.init_producer_id("tx", 60_000, pid, 0) == (E.NONE, pid, 1)
        assert await h.coord.init_producer_id("tx", 60_000, pid, 1) == (E.NONE, pid, 2)
        # A zombie with an epoch older than both current and last.
        assert await h.coord.init_producer_id("tx", 60_000, pid, 0) == (E.PRODUCER_FENCED, -1, -1)
        assert await h.coord.init_producer_id("tx", 60_000, pid + 100, 2) == (E.PRODUCER_FENCED, -1, -1)


async def test_exhausted_epoch_gets_a_new_producer_id(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        _, pid, _ = await h.coord.init_producer_id("tx", 60_000)
        h.state().producer_epoch = MAX_EPOCH - 1
        error, new_pid, epoch = await h.coord.init_producer_id("tx", 60_000, pid, MAX_EPOCH - 1)
        assert (error, epoch) == (E.NONE, 0) and new_pid != pid
        assert h.state().last_producer_id == pid
        # A retry naming the old id and its exhausted epoch is not fenced (KIP-588).
        assert await h.coord.init_producer_id("tx", 60_000, pid, MAX_EPOCH - 1) == (E.NONE, new_pid, 0)


async def test_commit_writes_markers_then_completes(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0, T1)
        assert await h.coord.add_partitions("tx", pid, epoch, [U0]) == {U0: E.NONE}
        assert await h.coord.add_partitions("tx", pid, epoch, [T0]) == {T0: E.NONE}  # already in: nothing written
        assert h.state().partitions == {T0, T1, U0}
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.NONE
        await h.settle()
        assert [(m.producer_id, m.producer_epoch, m.commit, m.partitions) for m in h.markers.calls] == [
            (pid, epoch, True, (T0, T1, U0))]
        assert h.state().state == S.COMPLETE_COMMIT and not h.state().partitions
        assert [w[0] for w in written(h) if w] == [S.EMPTY, S.ONGOING, S.ONGOING, S.PREPARE_COMMIT,
                                                    S.COMPLETE_COMMIT]
        # A retried commit is answered NONE; an abort now is an invalid transition.
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.NONE
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.INVALID_TXN_STATE
        # The next transaction starts from CompleteCommit under the same epoch (transaction version 1).
        assert await h.coord.add_partitions("tx", pid, epoch, [T1]) == {T1: E.NONE}
        assert h.state().state == S.ONGOING


async def test_end_txn_errors(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert await h.coord.end_transaction("nope", 1, 0, True) == E.INVALID_PRODUCER_ID_MAPPING
        assert await h.coord.end_transaction("", 1, 0, True) == E.INVALID_REQUEST
        _, pid, epoch = await h.coord.init_producer_id("tx", 60_000)
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.INVALID_TXN_STATE  # Empty
        await h.coord.add_partitions("tx", pid, epoch, [T0])
        assert await h.coord.end_transaction("tx", pid + 1, epoch, True) == E.INVALID_PRODUCER_ID_MAPPING
        assert await h.coord.end_transaction("tx", pid, epoch + 1, True) == E.PRODUCER_FENCED
        assert await h.coord.end_transaction("tx", pid, epoch - 1, True) == E.PRODUCER_FENCED
        h.markers.block = anyio.Event()
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.NONE
        # Markers pending: the previous EndTxn has not completed.
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.CONCURRENT_TRANSACTIONS
        assert await h.coord.add_partitions("tx", pid, epoch, [T0]) == {T0: E.CONCURRENT_TRANSACTIONS}
        assert (await h.coord.init_producer_id("tx", 60_000))[0] == E.CONCURRENT_TRANSACTIONS
        h.markers.block.set()
        await h.settle()
        assert h.state().state == S.COMPLETE_ABORT
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.NONE
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.INVALID_TXN_STATE


async def test_end_txn_in_prepare_state_without_pending(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin()
        h.state().state = S.PREPARE_COMMIT
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.CONCURRENT_TRANSACTIONS
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.INVALID_TXN_STATE
        h.state().state = S.PREPARE_ABORT
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.CONCURRENT_TRANSACTIONS
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.INVALID_TXN_STATE


async def test_add_partitions_errors(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert await h.coord.add_partitions("nope", 1, 0, [T0]) == {T0: E.INVALID_PRODUCER_ID_MAPPING}
        assert await h.coord.add_partitions("", 1, 0, [T0]) == {T0: E.INVALID_REQUEST}
        _, pid, epoch = await h.coord.init_producer_id("tx", 60_000)
        assert await h.coord.add_partitions("tx", pid + 1, epoch, [T0]) == {T0: E.INVALID_PRODUCER_ID_MAPPING}
        assert await h.coord.add_partitions("tx", pid, epoch + 1, [T0, T1]) == {
            T0: E.PRODUCER_FENCED, T1: E.PRODUCER_FENCED}


async def test_new_producer_fences_the_ongoing_transaction(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0)
        # The new producer waits (CONCURRENT_TRANSACTIONS) while the old transaction is aborted.
        assert await h.coord.init_producer_id("tx", 60_000) == (E.CONCURRENT_TRANSACTIONS, -1, -1)
        await h.settle()
        assert [(m.producer_epoch, m.commit, m.partitions) for m in h.markers.calls] == [(epoch + 1, False, (T0,))]
        assert h.state().state == S.COMPLETE_ABORT
        assert await h.coord.init_producer_id("tx", 60_000) == (E.NONE, pid, epoch + 2)
        # The zombie is fenced everywhere.
        assert await h.coord.add_partitions("tx", pid, epoch, [T0]) == {T0: E.PRODUCER_FENCED}
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.PRODUCER_FENCED
        assert S.PREPARE_EPOCH_FENCE not in [w[0] for w in written(h) if w]  # never written


async def test_failed_epoch_fence_is_not_bumped_twice(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0)
        h.log.fail_with = E.NOT_ENOUGH_REPLICAS
        assert (await h.coord.init_producer_id("tx", 60_000))[0] == E.NOT_ENOUGH_REPLICAS
        txn = h.state()
        assert (txn.producer_epoch, txn.has_failed_epoch_fence, txn.pending_state) == (epoch + 1, True, None)
        h.log.fail_with = None
        assert (await h.coord.init_producer_id("tx", 60_000))[0] == E.CONCURRENT_TRANSACTIONS
        await h.settle()
        assert [m.producer_epoch for m in h.markers.calls] == [epoch + 1]
        assert await h.coord.init_producer_id("tx", 60_000) == (E.NONE, pid, epoch + 2)


async def test_log_failures_are_answered_and_leave_nothing_pending(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.log.fail_with = E.COORDINATOR_NOT_AVAILABLE
        assert (await h.coord.init_producer_id("tx", 60_000))[0] == E.COORDINATOR_NOT_AVAILABLE
        assert h.state().pending_state is None
        h.log.fail_with = None
        pid, epoch = await h.begin("tx", T0)
        h.log.fail_with = E.NOT_COORDINATOR
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.NOT_COORDINATOR
        assert (h.state().state, h.state().pending_state) == (S.ONGOING, None)


async def test_marker_retries_drops_and_fencing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0, T1, U0)
        h.markers.errors = {T0: [E.NOT_LEADER_OR_FOLLOWER, E.REQUEST_TIMED_OUT], T1: [E.UNSUPPORTED_FOR_MESSAGE_FORMAT]}
        h.existing.discard(U0)  # deleted: its marker is dropped
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.NONE
        with anyio.fail_after(5):
            while h.state().state != S.COMPLETE_COMMIT:
                await anyio.sleep(0.01)
        assert [m.partitions for m in h.markers.calls] == [(T0, T1), (T0,), (T0,)]

        await h.coord.add_partitions("tx", pid, epoch, [T0])
        h.markers.errors = {T0: [E.TRANSACTION_COORDINATOR_FENCED]}
        assert await h.coord.end_transaction("tx", pid, epoch, False) == E.NONE
        await anyio.sleep(0.3)
        # A newer coordinator owns the partition: this one stops, as Kafka's does.
        assert (h.state().state, h.state().pending_state) == (S.PREPARE_ABORT, S.COMPLETE_ABORT)
        assert len(h.markers.calls) == 4


async def test_verify_partitions(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.coord.verify_partitions("nope", 1, 0, [T0]) == {T0: E.INVALID_PRODUCER_ID_MAPPING}
        pid, epoch = await h.begin("tx", T0)
        assert h.coord.verify_partitions("tx", pid, epoch, [T0, T1]) == {T0: E.NONE, T1: E.TRANSACTION_ABORTABLE}
        assert h.coord.verify_partitions("tx", pid, epoch + 1, [T0]) == {T0: E.PRODUCER_FENCED}
        assert h.coord.verify_partitions("tx", pid + 1, epoch, [T0]) == {T0: E.INVALID_PRODUCER_ID_MAPPING}
        assert h.coord.verify_partitions("", pid, epoch, [T0]) == {T0: E.INVALID_REQUEST}
        h.markers.block = anyio.Event()
        await h.coord.end_transaction("tx", pid, epoch, True)
        assert h.coord.verify_partitions("tx", pid, epoch, [T0]) == {T0: E.CONCURRENT_TRANSACTIONS}
        h.markers.block.set()


async def test_add_offsets_adds_the_groups_offsets_partition(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0)
        assert await h.coord.add_offsets("tx", pid, epoch, "group") == E.NONE  # len("group") % 3 == 2
        assert TopicPartition("__consumer_offsets", 2) in h.state().partitions
        assert await h.coord.add_offsets("tx", pid, epoch + 1, "group") == E.PRODUCER_FENCED


async def test_timed_out_transaction_is_fenced_and_aborted(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx", T0, timeout_ms=1000)
        await h.begin("young", T1, timeout_ms=60_000)
        h.clock.advance(1001)
        await h.coord.abort_timed_out_transactions()
        await h.settle()
        assert [(m.producer_id, m.producer_epoch, m.commit) for m in h.markers.calls] == [(pid, epoch + 1, False)]
        assert (h.state().state, h.state().producer_epoch) == (S.COMPLETE_ABORT, epoch + 1)
        assert h.state("young").state == S.ONGOING
        assert await h.coord.end_transaction("tx", pid, epoch, True) == E.PRODUCER_FENCED


async def test_timer_settings_take_effect(tmp_path: Path) -> None:
    async with harness(tmp_path, transaction_abort_timed_out_transaction_cleanup_interval_ms=20) as h:
        pid, epoch = await h.begin("tx", T0, timeout_ms=1000)
        h.clock.advance(5000)
        with anyio.fail_after(5):
            while h.state().state != S.COMPLETE_ABORT:
                await anyio.sleep(0.01)


async def test_idle_transactional_ids_expire(tmp_path: Path) -> None:
    async with harness(tmp_path, transactional_id_expiration_ms=10_000) as h:
        pid, epoch = await h.begin("tx", T0)
        await h.coord.init_producer_id("idle", 60_000)
        h.clock.advance(10_000)
        await h.coord.expire_transactional_ids()
        assert "idle" not in h.coord.transactions and written(h, "idle")[-1] is None
        assert "tx" in h.coord.transactions  # ongoing transactions never expire
        assert h.coord.describe(["idle"])[0].error == E.TRANSACTIONAL_ID_NOT_FOUND
        # A failed tombstone write keeps the id.
        await h.coord.end_transaction("tx", pid, epoch, True)
        await h.settle()
        h.clock.advance(10_000)
        h.log.fail_with = E.NOT_ENOUGH_REPLICAS
        await h.coord.expire_transactional_ids()
        assert h.state().pending_state is None and h.state().state == S.COMPLETE_COMMIT


async def test_an_id_whose_first_init_failed_expires(tmp_path: Path) -> None:
    async with harness(tmp_path, transactional_id_expiration_ms=1000) as h:
        h.log.fail_with = E.NOT_ENOUGH_REPLICAS
        assert (await h.coord.init_producer_id("tx", 60_000))[0] == E.NOT_ENOUGH_REPLICAS
        assert h.state().producer_epoch == -1
        h.log.fail_with = None
        h.clock.advance(1000)
        await h.coord.expire_transactional_ids()
        assert "tx" not in h.coord.transactions and written(h) == [None]


def record(txn_id: str, t: TxnTransitMetadata) -> KeyValue:
    return encode_key(txn_id), encode_value(t)


async def test_loading_resumes_prepared_transactions(tmp_path: Path) -> None:
    log = MemoryTransactionLog(num_partitions=5)
    log.ensure()
    assert log.partitions is not None
    now = 1_700_000_000_000

    def put(txn_id: str, state: S, parts: frozenset[TopicPartition] = frozenset(), epoch: int = 3) -> None:
        assert log.partitions is not None
        log.partitions[partition_for(txn_id, 5)].append(
            record(txn_id, TxnTransitMetadata(10 + len(txn_id), -1, epoch, -1, 60_000, state, parts, now, now)))

    put("committing", S.PREPARE_COMMIT, frozenset({T0, T1}))
    put("aborting", S.PREPARE_ABORT, frozenset({U0}))
    put("ongoing", S.ONGOING, frozenset({T0}))
    put("gone", S.EMPTY)
    log.partitions[partition_for("gone", 5)].append((encode_key("gone"), None))
    log.partitions[0].append((b"\x00\x07junk", b"junk"))  # unreadable: skipped
    async with harness(tmp_path, log=log) as h:
        await h.settle()
        assert sorted((m.producer_id, m.commit, m.partitions) for m in h.markers.calls) == [
            (18, False, (U0,)), (20, True, (T0, T1))]
        assert h.state("committing").state == S.COMPLETE_COMMIT
        assert h.state("aborting").state == S.COMPLETE_ABORT
        assert h.state("ongoing").state == S.ONGOING and "gone" not in h.coord.transactions
        # The producer of the ongoing transaction carries on.
        assert await h.coord.end_transaction("ongoing", 17, 3, True) == E.NONE


class SlowLog(MemoryTransactionLog):
    """Replay blocks (in its worker thread) until released."""

    def __init__(self) -> None:
        super().__init__(num_partitions=5)
        self.release = threading.Event()
        self.ensure()

    def replay(self, partition: int) -> Iterator[KeyValue]:
        self.release.wait(10)
        return super().replay(partition)


async def test_requests_wait_for_loading(tmp_path: Path) -> None:
    from kbroker.clock import ManualClock
    from kbroker.config import BrokerConfig, ConfigHolder
    from kbroker.txn.coordinator import TransactionCoordinator
    from kbroker.txn.producer_ids import ProducerIdManager

    from .coordinator_helpers import RecordingMarkers

    log = SlowLog()
    coord = TransactionCoordinator(ConfigHolder(BrokerConfig()), ManualClock(), ProducerIdManager(tmp_path), log,
                                   RecordingMarkers(), offsets_partition=lambda g: 0, partition_exists=lambda tp: True)
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        await anyio.sleep(0.05)  # the event loop is free while the log is read
        assert await coord.init_producer_id("tx", 60_000) == (E.COORDINATOR_LOAD_IN_PROGRESS, -1, -1)
        assert await coord.add_partitions("tx", 1, 0, [T0]) == {T0: E.COORDINATOR_LOAD_IN_PROGRESS}
        assert await coord.end_transaction("tx", 1, 0, True) == E.COORDINATOR_LOAD_IN_PROGRESS
        assert coord.verify_partitions("tx", 1, 0, [T0]) == {T0: E.COORDINATOR_LOAD_IN_PROGRESS}
        assert coord.list_transactions()[0] == E.COORDINATOR_LOAD_IN_PROGRESS
        assert coord.describe(["tx"])[0].error == E.COORDINATOR_LOAD_IN_PROGRESS
        log.release.set()
        with anyio.fail_after(5):
            while not coord.loaded:
                await anyio.sleep(0.01)
        assert (await coord.init_producer_id("tx", 60_000))[0] == E.NONE
        await coord.shutdown()
        assert (await coord.init_producer_id("tx", 60_000))[0] == E.NOT_COORDINATOR
        tg.cancel_scope.cancel()


async def test_describe_and_list(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        pid, epoch = await h.begin("tx-a", T0, U0, T1)
        _, other, _ = await h.coord.init_producer_id("tx-b", 30_000)
        d = h.coord.describe(["tx-a", "tx-b", "missing", ""])
        assert [x.error for x in d] == [E.NONE, E.NONE, E.TRANSACTIONAL_ID_NOT_FOUND, E.INVALID_REQUEST]
        assert (d[0].state, d[0].producer_id, d[0].producer_epoch, d[0].partitions, d[0].timeout_ms) == (
            "Ongoing", pid, epoch, {"t": [0, 1], "u": [0]}, 60_000)
        assert d[0].start_time_ms == h.clock.time_ms() and (d[1].state, d[1].start_time_ms) == ("Empty", -1)

        def ids(*args: object, **kwargs: object) -> tuple[int, list[str], list[str]]:
            error, unknown, found = h.coord.list_transactions(*args, **kwargs)  # type: ignore[arg-type]
            return error, unknown, sorted(t.transactional_id for t in found)

        assert ids() == (0, [], ["tx-a", "tx-b"])
        assert ids(["Ongoing", "Bogus"]) == (0, ["Bogus"], ["tx-a"])
        assert ids(["Bogus"]) == (0, ["Bogus"], [])
        assert ids(producer_ids=[other]) == (0, [], ["tx-b"])
        h.clock.advance(5000)
        # As Kafka, the age is taken from the start time, which an idle id has at -1.
        assert ids(duration_ms=4999) == (0, [], ["tx-a", "tx-b"])
        assert ids(duration_ms=5000) == (0, [], ["tx-b"])
        assert ids(pattern="tx-.") == (0, [], ["tx-a", "tx-b"])
        assert ids(pattern="tx") == (0, [], [])  # the whole id must match
        assert ids(pattern="(") == (INVALID_REGULAR_EXPRESSION, [], [])
        # Patterns Python's compiler gives up on otherwise than with re.error are invalid too.
        assert ids(pattern="(" * 5000 + ")" * 5000) == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="a{4294967296}") == (INVALID_REGULAR_EXPRESSION, [], [])
        # The regex module unrolls bounded repetitions when compiling: patterns too large once
        # multiplied out are refused before (19 bytes here would ask for gigabytes).
        assert ids(pattern="(?:x{1000}){1000}") == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="(?:x{65535}){65535}") == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="x" * 100_001) == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="(?x)(?:x{3 0 0}) { 3 # a comment\n 0 0 }") == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="x{" + "9" * 5000 + "}") == (INVALID_REGULAR_EXPRESSION, [], [])
        assert ids(pattern="(?:tx{1}){1}-[{]{1,2}a?|tx-\\{?[a-b]{1,100}") == (0, [], ["tx-a", "tx-b"])


async def test_failed_fence_of_the_last_epoch_is_retried(tmp_path: Path) -> None:
    """A producer at MAX_EPOCH - 1 is fenced to MAX_EPOCH; if that write fails, the next timeout
    pass reuses MAX_EPOCH instead of giving up on the transaction (and the LSO it holds) for good."""
    log = MemoryTransactionLog(num_partitions=5)
    log.ensure()
    assert log.partitions is not None
    log.partitions[partition_for("tx", 5)].append(record("tx", TxnTransitMetadata(
        7, -1, MAX_EPOCH - 1, -1, 1000, S.ONGOING, frozenset({T0}), 0, 0)))
    async with harness(tmp_path, log=log) as h:
        h.clock.advance(1001)
        h.log.fail_with = E.NOT_ENOUGH_REPLICAS
        await h.coord.abort_timed_out_transactions()
        assert (h.state().state, h.state().producer_epoch, h.state().pending_state) == (S.ONGOING, MAX_EPOCH, None)
        h.log.fail_with = None
        await h.coord.abort_timed_out_transactions()
        await h.settle()
        assert [(m.producer_id, m.producer_epoch, m.commit) for m in h.markers.calls] == [(7, MAX_EPOCH, False)]
        assert (h.state().state, h.state().producer_epoch) == (S.COMPLETE_ABORT, MAX_EPOCH)
        # The next producer gets a new producer id.
        error, pid, epoch = await h.coord.init_producer_id("tx", 60_000)
        assert error == E.NONE and pid != 7 and epoch == 0


class LongHistoryLog(MemoryTransactionLog):
    """A state topic never compacted: one id's many records, each read afresh as the real replay does."""

    def __init__(self, records: int, value: bytes) -> None:
        super().__init__(num_partitions=5)
        self.ensure()
        self.records = records
        self.value = value

    def replay(self, partition: int) -> Iterator[KeyValue]:
        if partition == partition_for("tx", 5):
            for _ in range(self.records):
                yield encode_key("tx"), bytearray(self.value)  # a fresh buffer per record


async def test_loading_keeps_only_each_ids_latest_record(tmp_path: Path) -> None:
    """Loading folds each partition's records to each id's latest as it reads: memory follows
    the live ids, not the topic's whole history (nothing compacts ``__transaction_state``)."""
    import tracemalloc

    parts = frozenset(TopicPartition("t", p) for p in range(40))
    value = encode_value(TxnTransitMetadata(7, -1, 3, -1, 60_000, S.ONGOING, parts, 0, 0))
    log = LongHistoryLog(50_000, value)  # about 50 MB of history
    tracemalloc.start()
    try:
        async with harness(tmp_path, log=log) as h:
            _, peak = tracemalloc.get_traced_memory()
            assert (h.state().state, h.state().producer_id, len(h.state().partitions)) == (S.ONGOING, 7, 40)
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, peak


async def test_list_transactions_refuses_a_pattern_too_costly_to_match(tmp_path: Path) -> None:
    """A backtracking pattern is stopped after the matching budget instead of holding up the
    event loop for minutes (an id of 40 'a's takes this pattern exponential time to refuse)."""
    async with harness(tmp_path) as h:
        for i in range(3):
            await h.coord.init_producer_id("a" * 40 + str(i), 30_000)
        started = time.monotonic()
        assert h.coord.list_transactions(pattern="(?:(?:a|aa)+){2,}b")[0] == INVALID_REGULAR_EXPRESSION
        assert time.monotonic() - started < 1.0
