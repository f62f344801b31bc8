"""Transactions seen over the wire: Fetch read_committed (LSO, aborted transactions) and
DescribeProducers' current transaction start offset, on a log written through its API."""

from __future__ import annotations

from kbroker.records.builder import NewRecord, build_batch
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic, fetch, partitions_of

DESCRIBE_PRODUCERS = 61


def txn_batch(pid: int, seq: int, n: int = 1) -> bytes:
    return build_batch([NewRecord(None, b"v", (), 1_000) for _ in range(n)], producer_id=pid,
                       producer_epoch=0, base_sequence=seq, transactional=True)


def test_fetch_and_describe_producers_show_transactions(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    plog = kafka_broker.broker.log_manager.get_log("t", 0)
    kafka_broker.call(lambda: plog.append(txn_batch(11, 0, 2), leader_epoch=0))  # 0-1
    kafka_broker.call(lambda: plog.append_marker(11, 0, 4, False, leader_epoch=0))  # 2
    kafka_broker.call(lambda: plog.append(txn_batch(12, 0), leader_epoch=0))  # 3

    committed = partitions_of(fetch(wire, {"t": {0: 0}}, isolation_level=1))[("t", 0)]
    assert (committed.error_code, committed.high_watermark, committed.last_stable_offset) == (0, 4, 3)
    assert [(a.producer_id, a.first_offset) for a in committed.aborted_transactions] == [(11, 0)]
    uncommitted = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
    assert uncommitted.last_stable_offset == 3 and uncommitted.aborted_transactions is None

    body = {"topics": [{"name": "t", "partition_indexes": [0]}]}
    [part] = wire.call(DESCRIBE_PRODUCERS, 0, body).topics[0].partitions
    states = {p.producer_id: p for p in part.active_producers}
    assert (states[11].coordinator_epoch, states[11].current_txn_start_offset) == (4, -1)
    assert (states[12].coordinator_epoch, states[12].current_txn_start_offset) == (-1, 3)
