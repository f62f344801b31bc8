"""Real-client workers and the join/leave scenario the client tests share.

Each consumer runs in its own thread (kafka-python, confluent-kafka) or task
(aiokafka): a rebalance blocks every member's poll until all have rejoined, so
members must not share a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Producer
from wait_helpers import wait_until as _wait_until

from kbroker.testing import BrokerThread

TOPIC_PARTITIONS = 6
#: Broker settings for client tests: short sessions allowed, auto-created topics get 6 partitions.
BROKER_OVERRIDES = {"group.min.session.timeout.ms": "1000", "num.partitions": str(TOPIC_PARTITIONS)}
SESSION_MS = 6000
HEARTBEAT_MS = 300


def produce(bootstrap: str, topic: str, start: int, stop: int) -> list[bytes]:
    """Write ``m-<i>`` for i in [start, stop), spread round-robin over the partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    values = [f"m-{i}".encode() for i in range(start, stop)]
    for i, v in zip(range(start, stop), values, strict=True):
        p.produce(topic, v, partition=i % TOPIC_PARTITIONS)
    assert p.flush(15) == 0
    return values


#: Workers started by the current scenario, so a wait can report a crashed one at once.
_live_workers: list[Any] = []


def wait_until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for ``cond``; fail at once when a live worker has crashed, and name each one's state
    when the wait times out."""

    def check() -> bool:
        for w in _live_workers:
            if getattr(w, "error", None) is not None:
                raise AssertionError(f"{w.name} failed while waiting for {what}") from w.error
        return cond()

    def describe() -> str:
        states = {w.name: (len(w.consumed), sorted(w.assignment)) for w in _live_workers}
        return f"{what}; workers (consumed, assignment): {states}"

    _wait_until(check, timeout, describe, interval=0.02)


def group_of(broker: BrokerThread, group_id: str) -> Any:
    """The coordinator's live state of ``group_id``."""
    return broker.call(lambda: broker.broker.groups.manager.get(group_id))


def committed(broker: BrokerThread, group_id: str) -> dict[tuple[str, int], int]:
    """``group_id``'s committed offsets, read from the coordinator."""
    offsets = broker.call(lambda: broker.broker.groups.fetch_offsets(group_id, None))
    return {tp: om.offset for tp, om in offsets.items()}


def wait_all_committed(broker: BrokerThread, group_id: str, total: int) -> None:
    """Wait until ``group_id`` has committed every one of the ``total`` records of its topic:
    its members have then processed (and recorded) every read they will make."""
    wait_until(lambda: sum(committed(broker, group_id).values()) == total,
               what=f"{group_id} to commit all {total} records")


class Worker(Protocol):
    name: str
    consumed: list[bytes]
    assignment: set[int]

    def start(self) -> None: ...
    def stop(self) -> None: ...


