"""A broker on a ManualClock driven by real clients: advance_clock() brings on session
timeouts, retention, transaction timeouts and the end of long polls at once, and nothing
of it happens before the clock gets there."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError
from wait_helpers import parked_fetches, wait_until

from kbroker.clock import ManualClock
from kbroker.share.partition import RecordState
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, fetch, partitions_of

CONSUMER_GROUP_HEARTBEAT = 68
#: As long as everything here may take in real time: far below every timeout advanced past.
QUICK_S = 10.0


@pytest.fixture
def clock() -> ManualClock:
    # Clients stamp records with the real time (CreateTime): a clock years away would have the
    # broker refuse them (log.message.timestamp.after.max.ms), so it starts now.
    return ManualClock(start_ms=time.time_ns() // 1_000_000)


@pytest.fixture
def broker(tmp_path: Path, clock: ManualClock) -> Iterator[BrokerThread]:
    overrides = {
        "group.initial.rebalance.delay.ms": "0",
        # Consumer-protocol members heartbeat every 15 s of real time: none while a test runs.
        "group.consumer.heartbeat.interval.ms": "15000",
        # A minute apart (the first at 30 s): in real time no check runs during a test.
        "log.retention.check.interval.ms": "60000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "10000",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
    }
    with BrokerThread(tmp_path / "data", overrides, clock=clock) as b:
        yield b


def advance(broker: BrokerThread, ms: int) -> float:
    """Move the broker's clock; returns the real seconds it took."""
    started = time.monotonic()
    broker.call(broker.broker.advance_clock, ms)
    return time.monotonic() - started


