"""Kafka's replication guarantees on a 3-broker local cluster, with real clients over real sockets:
a leader killed under an idempotent acks=all producer, two brokers of three down, the group
coordinator killed under a consumer group, a frozen leader, and a controlled shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kbroker.localcluster import LocalCluster
from tests.cluster.marks import requires_cluster_features

pytestmark = requires_cluster_features
QUIET = {"log_level": 0}
#: Client timeouts short enough that a dead or frozen broker is noticed within a test.
FAST = {"socket.timeout.ms": 5000, "request.timeout.ms": 5000, "metadata.max.age.ms": 2000,
        "topic.metadata.refresh.interval.ms": 1000, "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500}


def _admin(c: LocalCluster):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": c.bootstrap_servers, **QUIET})


def _create(c: LocalCluster, topic: str, partitions: int = 1, rf: int = 3, min_isr: int = 2) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(c)  # kept alive until the result is in
    admin.create_topics([NewTopic(topic, partitions, rf, config={"min.insync.replicas": str(min_isr)})])[topic].result(30)


def _partition(c: LocalCluster, topic: str, p: int = 0, timeout: float = 30.0,
               want: Callable[[Any], bool] = lambda md: True, clock: list[float] | None = None) -> Any:
    """The partition's metadata once ``want`` holds (polled; ``clock`` gets the time it first held)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            t = _admin(c).list_topics(topic, timeout=3).topics.get(topic)
        except Exception as e:  # a broker of the bootstrap list is down: ask again
            last = e
            time.sleep(0.1)
            continue
        if t is not None and t.error is None and p in t.partitions:
            last = t.partitions[p]
            if want(last):
                if clock is not None:
                    clock.append(time.monotonic())
                return last
        time.sleep(0.1)
    raise AssertionError(f"{topic}-{p}: not as wanted within {timeout} s (last: {last})")


class Producing:
    """An idempotent acks=all confluent-kafka producer writing numbered records to partition 0 of
    ``topic`` from a thread until stopped; ``acked`` are the values delivered, in delivery order."""

    def __init__(self, c: LocalCluster, topic: str, **config: Any) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all",
                                  "enable.idempotence": True, "message.timeout.ms": 60000, "linger.ms": 5,
                                  **FAST, **QUIET, **config})
        self.topic = topic
        self.acked: list[int] = []
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked.append(int(msg.value()))
        else:
            self.errors.append(str(err))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.producer.produce(self.topic, b"%d" % self.sent, partition=0, on_delivery=self._delivered)
            self.sent += 1
            self.producer.poll(0.002)
        self.producer.flush(90)

    def __enter__(self) -> Producing:
        self._thread.start()
        return self

    def wait_acked(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acked) >= n, f"only {len(self.acked)} acknowledged; errors {self.errors[:5]}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def _read(c: LocalCluster, topic: str, n: int, *, partition: int = 0, timeout: float = 60.0,
          isolation: str = "read_committed") -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    con = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": "reader", "enable.auto.commit": False,
                    "isolation.level": isolation, **QUIET})
    con.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = con.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m.value())
        # Anything more would be a record nobody was told was written.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = con.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value())
    finally:
        con.close()
    return out


