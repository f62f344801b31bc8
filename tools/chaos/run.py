"""Fault injection: random broker crashes, freezes and restarts under a producer that must lose nothing.

    python -m tools.chaos --brokers 3 --rounds 20 --seconds-per-round 10

A :class:`kbroker.localcluster.LocalCluster` runs the brokers. An idempotent acks=all producer
(confluent-kafka) writes numbered messages round-robin to every partition of a topic with
replication factor ``min(3, brokers)`` and ``min.insync.replicas = min(2, brokers)``, and a
read_committed consumer reads the topic from the start. Each round picks a broker and a fault:

- ``kill``: SIGKILL, restarted at mid-round (a crash);
- ``pause``: SIGSTOP, SIGCONT at mid-round (a frozen process: its lease expires, it must not
  acknowledge anything after losing leadership);
- ``terminate``: SIGTERM (a controlled shutdown), restarted at mid-round;
- ``bounce``: SIGKILL and restarted at once.

One broker at a time is faulted, so with three brokers a partition always keeps a quorum of
in-sync replicas. After the rounds the producer flushes, the consumer reads up to the end of
every partition, and the run reports per partition: messages acknowledged, acknowledged but
never read (lost), read at more than one offset (duplicated), and the longest time without an
acknowledgement (unavailability). The exit code is 1 on any loss or duplication, a fatal
producer error, or when nothing was acknowledged at all; 2 when the cluster or topic could not
be set up. The run is bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kbroker.localcluster import ClusterError, LocalCluster

FAULTS = ("kill", "pause", "terminate", "bounce")
TOPIC = "chaos"
#: librdkafka logs every refused connection while a broker is down: expected here, so unlogged.
QUIET = {"log_level": 2, "log.connection.close": False}


@dataclass
class PartitionReport:
    """What happened to one partition's messages."""

    partition: int
    acknowledged: int
    lost: int
    duplicated: int
    longest_unavailable_s: float
    lost_sample: list[int] = field(default_factory=list)


