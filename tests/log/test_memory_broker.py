"""A broker with ``log.dirs=:memory:`` through real clients, and proof that it wrote no file.

Each test runs the broker in a subprocess whose working directory and ``TMPDIR`` are an
empty directory and which records, with a Python audit hook, every open for writing, mkdir,
rename, remove, truncate and utime any of its threads makes. After the clients are done the
broker stops and the test checks that the list is empty, the directory still is, and no
``/:memory:`` directory exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

_SERVER = r"""
import json, os, sys
from pathlib import Path

events = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.utime", "shutil.rmtree",
           "os.link", "os.symlink", "os.chmod", "os.chown"}

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or str(path).startswith("/dev/"):
            return  # an fd, or a device such as /dev/null: no file
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        if writes:
            events.append([event, str(path)])
    elif event in CHANGES:
        events.append([event, str(args[0])])

sys.addaudithook(hook)
from kbroker.testing import BrokerThread

with BrokerThread(Path(":memory:"), json.loads(sys.argv[1])) as b:
    print(b.bootstrap, flush=True)
    sys.stdin.readline()
print(json.dumps(events), flush=True)
"""


class MemoryBroker:
    """A ``log.dirs=:memory:`` broker in a subprocess that records file-system writes."""

    def __init__(self, workdir: Path, overrides: dict[str, str]) -> None:
        self.workdir = workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(workdir), TMP=str(workdir),
                   TEMP=str(workdir))
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, json.dumps(overrides)], cwd=workdir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            self.proc.kill()
            raise AssertionError(f"broker did not start (exit {self.proc.wait()})")

    def stop(self) -> list[list[str]]:
        """Stop the broker; the writes it made to the file system."""
        out, _ = self.proc.communicate("\n", timeout=30)
        assert self.proc.returncode == 0, f"broker exited {self.proc.returncode}"
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], MemoryBroker]]:
    """Starts the broker with the given overrides; the test ends with :func:`assert_nothing_written`."""
    started: list[MemoryBroker] = []

    def start(overrides: dict[str, str]) -> MemoryBroker:
        workdir = tmp_path / f"empty{len(started)}"
        workdir.mkdir()
        started.append(MemoryBroker(workdir, overrides))
        return started[-1]

    try:
        yield start
    finally:
        for broker in started:
            broker.kill()


@pytest.fixture
def memory_broker(start_broker: Callable[[dict[str, str]], MemoryBroker]) -> MemoryBroker:
    """The broker with default settings."""
    return start_broker({})


def assert_nothing_written(broker: MemoryBroker) -> None:
    writes = broker.stop()
    assert writes == [], f"the broker touched the file system: {writes[:20]}"
    assert list(broker.workdir.iterdir()) == []
    assert not Path("/:memory:").exists()


def _topic() -> str:
    return f"mem-{uuid.uuid4().hex[:8]}"


def _create(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1, config=config or {})]).values():
        f.result(timeout=15)


def _consume_all(consumer: Consumer, want: int, timeout: float = 15.0) -> list[tuple[bytes | None, bytes | None]]:
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append((msg.key(), msg.value()))
    return got


def test_kafka_python_produce_and_group_consume_with_commits(memory_broker: MemoryBroker) -> None:
    topic = _topic()
    _create(memory_broker.bootstrap, topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=memory_broker.bootstrap)
    for i in range(30):
        producer.send(topic, key=b"k%d" % (i % 3), value=b"v%d" % i)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=memory_broker.bootstrap, group_id="g1",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    values = set()
    for msg in consumer:
        values.add(msg.value)
        if len(values) == 30:
            break
    consumer.commit()
    consumer.close()
    assert values == {b"v%d" % i for i in range(30)}

    # The group's offsets were kept (in memory): a new member of the group reads nothing more.
    again = KafkaConsumer(topic, bootstrap_servers=memory_broker.bootstrap, group_id="g1",
                          auto_offset_reset="earliest", consumer_timeout_ms=3000)
    assert [m.value for m in again] == []
    again.close()
    assert_nothing_written(memory_broker)


def test_confluent_transactions_read_committed(memory_broker: MemoryBroker) -> None:
    topic = _topic()
    _create(memory_broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": memory_broker.bootstrap, "transactional.id": "tx-mem"})
    producer.init_transactions(15)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"committed-%d" % i)
    producer.commit_transaction(15)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"aborted-%d" % i)
    producer.abort_transaction(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"last")
    producer.commit_transaction(15)

    consumer = Consumer({"bootstrap.servers": memory_broker.bootstrap, "group.id": "tx-reader",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    got = [v for _, v in _consume_all(consumer, 6)]
    consumer.close()
    assert got == [b"committed-%d" % i for i in range(5)] + [b"last"]
    assert_nothing_written(memory_broker)


def test_compaction_and_retention(start_broker: Callable[[dict[str, str]], MemoryBroker]) -> None:
    memory_broker = start_broker({"log.cleaner.backoff.ms": "100", "log.retention.check.interval.ms": "100"})
    bootstrap = memory_broker.bootstrap
    compacted, retained = _topic(), _topic()
    _create(bootstrap, compacted, config={"cleanup.policy": "compact", "segment.ms": "100",
                                          "min.cleanable.dirty.ratio": "0.01"})
    _create(bootstrap, retained, config={"retention.ms": "300", "segment.ms": "100"})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for rnd in range(3):
        for i in range(20):
            producer.produce(compacted, key=b"key-%d" % (i % 4), value=b"%d-%d" % (rnd, i))
        producer.flush()
        time.sleep(0.15)  # past segment.ms: the next round rolls a new segment
    producer.produce(retained, value=b"old")
    producer.flush()

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    deadline = time.monotonic() + 20
    kept: list[tuple[bytes | None, bytes | None]] = []
    low = 0
    while time.monotonic() < deadline:
        # New appends roll the segments that expired, so the cleaner and retention get work.
        producer.produce(compacted, key=b"roll", value=b"x")
        producer.produce(retained, value=b"new")
        producer.flush()
        low, _ = consumer.get_watermark_offsets(CTopicPartition(retained, 0), timeout=5)
        consumer.assign([CTopicPartition(compacted, 0, 0)])
        kept = _consume_all(consumer, 10_000, timeout=1.0)
        if low > 0 and len([k for k, _ in kept if k != b"roll"]) == 4:
            break  # retention moved the log start, and one record per key is left
        time.sleep(0.2)
    consumer.close()
    latest = {k: v for k, v in kept if k != b"roll"}
    assert [k for k, _ in kept if k != b"roll"] == sorted(latest, key=lambda k: int(k.split(b"-")[1]))
    assert latest == {b"key-%d" % k: b"2-%d" % (16 + k) for k in range(4)}
    assert low > 0, "retention deleted nothing"
    assert_nothing_written(memory_broker)


def test_configs_and_credentials_are_kept_in_memory(memory_broker: MemoryBroker) -> None:
    # Topic configs, dynamic broker configs and SCRAM credentials: each has a file on disk.
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": memory_broker.bootstrap})
    topic = _topic()
    _create(memory_broker.bootstrap, topic)
    for res in (ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
                    ConfigEntry("retention.ms", "9000", incremental_operation=AlterConfigOpType.SET)]),
                ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
                    ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])):
        admin.incremental_alter_configs([res])[res].result(10)
    for future in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"secret")]).values():
        future.result(10)

    topic_res, broker_res = ConfigResource(ResourceType.TOPIC, topic), ConfigResource(ResourceType.BROKER, "1")
    assert admin.describe_configs([topic_res])[topic_res].result(10)["retention.ms"].value == "9000"
    assert admin.describe_configs([broker_res])[broker_res].result(10)["log.retention.ms"].value == "7200000"
    described = admin.describe_user_scram_credentials(["alice"])["alice"].result(10)
    assert [(c.mechanism, c.iterations) for c in described.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_256, 4096)]
    assert_nothing_written(memory_broker)


def test_memory_cannot_be_combined_with_directories(tmp_path: Path) -> None:
    from kbroker.broker import StartupError, resolve_log_dirs

    with pytest.raises(StartupError, match="cannot be combined"):
        resolve_log_dirs([Path(":memory:"), tmp_path])
    assert resolve_log_dirs([tmp_path]) == [tmp_path]


def test_the_audit_sees_a_broker_on_disk(start_broker: Callable[[dict[str, str]], MemoryBroker], tmp_path: Path) -> None:
    # The same harness with the data on disk: the check above would fail.
    data = tmp_path / "data"
    broker = start_broker({"log.dirs": str(data)})
    _create(broker.bootstrap, _topic())
    writes = broker.stop()
    assert ["os.mkdir", str(data)] in writes
    assert any(event == "open" and path.endswith(".lock") for event, path in writes)