def _end_offset(c: LocalCluster, topic: str, partition: int = 0) -> int:
    from confluent_kafka import Consumer, TopicPartition

    con = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": "offsets", **QUIET})
    try:
        return int(con.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        con.close()


def test_killing_the_leader_under_an_idempotent_acks_all_producer_loses_nothing(kafka_cluster: LocalCluster) -> None:
    c = kafka_cluster
    _create(c, "kill-leader")
    first = _partition(c, "kill-leader", want=lambda m: len(m.isrs) == 3)
    with Producing(c, "kill-leader") as producing:
        producing.wait_acked(200)
        killed_at = time.monotonic()
        c.kill(first.leader)
        served: list[float] = []
        _partition(c, "kill-leader", timeout=15, clock=served, want=lambda m: m.leader not in (-1, first.leader))
        n = len(producing.acked)
        producing.wait_acked(n + 200)  # and it keeps producing to the new leader
    assert served[0] - killed_at < 5.0, f"no new leader within 5 s ({served[0] - killed_at:.1f} s)"
    assert not producing.errors, producing.errors[:5]
    acked = producing.acked
    assert acked == sorted(acked) and len(set(acked)) == len(acked)
    values = [int(v) for v in _read(c, "kill-leader", len(acked))]
    # Every acknowledged record is there exactly once, in order (nothing beyond what was sent).
    assert values == list(range(len(values))) and set(acked) <= set(values), (len(values), len(acked))
    c.restart(first.leader)
    _partition(c, "kill-leader", timeout=60, want=lambda m: first.leader in m.isrs)  # caught up, back in the ISR


def test_killing_the_leader_under_kafka_python_loses_nothing(kafka_cluster: LocalCluster) -> None:
    from kafka import KafkaProducer

    c = kafka_cluster
    _create(c, "kill-leader-kp")
    first = _partition(c, "kill-leader-kp", want=lambda m: len(m.isrs) == 3)
    producer = KafkaProducer(bootstrap_servers=c.bootstrap_servers.split(","), acks="all", enable_idempotence=True,
                             retries=1000, request_timeout_ms=5000, metadata_max_age_ms=2000,
                             retry_backoff_ms=100, max_in_flight_requests_per_connection=5)
    acked: list[int] = []
    try:
        for i in range(100):
            producer.send("kill-leader-kp", b"%d" % i, partition=0).add_callback(lambda md, i=i: acked.append(i))
        producer.flush(30)
        c.kill(first.leader)
        for i in range(100, 200):
            producer.send("kill-leader-kp", b"%d" % i, partition=0).add_callback(lambda md, i=i: acked.append(i))
        producer.flush(60)
    finally:
        producer.close(10)
    assert acked == list(range(200))
    assert [int(v) for v in _read(c, "kill-leader-kp", 200)] == list(range(200))


@pytest.mark.kafka_cluster(brokers=3, overrides={"replica.lag.time.max.ms": "2000"})
def test_two_of_three_down_acks_all_is_refused_and_acks_1_still_works(kafka_cluster: LocalCluster) -> None:
    from confluent_kafka import KafkaError, Producer

    c = kafka_cluster
    _create(c, "two-down", partitions=3)
    parts = [_partition(c, "two-down", p, want=lambda m: len(m.isrs) == 3) for p in range(3)]
    survivor = parts[0].leader
    for i in range(3):
        if i != survivor:
            c.kill(i)
    # The survivor leads every partition whose ISR held it, alone in the ISR.
    for p in range(3):
        _partition(c, "two-down", p, timeout=20, want=lambda m: m.leader == survivor and m.isrs == [survivor])
    before = _end_offset(c, "two-down")
    outcomes: list[Any] = []
    strict = Producer({"bootstrap.servers": c.bootstrap(survivor), "acks": "all", "message.timeout.ms": 4000,
                       "retries": 0, **QUIET})
    strict.produce("two-down", b"must not be acknowledged", partition=0,
                   on_delivery=lambda err, _m: outcomes.append(err))
    strict.flush(20)
    assert len(outcomes) == 1 and outcomes[0] is not None
    assert outcomes[0].code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT), outcomes[0]
    relaxed = Producer({"bootstrap.servers": c.bootstrap(survivor), "acks": "1", **QUIET})
    delivered: dict[int, Any] = {}
    for p in range(3):
        relaxed.produce("two-down", b"acks=1", partition=p,
                        on_delivery=lambda err, m: delivered.__setitem__(m.partition(), err or m.offset()))
    relaxed.flush(20)
    assert sorted(delivered) == [0, 1, 2] and all(isinstance(o, int) for o in delivered.values()), delivered
    # The refused record was never appended: the acks=1 one took its offset. (As Kafka 4 with
    # eligible leader replicas, the high watermark waits for the ISR to reach min.insync again.)
    assert delivered[0] == before


