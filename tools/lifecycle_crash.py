"""``python -m tools.lifecycle_crash``: SIGKILL kbroker while it cleans and deletes segments.

Each run starts kbroker on the same data directory with the log cleaner and the retention
check running all the time (tiny segments, a dirty ratio of 0.01, checks every 100 ms),
writes to a compacted topic, a size-bounded topic and a consumer group's offsets with
acks=all, kills the broker with SIGKILL after a random delay, restarts it and checks:

- the broker comes back and every log reads from its start to its end;
- compacted topic: offsets strictly increase, each key's values never go backwards, and
  each key's latest value is at least as new as the newest value acknowledged for it
  (a tombstone when the newest acknowledged write was a delete);
- size-bounded topic: every acknowledged record at or above the log start offset is
  there, with its value;
- the group's committed offset is at least the last commit acknowledged.

Prints one line per run and exits non-zero on the first violation. ``--runs`` and
``--seed`` make a run reproducible in what it writes (not in where the kill lands).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.brokers import LIVE, Kbroker

COMPACT = "crash-compact"
BOUNDED = "crash-bounded"
GROUP = "crash-group"
KEYS = 200
RATE = 3000
#: Broker settings that keep the cleaner and the retention check busy all the time.
OVERRIDES = [
    "log.retention.check.interval.ms=100",
    "log.cleaner.backoff.ms=50",
    "log.cleaner.min.cleanable.ratio=0.01",
    "log.segment.delete.delay.ms=300",
    "offsets.topic.segment.bytes=16384",
    "offsets.topic.num.partitions=1",
    "group.initial.rebalance.delay.ms=0",
]
TOPIC_CONFIGS = {
    COMPACT: {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01",
              "delete.retention.ms": "86400000"},
    BOUNDED: {"cleanup.policy": "delete", "segment.bytes": "16384", "retention.bytes": "65536"},
}


#: librdkafka's own log lines (connection refused while the broker is down) are expected here.
QUIET = {"log_level": 0}


class Violation(AssertionError):
    """What the broker showed after a restart breaks a promise."""


@dataclass
class Acked:
    """What the broker acknowledged so far, over every run."""

    #: Newest acknowledged sequence per key (None: the newest acknowledged write was a delete).
    compact: dict[bytes, tuple[int, bool]] = field(default_factory=dict)
    #: Acknowledged records of the bounded topic: offset -> value.
    bounded: dict[int, bytes] = field(default_factory=dict)
    committed: int = -1
    seq: int = 0


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, **QUIET})


def create_topics(bootstrap: str) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)  # kept alive until the futures complete
    futures = admin.create_topics(
        [NewTopic(name, 1, 1, config=cfg) for name, cfg in TOPIC_CONFIGS.items()], operation_timeout=30)
    for f in futures.values():
        f.result(30)


def write(bootstrap: str, acked: Acked, rng: random.Random, stop: threading.Event) -> None:
    """Produce (acks=all, idempotent) and commit offsets until ``stop``; record what was acknowledged."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    lock = threading.Lock()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 60000,
                         # Batches must fit the topics' 16 KiB segments (else RECORD_LIST_TOO_LARGE).
                         "batch.size": 8000, "socket.timeout.ms": 2000, **QUIET})
    #: One commit in flight at a time: librdkafka resends a commit that timed out, so two in
    #: flight could land out of order and the newest acknowledged one be overwritten by an
    #: older one, as Kafka would let it be.
    committing = threading.Event()

    def on_commit(err: Any, partitions: Any) -> None:
        if err is None and not partitions[0].error:
            with lock:
                acked.committed = max(acked.committed, partitions[0].offset)
        committing.clear()

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                         "socket.timeout.ms": 2000, "on_commit": on_commit, **QUIET})

    def on_compact(key: bytes, seq: int, tombstone: bool) -> Any:
        # Delivery reports carry no headers: what was sent is bound here.
        def report(err: Any, msg: Any) -> None:
            if err is None:
                with lock:
                    old = acked.compact.get(key)
                    if old is None or seq > old[0]:
                        acked.compact[key] = (seq, tombstone)
        return report

    def on_bounded(err: Any, msg: Any) -> None:
        if err is None:
            with lock:
                acked.bounded[msg.offset()] = msg.value()

    try:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            seq = acked.seq + 1
            key = b"k%03d" % rng.randrange(KEYS)
            tombstone = rng.random() < 0.05
            value = None if tombstone else b"%s:%d:" % (key, seq) + b"x" * rng.randrange(10, 200)
            try:
                producer.produce(COMPACT, key=key, value=value, headers=[("seq", str(seq).encode())],
                                 on_delivery=on_compact(key, seq, tombstone))
                producer.produce(BOUNDED, value=b"b:%d:" % seq + b"y" * 100, on_delivery=on_bounded)
            except BufferError:
                producer.poll(0.05)
                continue
            acked.seq = seq
            producer.poll(0)
            n += 1
            # A steady RATE records a second per topic: segments roll many times a second.
            ahead = started + n / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if n % 200 == 0 and not committing.is_set():
                # seq increases over every run, as acked.committed needs; acknowledged in on_commit.
                committing.set()
                consumer.commit(offsets=[TopicPartition(BOUNDED, 0, seq)], asynchronous=True)
            consumer.poll(0)
    finally:
        producer.flush(0)
        # A close may wait for the dead broker: let it finish (or not) on its own.
        threading.Thread(target=consumer.close, daemon=True).start()


