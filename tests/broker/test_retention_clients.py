"""Log retention through real clients over real sockets: retention.ms while writing, consumers
reset below the new log start, retention.bytes bounding the disk, config changes with both
admin clients (live and across a restart), parked fetches answered out of range."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType
from kafka.admin import KafkaAdminClient
from replica_wire import WireClient, batch, create_topic, fetch, partitions_of, produce_one
from wait_helpers import parked_fetches, wait_until

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import PartitionLog
from kbroker.testing import BrokerThread

#: Retention checked five times a second so a test sees it within moments.
OVERRIDES = {"log.retention.check.interval.ms": "200"}
HOUR = 3_600_000


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kbroker-data"


@pytest.fixture
def broker(data_dir: Path) -> Iterator[BrokerThread]:
    with BrokerThread(data_dir, OVERRIDES) as b:
        yield b


def partition_log(b: BrokerThread, topic: str) -> PartitionLog:
    plog = b.broker.log_manager.get_log(topic, 0)
    assert plog is not None
    return plog


def dir_bytes(directory: Path) -> int:
    """Disk use of a partition directory: every file in it."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def segment_bases(directory: Path) -> list[int]:
    return sorted(int(n[:20]) for n in os.listdir(directory) if n.endswith(".log"))


def now_ms() -> int:
    return int(time.time() * 1000)


def _cproducer(b: BrokerThread) -> Producer:
    return Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})


def _cconsumer(b: BrokerThread, **conf: Any) -> Consumer:
    return Consumer({"bootstrap.servers": b.bootstrap, "enable.auto.commit": False,
                     "enable.partition.eof": False, **conf})


def _first(c: Consumer, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None:
            assert m.error() is None, m.error()
            return m
    raise AssertionError("no record consumed")


def _produce_old_then_new(b: BrokerThread, topic: str, old: int, new: int, size: int = 100) -> None:
    """``old`` records stamped two hours ago, then ``new`` stamped now, one batch each."""
    p = _cproducer(b)
    for i in range(old + new):
        ts = now_ms() - 2 * HOUR if i < old else now_ms()
        p.produce(topic, value=b"%06d" % i + b"x" * size, partition=0, timestamp=ts)
        p.flush(10)  # one batch per record: segments hold whole batches
    assert p.flush(10) == 0


# -- retention.ms while writing ------------------------------------------------------------------
def _first_offset_from_earliest(b: BrokerThread, client: str, topic: str) -> int:
    """The offset of the first record a new group's consumer (auto.offset.reset=earliest) gets."""
    if client == "confluent":
        c = _cconsumer(b, **{"group.id": f"earliest-{client}", "auto.offset.reset": "earliest"})
        try:
            c.subscribe([topic])
            return int(_first(c).offset())
        finally:
            c.close()
    k = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=f"earliest-{client}",
                      enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        got: list[Any] = []
        wait_until(lambda: got.extend(r for rs in k.poll(timeout_ms=100).values() for r in rs) or got,
                   what="a record for the kafka-python consumer")
        return int(got[0].offset)
    finally:
        k.close()


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_time_retention_while_writing_and_an_earliest_consumer_starts_at_the_new_start(
        broker: BrokerThread, client: str) -> None:
    create_topic(broker, "tr", 1, {"retention.ms": "2000", "segment.bytes": "1024", "file.delete.delay.ms": "0"})
    plog = partition_log(broker, "tr")
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        p = _cproducer(broker)
        while not stop.is_set():
            p.produce("tr", value=b"y" * 100, partition=0)
            p.poll(0)
            written.append(1)
            time.sleep(0.01)
        p.flush(10)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: plog.log_start_offset > 0, what="retention moving the log start while writing")
        start = plog.log_start_offset
        # The segments below the start left the directory (file.delete.delay.ms=0).
        wait_until(lambda: segment_bases(plog.dir)[0] >= start, what="the expired segment files removed")
        first = _first_offset_from_earliest(broker, client, "tr")
    finally:
        stop.set()
        writer.join(30)
    # The consumer began at the log start of the moment it looked (a segment base), never below.
    assert 0 < start <= first <= plog.log_start_offset
    assert len(written) > first


