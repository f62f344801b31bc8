"""``python -m compat``: run every scenario with every client against kbroker (and Apache Kafka).

One broker subprocess serves the whole run (ephemeral port, temporary data dir); every
cell (client × scenario) runs in its own process under the scenario's timeout and uses
its own uniquely named topics and groups, so cells are independent and a failure never
stops the run. If the broker dies, the cell that was running fails with the broker's last
log line and a new broker is started for the rest.

With --reference every cell also runs against Apache Kafka 4.1.1 (compat/reference.py); the
report then has a kbroker and a Kafka column per client, and every cell where the two differ
is checked against compat/DIFFERENCES.md (--check-differences: exit 1 on an unlisted one).
A kbroker-only run keeps the Kafka cells of the committed report.

Results go to compat/REPORT.md and compat/report.html for a full run; a filtered run
(--fast, --clients, --scenarios) or a check run writes them under compat/work/ instead,
so the committed report stays the full baseline. --check compares kbroker's cells with the
committed compat/REPORT.md and exits 1 if a cell that passed there does not pass now.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from compat.broker import REPO, Broker, BrokerError
from compat.client import Client
from compat.clients.golang import GO_CLIENTS
from compat.clients.java import JAVA_CLIENTS
from compat.reference import (
    KAFKA_IMAGE,
    KAFKA_LABEL,
    BrokerLike,
    backend,
    check_differences,
    differences,
    differs,
    make_reference,
    parse_differences,
    write_differences,
)
from compat.report import Cell, parse_cells, parse_report, write_html, write_markdown
from compat.scenarios import BY_ID, SCENARIOS, Scenario
from compat.security import SecureKafka, SecureKbroker

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
NODE_MODULES = WORK / "node_modules"
PREFIX = "COMPAT-RESULT "
#: Every (client, scenario) where kbroker and Kafka are known to differ, with the reason.
DIFFERENCES = HERE / "DIFFERENCES.md"


CLIENTS = [
    Client("kafka-python", "python"),
    Client("confluent-kafka", "python"),
    Client("aiokafka", "python"),
    Client("kafkajs", "node"),
    Client("kcat", "python"),
    *JAVA_CLIENTS,
    *GO_CLIENTS,
]
CLIENT_NAMES = [c.name for c in CLIENTS]


def client_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    from importlib import metadata
    for name, dist in (("kafka-python", "kafka-python"), ("confluent-kafka", "confluent-kafka"),
                       ("aiokafka", "aiokafka")):
        try:
            out[name] = metadata.version(dist)
            if name == "confluent-kafka":
                import confluent_kafka
                out[name] += f" (librdkafka {confluent_kafka.libversion()[0]})"
        except Exception:
            out[name] = "not installed"
    try:
        out["kafkajs"] = json.loads((NODE_MODULES / "kafkajs" / "package.json").read_text())["version"]
    except OSError:
        out["kafkajs"] = "not installed"
    if shutil.which("kcat"):
        text = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
        import re
        m = re.search(r"Version (\S+).*?librdkafka (\S+)", text)
        out["kcat"] = f"{m.group(1)} (librdkafka {m.group(2)})" if m else "installed"
    else:
        out["kcat"] = "not installed"
    for c in CLIENTS:
        if c.kind == "program" and c.version_of is not None:
            try:
                out[c.name] = c.version_of()
            except Exception as e:  # a version is only a label in the report
                out[c.name] = f"unknown ({e})"
    return out


def run_cell(client: Client, scenario: Scenario, bootstrap: str, extra_env: dict[str, str] | None = None) -> Cell:
    """Run one cell in its own process; ``extra_env`` adds the security scenarios' settings."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if client.kind == "node":
        env["NODE_PATH"] = str(NODE_MODULES)
        args = ["node", str(HERE / "clients" / "kafkajs.js"), scenario.id, bootstrap]
    elif client.kind == "program":
        assert client.command is not None
        args = [*client.command(), scenario.id, bootstrap]
    else:
        args = [sys.executable, "-m", "compat.cell", client.name, scenario.id, bootstrap]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=str(REPO), env=env, capture_output=True, timeout=scenario.timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return Cell("fail", f"timed out after {scenario.timeout:.0f}s", time.monotonic() - t0)
    secs = time.monotonic() - t0
    for line in reversed(proc.stdout.decode("utf-8", "replace").splitlines()):
        if line.startswith(PREFIX):
            r = json.loads(line[len(PREFIX):])
            return Cell(r["status"], r.get("detail", ""), secs)
    err = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return Cell("fail", f"exited {proc.returncode} without a result: {err[-1] if err else ''}"[:300], secs)