def test_a_group_keeps_its_offsets_when_its_coordinator_dies(kafka_cluster: LocalCluster) -> None:
    from confluent_kafka import Consumer, Producer

    c = kafka_cluster
    _create(c, "grouped", partitions=3)
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", **QUIET})
    for i in range(300):
        p.produce("grouped", b"%d" % i, partition=i % 3)
    assert p.flush(30) == 0
    conf = {"bootstrap.servers": c.bootstrap_servers, "group.id": "survivors", "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000, **FAST, **QUIET}
    con = Consumer(conf)
    con.subscribe(["grouped"])
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen) < 150 and time.monotonic() < deadline:
        m = con.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(int(m.value()))
    con.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in con.committed(con.assignment(), timeout=10)}
    admin = _admin(c)
    coordinator = admin.describe_consumer_groups(["survivors"])["survivors"].result(10).coordinator.id
    con.close()
    c.kill(coordinator)
    # A new member finds the new coordinator and resumes from the committed offsets.
    con = Consumer(conf)
    con.subscribe(["grouped"])
    rest: list[int] = []
    deadline = time.monotonic() + 90
    while len(seen) + len(rest) < 300 and time.monotonic() < deadline:
        m = con.poll(0.5)
        if m is not None and m.error() is None:
            rest.append(int(m.value()))
    after = admin.describe_consumer_groups(["survivors"])["survivors"].result(10).coordinator.id
    con.close()
    assert after != coordinator
    assert sorted(seen + rest) == list(range(300)), "every record consumed exactly once across the failover"
    assert sum(max(o, 0) for o in committed.values()) == len(seen)  # a partition not read yet has none


def test_a_frozen_leader_never_acknowledges_and_its_stale_writes_are_truncated(kafka_cluster: LocalCluster) -> None:
    from confluent_kafka import Producer

    c = kafka_cluster
    _create(c, "frozen-leader")
    first = _partition(c, "frozen-leader", want=lambda m: len(m.isrs) == 3)
    # A producer connected to the leader (one acks=1 record warms it up), which will write to it once frozen.
    stale_outcomes: list[Any] = []
    stale = Producer({"bootstrap.servers": c.bootstrap(first.leader), "acks": "1", "message.timeout.ms": 20000,
                      "retries": 0, "linger.ms": 0, "socket.timeout.ms": 20000, **QUIET})
    stale.produce("frozen-leader", b"warm", partition=0)
    assert stale.flush(30) == 0
    p = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", "enable.idempotence": True,
                  **FAST, **QUIET})
    for i in range(50):
        p.produce("frozen-leader", b"before-%d" % i, partition=0)
    assert p.flush(30) == 0  # the warm-up record is committed too: it came first
    c.pause(first.leader)
    # The stale producer's request sits in the frozen broker's socket until it resumes.
    stale.produce("frozen-leader", b"stale", partition=0, on_delivery=lambda err, _m: stale_outcomes.append(err))
    stale.poll(0.5)
    _partition(c, "frozen-leader", timeout=20, want=lambda m: m.leader not in (-1, first.leader))
    for i in range(50):
        p.produce("frozen-leader", b"after-%d" % i, partition=0)
    assert p.flush(60) == 0
    c.resume(first.leader)
    stale.flush(25)
    # The deposed leader refuses the write it finds on waking (its lease lapsed); the client may
    # send it again to the new leader, which then acknowledges it once, after what it has.
    assert len(stale_outcomes) == 1
    _partition(c, "frozen-leader", timeout=60, want=lambda m: first.leader in m.isrs)
    expected = [b"warm"] + [b"before-%d" % i for i in range(50)] + [b"after-%d" % i for i in range(50)]
    stale_acked = stale_outcomes[0] is None
    for isolation in ("read_committed", "read_uncommitted"):
        records = _read(c, "frozen-leader", len(expected) + stale_acked, isolation=isolation)
        assert [r for r in records if r != b"stale"] == expected
        assert records.count(b"stale") == stale_acked  # never visible unless acknowledged, never twice


