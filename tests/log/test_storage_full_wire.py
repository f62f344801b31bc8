"""A full disk (ENOSPC) answers KAFKA_STORAGE_ERROR, keeps reads going, and produce
recovers when space returns with every acknowledged record readable exactly once."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import KafkaStorageError
from wait_helpers import wait_until

from kbroker.log.topic_store import TOPIC_STORE_FILE, TopicStore
from kbroker.testing import BrokerThread

TIMEOUT = 20


class FullDisk:
    """Patches ``os.pwrite``/``os.pwritev`` (how segments are written) to behave like a
    full file system while :attr:`full` is set: a vectored write stores part of its data
    and returns short, the write that follows fails with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.failures = 0
        self._lock = threading.Lock()
        self._pwrite = os.pwrite
        self._pwritev = os.pwritev
        monkeypatch.setattr(os, "pwrite", self.pwrite)
        monkeypatch.setattr(os, "pwritev", self.pwritev)

    def pwritev(self, fd: int, buffers, offset: int) -> int:  # type: ignore[no-untyped-def]
        if not self.full:
            return self._pwritev(fd, buffers, offset)
        data = b"".join(bytes(b) for b in buffers)
        return self._pwrite(fd, data[: len(data) // 2], offset)

    def pwrite(self, fd: int, data, offset: int) -> int:  # type: ignore[no-untyped-def]
        if not self.full:
            return self._pwrite(fd, data, offset)
        with self._lock:
            self.failures += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _consume_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": "g",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append((msg.offset(), msg.value()))
        # Anything beyond the expected records would show up now.
        extra = c.poll(1.0)
        if extra is not None and extra.error() is None:
            out.append((extra.offset(), extra.value()))
    finally:
        c.close()
    return out


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    wait_until(predicate, timeout, what)


def test_full_disk_answers_storage_error_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    disk = FullDisk(monkeypatch)
    acked: list[bytes] = []
    with BrokerThread(data) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("full", 1, 1)])["full"].result(TIMEOUT)
        kp = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all", retries=0, linger_ms=0)
        try:
            for i in range(5):
                kp.send("full", f"before-{i}".encode()).get(TIMEOUT)
                acked.append(f"before-{i}".encode())

            disk.full = True
            with pytest.raises(KafkaStorageError):
                kp.send("full", b"refused").get(TIMEOUT)
            # The connection survived: reads (and metadata) still work while the disk is full.
            assert [v for _, v in _consume_all(b.bootstrap, "full", 5)] == acked

            # librdkafka retries KAFKA_STORAGE_ERROR until space returns.
            delivered: list[bytes] = []
            errors: list[object] = []
            cp = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4", "acks": "all",
                           "linger.ms": 0, "retry.backoff.ms": 50, "message.timeout.ms": 60000})

            def on_delivery(err, msg):  # type: ignore[no-untyped-def]
                (errors if err else delivered).append(err or msg.value())

            failures = disk.failures
            for i in range(5):
                cp.produce("full", f"during-{i}".encode(), on_delivery=on_delivery)
            cp.poll(0)
            _wait_for(lambda: cp.poll(0.05) >= 0 and disk.failures >= failures + 3, "failed writes to be retried")
            assert delivered == []
            disk.full = False
            assert cp.flush(TIMEOUT) == 0
            assert errors == []
            acked += delivered

            kp.send("full", b"after").get(TIMEOUT)
            acked.append(b"after")
        finally:
            kp.close()
        records = _consume_all(b.bootstrap, "full", len(acked))
        assert [off for off, _ in records] == list(range(len(acked)))  # no gap, no duplicate
        assert sorted(v for _, v in records) == sorted(acked)
    # The log is consistent on disk: a restart reads the same records.
    with BrokerThread(data) as b:
        assert _consume_all(b.bootstrap, "full", len(acked)) == records


def test_atomic_write_leaves_no_tmp_file_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TopicStore(tmp_path)
    store.create("kept", 1)
    real_write = os.write

    def full_write(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_write)
    with pytest.raises(OSError):
        store.create("new", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TOPIC_STORE_FILE]
    assert [t["name"] for t in json.loads((tmp_path / TOPIC_STORE_FILE).read_text())["topics"]] == ["kept"]
    assert "new" not in store  # memory follows the file: the failed create left no trace
    monkeypatch.setattr(os, "write", real_write)
    store.create("new", 1)  # space returned
    assert set(TopicStore(tmp_path).topics()) == {"kept", "new"}


def test_find_coordinator_on_a_full_disk_is_retriable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbroker.client.cluster import KafkaClient
    from kbroker.client.groups import FIND_COORDINATOR

    data = tmp_path / "data"
    real_write = os.write

    def full_write(fd: int, payload) -> int:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with BrokerThread(data) as b:
        client = KafkaClient(b.bootstrap)
        try:
            body = {"key": "g", "key_type": 0, "coordinator_keys": ["g"]}
            monkeypatch.setattr(os, "write", full_write)  # creating __consumer_offsets needs the topic store
            _, resp = client.request_versioned(FIND_COORDINATOR, body)
            codes = [c.error_code for c in resp.coordinators] if "coordinators" in resp else [resp.error_code]
            assert codes == [15]  # COORDINATOR_NOT_AVAILABLE: clients retry
            assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
            monkeypatch.setattr(os, "write", real_write)
            _, resp = client.request_versioned(FIND_COORDINATOR, body)  # same connection, space returned
            codes = [c.error_code for c in resp.coordinators] if "coordinators" in resp else [resp.error_code]
            assert codes == [0]
        finally:
            monkeypatch.setattr(os, "write", real_write)  # the broker's shutdown writes checkpoints
            client.close()
