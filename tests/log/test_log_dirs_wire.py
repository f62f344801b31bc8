"""Log directory safety through real brokers and clients: the ``.lock`` file, deleting
topics with the longest legal names, deletion off the event loop, periodic flush.ms."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from wait_helpers import wait_until

from kbroker.log import dirs as log_dirs
from kbroker.testing import BrokerThread

TIMEOUT = 15


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})


def _create(bootstrap: str, name: str, config: dict[str, str] | None = None, partitions: int = 1) -> None:
    admin = _admin(bootstrap)  # kept referenced until the future resolves
    admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(TIMEOUT)


def _delete(bootstrap: str, name: str) -> None:
    admin = _admin(bootstrap)
    admin.delete_topics([name])[name].result(TIMEOUT)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "acks": "all", "linger.ms": 0})
    errors: list[object] = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, msg: errors.append(err) if err else None)
        assert p.flush(TIMEOUT) == 0
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": "g",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg.value())
    finally:
        c.close()
    return out


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    wait_until(predicate, timeout, what)


# -- the .lock file ----------------------------------------------------------------------

def _serve(data: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
    return subprocess.Popen([sys.executable, "-m", "kbroker", "serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0",
                             "--override", f"log.dirs={data}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_second_broker_on_a_locked_dir_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _serve(data)
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert "listening on PLAINTEXT://" in line, line
        bootstrap = line.split("PLAINTEXT://", 1)[1].split(",", 1)[0].strip()
        second = _serve(data)
        try:
            out, err = second.communicate(timeout=60)
        finally:
            if second.poll() is None:  # it started after all: end it (by its own handle)
                second.kill()
                second.wait(10)
        assert second.returncode != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Failed to acquire lock" in lines[0] and str(data) in lines[0], err
        # The first broker still serves.
        _create(bootstrap, "t")
        _produce(bootstrap, "t", [b"after"])
        assert _consume(bootstrap, "t", 1) == [b"after"]
    finally:
        first.terminate()
        first.wait(30)
    # The lock went with the process; in-process brokers release it at stop.
    for _ in range(2):
        with BrokerThread(data) as b:
            assert _consume(b.bootstrap, "t", 1) == [b"after"]


def test_in_process_brokers_cannot_share_a_dir(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d"):
        with pytest.raises(RuntimeError) as info:
            BrokerThread(tmp_path / "d").start()
        assert "Failed to acquire lock" in str(info.value.__cause__)
    BrokerThread(tmp_path / "d").start().stop()  # the failed start left the dir usable


# -- deleting topics with the longest legal names -----------------------------------------

def test_delete_topic_with_longest_legal_name_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    name = "n" * 249
    with BrokerThread(data) as b:
        _create(b.bootstrap, name)
        _produce(b.bootstrap, name, [b"x"])
        _create(b.bootstrap, "other")
        _produce(b.bootstrap, "other", [b"kept"])
        _delete(b.bootstrap, name)
        assert b.broker.log_manager.get_log(name, 0) is None
        _wait_for(lambda: not [p for p in data.iterdir() if p.name.startswith("nnnn")], "the topic's directory to go")
    with BrokerThread(data) as b:
        admin = _admin(b.bootstrap)
        topics = admin.list_topics(timeout=TIMEOUT).topics
        assert name not in topics and "other" in topics
        assert _consume(b.bootstrap, "other", 1) == [b"kept"]
        _create(b.bootstrap, name)  # the name is free again
        _produce(b.bootstrap, name, [b"y"])
        assert _consume(b.bootstrap, name, 1) == [b"y"]


def test_delete_dir_name_fits_in_255_bytes() -> None:
    name = log_dirs.log_dir_name_with_suffix_capped("t" * 249, 12345, log_dirs.DELETE_DIR_SUFFIX)
    assert len(name.encode()) == 255 and name.endswith("-delete") and "-12345." in name
    short = log_dirs.log_dir_name_with_suffix_capped("t", 0, log_dirs.DELETE_DIR_SUFFIX)
    assert short.startswith("t-0.") and len(short) == len("t-0.") + 32 + len("-delete")


def test_start_up_skips_an_unloadable_partition_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerThread(data) as b:
        _create(b.bootstrap, "good")
        _produce(b.bootstrap, "good", [b"ok"])
        _create(b.bootstrap, "bad")
    (data / "bad-0" / "partition.metadata").write_text("garbage\n")
    with BrokerThread(data) as b:
        assert _consume(b.bootstrap, "good", 1) == [b"ok"]
        # The unloadable directory was moved aside with its files, not deleted.
        aside = [p for p in data.iterdir() if p.name.startswith("bad-0.") and p.name.endswith("-stray")]
        assert len(aside) == 1 and (aside[0] / "partition.metadata").read_text() == "garbage\n"


# -- deletion off the event loop ----------------------------------------------------------

def test_topic_deletion_removes_files_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rmtree = shutil.rmtree
    threads: list[str] = []

    def rmtree(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    data = tmp_path / "data"
    with BrokerThread(data) as b:
        _create(b.bootstrap, "gone", partitions=8)
        _produce(b.bootstrap, "gone", [b"x"])
        _delete(b.bootstrap, "gone")
        _wait_for(lambda: not [p for p in data.iterdir() if p.name.startswith("gone")], "the directories to go")
        assert threads and "kbroker" not in threads  # BrokerThread's event loop thread


# -- flush.ms ------------------------------------------------------------------------------

def test_flush_ms_flushes_without_a_further_append(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as b:
        _create(b.bootstrap, "f", {"flush.ms": "1000"})
        plog = b.broker.log_manager.get_log("f", 0)
        # Nothing is appended after these two: only a periodic flusher can make them durable.
        _produce(b.bootstrap, "f", [b"one", b"two"])
        assert plog.log_end_offset == 2
        _wait_for(lambda: plog.recovery_point == 2, "the periodic flush", timeout=30)
        assert not plog.active_segment.needs_sync