@dataclass
class Report:
    """A chaos run's outcome; :attr:`ok` decides the exit code."""

    partitions: list[PartitionReport]
    rounds: list[dict[str, Any]]
    failed_deliveries: dict[str, int]
    fatal_error: str | None
    unread_partitions: list[int]
    seconds: float
    #: Why the fault rounds stopped before their end (a broker that would not start again).
    aborted: str | None = None

    @property
    def acknowledged(self) -> int:
        return sum(p.acknowledged for p in self.partitions)

    @property
    def lost(self) -> int:
        return sum(p.lost for p in self.partitions)

    @property
    def duplicated(self) -> int:
        return sum(p.duplicated for p in self.partitions)

    def problems(self) -> list[str]:
        """Why the run failed (empty when it passed)."""
        out = []
        if self.lost:
            out.append(f"{self.lost} acknowledged messages lost")
        if self.duplicated:
            out.append(f"{self.duplicated} messages duplicated")
        if self.fatal_error:
            out.append(f"fatal producer error: {self.fatal_error}")
        if self.unread_partitions:
            out.append(f"partitions not read to their end: {self.unread_partitions}")
        if not self.acknowledged:
            out.append("nothing was acknowledged")
        if self.aborted:
            out.append(f"fault injection stopped: {self.aborted}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def render(self) -> str:
        """The human-readable report."""
        lines = [f"{'partition':>9} {'acknowledged':>12} {'lost':>6} {'duplicated':>10} {'longest unavailable':>20}"]
        for p in self.partitions:
            lines.append(f"{p.partition:>9} {p.acknowledged:>12} {p.lost:>6} {p.duplicated:>10} "
                         f"{p.longest_unavailable_s:>19.2f}s")
        lines.append(f"{'total':>9} {self.acknowledged:>12} {self.lost:>6} {self.duplicated:>10}")
        if self.failed_deliveries:
            lines.append("failed deliveries (not acknowledged, so not counted): " +
                         ", ".join(f"{k} x{v}" for k, v in sorted(self.failed_deliveries.items())))
        lines.append(f"{len(self.rounds)} rounds in {self.seconds:.1f} s: " +
                     " ".join(f"{r['fault']}({r['broker']})" for r in self.rounds))
        problems = self.problems()
        lines.append("FAILED: " + "; ".join(problems) if problems else "OK: no loss, no duplication")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(acknowledged=self.acknowledged, lost=self.lost, duplicated=self.duplicated,
                   ok=self.ok, problems=self.problems())
        return doc


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest interval in [start, end] without an acknowledgement (``times`` sorted)."""
    points = [start, *(t for t in times if start <= t <= end), end]
    return max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)


def tally(acked: Mapping[int, Sequence[int]], read: Mapping[tuple[int, int], int],
          ack_times: Mapping[int, Sequence[float]], partitions: int, window: tuple[float, float]) -> list[PartitionReport]:
    """Per-partition counts: ``acked`` = message ids acknowledged per partition, ``read`` =
    (partition, offset) -> message id as the consumer saw them."""
    offsets_of: dict[int, Counter[int]] = defaultdict(Counter)
    for (partition, _offset), mid in read.items():
        offsets_of[partition][mid] += 1
    out = []
    for p in range(partitions):
        seen = offsets_of[p]
        lost = sorted(m for m in set(acked.get(p, ())) if m not in seen)
        out.append(PartitionReport(
            partition=p, acknowledged=len(set(acked.get(p, ()))), lost=len(lost),
            duplicated=sum(n - 1 for n in seen.values() if n > 1),
            longest_unavailable_s=round(longest_gap(sorted(ack_times.get(p, ())), *window), 3),
            lost_sample=lost[:20]))
    return out


class Traffic:
    """The producer and the consumer, each on its own thread."""

    def __init__(self, bootstrap: str, partitions: int, rate: float, message_timeout_ms: int) -> None:
        from confluent_kafka import Consumer, Producer

        self.bootstrap = bootstrap
        self.partitions = partitions
        self.interval = 1.0 / rate
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": message_timeout_ms, "retry.backoff.ms": 100,
            # A frozen leader answers nothing: give up on its requests well before Kafka's 30-60 s
            # defaults, so that the unavailability measured is the cluster's, not the client's.
            "request.timeout.ms": 6000, "socket.timeout.ms": 6000,
            "reconnect.backoff.max.ms": 1000, "topic.metadata.refresh.interval.ms": 1000,
            **QUIET,
        })
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "chaos-check", "enable.auto.commit": False,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "reconnect.backoff.max.ms": 1000, "topic.metadata.refresh.interval.ms": 1000,
            **QUIET,
        })
        self.acked: dict[int, list[int]] = defaultdict(list)
        self.ack_times: dict[int, list[float]] = defaultdict(list)
        self.failed: Counter[str] = Counter()
        self.read: dict[tuple[int, int], int] = {}
        self.positions: dict[int, int] = {}
        self.fatal: str | None = None
        self._lock = threading.Lock()
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._threads = [threading.Thread(target=self._produce, name="chaos-producer", daemon=True),
                         threading.Thread(target=self._consume, name="chaos-consumer", daemon=True)]

    def start(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        for t in self._threads:
            t.start()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        now = time.monotonic()
        if err is not None:
            with self._lock:
                self.failed[err.name()] += 1
                if err.fatal():
                    self.fatal = self.fatal or f"{err.name()}: {err.str()}"
            return
        with self._lock:
            self.acked[msg.partition()].append(int(msg.value()))
            self.ack_times[msg.partition()].append(now)

    def _produce(self) -> None:
        mid = 0
        while not self._stop_producing.is_set() and self.fatal is None:
            try:
                self.producer.produce(TOPIC, value=str(mid).encode(), partition=mid % self.partitions,
                                      on_delivery=self._on_delivery)
                mid += 1
            except BufferError:  # the local queue is full while the cluster recovers
                self.producer.poll(0.1)
                continue
            except Exception as e:  # a fatal idempotence error surfaces here too
                self.fatal = self.fatal or f"produce: {e}"
                break
            self.producer.poll(0)
            self._stop_producing.wait(self.interval)

    def _consume(self) -> None:
        while not self._stop_consuming.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            partition, offset, value = msg.partition(), msg.offset(), msg.value()
            if partition is None or offset is None or value is None:
                continue
            with self._lock:
                self.read[(partition, offset)] = int(value)
                self.positions[partition] = offset + 1

    def finish(self, flush_timeout: float, drain_timeout: float) -> list[int]:
        """Stop producing, flush, read every partition to its end; the partitions not read to
        their end in time."""
        self._stop_producing.set()
        self._threads[0].join(10)
        self.producer.flush(flush_timeout)
        deadline = time.monotonic() + drain_timeout
        ends: dict[int, int] = {}
        from confluent_kafka import Consumer, TopicPartition

        # The ends come from a consumer of their own: the reading one is busy in poll() on its thread.
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "chaos-ends", **QUIET})
        while time.monotonic() < deadline:
            for p in range(self.partitions):
                if p not in ends:
                    # The leader may still be moving: asked again next time round.
                    with contextlib.suppress(Exception):
                        ends[p] = probe.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=2)[1]
            with self._lock:
                behind = [p for p in range(self.partitions)
                          if p not in ends or self.positions.get(p, 0) < ends[p]]
            if not behind:
                break
            time.sleep(0.2)
        probe.close()
        self._stop_consuming.set()
        self._threads[1].join(10)
        self.consumer.close()
        return behind


def create_topic(bootstrap: str, partitions: int, replication: int, min_isr: int, timeout: float) -> None:
    """Create the chaos topic and wait until every partition has a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.create_topics([NewTopic(TOPIC, partitions, replication,
                                            config={"min.insync.replicas": str(min_isr)})],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[TOPIC].result(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
        if md is not None and md.error is None and len(md.partitions) == partitions and \
                all(p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {TOPIC} has no leader for every partition after {timeout:.0f} s")


def inject(cluster: LocalCluster, rounds: int, seconds: float, rng: random.Random, deadline: float,
           faults: Sequence[str], log: Callable[[str], None], done: list[dict[str, Any]] | None = None,
           ) -> list[dict[str, Any]]:
    """Run the fault rounds (appending each to ``done``); each heals before the next starts."""
    done = [] if done is None else done
    for n in range(rounds):
        if time.monotonic() + seconds > deadline:
            log(f"round {n}: stopping early, the run's time is up")
            break
        broker, fault = rng.randrange(cluster.brokers), rng.choice(list(faults))
        t0 = time.monotonic()
        log(f"round {n}: {fault} broker {broker}")
        if fault == "kill":
            cluster.kill(broker)
        elif fault == "pause":
            cluster.pause(broker)
        elif fault == "terminate":
            cluster.terminate(broker)
        elif fault == "bounce":
            cluster.kill(broker)
            cluster.restart(broker)
        time.sleep(seconds / 2)
        if fault == "pause":
            cluster.resume(broker)
        elif fault in ("kill", "terminate"):
            cluster.restart(broker)
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        done.append({"round": n, "broker": broker, "fault": fault, "seconds": round(time.monotonic() - t0, 2)})
    return done


def run(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[int, Report | None]:
    """One chaos run: (exit code, report or None when set-up failed)."""
    rng = random.Random(args.seed)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kbroker-chaos-"))
    t_start = time.monotonic()
    deadline = t_start + args.max_seconds
    replication, min_isr = min(3, args.brokers), min(2, args.brokers)
    cluster = LocalCluster(root, args.brokers, dict(kv.split("=", 1) for kv in args.override))
    report: Report | None = None
    try:
        try:
            cluster.start()
            log(f"cluster up in {root}: {cluster.bootstrap_servers}")
            create_topic(cluster.bootstrap_servers, args.partitions, replication, min_isr, timeout=60)
        except (ClusterError, TimeoutError, Exception) as e:  # noqa: BLE001 - any set-up failure
            log(f"set-up failed: {e}")
            return 2, None
        traffic = Traffic(cluster.bootstrap_servers, args.partitions, args.rate,
                          message_timeout_ms=int(args.message_timeout * 1000))
        traffic.start()
        window_start = time.monotonic()
        time.sleep(min(2.0, args.seconds_per_round))  # traffic flows before the first fault
        rounds: list[dict[str, Any]] = []
        aborted = None
        try:
            inject(cluster, args.rounds, args.seconds_per_round, rng,
                   deadline - args.message_timeout - 30, args.faults, log, rounds)
        except ClusterError as e:
            aborted = str(e)
            log(f"fault injection stopped: {e}")
        window_end = time.monotonic()
        log("rounds done: flushing the producer and reading every partition to its end")
        unread = traffic.finish(flush_timeout=args.message_timeout + 5, drain_timeout=30)
        report = Report(
            partitions=tally(traffic.acked, traffic.read, traffic.ack_times, args.partitions,
                             (window_start, window_end)),
            rounds=rounds, failed_deliveries=dict(traffic.failed), fatal_error=traffic.fatal,
            unread_partitions=unread, seconds=round(time.monotonic() - t_start, 1), aborted=aborted)
        return (0 if report.ok else 1), report
    finally:
        cluster.stop()
        if report is not None and report.ok and not args.dir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"cluster folder kept: {root}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seconds-per-round", type=float, default=10.0)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=float, default=300.0, help="messages per second (default: 300)")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated faults to draw from (default: {','.join(FAULTS)})")
    ap.add_argument("--message-timeout", type=float, default=60.0,
                    help="the producer's message.timeout.ms, in seconds (default: 60)")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="bound on the whole run (default: rounds x seconds + 180)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dir", help="the cluster's folder (default: a temporary one, kept on failure)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a broker config key for every broker (repeatable)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    bad = [f for f in faults if f not in FAULTS]
    if bad or not faults:
        print(f"unknown faults {bad}; choose from {', '.join(FAULTS)}", file=sys.stderr)
        return 2
    if args.brokers < 1 or args.rounds < 0 or args.partitions < 1 or args.rate <= 0:
        print("--brokers and --partitions must be at least 1, --rounds at least 0, --rate positive", file=sys.stderr)
        return 2
    if any("=" not in kv for kv in args.override):
        print("--override expects KEY=VALUE", file=sys.stderr)
        return 2
    args.faults = faults
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    if args.max_seconds is None:
        args.max_seconds = args.rounds * args.seconds_per_round + args.message_timeout + 180

    def log(msg: str) -> None:
        print(f"chaos: {msg}", file=sys.stderr, flush=True)

    log(f"seed {args.seed}")

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through run(): the cluster is stopped

    signal.signal(signal.SIGTERM, on_term)
    code, report = run(args, log)
    if report is not None:
        print(report.render())
        if args.json:
            args.json.write_text(json.dumps({"seed": args.seed, **report.to_json()}, indent=1))
    return code
