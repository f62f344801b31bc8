"""Transactional offsets in the real ``__consumer_offsets`` topic, across broker restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.broker import Broker
from kbroker.common import TopicPartition
from kbroker.groups import Errors, OffsetAndMetadata
from kbroker.groups.storage import CONSUMER_OFFSETS, StoredMarker, StoredRecord
from kbroker.records.batch import iter_headers
from kbroker.testing import make_config
from kbroker.txn.markers import TxnMarker

pytestmark = pytest.mark.anyio

TP = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)
OVERRIDES = {"offsets.topic.num.partitions": "3"}


async def write_marker(broker: Broker, group: str, producer_id: int, epoch: int, commit: bool) -> None:
    """What WriteTxnMarkers does: append the marker to the group's partition, then tell the coordinator."""
    partition = broker.groups.partition_for(group)
    tp = TopicPartition(CONSUMER_OFFSETS, partition)
    results = await broker.replica_manager.write_txn_markers([TxnMarker(producer_id, epoch, 0, commit, (tp,))])
    assert results == [{tp: 0}]
    broker.groups.on_transaction_completed(producer_id, [partition], commit)


async def txn_commit(broker: Broker, group: str, pid: int, offsets: dict[TopicPartition, int],
                     epoch: int = 0) -> dict[TopicPartition, Errors]:
    return await broker.groups.txn_commit_offsets(
        "txn", group, pid, epoch, -1, "", None,
        {tp: OffsetAndMetadata(o, metadata="m", commit_timestamp=1) for tp, o in offsets.items()})


def stable(broker: Broker, group: str, *tps: TopicPartition) -> list[object]:
    got = broker.groups.fetch_offsets(group, list(tps), require_stable=True)
    return [o.offset if isinstance(o, OffsetAndMetadata) else o for o in got.values()]


async def test_restart_loads_committed_aborted_and_pending_transactional_offsets(tmp_path: Path) -> None:
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert b.groups.ensure_offsets_topic()
        assert await b.groups.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(1)}) == {TP: Errors.NONE}
        assert await txn_commit(b, "g", 10, {TP: 5}) == {TP: Errors.NONE}
        await write_marker(b, "g", 10, 0, commit=True)
        assert await txn_commit(b, "g", 11, {TP1: 6}) == {TP1: Errors.NONE}
        await write_marker(b, "g", 11, 0, commit=False)
        assert await txn_commit(b, "g", 12, {TP1: 7}) == {TP1: Errors.NONE}  # open at shutdown
        assert stable(b, "g", TP, TP1) == [5, Errors.UNSTABLE_OFFSET_COMMIT]
        # On disk: transactional batches of the producers, without sequence numbers.
        plog = b.log_manager.get_log(CONSUMER_OFFSETS, b.groups.partition_for("g"))
        assert plog is not None
        headers = [h for _, h in iter_headers(plog.read(plog.log_start_offset, 1 << 20))]
        txn = [h for h in headers if h.is_transactional and not h.is_control]
        assert [(h.producer_id, h.producer_epoch, h.base_sequence) for h in txn] == [(10, 0, -1), (11, 0, -1),
                                                                                      (12, 0, -1)]
        assert [h.producer_id for h in headers if h.is_control] == [10, 11]
        replayed = list(b.groups.manager.log.replay(b.groups.partition_for("g")))
        assert [type(r) for r in replayed] == [StoredRecord, StoredRecord, StoredMarker, StoredRecord, StoredMarker,
                                               StoredRecord]
        assert [(r.offset, r.commit) for r in replayed if isinstance(r, StoredMarker)] == [(2, True), (4, False)]
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert stable(b, "g", TP, TP1) == [5, Errors.UNSTABLE_OFFSET_COMMIT]
        assert b.groups.fetch_offsets("g", [TP1]) == {TP1: None}
        await write_marker(b, "g", 12, 0, commit=True)
        assert stable(b, "g", TP, TP1) == [5, 7]
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert stable(b, "g", TP, TP1) == [5, 7]
        assert b.groups.fetch_offsets("g", [TP1])[TP1] == OffsetAndMetadata(7, metadata="m", commit_timestamp=1)


async def test_restart_keeps_the_later_plain_commit(tmp_path: Path) -> None:
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert b.groups.ensure_offsets_topic()
        assert await txn_commit(b, "g", 10, {TP: 5}) == {TP: Errors.NONE}
        assert await b.groups.commit_offsets("g", -1, "", None, {TP: OffsetAndMetadata(9)}) == {TP: Errors.NONE}
        await write_marker(b, "g", 10, 0, commit=True)
        assert stable(b, "g", TP) == [9]
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert stable(b, "g", TP) == [9]


async def test_producer_fenced_by_the_log_gets_invalid_producer_epoch(tmp_path: Path) -> None:
    async with Broker(make_config(tmp_path, OVERRIDES)).running() as b:
        assert b.groups.ensure_offsets_topic()
        assert await txn_commit(b, "g", 10, {TP: 5}, epoch=2) == {TP: Errors.NONE}
        tp = TopicPartition(CONSUMER_OFFSETS, b.groups.partition_for("g"))
        assert b.replica_manager.has_ongoing_transaction(tp, 10)
        # A zombie with the producer's older epoch is fenced by the log; nothing of it is kept.
        assert await txn_commit(b, "g", 10, {TP: 6, TP1: 1}, epoch=1) == {TP: Errors.INVALID_PRODUCER_EPOCH,
                                                                          TP1: Errors.INVALID_PRODUCER_EPOCH}
        assert stable(b, "g", TP1) == [None]
        await write_marker(b, "g", 10, 2, commit=True)
        assert not b.replica_manager.has_ongoing_transaction(tp, 10)
        assert stable(b, "g", TP, TP1) == [5, None]
