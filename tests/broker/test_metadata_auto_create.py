"""Metadata auto-creation of many topics: one batch off the event loop, bounded per request."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from kbroker.codec import decode_response, encode_request
from kbroker.log.topic_store import TopicStore
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

N = 2000
LEADER_NOT_AVAILABLE, POLICY_VIOLATION = 5, 44


def _metadata_body(names: list[str]) -> dict[str, Any]:
    return {"topics": [{"name": n, "topic_id": None} for n in names], "allow_auto_topic_creation": True,
            "include_topic_authorized_operations": False}


def test_mass_auto_create_does_not_stall_other_clients(kafka_broker: BrokerThread) -> None:
    names = [f"auto-{i}" for i in range(N)]
    creator = WireClient(kafka_broker.bootstrap, timeout=120)
    other = WireClient(kafka_broker.bootstrap)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 0})
    producer.produce("side", b"warm-up")
    assert producer.flush(10) == 0
    done = threading.Event()
    stalls: list[float] = []
    delivered: list[object] = []

    def probe() -> None:
        # ApiVersions and a produce round trip, again and again, until the creation is answered.
        while not done.is_set():
            t0 = time.monotonic()
            assert other.call(18, 3, {"client_software_name": "probe", "client_software_version": "1"}).error_code == 0
            producer.produce("side", b"x", on_delivery=lambda err, msg: delivered.append(err))
            assert producer.flush(30) == 0
            stalls.append(time.monotonic() - t0)

    prober = threading.Thread(target=probe)
    started = time.monotonic()
    creator.sock.sendall(encode_request(3, 12, 1, _metadata_body(names), client_id="creator"))
    prober.start()
    (size,) = struct.unpack(">i", creator._read(4))
    _, resp = decode_response(3, 12, creator._read(size))
    total = time.monotonic() - started
    done.set()
    prober.join(60)
    creator.close()
    other.close()
    assert [t.error_code for t in resp.topics] == [0] * N
    assert len(kafka_broker.broker.metadata.topics) >= N
    assert len(stalls) >= 2 and all(err is None for err in delivered)
    # The other client kept being served: its slowest round trip is a small part of the whole creation.
    assert max(stalls) < total / 4, (max(stalls), total, len(stalls))


def test_thousands_of_topics_become_visible_a_chunk_at_a_time(kafka_broker: BrokerThread,
                                                              monkeypatch: Any) -> None:
    """Registering and opening 1,000 new topics ran as one step on the event loop; it now
    yields between chunks, so other connections are served while a mass creation finishes."""
    from kbroker.metadata.manager import MetadataManager

    chunks: list[int] = []
    real = MetadataManager._finish_create

    def recording(self: MetadataManager, topics: Any, prepared: Any, **kw: Any) -> None:
        chunks.append(len(topics))
        real(self, topics, prepared, **kw)

    monkeypatch.setattr(MetadataManager, "_finish_create", recording)
    c = WireClient(kafka_broker.bootstrap, timeout=120)
    resp = c.call(3, 12, _metadata_body([f"chunk-{i}" for i in range(1000)]))
    c.close()
    assert [t.error_code for t in resp.topics] == [0] * 1000
    assert sum(chunks) == 1000 and max(chunks) <= 200


def test_one_store_write_per_request(kafka_broker: BrokerThread, monkeypatch: Any) -> None:
    writes: list[int] = []
    original = TopicStore._save

    def counting(self: TopicStore, topics: Any) -> None:
        writes.append(len(topics))
        original(self, topics)

    monkeypatch.setattr(TopicStore, "_save", counting)
    c = WireClient(kafka_broker.bootstrap)
    resp = c.call(3, 12, _metadata_body([f"w-{i}" for i in range(50)]))
    c.close()
    assert [t.error_code for t in resp.topics] == [0] * 50
    assert len(writes) == 1


def test_auto_create_and_create_topics_bounded_per_request(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"max.partitions.per.request": "10", "num.partitions": "3"}) as b:
        c = WireClient(b.bootstrap)
        resp = c.call(3, 12, _metadata_body([f"m-{i}" for i in range(5)]))
        # Three topics of three partitions fit; the rest waits for the client's retry.
        assert [t.error_code for t in resp.topics] == [0, 0, 0, LEADER_NOT_AVAILABLE, LEADER_NOT_AVAILABLE]
        resp = c.call(3, 12, _metadata_body([f"m-{i}" for i in range(5)]))
        assert [t.error_code for t in resp.topics] == [0] * 5
        # CreateTopics: the bound applies to the whole request, which then creates nothing.
        body = {"topics": [{"name": f"c-{i}", "num_partitions": 4, "replication_factor": 1, "assignments": [],
                            "configs": []} for i in range(3)], "timeout_ms": 10_000, "validate_only": False}
        resp = c.call(19, 7, body)
        assert [t.error_code for t in resp.topics] == [POLICY_VIOLATION] * 3
        assert all(b.broker.metadata.topic(f"c-{i}") is None for i in range(3))
        body["topics"] = body["topics"][:2]
        assert [t.error_code for t in c.call(19, 7, body).topics] == [0, 0]
        c.close()


def test_topic_deletion_removes_files_off_the_event_loop(kafka_broker: BrokerThread, monkeypatch: Any) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    lm = kafka_broker.broker.log_manager
    threads: list[str] = []
    original = lm.delete_partitions

    def recording(topic: str, partitions: Any) -> int:
        threads.append(threading.current_thread().name)
        return int(original(topic, partitions))

    monkeypatch.setattr(lm, "delete_partitions", recording)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic("doomed", 8, 1)])["doomed"].result(10)
    dirs = [p for p in lm.log_dirs[0].iterdir() if p.name.startswith("doomed-")]
    assert len(dirs) == 8
    admin.delete_topics(["doomed"])["doomed"].result(10)
    assert threads and "kbroker" not in threads  # the broker's loop runs on the thread called kbroker
    assert not any(p.exists() for p in dirs)
    admin.create_topics([NewTopic("doomed", 2, 1)])["doomed"].result(10)  # the name is free again
    assert len(kafka_broker.broker.metadata.topic("doomed").partitions) == 2


def test_create_partitions_bounded_per_request(tmp_path: Path) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

    with BrokerThread(tmp_path / "d", {"max.partitions.per.request": "10"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic("a", 1, 1), NewTopic("b", 1, 1)]).values():
            f.result(10)
        # 6 + 6 new partitions: each within the bound, together beyond it.
        futures = admin.create_partitions([NewPartitions("a", 7), NewPartitions("b", 7)])
        for f in futures.values():
            with pytest.raises(KafkaException) as err:
                f.result(10)
            assert err.value.args[0].code() == POLICY_VIOLATION
        assert len(b.broker.metadata.topic("a").partitions) == 1
        for f in admin.create_partitions([NewPartitions("a", 6), NewPartitions("b", 6)]).values():
            f.result(10)
        assert len(b.broker.metadata.topic("b").partitions) == 6


def test_auto_create_beyond_the_bound_is_refused_not_deferred(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"max.partitions.per.request": "4", "num.partitions": "5"}) as b:
        c = WireClient(b.bootstrap)
        resp = c.call(3, 12, _metadata_body(["big-a", "big-b"]))
        assert [t.error_code for t in resp.topics] == [POLICY_VIOLATION] * 2
        c.close()
