"""A consume-transform-produce worker for the exactly-once tests, run as its own process so a
test can SIGKILL it anywhere (mid-transaction included) and start it again.

``python tests/txn/eos_worker.py CLIENT BOOTSTRAP SRC DST GROUP TRANSACTIONAL_ID PARTITIONS``
(CLIENT: ``confluent`` or ``kafka-python``) reads SRC from the offsets GROUP committed, writes
``out-<value>`` for each record to the same partition of DST and commits the consumed offsets in
the same transaction (``send_offsets_to_transaction``), one transaction per poll, forever. The
consumer is assigned every partition (no group membership), so a restarted worker resumes
without a rebalance; a restart fences its predecessor through the transactional id and aborts
the transaction it left open. Prints ``READY`` once its producer id is initialised and its
positions are known, then ``COMMITTED <records>`` after every transaction. With an eighth
argument STALL, the transaction that takes the run past STALL records stops after its output is
written and acknowledged (before its offsets and commit): ``STALLED`` is printed and the worker
sleeps, so a test can kill it with a transaction certainly open.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Records per transaction at most: a few hundred transactions over the input.
BATCH = 1000
#: Seconds a transactional call of the confluent worker may take.
API_TIMEOUT = 10


def retry(fn: Callable[[], T], seconds: float = 30.0) -> T:
    """``fn()``, again while it fails with a retriable error (e.g. NOT_COORDINATOR while the
    offsets topic is being created), which librdkafka's committed() passes on."""
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            transient = err.retriable() or err.code() in (KafkaError.NOT_COORDINATOR,
                                                          KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                          KafkaError.COORDINATOR_NOT_AVAILABLE)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def watchdog() -> None:
    """End the worker, with its stack on stderr, if this transaction is not done in time.

    librdkafka 2.x can block in send_offsets_to_transaction() past its timeout when the group
    coordinator went away (confluentinc/librdkafka#5456, #5511; seen with Kafka 4.1.1 as with
    kbroker after a broker restart), and kafka-python's calls have no timeout at all: the worker
    then ends, as under an operator's watchdog, and its successor takes over.
    """
    faulthandler.dump_traceback_later(API_TIMEOUT + 5, exit=True)


def stall() -> None:
    faulthandler.cancel_dump_traceback_later()
    print("STALLED", flush=True)
    while True:
        time.sleep(60)


def run_confluent(bootstrap: str, src: str, dst: str, group: str, txn_id: str, partitions: int,
                  stall_at: int) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

    # Reconnect within a second when the broker restarts (librdkafka backs off up to 10 s).
    fast: dict[str, Any] = {"reconnect.backoff.max.ms": 1000}
    if os.environ.get("EOS_WORKER_DEBUG"):  # librdkafka debug contexts, e.g. "eos,protocol"
        fast["debug"] = os.environ["EOS_WORKER_DEBUG"]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
                         "transaction.timeout.ms": 20000, "queue.buffering.max.messages": 4 * BATCH, **fast})
    # First: fencing the previous worker aborts its open transaction, whose offsets would
    # otherwise keep the committed offsets unstable.
    producer.init_transactions(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **fast})
    committed = retry(lambda: consumer.committed([TopicPartition(src, q) for q in range(partitions)], timeout=10))
    consumer.assign([TopicPartition(src, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                     for tp in committed])
    print("READY", flush=True)
    total = 0
    while True:
        msgs = consumer.consume(BATCH, 0.5)
        for m in msgs:
            if m.error() is not None:
                raise KafkaException(m.error())
        if not msgs:
            continue
        watchdog()
        producer.begin_transaction()
        next_offsets: dict[int, int] = {}
        for m in msgs:
            producer.produce(dst, b"out-" + m.value(), partition=m.partition())
            next_offsets[m.partition()] = m.offset() + 1
        if 0 < stall_at <= total + len(msgs):
            producer.flush(30)
            stall()
        print(f"PRODUCED {total + len(msgs)}", flush=True)
        producer.send_offsets_to_transaction([TopicPartition(src, q, o) for q, o in sorted(next_offsets.items())],
                                             consumer.consumer_group_metadata(), API_TIMEOUT)
        print("OFFSETS SENT", flush=True)
        producer.commit_transaction(API_TIMEOUT)
        faulthandler.cancel_dump_traceback_later()
        total += len(msgs)
        print(f"COMMITTED {total}", flush=True)


def run_kafka_python(bootstrap: str, src: str, dst: str, group: str, txn_id: str, partitions: int,
                     stall_at: int) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    if os.environ.get("EOS_WORKER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id, linger_ms=5,
                             batch_size=256 * 1024, transaction_timeout_ms=20000)
    producer.init_transactions()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH)
    consumer.assign([TopicPartition(src, q) for q in range(partitions)])
    for q in range(partitions):
        consumer.position(TopicPartition(src, q))  # resolves the committed offsets now
    print("READY", flush=True)
    total = 0
    while True:
        polled: dict[Any, list[Any]] = consumer.poll(500)
        if not polled:
            continue
        watchdog()
        producer.begin_transaction()
        offsets = {}
        n = 0
        for tp, recs in polled.items():
            for r in recs:
                producer.send(dst, value=b"out-" + r.value, partition=tp.partition)
            offsets[tp] = OffsetAndMetadata(recs[-1].offset + 1, "", -1)
            n += len(recs)
        if 0 < stall_at <= total + n:
            producer.flush()
            stall()
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()
        faulthandler.cancel_dump_traceback_later()
        total += n
        print(f"COMMITTED {total}", flush=True)


def main(argv: list[str]) -> int:
    client, bootstrap, src, dst, group, txn_id, partitions = argv[:7]
    run = {"confluent": run_confluent, "kafka-python": run_kafka_python}[client]
    run(bootstrap, src, dst, group, txn_id, int(partitions), int(argv[7]) if len(argv) > 7 else 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