def read_all(bootstrap: str, topic: str) -> tuple[int, list[tuple[int, bytes | None, bytes | None, Any]]]:
    """``(log start, [(offset, key, value, headers)])`` of partition 0, start to end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"crash-check-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True, **QUIET})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[int, bytes | None, bytes | None, Any]] = []
        deadline = time.monotonic() + 60
        while (not out or out[-1][0] < high - 1) and high > low:
            if time.monotonic() > deadline:
                raise Violation(f"{topic}: could not read up to {high} (got to {out[-1][0] if out else None})")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    if consumer.position([TopicPartition(topic, 0)])[0].offset >= high:
                        break
                    continue
                raise Violation(f"{topic}: {msg.error()}")
            out.append((msg.offset(), msg.key(), msg.value(), msg.headers()))
        return low, out
    finally:
        consumer.close()


def committed(bootstrap: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False, **QUIET})
    try:
        return int(consumer.committed([TopicPartition(BOUNDED, 0)], timeout=30)[0].offset)
    finally:
        consumer.close()


def check(bootstrap: str, acked: Acked) -> str:
    """Raise Violation unless the restarted broker kept every promise; a summary line."""
    _, records = read_all(bootstrap, COMPACT)
    latest: dict[bytes, tuple[int, bool]] = {}
    last_offset = -1
    for offset, key, value, headers in records:
        if offset <= last_offset:
            raise Violation(f"{COMPACT}: offset {offset} after {last_offset}")
        last_offset = offset
        assert key is not None
        seq = int(headers[0][1])
        old = latest.get(key)
        if old is not None and seq < old[0]:
            raise Violation(f"{COMPACT}: key {key!r} went back from {old[0]} to {seq} at offset {offset}")
        latest[key] = (seq, value is None)
    for key, (seq, deleted) in acked.compact.items():
        got = latest.get(key)
        if got is None:
            if not deleted:
                raise Violation(f"{COMPACT}: key {key!r} lost (acknowledged value {seq})")
            continue  # a tombstone may be gone, and the key with it (delete.retention.ms is a day here)
        if got[0] < seq:
            raise Violation(f"{COMPACT}: key {key!r} reads {got[0]}, acknowledged {seq}")
    start, bounded = read_all(bootstrap, BOUNDED)
    have = {offset: value for offset, _, value, _ in bounded}
    for offset, value in acked.bounded.items():
        if offset >= start and have.get(offset) != value:
            raise Violation(f"{BOUNDED}: acknowledged offset {offset} (log start {start}) reads {have.get(offset)!r}")
    group = committed(bootstrap)
    if group < acked.committed:
        raise Violation(f"{GROUP}: committed offset {group}, acknowledged {acked.committed}")
    return f"compact {len(records)} records / {len(latest)} keys, bounded start {start} ({len(bounded)} records)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-s", type=float, default=0.3, help="shortest time before the kill")
    ap.add_argument("--max-s", type=float, default=2.5, help="longest time before the kill")
    ap.add_argument("--workdir", help="keep the data and broker log here (default: a temporary dir)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    # mkdtemp, not TemporaryDirectory: the latter's finalizer would remove the evidence.
    tmp = None if args.workdir else tempfile.mkdtemp(prefix="kbroker-crash-")
    workdir = Path(args.workdir or tmp)  # type: ignore[arg-type]
    broker = Kbroker(workdir, overrides=OVERRIDES)
    acked = Acked()
    try:
        broker.start(timeout=60)
        create_topics(broker.bootstrap)
        for run in range(1, args.runs + 1):
            stop = threading.Event()
            writer = threading.Thread(target=write, args=(broker.bootstrap, acked, rng, stop), daemon=True)
            writer.start()
            time.sleep(rng.uniform(args.min_s, args.max_s))
            broker.stop(kill=True)
            stop.set()
            writer.join(30)
            if writer.is_alive():
                raise Violation("the writer did not stop after the kill")
            started = broker.start(timeout=60)
            summary = check(broker.bootstrap, acked)
            print(f"run {run}/{args.runs}: restarted in {started:.2f}s; {summary}; "
                  f"{len(acked.compact)} keys acknowledged, committed {acked.committed}", flush=True)
        return 0
    except Violation as e:
        print(f"VIOLATION: {e}\nbroker log: {broker.log_path}", file=sys.stderr)
        if tmp is not None:
            tmp = None  # keep the evidence
        return 1
    finally:
        broker.stop()
        for b in list(LIVE):
            b.stop(kill=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