def test_controlled_shutdown_moves_leadership_first(kafka_cluster: LocalCluster) -> None:
    c = kafka_cluster
    _create(c, "graceful")
    first = _partition(c, "graceful", want=lambda m: len(m.isrs) == 3)
    with Producing(c, "graceful") as producing:
        producing.wait_acked(200)
        c.terminate(first.leader)
        _partition(c, "graceful", timeout=10, want=lambda m: m.leader not in (-1, first.leader))
        n = len(producing.acked)
        producing.wait_acked(n + 200)
    assert not producing.errors, producing.errors[:5]
    values = [int(v) for v in _read(c, "graceful", len(producing.acked))]
    assert values == list(range(len(values))) and set(producing.acked) <= set(values)


@pytest.mark.kafka_cluster(brokers=3, overrides={"broker.session.timeout.ms": "20000"})
def test_a_leader_back_within_its_session_with_its_log_lost_takes_nothing_from_its_followers(
        kafka_cluster: LocalCluster) -> None:
    # The leader crashes, loses its log (a replaced disk) and is back before its lease expired: as
    # Kafka fences a new incarnation, it must not lead at its old leader epoch (its followers would
    # find their logs diverging at offset 0 and truncate every acknowledged record).
    import shutil

    from confluent_kafka import Producer

    c = kafka_cluster
    _create(c, "lost-log")
    first = _partition(c, "lost-log", want=lambda m: len(m.isrs) == 3)
    producer = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", **FAST, **QUIET})
    acked: list[int] = []
    for i in range(100):
        producer.produce("lost-log", b"%d" % i, partition=0,
                         on_delivery=lambda err, m: acked.append(int(m.value())) if err is None else None)
    producer.flush(30)
    assert len(acked) == 100
    c.kill(first.leader)
    shutil.rmtree(c.broker_dir(first.leader) / "data" / "lost-log-0")
    c.restart(first.leader)
    # Usually within a session timeout; on a cluster started a moment ago the next controller has
    # been seen to take over late (the dead one was the controller too), so the wait is generous.
    _partition(c, "lost-log", timeout=60, want=lambda m: m.leader not in (-1, first.leader))
    assert sorted(int(v) for v in _read(c, "lost-log", 100)) == list(range(100))
    # The restarted broker copies the log back from the new leader and rejoins the ISR.
    _partition(c, "lost-log", timeout=60, want=lambda m: first.leader in m.isrs)
    assert sorted(int(v) for v in _read(c, "lost-log", 100)) == list(range(100))


def test_records_deleted_stay_deleted_when_the_leader_dies(kafka_cluster: LocalCluster) -> None:
    # DeleteRecords answers once every live replica moved its log start (Kafka's
    # DelayedDeleteRecords): the next leader does not serve the deleted records again.
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    c = kafka_cluster
    _create(c, "purged")
    first = _partition(c, "purged", want=lambda m: len(m.isrs) == 3)
    producer = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all", **FAST, **QUIET})
    for i in range(10):
        producer.produce("purged", b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    admin = _admin(c)  # kept alive until the result is in
    [done] = admin.delete_records([KafkaTopicPartition("purged", 0, 6)]).values()
    assert done.result(30).low_watermark == 6  # the low watermark: every replica starts at 6
    c.kill(first.leader)
    _partition(c, "purged", timeout=20, want=lambda m: m.leader not in (-1, first.leader))
    con = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": "purged", **QUIET})
    try:
        low, high = con.get_watermark_offsets(KafkaTopicPartition("purged", 0), timeout=10)
    finally:
        con.close()
    assert (low, high) == (6, 10)
    assert [int(v) for v in _read(c, "purged", 4, isolation="read_uncommitted")] == [6, 7, 8, 9]
