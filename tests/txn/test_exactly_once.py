"""Exactly-once with real clients over real sockets: a consume-transform-produce worker killed
with SIGKILL and restarted, the broker killed with transactions open, a zombie producer fenced,
and a silent producer's transaction aborted by its timeout.

The broker is ``python -m kbroker serve`` in a subprocess (tests/server/broker_process.py) so
it can be SIGKILLed too; the worker is tests/txn/eos_worker.py in a subprocess. Set
``EOS_SEED`` to replay the kill points of a failed run (the seed is in the failure message).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.broker_process import BrokerProcess
from tests.txn.eos_worker import retry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "eos_worker.py"

#: Broker settings for every test here: small internal topics (faster start and load), and
#: timed-out transactions looked for every 200 ms instead of every 10 s.
BROKER_SETTINGS = (
    "offsets.topic.num.partitions=4",
    "transaction.state.log.num.partitions=4",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
    "group.initial.rebalance.delay.ms=0",
)

N_INPUT = 100_000
PARTITIONS = 4


# ---------------------------------------------------------------- helpers

@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A kbroker subprocess on an ephemeral port; data in the test's tmp_path."""
    with BrokerProcess(tmp_path / "data", *BROKER_SETTINGS) as b:
        yield b


def restart(b: BrokerProcess) -> BrokerProcess:
    """SIGKILL the broker and start a new one on the same data (on a new ephemeral port)."""
    b.kill()
    return BrokerProcess(b.data_dir, *BROKER_SETTINGS).start(timeout=60)


def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names], operation_timeout=20).values():
        f.result(30)


def produce_plain(bootstrap: str, topic: str, values: list[bytes], partitions: int = PARTITIONS) -> None:
    """Non-transactional input, round robin over the partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 32768,
                  "queue.buffering.max.messages": len(values) + 1, "enable.idempotence": True})
    errors: list[Any] = []
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % partitions,
                  on_delivery=lambda err, _m: errors.append(err) if err is not None else None)
    assert p.flush(60) == 0 and not errors, errors[:3]


def txn_producer(bootstrap: str, txn_id: str, **conf: Any) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **conf})
    p.init_transactions(30)
    return p


def end_offsets(bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS) -> list[int]:
    """ListOffsets(latest): the LSOs for read_committed, the high watermarks for read_uncommitted."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-offsets", "isolation.level": isolation})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, q), timeout=10, cached=False)[1]
                for q in range(partitions)]
    finally:
        c.close()


def read_committed(bootstrap: str, topic: str, partitions: int = PARTITIONS, timeout: float = 60.0) -> list[Any]:
    """Every record a read_committed consumer sees, from the start until its positions reach the
    LSOs (which must then equal the high watermarks: no transaction may be left open)."""
    lso = end_offsets(bootstrap, topic, "read_committed", partitions)
    hw = end_offsets(bootstrap, topic, "read_uncommitted", partitions)
    assert lso == hw, f"{topic}: LSOs {lso} below the high watermarks {hw}: a transaction is still open"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-verify", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    out: list[Any] = []
    try:
        tps = [TopicPartition(topic, q) for q in range(partitions)]
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(partitions)])
        deadline = time.monotonic() + timeout
        while any(tp.offset < lso[tp.partition] for tp in c.position(tps)):
            assert time.monotonic() < deadline, (
                f"positions {[tp.offset for tp in c.position(tps)]} never reached {lso} ({len(out)} read)")
            for m in c.consume(10000, 0.3):
                if m.error() is not None:
                    raise KafkaException(m.error())
                out.append(m)
    finally:
        c.close()
    return out


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum of the group's committed offsets (read_uncommitted: pending ones do not count)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"})
    try:
        got = retry(lambda: c.committed([TopicPartition(topic, q) for q in range(PARTITIONS)], timeout=10))
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        c.close()