def carried_kafka_cells(report: Path, keys: set[tuple[str, str]]) -> tuple[dict[tuple[str, str], Cell], str]:
    """The Kafka cells (of ``keys``) and provenance note of a committed report, for a kbroker-only
    run: it keeps the reference column instead of dropping it. ``({}, "not run")`` if it has none."""
    _, committed, committed_note = parse_cells(report)
    theirs = {k: v for k, v in committed.items() if k in keys}
    carried = " (cells carried over by kbroker-only runs)"
    return theirs, (committed_note.removesuffix(carried) + carried) if theirs else "not run"


class BrokerSlot:
    """One broker the cells run against; (re)started on demand, so a crash costs one cell."""

    def __init__(self, name: str, label: str, factory: Callable[[], BrokerLike]) -> None:
        self.name = name
        self.label = label
        self.factory = factory
        self.lock = threading.Lock()  # per broker: a slow Kafka restart never holds up kbroker's cells
        self.broker: BrokerLike | None = None

    def get(self) -> BrokerLike:
        """The running broker, started (again) if it is not running; raises BrokerError."""
        with self.lock:
            b = self.broker
            if b is None or not b.alive():
                if b is not None:
                    b.stop()
                self.broker = None
                b = self.factory().start()
                self.broker = b
                print(f"compat: {self.label} at {b.bootstrap} (log {b.log_path})", file=sys.stderr)
            return b

    def stop(self) -> None:
        """Stop the broker if one runs."""
        with self.lock:
            if self.broker is not None:
                self.broker.stop()
                self.broker = None


def _secure_reference(kind: str | None, log_dir: Path) -> BrokerLike:
    """The reference Kafka with the security listeners: local jars only (the Docker fallback's
    container exposes one PLAINTEXT listener)."""
    if kind != "local":
        raise BrokerError("the security listeners need the local reference Kafka (java and mvn), "
                          "not the Docker fallback")
    return SecureKafka(log_dir)


