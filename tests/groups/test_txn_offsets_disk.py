"""Transactional offsets in the real ``__consumer_offsets`` topic, across broker restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.broker import Broker
from kbroker.common import TopicPartition
from kbroker.groups import Errors, OffsetAndMetadata
from kbroker.groups.storage import CONSUMER_OFFSETS, StoredMarker, StoredRecord
from kbroker.records.batch import iter_headers
from kbroker.records.builder import build_control_batch
from kbroker.records.record import ControlType
from kbroker.testing import make_config

pytestmark = pytest.mark.anyio

TP = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)
OVERRIDES = {"offsets.topic.num.partitions": "3"}


async def write_marker(broker: Broker, group: str, producer_id: int, epoch: int, commit: bool) -> None:
    """Append a transaction marker to the group's partition and tell the coordinator."""
    partition = broker.groups.partition_for(group)
    tp = TopicPartition(CONSUMER_OFFSETS, partition)
    batch = build_control_batch(ControlType.COMMIT if commit else ControlType.ABORT, producer_id=producer_id,
                                producer_epoch=epoch, coordinator_epoch=0)
    result = (await broker.replica_manager.append_records({tp: batch}, acks=-1, internal=True))[tp]
    assert result.error_code == 0, result
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