class ThreadWorker(threading.Thread):
    """A consumer loop in a thread: poll, record, commit synchronously, repeat."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, opts: Options | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.args = (bootstrap, group, topic)
        self.opts = opts or Options()
        self.consumed: list[bytes] = []
        self.assignment: set[int] = set()
        self.assignments_seen = 0
        self.error: BaseException | None = None
        self._stop_flag = threading.Event()
        self._abandon = False

    def stop(self, close: bool = True) -> None:
        """Stop polling; ``close=False`` abandons the consumer without leaving the group."""
        self._abandon = not close
        self._stop_flag.set()
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def loop(self) -> None:
        raise NotImplementedError


@dataclass
class Options:
    """Consumer settings every client worker understands."""

    instance_id: str | None = None
    auto_commit: bool = False
    #: Commit without waiting for the answer (manual commits only).
    async_commit: bool = False
    session_ms: int = SESSION_MS
    #: Client-specific settings, passed through.
    extra: dict[str, Any] = field(default_factory=dict)


class KafkaPythonWorker(ThreadWorker):
    """kafka-python KafkaConsumer; commits after each batch unless auto-committing."""

    def loop(self) -> None:
        from kafka import KafkaConsumer

        bootstrap, group, topic = self.args
        o = self.opts
        config = {"enable_auto_commit": o.auto_commit, "auto_commit_interval_ms": 200,
                  "auto_offset_reset": "earliest", "session_timeout_ms": o.session_ms,
                  "heartbeat_interval_ms": HEARTBEAT_MS, "client_id": self.name, "fetch_max_wait_ms": 100,
                  "group_instance_id": o.instance_id, **o.extra}
        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **config)
        c.subscribe([topic])
        while not self._stop_flag.is_set():
            batches = c.poll(timeout_ms=100)
            for records in batches.values():
                self.consumed.extend(r.value for r in records)
            if batches and not o.auto_commit:
                if o.async_commit:
                    c.commit_async()
                else:
                    c.commit()
            assignment = {tp.partition for tp in c.assignment()}
            if assignment != self.assignment:
                self.assignments_seen += 1
                self.assignment = assignment
        if not self._abandon:
            c.close()


class ConfluentWorker(ThreadWorker):
    """confluent-kafka Consumer; commits after each batch unless auto-committing."""

    def loop(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        bootstrap, group, topic = self.args
        o = self.opts
        config = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": o.auto_commit, "auto.commit.interval.ms": 200,
                  "session.timeout.ms": o.session_ms, "heartbeat.interval.ms": HEARTBEAT_MS,
                  "client.id": self.name, "fetch.wait.max.ms": 100, "topic.metadata.refresh.interval.ms": 1000,
                  **o.extra}
        if o.instance_id is not None:
            config["group.instance.id"] = o.instance_id
        cooperative = config.get("partition.assignment.strategy") == "cooperative-sticky"
        c = Consumer(config)

        def on_assign(consumer: Any, partitions: Any) -> None:
            self.assignments_seen += 1
            if cooperative:
                consumer.incremental_assign(partitions)
                self.assignment |= {p.partition for p in partitions}
            else:
                consumer.assign(partitions)
                self.assignment = {p.partition for p in partitions}

        def on_revoke(consumer: Any, partitions: Any) -> None:
            if cooperative:
                consumer.incremental_unassign(partitions)
                self.assignment -= {p.partition for p in partitions}
            else:
                consumer.unassign()
                self.assignment = set()

        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        while not self._stop_flag.is_set():
            msgs = c.consume(100, 0.1)
            got = [m.value() or b"" for m in msgs if m.error() is None]
            self.consumed.extend(got)
            if got and not o.auto_commit:
                try:
                    if o.async_commit:
                        c.commit(asynchronous=True)
                    else:
                        c.commit(asynchronous=False)
                except KafkaException as e:
                    if e.args[0].code() != -168:  # _NO_OFFSET: nothing new to commit
                        raise
        if not self._abandon:
            c.close()


class AIOKafkaWorker(ThreadWorker):
    """aiokafka AIOKafkaConsumer on its own event loop in the thread."""

    def loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from aiokafka import AIOKafkaConsumer

        bootstrap, group, topic = self.args
        o = self.opts
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=self.name,
                             enable_auto_commit=o.auto_commit, auto_commit_interval_ms=200,
                             auto_offset_reset="earliest", session_timeout_ms=o.session_ms,
                             heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=100,
                             group_instance_id=o.instance_id, **o.extra)
        await c.start()
        pending: set[asyncio.Task[Any]] = set()
        while not self._stop_flag.is_set():
            batches = await c.getmany(timeout_ms=100)
            for records in batches.values():
                self.consumed.extend(r.value for r in records)
            if batches and not o.auto_commit:
                if o.async_commit:
                    task = asyncio.ensure_future(c.commit())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                else:
                    await c.commit()
            assignment = {tp.partition for tp in c.assignment()}
            if assignment != self.assignment:
                self.assignments_seen += 1
                self.assignment = assignment
        if pending:
            await asyncio.wait(pending)
        if not self._abandon:
            await c.stop()


#: Worker class by client name.
WORKERS: dict[str, type[ThreadWorker]] = {
    "kafka-python": KafkaPythonWorker, "confluent": ConfluentWorker, "aiokafka": AIOKafkaWorker}


def join_leave_scenario(broker: BrokerThread, topic: str, make: Callable[[str], ThreadWorker]) -> None:
    """Three members join and then leave one by one while data keeps arriving.

    Every message must be consumed exactly once across the members: positions are
    committed after each processed batch, before the poll in which a rebalance can
    move a partition.
    """
    bootstrap = broker.bootstrap
    expected = produce(bootstrap, topic, 0, 60)
    _live_workers.clear()
    a = make("member-a")
    _live_workers.append(a)
    a.start()
    wait_until(lambda: len(a.consumed) >= 60, what="a to consume")
    b = make("member-b")
    _live_workers.append(b)
    b.start()
    wait_until(lambda: bool(b.assignment) and len(a.assignment) + len(b.assignment) == TOPIC_PARTITIONS,
               what="b to get partitions")
    expected += produce(bootstrap, topic, 60, 120)
    c = make("member-c")
    _live_workers.append(c)
    c.start()
    members = [a, b, c]
    wait_until(lambda: all(m.assignment for m in members)
               and sum(len(m.assignment) for m in members) == TOPIC_PARTITIONS, what="c to get partitions")
    expected += produce(bootstrap, topic, 120, 180)
    def caught_up() -> bool:
        return sum(len(m.consumed) for m in members) >= len(expected)

    for leaving in (a, b):
        wait_until(caught_up, what="catch-up")
        leaving.stop()
        staying = [m for m in members if m.is_alive()]

        def covered(staying: list[ThreadWorker] = staying) -> bool:
            return sum(len(m.assignment) for m in staying) == TOPIC_PARTITIONS

        wait_until(covered, what=f"partitions of {leaving.name} to move")
        expected += produce(bootstrap, topic, len(expected), len(expected) + 60)
    wait_until(caught_up, what="everything consumed")
    # Once the last member has committed the end of every partition, any record it was going to
    # read again (from a predecessor's last commit) has been read.
    wait_all_committed(broker, c.args[1], len(expected))
    c.stop()
    consumed = Counter(v for m in members for v in m.consumed)
    duplicates = [v for v, n in consumed.items() if n > 1]
    assert not duplicates, f"read twice: {duplicates[:10]}"
    assert set(consumed) == set(expected)
    assert all(m.consumed for m in members)