class Worker:
    """One run of eos_worker.py, its output kept in a file for the failure message."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def committed(self) -> int:
        """How many records this run has committed (its last ``COMMITTED n`` line)."""
        with open(self.log, "rb") as f:
            f.seek(max(0, self.log.stat().st_size - 200))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.startswith("COMMITTED ")]
        return int(lines[-1].split()[1]) if lines else 0

    def alive(self) -> None:
        rc = self.proc.poll()
        assert rc is None, f"worker exited with {rc}:\n{self.output()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# ---------------------------------------------------------------- exactly once under SIGKILL

@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_consume_transform_produce_killed_twice_is_exactly_once(client: str, broker: BrokerProcess,
                                                                 tmp_path: Path) -> None:
    seed = int(os.environ.get("EOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    src, dst, group = f"eos-in-{client}", f"eos-out-{client}", f"eos-group-{client}"
    create_topics(broker.bootstrap, src, dst)
    values = [f"in-{i:06d}".encode() for i in range(N_INPUT)]
    produce_plain(broker.bootstrap, src, values)
    # Two kills: the first in a transaction whose output is written and acknowledged but not
    # committed (the worker stalls there), the second once the run has committed a random share of
    # the input, after a random few milliseconds: anywhere in the loop, usually mid-transaction.
    stall_at = int(rng.uniform(0.1, 0.4) * N_INPUT)
    kill_after = int(rng.uniform(0.1, 0.4) * N_INPUT)
    delay = rng.uniform(0.0, 0.05)
    what = f"seed {seed} (EOS_SEED), kills at {stall_at} (stalled) and after {kill_after} records committed"
    deadline = time.monotonic() + 150
    args = (client, broker.bootstrap, src, dst, group, f"eos-txn-{client}", str(PARTITIONS))
    for run in range(3):
        w = Worker(tmp_path / f"worker-{run}.log", *args, *([str(stall_at)] if run == 0 else []))
        try:
            if run == 0:
                while "STALLED" not in w.output():
                    w.alive()
                    assert time.monotonic() < deadline, f"{what}: run 0 never stalled\n{w.output()}"
                    time.sleep(0.01)
            elif run == 1:
                while w.committed() < kill_after:
                    w.alive()
                    assert time.monotonic() < deadline, f"{what}: run 1 too slow\n{w.output()}"
                    time.sleep(0.002)
                time.sleep(delay)
            else:
                while (done := committed_total(broker.bootstrap, group, src)) < N_INPUT:
                    w.alive()
                    assert time.monotonic() < deadline, f"{what}: {done} of {N_INPUT} committed in time\n{w.output()}"
                    time.sleep(0.2)
            w.kill()
            if run < 2:
                assert committed_total(broker.bootstrap, group, src) < N_INPUT, f"{what}: run {run} finished early"
        finally:
            w.kill()
    # The stalled transaction's output is in the log, aborted: read_uncommitted sees more records.
    hw = end_offsets(broker.bootstrap, dst, "read_uncommitted")
    assert sum(hw) > N_INPUT, f"{what}: high watermarks {hw}: no aborted output in the log"
    out = read_committed(broker.bootstrap, dst)
    counts = collections.Counter(m.value() for m in out)
    dups = [v for v, n in counts.items() if n > 1]
    missing = N_INPUT - len(counts)
    assert not dups and missing == 0 and set(counts) == {b"out-" + v for v in values}, (
        f"{what}: {len(out)} output records, {len(dups)} duplicated (e.g. {dups[:3]}), {missing} missing")
    # Each partition's output keeps the input's order.
    for q in range(PARTITIONS):
        got = [m.value() for m in out if m.partition() == q]
        assert got == [b"out-" + v for v in values[q::PARTITIONS]], f"{what}: partition {q} out of order"


# ---------------------------------------------------------------- broker SIGKILL

@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_consume_transform_produce_survives_broker_sigkill(client: str, broker: BrokerProcess,
                                                            tmp_path: Path) -> None:
    """The broker is SIGKILLed twice under a consume-transform-produce worker and restarted on the
    same port: first together with the worker, while the worker's transaction is certainly open
    (it stalls after its output is acknowledged; its successor must get it aborted), then alone at
    a random point. Small segments put the aborted output across segments, so the restarted
    broker serves read_committed from recovered producer state and transaction indexes."""
    seed = int(os.environ.get("EOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    n = N_INPUT // 2
    port = broker.bootstrap.rsplit(":", 1)[1]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    small = {"segment.bytes": str(64 * 1024)}
    for f in admin.create_topics([NewTopic(t, PARTITIONS, 1, config=small) for t in ("crash-in", "crash-out")],
                                 operation_timeout=20).values():
        f.result(30)
    values = [f"in-{i:06d}".encode() for i in range(n)]
    produce_plain(broker.bootstrap, "crash-in", values)
    stall_at = int(rng.uniform(0.1, 0.4) * n)
    kill_at = int(rng.uniform(0.5, 0.8) * n)
    what = (f"seed {seed} (EOS_SEED), broker and worker killed at {stall_at} (stalled), "
            f"broker alone after {kill_at} records committed")
    args = (client, broker.bootstrap, "crash-in", "crash-out", "crash-group", "crash-txn", str(PARTITIONS))
    runs: list[Worker] = []
    current = broker
    deadline = time.monotonic() + 90

    def worker(*extra: str) -> Worker:
        """The running worker; a new one when there is none or the last one gave up."""
        if not runs or runs[-1].proc.poll() is not None:
            assert len(runs) < 12, f"{what}: {len(runs)} worker runs\n{runs[-1].output()}"
            runs.append(Worker(tmp_path / f"worker-{len(runs)}.log", *args, *extra))
        return runs[-1]

    def state() -> str:
        """What the failure message needs: offsets on both sides, the worker's and broker's last words."""
        b = current.bootstrap
        c = Consumer({"bootstrap.servers": b, "group.id": "crash-group", "isolation.level": "read_uncommitted"})
        try:
            committed = [tp.offset for tp in c.committed([TopicPartition("crash-in", q) for q in range(PARTITIONS)],
                                                         timeout=10)]
        finally:
            c.close()
        return (f"{what}; committed {committed}; crash-in LSO {end_offsets(b, 'crash-in', 'read_committed')} "
                f"HW {end_offsets(b, 'crash-in', 'read_uncommitted')}; crash-out LSO "
                f"{end_offsets(b, 'crash-out', 'read_committed')} HW {end_offsets(b, 'crash-out', 'read_uncommitted')}"
                f"\n--- worker {len(runs) - 1}:\n{runs[-1].output()[-1500:]}\n--- broker:\n"
                + "".join(current.output[-25:]))

    def restart_broker() -> BrokerProcess:
        current.kill()
        return BrokerProcess(broker.data_dir, *BROKER_SETTINGS,
                             f"listeners=PLAINTEXT://127.0.0.1:{port}").start(timeout=60)

    try:
        w = worker(str(stall_at))
        while "STALLED" not in w.output():
            w.alive()
            assert time.monotonic() < deadline, f"{what}: the first worker never stalled\n{w.output()}"
            time.sleep(0.01)
        current = restart_broker()
        w.kill()
        while (done := committed_total(current.bootstrap, "crash-group", "crash-in")) < kill_at:
            worker()
            assert time.monotonic() < deadline, f"{done} of {n} committed in time: {state()}"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))
        current = restart_broker()
        while (done := committed_total(current.bootstrap, "crash-group", "crash-in")) < n:
            worker()
            assert time.monotonic() < deadline, f"{done} of {n} committed in time: {state()}"
            time.sleep(0.1)
    finally:
        for w in runs:
            w.kill()
        broker.proc = current.proc  # the fixture ends the broker that runs now
    out = read_committed(current.bootstrap, "crash-out")
    counts = collections.Counter(m.value() for m in out)
    dups = [v for v, c in counts.items() if c > 1]
    want = {b"out-" + v for v in values}
    assert not dups and set(counts) == want, (
        f"{what} ({len(runs)} worker runs): {len(out)} output records for {n} inputs, {len(dups)} duplicated "
        f"(e.g. {dups[:3]}), {len(want - set(counts))} missing")
    hw = end_offsets(current.bootstrap, "crash-out", "read_uncommitted")
    assert sum(hw) > n, f"{what}: high watermarks {hw}: no aborted output in the log"


def test_broker_sigkill_with_open_transactions_recovers(broker: BrokerProcess) -> None:
    topic = "crash"
    create_topics(broker.bootstrap, topic, partitions=3)
    b = broker.bootstrap

    def send_all(p: Producer, tag: str) -> None:
        for q in range(3):
            for i in range(5):
                p.produce(topic, f"{tag}-{q}-{i}".encode(), partition=q)
        assert p.flush(20) == 0

    committed = txn_producer(b, "crash-committed")
    committed.begin_transaction()
    send_all(committed, "committed")
    committed.commit_transaction(20)
    aborted = txn_producer(b, "crash-aborted")
    aborted.begin_transaction()
    send_all(aborted, "aborted")
    aborted.abort_transaction(20)
    # Open when the broker dies: the coordinator must abort it once its timeout passes.
    left_open = txn_producer(b, "crash-open", **{"transaction.timeout.ms": 3000})
    left_open.begin_transaction()
    send_all(left_open, "open")
    # Ending when the broker dies: committed or aborted, as a whole.
    racing = txn_producer(b, "crash-racing", **{"transaction.timeout.ms": 3000})
    racing.begin_transaction()
    send_all(racing, "racing")
    ending = threading.Thread(target=lambda: _ignore_errors(racing.commit_transaction, 5), daemon=True)
    ending.start()
    time.sleep(0.005)
    restarted = restart(broker)
    try:
        b = restarted.bootstrap
        t0 = time.monotonic()
        while (lso := end_offsets(b, topic, "read_committed", 3)) != (hw := end_offsets(b, topic, "read_uncommitted", 3)):
            assert time.monotonic() - t0 < 30, (
                f"LSOs {lso} never reached the high watermarks {hw} after the restart:\n"
                + "".join(restarted.output[-30:]))
            time.sleep(0.2)
        values = [m.value().decode() for m in read_committed(b, topic, 3)]
        tags = collections.Counter(v.split("-")[0] for v in values)
        assert tags["committed"] == 15, f"committed transaction lost: {tags}"
        assert tags["aborted"] == 0 and tags["open"] == 0, f"aborted/open records visible: {tags}"
        assert tags["racing"] in (0, 15), f"a transaction ended partly committed: {tags}"
        # The coordinator works after the restart: a new transaction commits.
        again = txn_producer(b, "crash-open")
        again.begin_transaction()
        again.produce(topic, b"after", partition=0)
        again.commit_transaction(20)
        assert b"after" in [m.value() for m in read_committed(b, topic, 3)]
    finally:
        ending.join(10)
        restarted.kill()


def _ignore_errors(fn: Any, *args: Any) -> None:
    with contextlib.suppress(KafkaException):  # the broker died under it
        fn(*args)


# ---------------------------------------------------------------- zombie fencing

FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def test_zombie_confluent_producer_is_fenced(broker: BrokerProcess) -> None:
    b = broker.bootstrap
    create_topics(b, "zombie", partitions=1)
    zombie = txn_producer(b, "zombie-tx")
    zombie.begin_transaction()
    zombie.produce("zombie", b"zombie-1", partition=0)
    assert zombie.flush(10) == 0
    successor = txn_producer(b, "zombie-tx")  # bumps the epoch and aborts the zombie's transaction
    try:  # the produce fails (INVALID_PRODUCER_EPOCH), which librdkafka raises as fatal from flush()
        zombie.produce("zombie", b"zombie-2", partition=0)
        zombie.flush(10)
    except KafkaException:
        pass
    with pytest.raises(KafkaException) as ei:
        zombie.commit_transaction(10)
    err = ei.value.args[0]
    assert err.code() in FENCED_CODES and err.fatal(), f"commit failed with {err}"
    successor.begin_transaction()
    successor.produce("zombie", b"successor", partition=0)
    successor.commit_transaction(10)
    assert [m.value() for m in read_committed(b, "zombie", 1)] == [b"successor"]


def test_zombie_kafka_python_producer_is_fenced(broker: BrokerProcess) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KPError

    b = broker.bootstrap
    create_topics(b, "zombie-kp", partitions=1)

    def producer() -> KafkaProducer:
        p = KafkaProducer(bootstrap_servers=b, transactional_id="zombie-kp-tx", request_timeout_ms=10000)
        p.init_transactions()
        return p

    zombie = producer()
    zombie.begin_transaction()
    zombie.send("zombie-kp", b"zombie-1", partition=0).get(10)
    successor = producer()
    with pytest.raises(KPError) as ei:
        zombie.send("zombie-kp", b"zombie-2", partition=0).get(10)
        zombie.commit_transaction()
    assert type(ei.value).__name__ in ("ProducerFencedError", "InvalidProducerEpochError"), repr(ei.value)
    zombie.close(0)
    successor.begin_transaction()
    successor.send("zombie-kp", b"successor", partition=0)
    successor.commit_transaction()
    successor.close(5)
    assert [m.value() for m in read_committed(b, "zombie-kp", 1)] == [b"successor"]


# ---------------------------------------------------------------- transaction timeout

def test_silent_transaction_is_aborted_after_its_timeout(broker: BrokerProcess) -> None:
    b = broker.bootstrap
    create_topics(b, "silent", partitions=1)
    silent = txn_producer(b, "silent-tx", **{"transaction.timeout.ms": 2000})
    silent.begin_transaction()
    silent.produce("silent", b"silent-1", partition=0)
    assert silent.flush(10) == 0
    t_open = time.monotonic()
    # A transaction committed after the silent one began stays invisible until that one ends.
    other = txn_producer(b, "silent-other")
    other.begin_transaction()
    other.produce("silent", b"other-1", partition=0)
    other.commit_transaction(10)
    assert end_offsets(b, "silent", "read_committed", 1) == [0], "LSO moved past an open transaction"
    c = Consumer({"bootstrap.servers": b, "group.id": "silent-reader", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    seen: list[bytes] = []
    try:
        c.assign([TopicPartition("silent", 0, OFFSET_BEGINNING)])
        while not seen:
            assert time.monotonic() - t_open < 20, "the read_committed consumer never got past the silent transaction"
            seen += [m.value() for m in c.consume(10, 0.2) if m.error() is None]
        waited = time.monotonic() - t_open
    finally:
        c.close()
    assert seen == [b"other-1"], seen
    assert waited > 1.5, f"records after the open transaction visible after {waited:.1f}s, before its 2 s timeout"
    lso, hw = end_offsets(b, "silent", "read_committed", 1), end_offsets(b, "silent", "read_uncommitted", 1)
    assert lso == hw, f"LSO {lso} != high watermark {hw} after the abort"
    # The silent producer was fenced by the abort: its commit fails, its record stays invisible.
    with pytest.raises(KafkaException) as ei:
        silent.commit_transaction(10)
    assert ei.value.args[0].code() in FENCED_CODES | {KafkaError.INVALID_TXN_STATE}, ei.value
    assert [m.value() for m in read_committed(b, "silent", 1)] == [b"other-1"]
