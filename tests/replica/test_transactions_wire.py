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


def _write_interleaved(kafka_broker: BrokerThread, topic: str) -> None:
    """Offsets: 0 a1 (pid 11), 1 b1 (pid 12), 2 a2, 3 plain, 4 b2, 5 ABORT 11, 6 COMMIT 12, 7 plain."""
    plog = kafka_broker.broker.log_manager.get_log(topic, 0)

    def txn(pid: int, seq: int, value: bytes) -> bytes:
        return build_batch([NewRecord(None, value, (), 1_000)], producer_id=pid, producer_epoch=0,
                           base_sequence=seq, transactional=True)

    def plain(value: bytes) -> bytes:
        return build_batch([NewRecord(None, value, (), 1_000)])

    for payload in (txn(11, 0, b"a1"), txn(12, 0, b"b1"), txn(11, 1, b"a2"), plain(b"p1"), txn(12, 1, b"b2")):
        kafka_broker.call(lambda p=payload: plog.append(p, leader_epoch=0))
    kafka_broker.call(lambda: plog.append_marker(11, 0, 0, False, leader_epoch=0))
    kafka_broker.call(lambda: plog.append_marker(12, 0, 0, True, leader_epoch=0))
    kafka_broker.call(lambda: plog.append(plain(b"p2"), leader_epoch=0))


def test_librdkafka_read_committed_skips_aborted_records(kafka_broker: BrokerThread) -> None:
    import time

    from confluent_kafka import Consumer, TopicPartition

    create_topic(kafka_broker, "rc")
    _write_interleaved(kafka_broker, "rc")

    def read(isolation: str, count: int) -> list[bytes]:
        c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g-" + isolation,
                      "enable.auto.commit": False, "isolation.level": isolation})
        c.assign([TopicPartition("rc", 0, 0)])
        out: list[bytes] = []
        deadline = time.monotonic() + 20
        try:
            while len(out) < count and time.monotonic() < deadline:
                for msg in c.consume(10, 0.2):
                    if msg.error() is None:
                        out.append(msg.value())
        finally:
            c.close()
        return out

    committed = read("read_committed", 4)
    assert committed == [b"b1", b"p1", b"b2", b"p2"]
    assert read("read_uncommitted", 6) == [b"a1", b"b1", b"a2", b"p1", b"b2", b"p2"]


def test_kafka_python_read_committed_skips_aborted_records(kafka_broker: BrokerThread) -> None:
    from kafka import KafkaConsumer, TopicPartition

    create_topic(kafka_broker, "rc2")
    _write_interleaved(kafka_broker, "rc2")
    c = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, isolation_level="read_committed",
                      enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        c.assign([TopicPartition("rc2", 0)])
        c.seek(TopicPartition("rc2", 0), 0)
        got = [m.value for m in c]
    finally:
        c.close()
    assert got == [b"b1", b"p1", b"b2", b"p2"]
