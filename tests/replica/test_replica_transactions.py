"""ReplicaManager and transactions: markers, COORDINATOR appends, the LSO and aborted
transactions in fetches, ListOffsets for read_committed."""

from __future__ import annotations

import anyio
import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.records.builder import NewRecord, build_batch
from kbroker.replica.types import (
    LATEST_TIMESTAMP,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    FetchParams,
    PartitionFetch,
)
from kbroker.txn.markers import TxnMarker

from .conftest import Cluster

pytestmark = pytest.mark.anyio

TP = TopicPartition("t", 0)


def txn_batch(pid: int, seq: int, n: int = 1, *, epoch: int = 0, transactional: bool = True) -> bytes:
    return build_batch([NewRecord(None, b"v", (), 1_000) for _ in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, transactional=transactional)


def plain_batch(n: int = 1) -> bytes:
    return build_batch([NewRecord(None, b"p", (), 1_000) for _ in range(n)])


async def produce(c: Cluster, tp: TopicPartition, records: bytes, *, internal: bool = False) -> int:
    [result] = (await c.rm.append_records({tp: records}, acks=-1, internal=internal)).values()
    return result.error_code


async def fetch(c: Cluster, offset: int, isolation: int, tp: TopicPartition = TP, **kw: int):
    params = FetchParams(isolation_level=isolation, **kw)
    [(_, result)] = await c.rm.fetch([(tp, PartitionFetch(offset, 1 << 20))], params)
    return result


def marker(pid: int, commit: bool, *tps: TopicPartition, epoch: int = 0, coordinator_epoch: int = 0) -> TxnMarker:
    return TxnMarker(pid, epoch, coordinator_epoch, commit, tps)


async def test_write_txn_markers_ends_transactions_in_every_partition(cluster: Cluster) -> None:
    cluster.add("t", 0)
    cluster.add("t", 1)
    tp1 = TopicPartition("t", 1)
    for tp in (TP, tp1):
        assert await produce(cluster, tp, txn_batch(7, 0)) == 0
        assert cluster.rm.has_ongoing_transaction(tp, 7)
    results = await cluster.rm.write_txn_markers([marker(7, True, TP, tp1)])
    assert results == [{TP: 0, tp1: 0}]
    assert not cluster.rm.has_ongoing_transaction(TP, 7)
    assert not cluster.rm.has_ongoing_transaction(tp1, 7)


async def test_write_txn_markers_reports_errors_per_partition(cluster: Cluster) -> None:
    cluster.add("t", 0)
    cluster.add("other", 0, leader=2)
    cluster.add("fenced", 0)
    cluster.add("zombie", 0)
    ftp, ztp = TopicPartition("fenced", 0), TopicPartition("zombie", 0)
    assert await produce(cluster, ftp, txn_batch(7, 0, epoch=3)) == 0
    assert await produce(cluster, ztp, txn_batch(8, 0)) == 0
    [first] = await cluster.rm.write_txn_markers([marker(8, False, ztp, coordinator_epoch=6)])
    assert first == {ztp: 0}
    assert await produce(cluster, ztp, txn_batch(8, 1)) == 0
    unknown, not_led = TopicPartition("nope", 0), TopicPartition("other", 0)
    results = await cluster.rm.write_txn_markers([
        marker(7, True, TP, unknown, not_led, ftp, epoch=2),
        marker(8, True, ztp, coordinator_epoch=5),
    ])
    assert results == [
        {TP: 0, unknown: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, not_led: ErrorCode.NOT_LEADER_OR_FOLLOWER,
         ftp: ErrorCode.INVALID_PRODUCER_EPOCH},
        {ztp: ErrorCode.TRANSACTION_COORDINATOR_FENCED},
    ]
    assert cluster.rm.has_ongoing_transaction(ftp, 7) and cluster.rm.has_ongoing_transaction(ztp, 8)


async def test_write_txn_markers_reaches_internal_topics(cluster: Cluster) -> None:
    ctp = TopicPartition("__consumer_offsets", 3)
    cluster.add("__consumer_offsets", 3)
    # The group coordinator's transactional offset commit: base sequence -1, COORDINATOR origin.
    assert await produce(cluster, ctp, txn_batch(9, -1, epoch=1), internal=True) == 0
    assert cluster.rm.has_ongoing_transaction(ctp, 9)
    assert await cluster.rm.write_txn_markers([marker(9, True, ctp, epoch=1)]) == [{ctp: 0}]
    assert not cluster.rm.has_ongoing_transaction(ctp, 9)


async def test_internal_appends_still_fence_old_epochs(cluster: Cluster) -> None:
    ctp = TopicPartition("__consumer_offsets", 0)
    cluster.add("__consumer_offsets", 0)
    assert await produce(cluster, ctp, txn_batch(9, -1, epoch=2), internal=True) == 0
    assert await produce(cluster, ctp, txn_batch(9, -1, epoch=1), internal=True) == ErrorCode.INVALID_PRODUCER_EPOCH


async def test_client_write_without_transaction_during_one_is_invalid_txn_state(cluster: Cluster) -> None:
    cluster.add("t", 0)
    assert await produce(cluster, TP, txn_batch(7, 0)) == 0
    assert await produce(cluster, TP, txn_batch(7, 1, transactional=False)) == ErrorCode.INVALID_TXN_STATE


async def test_has_ongoing_transaction_is_false_for_unknown_or_not_led_partitions(cluster: Cluster) -> None:
    plog = cluster.add("other", 0, leader=2)
    plog.append(txn_batch(7, 0), leader_epoch=0)
    assert not cluster.rm.has_ongoing_transaction(TopicPartition("other", 0), 7)
    assert not cluster.rm.has_ongoing_transaction(TopicPartition("nope", 0), 7)


async def test_read_committed_fetch_stops_at_the_lso(cluster: Cluster) -> None:
    cluster.add("t", 0)
    await produce(cluster, TP, plain_batch(2))  # 0-1
    await produce(cluster, TP, txn_batch(7, 0))  # 2
    await produce(cluster, TP, plain_batch())  # 3
    committed = await fetch(cluster, 0, READ_COMMITTED)
    assert committed.last_stable_offset == 2 and committed.high_watermark == 4
    assert committed.aborted_transactions == []
    assert len(committed.records) == len(plain_batch(2))
    uncommitted = await fetch(cluster, 0, READ_UNCOMMITTED)
    assert uncommitted.last_stable_offset == 2  # every fetch reports the LSO
    assert uncommitted.aborted_transactions is None
    assert len(uncommitted.records) > len(committed.records)
    assert (await fetch(cluster, 2, READ_COMMITTED)).records == b""
    await cluster.rm.write_txn_markers([marker(7, True, TP)])  # 4
    after = await fetch(cluster, 2, READ_COMMITTED)
    assert after.last_stable_offset == 5 and len(after.records) > 0


async def test_read_committed_fetch_returns_the_aborted_transactions_of_its_range(cluster: Cluster) -> None:
    cluster.add("t", 0)
    await produce(cluster, TP, txn_batch(7, 0, 2))  # 0-1
    await produce(cluster, TP, txn_batch(8, 0))  # 2
    await cluster.rm.write_txn_markers([marker(7, False, TP)])  # 3
    await cluster.rm.write_txn_markers([marker(8, True, TP)])  # 4
    result = await fetch(cluster, 0, READ_COMMITTED)
    assert result.last_stable_offset == 5
    assert result.aborted_transactions == [(7, 0)]
    assert (await fetch(cluster, 4, READ_COMMITTED)).aborted_transactions == []
    assert (await fetch(cluster, 0, READ_UNCOMMITTED)).aborted_transactions is None
    assert (await fetch(cluster, 5, READ_COMMITTED)).aborted_transactions == []  # nothing read


async def test_read_committed_aborted_transactions_bound_is_the_offset_index_entry_past_the_data(
        cluster: Cluster) -> None:
    """As Kafka's LocalLog.addAbortedTransactions: the aborted transactions reported are those below
    the first offset-index entry past the data read (else the log end), not the end of the data
    read: a fetch of only the first batch still lists an aborted transaction after it when no
    index entry lies between."""
    from kbroker.log.config import LogConfig

    async def setup(plog_topic: str, config: LogConfig) -> TopicPartition:
        cluster.add(plog_topic, 0, config=config)
        tp = TopicPartition(plog_topic, 0)
        await produce(cluster, tp, plain_batch(2))  # 0-1
        await produce(cluster, tp, txn_batch(7, 0, 2))  # 2-3
        await cluster.rm.write_txn_markers([marker(7, False, tp)])  # 4
        await produce(cluster, tp, plain_batch())  # 5
        return tp

    async def first_batch(tp: TopicPartition) -> object:
        [(_, result)] = await cluster.rm.fetch([(tp, PartitionFetch(0, 1))], FetchParams(isolation_level=READ_COMMITTED))
        return result

    coarse = await setup("coarse", LogConfig())  # no index entry: bound = log end offset
    result = await first_batch(coarse)
    assert len(result.records) == len(plain_batch(2)) and result.aborted_transactions == [(7, 2)]
    fine = await setup("fine", LogConfig(index_interval_bytes=1))  # an entry per batch
    result = await first_batch(fine)
    assert len(result.records) == len(plain_batch(2)) and result.aborted_transactions == []
    assert cluster.logs[("fine", 0)].fetch_upper_bound_offset(0, len(plain_batch(2))) == 2
    assert cluster.logs[("coarse", 0)].fetch_upper_bound_offset(0, len(plain_batch(2))) == 6


async def test_list_offsets_latest_for_read_committed_is_the_lso(cluster: Cluster) -> None:
    cluster.add("t", 0)
    await produce(cluster, TP, plain_batch())
    await produce(cluster, TP, txn_batch(7, 0))
    assert cluster.rm.fetch_offset_for_timestamp(TP, LATEST_TIMESTAMP, isolation_level=READ_COMMITTED).offset == 1
    assert cluster.rm.fetch_offset_for_timestamp(TP, LATEST_TIMESTAMP, isolation_level=READ_UNCOMMITTED).offset == 2


async def test_read_committed_long_poll_counts_only_bytes_below_the_lso(cluster: Cluster) -> None:
    cluster.add("t", 0)
    await produce(cluster, TP, plain_batch())  # 0
    results: list = []

    async def poll() -> None:
        results.append(await fetch(cluster, 1, READ_COMMITTED, max_wait_ms=5_000, min_bytes=1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.05)
        await produce(cluster, TP, txn_batch(7, 0))  # 1: above the LSO, must not answer the poll
        await anyio.sleep(0.1)
        assert results == []
        await cluster.rm.write_txn_markers([marker(7, True, TP)])  # wakes the poll
    [result] = results
    assert result.last_stable_offset == 3 and len(result.records) > 0


async def test_write_txn_markers_storage_error_and_closed_log(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbroker.log.errors import KafkaStorageError

    plog = cluster.add("t", 0)
    closed = cluster.add("gone", 0)
    closed.close()
    gtp = TopicPartition("gone", 0)

    def broken(*args: object, **kwargs: object) -> None:
        raise KafkaStorageError("disk gone")

    monkeypatch.setattr(plog, "append_marker", broken)
    results = await cluster.rm.write_txn_markers([marker(7, True, TP, gtp)])
    assert results == [{TP: ErrorCode.KAFKA_STORAGE_ERROR, gtp: ErrorCode.NOT_LEADER_OR_FOLLOWER}]


async def test_write_txn_markers_wakes_a_waiting_read_committed_fetch(cluster: Cluster) -> None:
    cluster.add("t", 0)
    await produce(cluster, TP, txn_batch(7, 0))
    results: list = []

    async def poll() -> None:
        results.append(await fetch(cluster, 0, READ_COMMITTED, max_wait_ms=10_000, min_bytes=1))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await anyio.sleep(0.05)
            assert results == []
            await cluster.rm.write_txn_markers([marker(7, False, TP)])
    [result] = results
    assert result.last_stable_offset == 2 and result.aborted_transactions == [(7, 0)]


async def test_write_txn_markers_needs_min_insync_replicas(cluster: Cluster) -> None:
    from kbroker.log import LogConfig

    # Two replicas, one in sync: under min.insync.replicas=2 (with one replica it would be capped to 1).
    plog = cluster.add("t", 0, config=LogConfig(min_insync_replicas=2), replicas=[1, 2])
    plog.append(txn_batch(7, 0), leader_epoch=0)
    assert await cluster.rm.write_txn_markers([marker(7, True, TP)]) == [{TP: ErrorCode.NOT_ENOUGH_REPLICAS}]
    assert cluster.rm.has_ongoing_transaction(TP, 7)


async def test_markers_carry_the_partition_leader_epoch(cluster: Cluster) -> None:
    from kbroker.records.batch import iter_headers

    plog = cluster.add("t", 0, leader_epoch=6)
    plog.append(txn_batch(7, 0), leader_epoch=6)
    assert await cluster.rm.write_txn_markers([marker(7, False, TP)]) == [{TP: 0}]
    [(_, h)] = list(iter_headers(bytes(plog.read(1, 1 << 20))))
    assert h.is_control and h.partition_leader_epoch == 6