# -- a position below the new start resets per auto.offset.reset ------------------------------------
@pytest.fixture
def expired(broker: BrokerThread) -> tuple[BrokerThread, int]:
    """Topic "low": 30 two-hour-old records, then 5 fresh ones; retention.ms (1 h) set after they
    were written removes the old segments. Returns the broker and the new log start."""
    create_topic(broker, "low", 1, {"retention.ms": "-1", "segment.bytes": "1024", "file.delete.delay.ms": "0"})
    _produce_old_then_new(broker, "low", 30, 5)
    plog = partition_log(broker, "low")
    assert broker.broker.log_manager.run_retention() == 0  # unlimited: nothing goes
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, "low", incremental_configs=[
        ConfigEntry("retention.ms", str(HOUR), incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    wait_until(lambda: plog.log_start_offset > 5, what="the old segments deleted")
    start = plog.log_start_offset
    assert start <= 30 and plog.log_end_offset == 35
    return broker, start


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_confluent_position_below_the_start_resets(expired: tuple[BrokerThread, int], reset: str) -> None:
    broker, start = expired
    c = _cconsumer(broker, **{"group.id": "resetter", "auto.offset.reset": reset})
    try:
        c.assign([CTopicPartition("low", 0, 2)])  # below the start
        if reset == "earliest":
            assert _first(c).offset() == start
        else:
            # librdkafka tells no position before a record arrives: write until one does. Reset
            # to the end, the first one it gets is a new record, not the log start.
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                _produce_old_then_new(broker, "low", 0, 1)
                first = c.poll(0.5)
            assert first is not None and first.error() is None
            assert first.offset() >= 35
    finally:
        c.close()


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_kafka_python_position_below_the_start_resets(expired: tuple[BrokerThread, int], reset: str) -> None:
    broker, start = expired
    tp = KTopicPartition("low", 0)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset=reset)
    got: list[Any] = []

    def polled() -> list[Any]:
        for recs in c.poll(timeout_ms=100).values():
            got.extend(recs)
        return got

    try:
        c.assign([tp])
        c.seek(tp, 2)  # below the start
        if reset == "earliest":
            wait_until(polled, what="a record after the reset to the log start")
            assert got[0].offset == start
        else:
            wait_until(lambda: not polled() and c.position(tp) == 35, what="the reset to the log end")
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
            producer.send("low", b"late", partition=0).get(10)
            producer.close()
            wait_until(polled, what="the record after the reset")
            assert [r.offset for r in got] == [35]
    finally:
        c.close()


# -- retention.bytes -----------------------------------------------------------------------------
def test_retention_bytes_bounds_the_partition_directory(broker: BrokerThread) -> None:
    limit, segment = 4096, 1024
    create_topic(broker, "sz", 1, {"retention.bytes": str(limit), "segment.bytes": str(segment),
                                   "file.delete.delay.ms": "0"})
    plog = partition_log(broker, "sz")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    for i in range(300):
        p.send("sz", b"%05d" % i + b"z" * 150, partition=0).get(10)
    p.close()
    assert plog.log_end_offset == 300
    # Kafka's bound: less than one segment above retention.bytes, plus the index files and
    # the producer snapshots kept beside the segments.
    wait_until(lambda: plog.size_in_bytes < limit + segment, what="the log cut to retention.bytes")
    wait_until(lambda: dir_bytes(plog.dir) < 2 * (limit + segment),
               what=lambda: f"the directory bounded (now {dir_bytes(plog.dir)} bytes)")
    assert plog.size_in_bytes >= limit - segment  # only what the excess allowed went
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        tp = KTopicPartition("sz", 0)
        c.assign([tp])
        got: list[Any] = []
        wait_until(lambda: got.extend(r for rs in c.poll(timeout_ms=100).values() for r in rs) or
                   (got and got[-1].offset == 299), what="the retained records")
    finally:
        c.close()
    assert got[0].offset == plog.log_start_offset > 0
    assert [r.value for r in got] == [b"%05d" % i + b"z" * 150 for i in range(got[0].offset, 300)]


# -- config changes with both admin clients, live and across a restart ------------------------------
def test_retention_configs_from_both_admin_clients_apply_live_and_survive_a_restart(data_dir: Path) -> None:
    with BrokerThread(data_dir, OVERRIDES) as b:
        create_topic(b, "cfg", 1, {"segment.bytes": "1024", "file.delete.delay.ms": "0"})
        _produce_old_then_new(b, "cfg", 20, 5)
        plog = partition_log(b, "cfg")
        assert b.broker.log_manager.run_retention() == 0  # 7 days by default
        # confluent-kafka, IncrementalAlterConfigs: retention.ms.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource(ResourceType.TOPIC, "cfg", incremental_configs=[
            ConfigEntry("retention.ms", str(HOUR), incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(10)
        wait_until(lambda: plog.log_start_offset > 0, what="retention.ms applied without a restart")
        assert plog.log_start_offset <= 20
        # kafka-python, AlterConfigs (replaces the topic's configs): retention.bytes too.
        kadmin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            kadmin.alter_configs([KConfigResource(KConfigResourceType.TOPIC, "cfg", configs={
                "retention.ms": str(HOUR), "retention.bytes": "2048", "segment.bytes": "1024",
                "file.delete.delay.ms": "0"})])
        finally:
            kadmin.close()
        p = _cproducer(b)
        for _ in range(40):
            p.produce("cfg", value=b"n" * 100, partition=0)
            p.flush(10)
        wait_until(lambda: plog.size_in_bytes < 2048 + 1024, what="retention.bytes applied without a restart")
        start_before = plog.log_start_offset
        end_before = plog.log_end_offset
    with BrokerThread(data_dir, OVERRIDES) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource(ResourceType.TOPIC, "cfg")
        got = admin.describe_configs([res])[res].result(10)
        assert got["retention.ms"].value == str(HOUR) and got["retention.bytes"].value == "2048"
        plog = partition_log(b, "cfg")
        assert plog.config.retention_bytes == 2048 and plog.config.retention_ms == HOUR
        assert plog.log_start_offset >= start_before and plog.log_end_offset == end_before
        p = _cproducer(b)
        for _ in range(40):
            p.produce("cfg", value=b"r" * 100, partition=0)
            p.flush(10)
        # The restarted broker enforces the persisted limit.
        wait_until(lambda: plog.size_in_bytes < 2048 + 1024, what="retention.bytes after the restart")
        assert plog.log_start_offset > end_before


# -- parked fetches ------------------------------------------------------------------------------
def test_a_fetch_parked_below_the_new_start_is_answered_out_of_range_at_once(broker: BrokerThread) -> None:
    create_topic(broker, "pk", 1, {"retention.ms": "-1", "file.delete.delay.ms": "0"})
    w = WireClient(broker.bootstrap)
    for i in range(3):
        assert produce_one(w, "pk", 0, batch([b"old%d" % i], timestamp=now_ms() - 2 * HOUR)).error_code == 0
    w.close()
    result: dict[str, Any] = {}

    def park() -> None:
        client = WireClient(broker.bootstrap, timeout=120)
        started = time.monotonic()
        # Far fewer bytes than min_bytes are there: the fetch waits up to a minute.
        resp = fetch(client, {"pk": {0: 1}}, max_wait_ms=60_000, min_bytes=10_000_000)
        result["elapsed"] = time.monotonic() - started
        result["partition"] = partitions_of(resp)[("pk", 0)]
        client.close()

    t = threading.Thread(target=park, daemon=True)
    t.start()
    wait_until(lambda: parked_fetches(broker) > 0, what="the fetch parked")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, "pk", incremental_configs=[
        ConfigEntry("retention.ms", str(HOUR), incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(10)
    t.join(90)
    assert not t.is_alive()
    # Every segment expired with the high watermark at the log end: the log restarts empty at 3.
    part = result["partition"]
    assert part.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert partition_log(broker, "pk").log_start_offset == 3
    assert result["elapsed"] < 30  # woken by retention, not by the minute's deadline