def create(broker: BrokerThread, name: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(QUICK_S)


def describe_group(broker: BrokerThread, group: str) -> Any:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(QUICK_S)


def test_advance_clock_refuses_a_broker_on_the_system_clock(kafka_broker: BrokerThread) -> None:
    with pytest.raises(TypeError, match="ManualClock"):
        kafka_broker.call(kafka_broker.broker.advance_clock, 1000)


def test_advance_clock_refuses_to_go_backwards(broker: BrokerThread, clock: ManualClock) -> None:
    before = clock.time_ms()
    with pytest.raises(ValueError, match="backwards"):
        broker.call(broker.broker.advance_clock, -1)
    assert clock.time_ms() == before


def test_a_group_member_is_expelled_when_the_clock_passes_its_session_timeout(broker: BrokerThread) -> None:
    create(broker, "t")
    # Heartbeats 20 s apart in real time: none is sent while the test runs, so only the
    # clock can end the session.
    consumer = KafkaConsumer("t", bootstrap_servers=broker.bootstrap, group_id="g", session_timeout_ms=60_000,
                             heartbeat_interval_ms=20_000, fetch_max_wait_ms=100, enable_auto_commit=False)
    try:
        wait_until(lambda: consumer.poll(timeout_ms=100) is not None and consumer.assignment(), timeout=QUICK_S,
                   what="the consumer's assignment")
        joined = describe_group(broker, "g")
        assert joined.state == ConsumerGroupState.STABLE and len(joined.members) == 1
        first_member = joined.members[0].member_id

        assert advance(broker, 59_999) < QUICK_S
        still = describe_group(broker, "g")
        assert still.state == ConsumerGroupState.STABLE and [m.member_id for m in still.members] == [first_member]

        assert advance(broker, 1) < QUICK_S  # exactly the session timeout: expelled, no wall-clock wait
        expelled = describe_group(broker, "g")
        assert expelled.state == ConsumerGroupState.EMPTY and expelled.members == []

        # The client learns it (its commit is refused: UNKNOWN_MEMBER_ID) and joins again anew.
        with pytest.raises(CommitFailedError):
            consumer.commit()
        wait_until(lambda: consumer.poll(timeout_ms=100) is not None and consumer.assignment()
                   and describe_group(broker, "g").members, timeout=QUICK_S, what="the consumer's new membership")
        rejoined = describe_group(broker, "g")
        assert [m.member_id for m in rejoined.members] != [first_member]
    finally:
        consumer.close(autocommit=False)


class HeartbeatCounter:
    """Counts the ConsumerGroupHeartbeat requests served."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, exchange: Any, handle: Any) -> Any:
        if exchange.api_key == CONSUMER_GROUP_HEARTBEAT:
            self.count += 1
        return await handle()


def test_a_consumer_protocol_member_is_expelled_at_its_session_timeout(broker: BrokerThread) -> None:
    create(broker, "k")
    heartbeats = HeartbeatCounter()
    broker.call(broker.broker.interceptors.add, heartbeats)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g848", "group.protocol": "consumer"})
    try:
        consumer.subscribe(["k"])
        wait_until(lambda: consumer.poll(0.1) is None and consumer.assignment(), timeout=QUICK_S,
                   what="the consumer's assignment")
        # The join, then the acknowledgement of the assignment: the client is then quiet for 15 s.
        wait_until(lambda: heartbeats.count >= 2, timeout=QUICK_S, what="the assignment's acknowledgement")
        joined = describe_group(broker, "g848")
        assert len(joined.members) == 1
        quiet_since = heartbeats.count
        assert advance(broker, 44_999) < QUICK_S  # group.consumer.session.timeout.ms is 45 s
        assert [m.member_id for m in describe_group(broker, "g848").members] == [joined.members[0].member_id]
        assert advance(broker, 1) < QUICK_S
        assert describe_group(broker, "g848").members == []
        assert heartbeats.count == quiet_since  # expelled by the clock alone, no heartbeat in between
    finally:
        consumer.close()


def earliest(broker: BrokerThread, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.beginning_offsets([tp])[tp])
    finally:
        consumer.close()


def test_retention_runs_when_the_clock_passes_retention_ms(broker: BrokerThread) -> None:
    # The broker stamps records with its clock (LogAppendTime): segment ages are the clock's.
    create(broker, "r", **{"retention.ms": "3600000", "segment.ms": "60000",
                           "message.timestamp.type": "LogAppendTime"})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        producer.send("r", b"old").get(QUICK_S)
        advance(broker, 61_000)  # past segment.ms (and the first retention check: nothing is old yet)
        producer.send("r", b"new").get(QUICK_S)  # rolls: the first segment holds only "old"
        assert earliest(broker, "r") == 0

        # "old" is now retention.ms + 1 s old, "new" exactly retention.ms: only "old" goes.
        assert advance(broker, 3_600_000) < QUICK_S
        assert earliest(broker, "r") == 1

        # A check a minute later: "new" is past retention.ms too; the log empties to its end.
        advance(broker, 59_999)
        assert earliest(broker, "r") == 1  # the next check is not due yet
        advance(broker, 1)
        assert earliest(broker, "r") == 2
    finally:
        producer.close()


def last_stable_offset(broker: BrokerThread, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed")
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def test_an_open_transaction_is_aborted_when_the_clock_passes_its_timeout(broker: BrokerThread) -> None:
    create(broker, "x")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{uuid.uuid4()}",
                         "transaction.timeout.ms": 60_000})
    producer.init_transactions(QUICK_S)
    producer.begin_transaction()
    delivered: list[Any] = []
    producer.produce("x", b"never committed", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(QUICK_S) == 0 and delivered == [None]
    assert last_stable_offset(broker, "x") == 0  # held at the open transaction

    # The abort check runs every 10 s on the clock: at 60 s the transaction is not past its timeout.
    advance(broker, 60_000)
    assert last_stable_offset(broker, "x") == 0
    assert advance(broker, 10_000) < QUICK_S  # the next check finds it timed out and aborts it
    wait_until(lambda: last_stable_offset(broker, "x") == 2, timeout=QUICK_S,
               what="the abort marker after the record")
    with pytest.raises(KafkaException):
        producer.commit_transaction(QUICK_S)  # fenced: the coordinator bumped its epoch


def test_a_long_poll_answers_when_the_clock_reaches_its_max_wait(broker: BrokerThread) -> None:
    create(broker, "idle")
    wire = WireClient(broker.bootstrap, timeout=QUICK_S * 3)
    answers: list[Any] = []
    poller = threading.Thread(target=lambda: answers.append(fetch(wire, {"idle": {0: 0}}, max_wait_ms=600_000)))
    try:
        poller.start()
        wait_until(lambda: parked_fetches(broker) == 1, timeout=QUICK_S, what="the parked fetch")
        advance(broker, 599_999)
        assert poller.is_alive() and parked_fetches(broker) == 1
        started = time.monotonic()
        advance(broker, 1)
        poller.join(QUICK_S)
        assert not poller.is_alive() and time.monotonic() - started < QUICK_S
        part = partitions_of(answers[0])[("idle", 0)]
        assert part.error_code == 0 and part.high_watermark == 0 and not part.records
    finally:
        wire.close()
        poller.join(QUICK_S)


def share_state(broker: BrokerThread, group: str, topic: str, offset: int) -> Any:
    def look() -> Any:
        for (g, _, _), sp in list(broker.broker.shares.partitions.items()):
            if g == group and sp.topic == topic:
                return sp.state_of(offset)
        return None

    return broker.call(look)


def test_a_share_lock_expires_when_the_clock_passes_its_duration(broker: BrokerThread) -> None:
    create(broker, "s")
    # Explicit acknowledgement, and no acknowledgement ever sent: only the lock's expiry frees the record.
    holder = ShareConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "sg",
                            "share.acknowledgement.mode": "explicit"})
    other = ShareConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "sg"})
    try:
        holder.subscribe(["s"])
        # Polled until the share-partition exists: its start offset (latest) is then fixed.
        wait_until(lambda: holder.poll(0.1) is not None
                   and broker.call(lambda: any(k[0] == "sg" for k in broker.broker.shares.partitions)),
                   timeout=QUICK_S, what="the share-partition")
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("s", b"locked")
        assert producer.flush(QUICK_S) == 0
        got: list[Any] = []
        wait_until(lambda: got.extend(m for m in holder.poll(0.2) if m.error() is None) or got,
                   timeout=QUICK_S, what="the holder's record")
        assert [m.value() for m in got] == [b"locked"]
        assert share_state(broker, "sg", "s", 0) == (RecordState.ACQUIRED, 1)

        other.subscribe(["s"])
        assert [m for m in other.poll(0.5) if m.error() is None] == []  # locked by the holder
        advance(broker, 29_999)  # the default lock duration is 30 s
        assert share_state(broker, "sg", "s", 0) == (RecordState.ACQUIRED, 1)
        advance(broker, 1)
        # Released; the other member's parked fetch may have taken it already.
        assert share_state(broker, "sg", "s", 0) in ((RecordState.AVAILABLE, 1), (RecordState.ACQUIRED, 2))
        again: list[Any] = []
        wait_until(lambda: again.extend(m for m in other.poll(0.2) if m.error() is None) or again,
                   timeout=QUICK_S, what="the record delivered again")
        assert [(m.value(), m.delivery_count()) for m in again] == [(b"locked", 2)]
    finally:
        other.close()
        holder.close()