def _selected(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[Client], list[Scenario]]:
    clients = CLIENTS
    if args.clients:
        want = [c.strip() for c in args.clients.split(",") if c.strip()]
        unknown = [c for c in want if c not in CLIENT_NAMES]
        if unknown:
            ap.error(f"unknown clients: {unknown}")
        clients = [c for c in CLIENTS if c.name in want]
    scenarios = [s for s in SCENARIOS if s.fast] if args.fast else SCENARIOS
    if args.scenarios:
        want = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = [s for s in want if s not in BY_ID]
        if unknown:
            ap.error(f"unknown scenarios: {unknown}")
        scenarios = [s for s in scenarios if s.id in want]
    return clients, scenarios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="only the scenarios marked fast (CI subset)")
    ap.add_argument("--clients", help="comma-separated: " + ",".join(CLIENT_NAMES))
    ap.add_argument("--scenarios", help="comma-separated scenario ids (see compat/scenarios.py)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if a kbroker cell that passes in the committed compat/REPORT.md does not pass now")
    ap.add_argument("--reference", action="store_true",
                    help=f"also run every cell against Apache {KAFKA_LABEL} and report where the two differ")
    ap.add_argument("--check-differences", action="store_true",
                    help="(implies --reference) exit 1 if kbroker and Kafka differ in a cell "
                         "compat/DIFFERENCES.md does not list")
    ap.add_argument("--require-clients", action="store_true",
                    help="exit 1 if a selected client (or, with --reference, the reference Kafka) cannot run (CI)")
    ap.add_argument("--out", type=Path, help="directory for REPORT.md, report.html and DIFFERENCES.md")
    ap.add_argument("--jobs", type=int, default=2,
                    help="cells run at once, over both brokers in reference mode (default 2)")
    ap.add_argument("--reruns", type=int, default=1,
                    help="reference mode: run a cell pair that differs unlisted again, up to this often (default 1)")
    ap.add_argument("--list", action="store_true", help="list clients (and whether usable) and scenarios")
    args = ap.parse_args(argv)
    reference = args.reference or args.check_differences

    clients, scenarios = _selected(ap, args)
    if args.list:
        for c in CLIENTS:
            print(f"client   {c.name:16} {c.missing() or 'ok'}")
        for s in SCENARIOS:
            print(f"scenario {s.id:26} {'fast ' if s.fast else '     '}{s.title}")
        kind, why = backend()
        print(f"reference {KAFKA_LABEL}: " + ({"local": "ok (local jars: java, mvn)",
                                               "docker": "ok (Docker, testcontainers)"}.get(kind or "", why)))
        return 0

    kind = None
    if reference:
        kind, why = backend()
        if kind is None:
            print(f"compat: reference mode skipped: {why}")
            return 1 if args.require_clients else 0
    try:
        listed = parse_differences(DIFFERENCES)
    except ValueError as e:
        print(f"compat: {e}", file=sys.stderr)
        return 2
    partial = bool(args.fast or args.clients or args.scenarios)
    out_dir = args.out or (WORK if (partial or args.check or args.check_differences) else HERE)
    missing = {c.name: c.missing() for c in clients if c.missing()}
    for name, why in missing.items():
        print(f"compat: client {name} unavailable: {why}", file=sys.stderr)

    log_dir = WORK / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    brokers = ["kbroker", "kafka"] if reference else ["kbroker"]
    # One broker per kind and security: (name, security scenario?) -> slot. The security
    # listeners' brokers (compat/security.py) start when their first cell runs, so a broker
    # that cannot serve them fails those cells only.
    slots: dict[tuple[str, bool], BrokerSlot] = {}
    if any(not s.security for s in scenarios):
        slots[("kbroker", False)] = BrokerSlot(
            "kbroker", "kbroker", lambda: Broker(log_path=log_dir / f"broker-{time.strftime('%Y%m%d-%H%M%S')}-"
                                                                   f"{os.getpid()}.log"))
        if reference:
            slots[("kafka", False)] = BrokerSlot("kafka", f"Apache {KAFKA_LABEL} ({kind})",
                                                 lambda: make_reference(log_dir))
    if any(s.security for s in scenarios):
        slots[("kbroker", True)] = BrokerSlot(
            "kbroker", "kbroker with security listeners",
            lambda: SecureKbroker(log_path=log_dir / f"broker-sec-{time.strftime('%Y%m%d-%H%M%S')}-"
                                                     f"{os.getpid()}.log"))
        if reference:
            slots[("kafka", True)] = BrokerSlot("kafka", f"Apache {KAFKA_LABEL} with security listeners",
                                                lambda: _secure_reference(kind, log_dir))
    results: dict[str, dict[tuple[str, str], Cell]] = {name: {} for name in brokers}
    lock = threading.Lock()

    started = time.monotonic()
    try:
        for (_, secure), slot in slots.items():
            if not secure:
                slot.get()
    except BrokerError as e:
        print(f"compat: {e}", file=sys.stderr)
        for slot in slots.values():
            slot.stop()
        return 2

    # Interleaved so that, with --jobs 2, each broker has a cell running most of the time.
    todo: list[tuple[str, Client, Scenario]] = []
    for s in scenarios:
        for c in clients:
            for name in brokers:
                if c.name in missing:
                    results[name][(c.name, s.id)] = Cell("missing", missing[c.name], 0.0)
                else:
                    todo.append((name, c, s))

    def work(item: tuple[str, Client, Scenario]) -> None:
        name, c, s = item
        slot = slots[(name, s.security)]
        try:
            b = slot.get()
        except BrokerError as e:
            cell = Cell("fail", f"broker could not be started: {e}", 0.0)
        else:
            env = b.setup().env() if isinstance(b, (SecureKbroker, SecureKafka)) else None
            cell = run_cell(c, s, b.bootstrap, env)
            if not b.alive():
                cell = Cell("fail", "broker died: " + " | ".join(b.tail(2)), cell.seconds)
        with lock:
            results[name][(c.name, s.id)] = cell
        mark = {"pass": "ok  ", "fail": "FAIL", "na": "n/a "}.get(cell.status, cell.status)
        where = f"{slot.name:8}" if reference else ""
        print(f"{mark} {where}{c.name:16} {s.id:26} {cell.seconds:5.1f}s {cell.detail[:140]}", flush=True)

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(work, todo))
            if reference and args.reruns > 0:
                # A difference DIFFERENCES.md does not list runs again on both brokers; a client's
                # timing flake on a loaded machine then shows as agreeing cells, a real difference again.
                for attempt in range(args.reruns):
                    pairs = {(c.name, s.id): (c, s) for _, c, s in todo}
                    found = differences(results["kbroker"], results["kafka"])
                    again = [pairs[(d.client, d.scenario)] for d in check_differences(found, listed, set())[0]]
                    if not again:
                        break
                    first = {(c.name, s.id): (results["kbroker"][(c.name, s.id)], results["kafka"][(c.name, s.id)])
                             for c, s in again}
                    print(f"compat: rerun {attempt + 1}: {len(again)} unlisted differences run again on both brokers",
                          file=sys.stderr)
                    list(pool.map(work, [(name, c, s) for c, s in again for name in brokers]))
                    for key, (k0, r0) in first.items():
                        if not differs(results["kbroker"][key], results["kafka"][key], key[1]):
                            print(f"compat: {key[0]} × {key[1]} differed only once (kbroker {k0.status}: "
                                  f"{k0.detail[:100]}; Kafka {r0.status}: {r0.detail[:100]}); the rerun agrees",
                                  file=sys.stderr)
    finally:
        for slot in slots.values():
            slot.stop()
    elapsed = time.monotonic() - started

    ours = {(c.name, s.id): results["kbroker"][(c.name, s.id)] for c in clients for s in scenarios}
    if reference:
        theirs = {(c.name, s.id): results["kafka"][(c.name, s.id)] for c in clients for s in scenarios}
        how = {"local": "a single KRaft node from Maven Central's jars (tools/kafka_reference)",
               "docker": f"the {KAFKA_IMAGE} image (testcontainers)"}[kind or "local"]
        note = f"Apache {KAFKA_LABEL}, {how}, `python -m compat --reference` on {time.strftime('%Y-%m-%d', time.gmtime())}"
    else:
        theirs, note = carried_kafka_cells(HERE / "REPORT.md", set(ours))

    found = differences(ours, theirs)
    unlisted, gone = check_differences(found, listed, ran={k for k in ours if k in theirs})
    unlisted_keys = {(d.client, d.scenario) for d in unlisted}
    marks = {(d.client, d.scenario): "unlisted" if (d.client, d.scenario) in unlisted_keys else "listed"
             for d in found}

    meta = {
        "clients": client_versions(),
        "elapsed": f"{elapsed:.0f}s",
        "reference": note,
        "subset": ("--fast " if args.fast else "") + (f"--clients {args.clients} " if args.clients else "")
                  + (f"--scenarios {args.scenarios}" if args.scenarios else ""),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in clients]
    write_markdown(out_dir / "REPORT.md", names, scenarios, ours, theirs, marks, meta)
    write_html(out_dir / "report.html", names, scenarios, ours, theirs, marks, meta)

    labels = {"kbroker": "kbroker", "kafka": f"Apache {KAFKA_LABEL}"}
    for name in brokers:
        counts = {c.name: sum(1 for s in scenarios if results[name][(c.name, s.id)].status == "pass")
                  for c in clients}
        print(f"compat: {labels[name]}: passes per client: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
              file=sys.stderr)
    print(f"compat: {elapsed:.0f}s; report in {out_dir / 'REPORT.md'}", file=sys.stderr)

    rc = 0
    if theirs:
        draft = (args.out or WORK) / "DIFFERENCES.md"
        write_differences(draft, found, listed,
                          "Draft written by `python -m compat"
                          + (" --reference" if reference else "") + "`: reasons are kept from compat/DIFFERENCES.md; "
                          "replace every UNEXPLAINED one before committing it as compat/DIFFERENCES.md.")
        for d in unlisted:
            print(f"DIFFERENCE not in compat/DIFFERENCES.md: {d.client} × {d.scenario}: "
                  f"kbroker {d.kbroker}, Kafka {d.kafka}", file=sys.stderr)
        for d in gone:
            print(f"no longer differs: {d.client} × {d.scenario} (listed as kbroker {d.kbroker}, Kafka {d.kafka}); "
                  "remove it from compat/DIFFERENCES.md", file=sys.stderr)
        print(f"compat: {len(found)} cells differ from {KAFKA_LABEL} ({len(unlisted)} not listed in "
              f"compat/DIFFERENCES.md, {len(gone)} listed no longer differ); draft list in {draft}", file=sys.stderr)
        if args.check_differences and unlisted:
            rc = 1
    if args.check:
        baseline = parse_report(HERE / "REPORT.md")
        regressions = [(key, r) for key, r in sorted(ours.items())
                       if baseline.get(key) == "pass" and r.status != "pass"]
        for (cn, sid), r in regressions:
            print(f"REGRESSION {cn} × {sid}: was pass, now {r.status}: {r.detail}", file=sys.stderr)
        improved = [key for key, r in sorted(ours.items())
                    if r.status == "pass" and baseline.get(key) not in (None, "pass")]
        for cn, sid in improved:
            print(f"improved  {cn} × {sid}: now pass (update compat/REPORT.md: python -m compat --reference)",
                  file=sys.stderr)
        if regressions:
            rc = 1
    if args.require_clients and missing:
        rc = 1
    for name in brokers:
        cells = [results[name][(c.name, s.id)] for c in clients for s in scenarios]
        npass = sum(1 for r in cells if r.status == "pass")
        nfail = sum(1 for r in cells if r.status in ("fail", "missing"))
        nna = sum(1 for r in cells if r.status == "na")
        print(f"compat: {labels[name]}: {npass} passed, {nfail} failed, {nna} skipped")
    return rc
