"""Compaction seen by real clients (kafka-python, confluent-kafka) over a real socket.

Each test waits for cleaning deterministically: ``LogManager.run_cleaner`` cleans what is
due on the test's thread, or the cleaner threads (short back-off) are polled with a bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType

from kbroker.common import TopicPartition as TP
from kbroker.log.cleaner.manager import CLEANER_CHECKPOINT_FILE
from kbroker.testing import BrokerThread

TIMEOUT = 30
KEYS = 100
UPDATES = 10_000
COMPACT = {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01"}


def wait_for(cond: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.05)


def admin_of(b: BrokerThread) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})


def create(b: BrokerThread, topic: str, configs: dict[str, str], partitions: int = 1) -> None:
    admin = admin_of(b)  # referenced until the answer: a destroyed handle fails its futures
    admin.create_topics([NewTopic(topic, partitions, 1, config=configs)])[topic].result(TIMEOUT)


def produce_kafka_python(b: BrokerThread, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    p = KafkaProducer(bootstrap_servers=b.bootstrap, batch_size=4096, linger_ms=2)
    try:
        for k, v in records:
            p.send(topic, key=k, value=v, partition=0)
        p.flush(TIMEOUT)
    finally:
        p.close()


def produce_confluent(b: BrokerThread, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": b.bootstrap, "batch.size": 4096, "linger.ms": 2,
                  "broker.address.family": "v4",
                  "on_delivery": lambda err, msg: errors.append(err) if err else None})
    for k, v in records:
        p.produce(topic, key=k, value=v, partition=0)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0 and errors == []


def read_kafka_python(b: BrokerThread, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                      consumer_timeout_ms=3000)
    tp = KTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    out: list[tuple[int, bytes, bytes | None]] = []
    try:
        while c.position(tp) < end:
            for msgs in c.poll(timeout_ms=1000).values():
                out += [(m.offset, m.key, m.value) for m in msgs]
    finally:
        c.close()
    return out


def read_confluent(b: BrokerThread, topic: str, isolation: str = "read_uncommitted") -> list[tuple[int, bytes, bytes | None]]:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "isolation.level": isolation, "broker.address.family": "v4"})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
    c.assign([TopicPartition(topic, 0, lo)])
    out: list[tuple[int, bytes, bytes | None]] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            pos = c.position([TopicPartition(topic, 0)])[0].offset
            if pos >= hi:
                break
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def updates() -> tuple[list[tuple[bytes, bytes | None]], dict[bytes, bytes]]:
    records = [(b"key-%03d" % (i % KEYS), b"value-%05d" % i) for i in range(UPDATES)]
    latest = {k: v for k, v in records}
    return records, latest


def check_compacted(b: BrokerThread, topic: str, read: list[tuple[int, bytes, bytes | None]],
                    latest: dict[bytes, bytes | None]) -> None:
    """One latest value per key in the cleaned part; increasing offsets; nothing lost."""
    plog = b.broker.log_manager.get_log(topic, 0)
    offsets = [o for o, _, _ in read]
    assert offsets == sorted(set(offsets))
    assert {k: v for _, k, v in read if v is not None} == {k: v for k, v in latest.items() if v is not None}
    cleaned_to = plog.last_cleaning.cleaned_up_to
    cleaned_keys = [k for o, k, _ in read if o < cleaned_to]
    assert len(cleaned_keys) == len(set(cleaned_keys))
    # Only the part not yet cleanable (the active segment) may still repeat keys.
    assert len(read) <= len(latest) + sum(1 for o, _, _ in read if o >= cleaned_to)
    assert len(read) < UPDATES // 10


def test_kafka_python_reads_one_value_per_key_after_cleaning(kafka_broker: BrokerThread) -> None:
    create(kafka_broker, "c", COMPACT)
    records, latest = updates()
    produce_kafka_python(kafka_broker, "c", records)
    plog = kafka_broker.broker.log_manager.get_log("c", 0)
    segments_before, size_before = len(plog.segments), plog.size_in_bytes
    assert kafka_broker.broker.log_manager.run_cleaner() >= 1
    summary = plog.last_cleaning
    assert summary is not None and summary.bytes_after < summary.bytes_before // 10
    assert summary.records_retained == KEYS and plog.size_in_bytes < size_before // 5
    check_compacted(kafka_broker, "c", read_kafka_python(kafka_broker, "c"), latest)
    # As Kafka, a pass groups segments by their size before cleaning: the next one merges
    # the small cleaned segments.
    more = [(b"key-%03d" % (i % KEYS), b"again-%05d" % i) for i in range(2000)]
    produce_kafka_python(kafka_broker, "c", more)
    assert kafka_broker.broker.log_manager.run_cleaner() >= 1
    assert len(plog.segments) < segments_before
    check_compacted(kafka_broker, "c", read_kafka_python(kafka_broker, "c"), {**latest, **dict(more)})
    summary = plog.last_cleaning
    # The checkpoint file says where the cleaned part ends.
    d = kafka_broker.broker.log_manager.log_dir_of("c", 0)
    assert f"c 0 {summary.cleaned_up_to}" in (d / CLEANER_CHECKPOINT_FILE).read_text()


def test_cleaner_threads_compact_confluent_writes(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"log.cleaner.backoff.ms": "50"}) as b:
        create(b, "c", COMPACT)
        records, latest = updates()
        produce_confluent(b, "c", records)
        plog = b.broker.log_manager.get_log("c", 0)
        wait_for(lambda: plog.last_cleaning is not None
                 and plog.last_cleaning.cleaned_up_to == plog.active_segment.base_offset, what="cleaning")
        check_compacted(b, "c", read_confluent(b, "c"), latest)


def test_tombstones_go_after_delete_retention(kafka_broker: BrokerThread) -> None:
    create(kafka_broker, "t", {**COMPACT, "delete.retention.ms": "500"})
    lm = kafka_broker.broker.log_manager
    records, latest = updates()
    dead = [b"key-%03d" % i for i in range(0, KEYS, 2)]
    produce_confluent(kafka_broker, "t", records + [(k, None) for k in dead])
    produce_confluent(kafka_broker, "t", [(b"filler", b"x" * 200)] * 200)  # the tombstones leave the active segment
    assert lm.run_cleaner() >= 1
    first = read_confluent(kafka_broker, "t")
    assert {k for _, k, v in first if v is None} == set(dead)  # kept until delete.retention.ms has passed
    time.sleep(0.6)  # delete.retention.ms itself is under test
    produce_confluent(kafka_broker, "t", [(b"filler", b"y" * 200)] * 200)  # new dirty data: another pass
    assert lm.run_cleaner() >= 1
    after = read_confluent(kafka_broker, "t")
    assert not {k for _, k, v in after if v is None} & set(dead)
    live = {k: v for _, k, v in after if not k.startswith(b"filler")}
    assert live == {k: v for k, v in latest.items() if k not in dead}


def test_configs_from_both_admin_clients_apply_live_and_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    records = [(b"k%d" % (i % 10), b"v%05d" % i) for i in range(3000)]
    with BrokerThread(data) as b:
        lm = b.broker.log_manager
        admin = admin_of(b)
        for topic in ("a", "b"):
            create(b, topic, {"segment.bytes": "8192"})
            produce_confluent(b, topic, records)
        assert lm.run_cleaner() == 0  # cleanup.policy=delete: nothing to clean
        # confluent-kafka, IncrementalAlterConfigs
        res = ConfigResource(ResourceType.TOPIC, "a", incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("min.cleanable.dirty.ratio", "0.01", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(TIMEOUT)
        # kafka-python, AlterConfigs (the whole set), for a topic and for the broker
        kadmin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            kadmin.alter_configs([KConfigResource(KConfigResourceType.TOPIC, "b", configs={
                "cleanup.policy": "compact", "segment.bytes": "8192", "min.cleanable.dirty.ratio": "0.01"})])
            kadmin.alter_configs([KConfigResource(KConfigResourceType.BROKER, "1", configs={
                "log.cleaner.threads": "2", "log.cleaner.backoff.ms": "60000",
                "log.cleaner.dedupe.buffer.size": "4194304"})])
        finally:
            kadmin.close()
        assert lm.get_log("a", 0).config.compact and lm.get_log("b", 0).config.compact
        assert (lm.cleaner.config.threads, lm.cleaner.config.backoff_ms, lm.cleaner.config.dedupe_buffer_size) \
            == (2, 60000, 4194304)
        wait_for(lambda: len([t for t in lm.cleaner._threads if t.is_alive()]) == 2, what="two cleaner threads")
        # The new threads start with a pass of their own: they or run_cleaner clean both.
        lm.run_cleaner()
        wait_for(lambda: all(lm.get_log(t, 0).last_cleaning for t in "ab"), what="a and b cleaned")
        for t in "ab":
            done = lm.get_log(t, 0).last_cleaning
            assert done.records_retained < done.records_read // 10
        # b back to delete, live: its new writes are not cleaned.
        res = ConfigResource(ResourceType.TOPIC, "b", incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(TIMEOUT)
        b_cleaned = lm.get_log("b", 0).last_cleaning
        produce_confluent(b, "b", records)
        assert lm.run_cleaner() == 0 and lm.get_log("b", 0).last_cleaning is b_cleaned
        checkpoints = lm.cleaner.all_checkpoints()
        assert set(checkpoints) == {TP("a", 0), TP("b", 0)}
        produce_confluent(b, "a", records)
    with BrokerThread(data) as b:
        lm = b.broker.log_manager
        assert (lm.cleaner.config.threads, lm.cleaner.config.backoff_ms) == (2, 60000)
        assert lm.cleaner.all_checkpoints() == checkpoints
        a, b_log = lm.get_log("a", 0), lm.get_log("b", 0)
        assert a.config.compact and a.config.min_cleanable_dirty_ratio == 0.01 and not b_log.config.compact
        # a's writes before the restart are cleaned; b (delete) is not.
        lm.run_cleaner()
        wait_for(lambda: a.last_cleaning, what="a cleaned")
        assert a.last_cleaning.cleaned_up_to > checkpoints[TP("a", 0)]
        assert lm.run_cleaner() == 0 and b_log.last_cleaning is None


def committed_of(b: BrokerThread, groups: list[str], topic: str, partitions: int) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for g in groups:
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=g, enable_auto_commit=False)
        try:
            out[g] = {p: c.committed(KTopicPartition(topic, p)) for p in range(partitions)}
        finally:
            c.close()
    return out


def test_consumer_offsets_shrink_and_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    overrides = {"offsets.topic.num.partitions": "1", "offsets.topic.segment.bytes": "4096"}
    groups = [f"g{i}" for i in range(4)]
    with BrokerThread(data, overrides) as b:
        create(b, "src", {}, partitions=3)
        produce_confluent(b, "src", [(b"k", b"v")] * 10)
        from kafka.structs import OffsetAndMetadata

        for g in groups:
            c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=g, enable_auto_commit=False)
            try:
                c.assign([KTopicPartition("src", p) for p in range(3)])
                for i in range(150):
                    c.commit({KTopicPartition("src", p): OffsetAndMetadata(i + p, "", -1) for p in range(3)})
            finally:
                c.close()
        lm = b.broker.log_manager
        plog = lm.get_log("__consumer_offsets", 0)
        assert plog.config.compact and plog.config.segment_bytes == 4096
        size_before = plog.size_in_bytes
        expected = committed_of(b, groups, "src", 3)
        assert expected == {g: {p: 149 + p for p in range(3)} for g in groups}
        assert lm.run_cleaner() >= 1
        assert plog.size_in_bytes < size_before // 4
        assert committed_of(b, groups, "src", 3) == expected
    with BrokerThread(data, overrides) as b:
        assert committed_of(b, groups, "src", 3) == expected


def test_transaction_state_is_compacted_and_transactions_work_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    overrides = {"transaction.state.log.num.partitions": "1", "transaction.state.log.segment.bytes": "4096"}

    def transactions(b: BrokerThread, n: int, start: int) -> None:
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "tx", "linger.ms": 1,
                      "broker.address.family": "v4"})
        p.init_transactions(TIMEOUT)
        for i in range(start, start + n):
            p.begin_transaction()
            p.produce("out", key=b"k%d" % i, value=b"v%d" % i, partition=0)
            p.commit_transaction(TIMEOUT)
        p.flush(TIMEOUT)

    with BrokerThread(data, overrides) as b:
        create(b, "out", {})
        transactions(b, 60, 0)
        lm = b.broker.log_manager
        plog = lm.get_log("__transaction_state", 0)
        assert plog.config.compact and len(plog.segments) > 2
        size_before = plog.size_in_bytes
        assert lm.run_cleaner() >= 1
        assert plog.last_cleaning is not None and plog.size_in_bytes < size_before // 3
    with BrokerThread(data, overrides) as b:
        transactions(b, 5, 60)
        got = read_confluent(b, "out", isolation="read_committed")
        assert [k for _, k, _ in got] == [b"k%d" % i for i in range(65)]
