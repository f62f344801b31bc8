"""``python -m tools.bench.console``: what an open web console costs a busy broker.

Two kbroker processes from this tree: one without the console, one serving it
(``console.port``) with two viewers connected for the whole run, as a browser keeps them: the
overview's live stream and a consumer group's. Viewers find the streams the way a browser does
(the ``sse-connect`` attributes of the pages) and count the events they get. The same produce
and consume cells as ``python -m tools.bench`` (its throughput rows) then run on both brokers,
alternating who goes first from cell to cell and from round to round, each side keeping its
best round, so the machine's drift falls on both sides alike. Printed: each cell's msg/s
without and with the console, the change, and the broker CPU per GB moved. ``--one-broker``
compares one broker serving the console, watched during every other run and not between.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tools.bench.brokers import LIVE, Kbroker, free_port
from tools.bench.cli import KBROKER_OVERRIDES, QUICK, Results, run_throughput, throughput_steps

OFF, ON = "off+", "on+"
#: The cells measured by default: both clients, small and large messages, one and eight partitions.
DEFAULT_CELLS = ("confluent.1024B.acks=1.p8", "confluent.100B.acks=1.p1", "kafka-python.1024B.acks=1.p8")


class Viewer(threading.Thread):
    """A console page held open: its SSE streams read until :meth:`stop`, events counted."""

    def __init__(self, base: str, page: str) -> None:
        super().__init__(daemon=True, name=f"viewer {page}")
        self.base = base
        self.page = page
        self.events = 0
        self.streams: list[str] = []
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        import httpx

        try:
            with httpx.Client(base_url=self.base, timeout=httpx.Timeout(10, read=None)) as client:
                html = client.get(self.page).raise_for_status().text
                self.streams = sorted(set(re.findall(r'sse-connect="([^"]+)"', html)))
                if not self.streams:
                    self.error = f"{self.page} has no sse-connect stream"
                    return
                threads = [threading.Thread(target=self._read, args=(client, s), daemon=True) for s in self.streams]
                for t in threads:
                    t.start()
                self._halt.wait()
        except Exception as e:  # reported by the run, not raised in a thread
            self.error = f"{self.page}: {e!r}"

    def _read(self, client: Any, stream: str) -> None:
        try:
            with client.stream("GET", stream.replace("&amp;", "&")) as response:
                for line in response.iter_lines():
                    if self._halt.is_set():
                        return
                    if line.startswith("data:"):
                        self.events += 1
        except Exception as e:
            if not self._halt.is_set():
                self.error = f"{stream}: {e!r}"

    def stop(self) -> None:
        self._halt.set()


def seed_group(bootstrap: str, group: str) -> None:
    """A consumer group with committed offsets on a topic of its own, for the group page to show."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.structs import OffsetAndMetadata

    topic = f"{group}-topic"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(400):
        producer.send(topic, b"v%d" % i, partition=i % 4)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(50, "", -1) for p in range(4)})
    consumer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench.console", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=",".join(DEFAULT_CELLS), help="comma-separated cell names (as tools.bench)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each side keeps its best (default 3)")
    ap.add_argument("--produce-count", type=int, default=QUICK.produce_count, help="messages per produce cell")
    ap.add_argument("--produce-seconds", type=float, default=2.0, help="time bound of each produce cell")
    ap.add_argument("--one-broker", action="store_true", help="one broker serving the console, its pages watched "
                    "for every other run (default: a second broker without the console)")
    args = ap.parse_args(argv)
    p = QUICK
    p.produce_count, p.produce_seconds = args.produce_count, args.produce_seconds
    cells = tuple(c for c in args.cells.split(",") if c)
    clients = tuple(sorted({c.split(".", 1)[0] for c in cells}))
    began = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {msg}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="kbroker-bench-console-"))
    port = free_port()
    watched = Kbroker(workdir / "console", overrides=[*KBROKER_OVERRIDES, f"console.port={port}"])
    plain = watched if args.one_broker else Kbroker(workdir / "plain", overrides=list(KBROKER_OVERRIDES))
    base = f"http://127.0.0.1:{port}"
    pages = ("/", "/groups/bench-console-group")
    viewers: list[Viewer] = []
    events = dict.fromkeys(pages, 0)
    results = Results()

    def watch() -> bool:
        viewers[:] = [Viewer(base, page) for page in pages]
        for v in viewers:
            v.start()
        time.sleep(1.0)  # connected, the samplers running
        failed = [v.error for v in viewers if v.error]
        for e in failed:
            log(f"viewer failed: {e}")
        return not failed

    def unwatch() -> None:
        for v in viewers:
            v.stop()
            events[v.page] += v.events
            if v.error:
                log(f"viewer failed during the run: {v.error}")
        viewers.clear()

    try:
        for b in {id(plain): plain, id(watched): watched}.values():
            b.start()
        seed_group(watched.bootstrap, "bench-console-group")
        if not args.one_broker and not watch():
            return 1
        sides = [(plain, OFF), (watched, ON)]
        # The broker's CPU seconds per GB moved over all the cells: steadier than any one rate.
        moved = {OFF: [0.0, 0.0], ON: [0.0, 0.0]}
        for rnd in range(args.rounds):
            # Topics of their own per side (one broker may serve both sides).
            steps = {key: throughput_steps(p, clients, f"c{rnd}{key[:-1]}", cells) for _, key in sides}
            for i in range(0, len(steps[OFF]), 2):  # produce + consume
                for broker, key in sides[::-1] if (i // 2 + rnd) % 2 else sides:
                    if args.one_broker and key == ON and not watch():
                        return 1
                    m = run_throughput(broker, steps[key][i:i + 2], p, results, log, key, "", best=True)
                    if args.one_broker and key == ON:
                        unwatch()
                    moved[key][0] += m["bytes"]
                    moved[key][1] += m["cpu"]
    finally:
        unwatch()
        for b in list(LIVE):
            b.stop()
    if not all(events.values()):
        log(f"a viewer got no event: {events}")
        return 1
    what = ("one broker serving the console, unwatched and watched" if args.one_broker else
            "kbroker without a console and with one watched")
    print(f"\n{what} (overview + group page streams; events received: {events}), {args.rounds} rounds "
          "alternated, best of each side\n")
    print("| cell | no console msg/s | console open msg/s | change |\n|---|---:|---:|---:|")
    changes = []
    for key, metric in sorted(results.metrics.items()):
        if not key.startswith(OFF) or not key.endswith(".msgs"):
            continue
        off = metric.values.get("kbroker")
        on_metric = results.metrics.get(ON + key[len(OFF):])
        on = on_metric.values.get("kbroker") if on_metric else None
        change = (on / off - 1) * 100 if on and off else None
        if change is not None:
            changes.append(on / off)  # type: ignore[operator]
        print(f"| {key[len(OFF):-5]} | {off or 0:,.0f} | {on or 0:,.0f} | "
              f"{'' if change is None else f'{change:+.1f} %'} |")
    cpu = {k: (c / (b / 1e9) if b else None) for k, (b, c) in moved.items()}
    if cpu[OFF] and cpu[ON]:
        print(f"\nbroker CPU seconds per GB moved, all cells: no console {cpu[OFF]:.2f}, console open "
              f"{cpu[ON]:.2f} ({(cpu[ON] / cpu[OFF] - 1) * 100:+.1f} %)")
    if changes:
        print(f"\ngeometric mean of console-open / no-console: "
              f"{(math.exp(sum(map(math.log, changes)) / len(changes)) - 1) * 100:+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
