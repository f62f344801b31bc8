"""``python -m compat``: run every scenario with every client against a fresh kbroker.

One broker subprocess serves the whole run (ephemeral port, temporary data dir); every
cell (client × scenario) runs in its own process under the scenario's timeout and uses
its own uniquely named topics and groups, so cells are independent and a failure never
stops the run. If the broker dies, the cell that was running fails with the broker's last
log line and a new broker is started for the rest.

Results go to compat/REPORT.md and compat/report.html for a full run; a filtered run
(--fast, --clients, --scenarios) or a --check run writes them under compat/work/ instead,
so the committed report stays the full baseline. --check compares with the committed
compat/REPORT.md and exits 1 if a cell that passed there does not pass now.
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
from pathlib import Path

from compat.broker import REPO, Broker, BrokerError
from compat.client import Client
from compat.clients.java import JAVA_CLIENTS, java_matrix_status
from compat.reference import ReferenceKafka, comparison, unavailable_reason
from compat.report import Cell, parse_report, write_html, write_markdown
from compat.scenarios import BY_ID, SCENARIOS, Scenario

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
NODE_MODULES = WORK / "node_modules"
PREFIX = "COMPAT-RESULT "


CLIENTS = [
    Client("kafka-python", "python"),
    Client("confluent-kafka", "python"),
    Client("aiokafka", "python"),
    Client("kafkajs", "node"),
    Client("kcat", "python"),
    *JAVA_CLIENTS,
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


def java_status() -> str:
    """The Java columns' state, for the report's header."""
    return java_matrix_status()


def run_cell(client: Client, scenario: Scenario, bootstrap: str) -> Cell:
    env = dict(os.environ)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="only the scenarios marked fast (CI subset)")
    ap.add_argument("--clients", help="comma-separated: " + ",".join(CLIENT_NAMES))
    ap.add_argument("--scenarios", help="comma-separated scenario ids (see compat/scenarios.py)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if a cell that passes in the committed compat/REPORT.md does not pass now")
    ap.add_argument("--require-clients", action="store_true",
                    help="exit 1 if a selected client is not installed (CI)")
    ap.add_argument("--out", type=Path, help="directory for REPORT.md and report.html")
    ap.add_argument("--jobs", type=int, default=2, help="cells run at once (default 2)")
    ap.add_argument("--list", action="store_true", help="list clients (and whether usable) and scenarios")
    ap.add_argument("--reference", action="store_true",
                    help="run against Apache Kafka in Docker (testcontainers) instead, and compare with REPORT.md")
    args = ap.parse_args(argv)

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
    if args.list:
        for c in CLIENTS:
            print(f"client   {c.name:16} {c.missing() or 'ok'}")
        for s in SCENARIOS:
            print(f"scenario {s.id:26} {'fast ' if s.fast else '     '}{s.title}")
        return 0

    if args.reference:
        why = unavailable_reason()
        if why is not None:
            print(f"compat: reference mode skipped: {why}")
            return 0
    partial = bool(args.fast or args.clients or args.scenarios)
    out_dir = args.out or (WORK / "reference" if args.reference else
                           WORK if (partial or args.check) else HERE)
    missing = {c.name: c.missing() for c in clients if c.missing()}
    for name, why in missing.items():
        print(f"compat: client {name} unavailable: {why}", file=sys.stderr)

    results: dict[tuple[str, str], Cell] = {}
    lock = threading.Lock()
    broker_box: dict[str, Broker] = {}
    log_dir = WORK / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def broker() -> Broker:
        with lock:
            b = broker_box.get("b")
            if b is None or not b.alive():
                if b is not None:
                    b.stop()
                if args.reference:
                    b = ReferenceKafka().start()  # type: ignore[assignment]
                else:
                    b = Broker(log_path=log_dir / f"broker-{int(time.time())}.log").start()
                broker_box["b"] = b
                print(f"compat: kbroker at {b.bootstrap} (log {b.log_path})", file=sys.stderr)
            return b

    started = time.monotonic()
    try:
        broker()
    except BrokerError as e:
        print(f"compat: {e}", file=sys.stderr)
        return 2

    todo = []
    for s in scenarios:
        for c in clients:
            if c.name in missing:
                results[(c.name, s.id)] = Cell("missing", missing[c.name], 0.0)
            else:
                todo.append((c, s))

    def work(item: tuple[Client, Scenario]) -> None:
        c, s = item
        try:
            b = broker()
        except BrokerError as e:
            cell = Cell("fail", f"broker could not be restarted: {e}", 0.0)
        else:
            cell = run_cell(c, s, b.bootstrap)
            if not b.alive():
                cell = Cell("fail", "broker died: " + " | ".join(b.tail(2)), cell.seconds)
        with lock:
            results[(c.name, s.id)] = cell
        mark = {"pass": "ok  ", "fail": "FAIL", "na": "n/a "}.get(cell.status, cell.status)
        print(f"{mark} {c.name:16} {s.id:26} {cell.seconds:5.1f}s {cell.detail[:140]}", flush=True)

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(work, todo))
    finally:
        with lock:
            if "b" in broker_box:
                broker_box["b"].stop()
    elapsed = time.monotonic() - started

    meta = {
        "clients": client_versions(),
        "java": java_status(),
        "elapsed": f"{elapsed:.0f}s",
        "subset": ("--fast " if args.fast else "") + (f"--clients {args.clients} " if args.clients else "")
                  + (f"--scenarios {args.scenarios}" if args.scenarios else ""),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_markdown(out_dir / "REPORT.md", [c.name for c in clients], scenarios, results, meta)
    write_html(out_dir / "report.html", [c.name for c in clients], scenarios, results, meta)

    counts = {c.name: sum(1 for s in scenarios if results[(c.name, s.id)].status == "pass") for c in clients}
    npass = sum(1 for r in results.values() if r.status == "pass")
    nfail = sum(1 for r in results.values() if r.status in ("fail", "missing"))
    nna = sum(1 for r in results.values() if r.status == "na")
    print(f"compat: {elapsed:.0f}s; per client: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
          file=sys.stderr)
    print(f"compat: report in {out_dir / 'REPORT.md'}", file=sys.stderr)

    rc = 0
    if args.reference:
        ours = parse_report(HERE / "REPORT.md")
        rows = comparison(ours, results)
        (out_dir / "COMPARISON.md").write_text(
            "# kbroker (compat/REPORT.md) vs Apache Kafka, cells that differ\n\n" + "\n".join(rows) + "\n")
        print(f"compat: {len(rows) - 2} cells differ from Apache Kafka; see {out_dir / 'COMPARISON.md'}",
              file=sys.stderr)
    if args.check:
        baseline = parse_report(HERE / "REPORT.md")
        regressions = [(c, s, baseline[(c, s)], r) for (c, s), r in sorted(results.items())
                       if baseline.get((c, s)) == "pass" and r.status != "pass"]
        for c, s, _, r in regressions:
            print(f"REGRESSION {c} × {s}: was pass, now {r.status}: {r.detail}", file=sys.stderr)
        improved = [(c, s) for (c, s), r in sorted(results.items())
                    if r.status == "pass" and baseline.get((c, s)) not in (None, "pass")]
        for c, s in improved:
            print(f"improved  {c} × {s}: now pass (update compat/REPORT.md: python -m compat)", file=sys.stderr)
        if regressions:
            rc = 1
    if args.require_clients and missing:
        rc = 1
    print(f"compat: {npass} passed, {nfail} failed, {nna} skipped")
    return rc
