"""Where a request's time goes inside kbroker: ``python -m tools.bench.stages [--api produce,...] [-n N]``.

Starts kbroker in this process (the ``kbroker serve`` way: anyio on uvloop, in the main
thread) with its stage functions wrapped by timers, and drives N sequential requests of
each hot API from a raw-socket client in a subprocess (:mod:`tools.bench.rawapi`). Prints
per API and stage the broker thread's CPU µs per request (mean) and per call (p50), the
wall time, the rest of the process's CPU that no stage accounts for (the event loop's own
work), and garbage collections per 1,000 requests per generation with their pauses.

The stages, wrapped by name at start-up (a name that is not found is reported and that
stage left out; nothing else changes):

=========  ===============================================================================
read       the bytes coming in: the plaintext transport's ``data_received`` (else the
           connection's receive: its CPU, not its wall time, which includes waiting for the
           client); attributed to the request the bytes turn out to hold
frame      ``FrameReader.next_frame`` (called again when no whole frame is buffered)
decode     ``decode_request``, as the dispatcher calls it
handler    every handler module's ``handle``
append     ``PartitionLog.append`` (else ``ReplicaManager.append_records``): inside handler
encode     ``encode_response_parts``, as the dispatcher calls it
write      the response write: the plaintext transport's (``_LeanProtocol.write``), else ``send_parts``
=========  ===============================================================================

Only the requests of the measured loops count (a warm-up and the set-up, topic creation and
a group join, are not recorded): the client and this process agree on each API's start
and stop over a pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("read", "frame", "decode", "handler", "append", "encode", "write")
#: Plain-function stages timed with the thread CPU clock (see _timed).
SYSCALL_STAGES = frozenset({"read", "write"})
#: Stages inside another (not added to the sum of stages).
NESTED = frozenset({"append"})
#: Where each stage may live, first found wins: (module, dotted attribute).
CANDIDATES: dict[str, list[tuple[str, str]]] = {
    "read": [("kbroker.server.connection", "_LeanProtocol.data_received"),
             ("kbroker.server.connection", "Connection._receive"), ("kbroker.server.connection", "Connection._read"),
             ("kbroker.server.connection", "Connection.receive")],
    "frame": [("kbroker.codec.framing", "FrameReader.next_frame"), ("kbroker.codec", "FrameReader.next_frame")],
    "decode": [("kbroker.server.dispatch", "decode_request"), ("kbroker.codec.frames", "decode_request"),
               ("kbroker.codec", "decode_request")],
    "append": [("kbroker.log.partition_log", "PartitionLog.append"),
               ("kbroker.replica.manager", "ReplicaManager.append_records")],
    "encode": [("kbroker.server.dispatch", "encode_response_parts"), ("kbroker.codec.frames", "encode_response_parts"),
               ("kbroker.codec", "encode_response_parts")],
    "write": [("kbroker.server.connection", "_LeanProtocol.write"), ("kbroker.server.connection", "send_parts"),
              ("kbroker.server.connection", "Connection._write")],
}
DEFAULT_APIS = ("apiversions", "metadata", "produce", "fetch", "heartbeat", "offsetcommit")


@dataclass
class Bucket:
    """What was recorded for one API."""

    cpu: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    wall: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    gc_count: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_pause_ns: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_max_ns: int = 0
    process_cpu_ns: int = 0
    requests: int = 0


class Recorder:
    """Collects stage timings while an API's measured loop runs (``begin``/``end``)."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.current: Bucket | None = None
        self._pending_read: list[tuple[int, int]] = []
        self._cpu0 = 0
        self._gc_started = 0

    def begin(self, api: str) -> None:
        self._pending_read = []
        self._cpu0 = time.process_time_ns()
        self.current = self.buckets.setdefault(api, Bucket())

    def end(self, requests: int) -> None:
        b = self.current
        self.current = None
        if b is not None:
            b.process_cpu_ns += time.process_time_ns() - self._cpu0
            b.requests += requests

    def add(self, stage: str, cpu_ns: int, wall_ns: int) -> None:
        b = self.current
        if b is None:
            return
        if stage == "read":  # attributed once the bytes read turn into a frame
            self._pending_read.append((cpu_ns, wall_ns))
            return
        b.cpu[stage].append(cpu_ns)
        b.wall[stage].append(wall_ns)

    def framed(self) -> None:
        """A whole frame came out of the reader: the reads before it were for it."""
        b = self.current
        if b is None:
            return
        for cpu_ns, wall_ns in self._pending_read:
            b.cpu["read"].append(cpu_ns)
            b.wall["read"].append(wall_ns)
        self._pending_read = []

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: collections and their pauses, per generation."""
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
            return
        b = self.current
        if b is None or not self._gc_started:
            return
        pause = time.perf_counter_ns() - self._gc_started
        gen = int(info.get("generation", 0))
        b.gc_count[gen] += 1
        b.gc_pause_ns[gen] += pause
        b.gc_max_ns = max(b.gc_max_ns, pause)


def _timed(fn: Callable[..., Any], stage: str, rec: Recorder) -> Callable[..., Any]:
    """``fn`` with its time recorded under ``stage``: a coroutine's thread CPU and wall
    time (its wall time includes what it awaits); a plain function's wall time, which is
    its CPU time as it does not block (the cheap clock: a thread CPU clock is a syscall),
    except for the stages that make socket syscalls: a loopback write that wakes the client
    can be preempted by it, and its wall time would count the client's turn."""
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            c0, w0 = cpu(), wall()
            try:
                return await fn(*args, **kwargs)
            finally:
                rec.add(stage, cpu() - c0, wall() - w0)
        return async_wrapper

    if stage == "frame":
        @functools.wraps(fn)
        def frame_wrapper(*args: Any, **kwargs: Any) -> Any:
            w0 = wall()
            out = fn(*args, **kwargs)
            w = wall() - w0
            rec.add(stage, w, w)
            if out is not None:
                rec.framed()
            return out
        return frame_wrapper

    if stage in SYSCALL_STAGES:
        @functools.wraps(fn)
        def syscall_wrapper(*args: Any, **kwargs: Any) -> Any:
            c0, w0 = cpu(), wall()
            try:
                return fn(*args, **kwargs)
            finally:
                rec.add(stage, cpu() - c0, wall() - w0)
        return syscall_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w0 = wall()
        try:
            return fn(*args, **kwargs)
        finally:
            w = wall() - w0
            rec.add(stage, w, w)
    return wrapper


def _resolve(module: str, dotted: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute name, current value) of ``module.dotted``, or None."""
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return None
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    value = inspect.getattr_static(owner, name, None) if isinstance(owner, type) else getattr(owner, name, None)
    if value is None or not callable(value) or isinstance(value, staticmethod | classmethod):
        return None  # (a static or class method would need its own wrapping: reported as not found)
    return owner, name, value


def install(rec: Recorder) -> dict[str, str | None]:
    """Wrap every stage found; where each was wrapped, None for a stage not found."""
    where: dict[str, str | None] = {}
    for stage, candidates in CANDIDATES.items():
        where[stage] = None
        for module, dotted in candidates:
            found = _resolve(module, dotted)
            if found is None:
                continue
            owner, name, value = found
            setattr(owner, name, _timed(value, stage, rec))
            where[stage] = f"{module}.{dotted}"
            break
    where["handler"] = _install_handlers(rec)
    gc.callbacks.append(rec.on_gc)
    return dict(sorted(where.items(), key=lambda kv: STAGES.index(kv[0])))


def _install_handlers(rec: Recorder) -> str | None:
    """Wrap ``handle`` of every handler module, before the registry is first built."""
    try:
        handlers = importlib.import_module("kbroker.handlers")
    except ImportError:
        return None
    names = getattr(handlers, "MODULES", None)
    if not names:
        return None
    wrapped = 0
    for name in names:
        try:
            mod = importlib.import_module(f"kbroker.handlers.{name}")
        except ImportError:
            continue
        fn = getattr(mod, "handle", None)
        if callable(fn):
            mod.handle = _timed(fn, "handler", rec)  # type: ignore[attr-defined]
            wrapped += 1
    registry = getattr(handlers, "registry", None)
    with contextlib.suppress(AttributeError):
        registry.cache_clear()  # type: ignore[union-attr]  # built before? then rebuilt with the wrappers
    return f"kbroker.handlers.<{wrapped} modules>.handle" if wrapped else None


# -- the report ----------------------------------------------------------------------------------


def _p50(values: list[int]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[len(s) // 2] / 1000


def stage_rows(buckets: dict[str, Bucket], where: dict[str, str | None]) -> list[list[str]]:
    """The table: a row per stage (CPU µs per request, and p50 µs per call), then the sum
    of the top-level stages, the process's CPU per request, the rest, the wall time per
    request, and GC per 1,000 requests."""
    apis = list(buckets)
    rows = [["stage", *apis]]

    def per_req(total_ns: float, n: int) -> str:
        return f"{total_ns / n / 1000:.1f}" if n else "—"

    for stage in STAGES:
        if where.get(stage) is None:
            rows.append([f"{stage} (not wrapped)", *("—" for _ in apis)])
            continue
        row = [stage + (" (in handler)" if stage in NESTED else "")]
        for api in apis:
            b = buckets[api]
            v = b.cpu[stage]
            p50 = _p50(v)
            row.append(f"{per_req(sum(v), b.requests)} / {p50:.1f}" if v and p50 is not None else "0")
        rows.append(row)
    sums = ["sum of stages"]
    totals = ["process CPU"]
    rest = ["unattributed (loop)"]
    for api in apis:
        b = buckets[api]
        staged = sum(sum(b.cpu[s]) for s in STAGES if s not in NESTED and where.get(s) is not None)
        sums.append(per_req(staged, b.requests))
        totals.append(per_req(b.process_cpu_ns, b.requests))
        rest.append(per_req(b.process_cpu_ns - staged, b.requests))
    rows += [sums, totals, rest]
    for gen in range(3):
        row = [f"gen{gen} GCs /1000 req (pause ms)"]
        for api in apis:
            b = buckets[api]
            k = 1000 / b.requests if b.requests else 0
            row.append(f"{b.gc_count[gen] * k:.1f} ({b.gc_pause_ns[gen] * k / 1e6:.2f})")
        rows.append(row)
    rows.append(["GC max pause ms", *(f"{buckets[a].gc_max_ns / 1e6:.2f}" for a in apis)])
    rows.append(["requests", *(str(buckets[a].requests) for a in apis)])
    return rows


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r))
                   + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) if j == 0 else "-" * (w + 1) + ":" for j, w in enumerate(widths))
                       + "|")
    return "\n".join(out)


# -- the client (a subprocess) ---------------------------------------------------------------------


def client_main(host: str, port: int, apis: list[str], n: int, warmup: int, seconds: float) -> int:
    """Drive each API: set-up, warm-up, then ``start``/``stop`` around the measured loop,
    each acknowledged by the broker process on stdin. One JSON result line per API."""
    from tools.bench import rawapi

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def handshake(word: str, api: str) -> None:
        say(f"{word} {api}")
        if sys.stdin.readline().strip() != "ok":
            raise RuntimeError("broker process did not acknowledge " + word)

    with rawapi.RawClient(host, port) as client:
        topic = rawapi.prepare(client, f"stages-{os.getpid()}")
        member = None
        for api in apis:
            result: dict[str, Any]
            try:
                if api in rawapi.GROUP_APIS and member is None:
                    member = rawapi.join_group(client, f"stages-{os.getpid()}", topic)
                key, version, body = rawapi.request_for(api, topic, member)
                rawapi.timed_round_trips(client, api, key, version, body, warmup, 0, seconds, None)
                handshake("start", api)
                try:
                    result = rawapi.timed_round_trips(client, api, key, version, body, n, 0, seconds, None)
                finally:
                    handshake("stop", api)
            except Exception as e:  # noqa: BLE001 - reported as that API's failure
                result = {"api": api, "error": rawapi.short_error(e)}
            say("result " + json.dumps(result))
    return 0


# -- the broker side -------------------------------------------------------------------------------


def serve_and_drive(apis: list[str], n: int, warmup: int, seconds: float, data_dir: Path,
                    use_uvloop: bool = True) -> tuple[dict[str, Bucket], dict[str, str | None], dict[str, Any]]:
    """Run the broker here with the stages wrapped and the client subprocess against it;
    ``(buckets, where each stage was wrapped, the client's results by API)``."""
    rec = Recorder()
    where = install(rec)
    import anyio

    from kbroker import heap
    from kbroker.broker import Broker
    from kbroker.testing import make_config

    config = make_config(data_dir, {"group.initial.rebalance.delay.ms": "0"})
    client_results: dict[str, Any] = {}
    counts: dict[str, int] = {}
    failure: list[str] = []
    budget = 120 + len(apis) * (seconds * 2 + 10)

    def control(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "start":
                rec.begin(rest)
                proc.stdin.write("ok\n")
                proc.stdin.flush()
            elif word == "stop":
                rec.end(0)
                proc.stdin.write("ok\n")
                proc.stdin.flush()
            elif word == "result":
                r = json.loads(rest)
                client_results[r["api"]] = r
                counts[r["api"]] = int(r.get("count") or 0)

    async def main() -> None:
        broker = Broker(config)
        # As ``kbroker serve`` runs it (kbroker.broker.run): its own process, long-lived state out
        # of full collections, the short switch interval; else the GC figures are this tool's.
        broker.owns_process = True
        heap.settle("start-up", collect=True)
        share = getattr(heap, "share_interpreter", None)  # kbroker before it had one: CPython's default
        if share is not None:
            share()
        async with broker.running():
            host, port = broker.bootstrap.rsplit(":", 1)
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]) + os.pathsep
                       + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.Popen(
                [sys.executable, "-m", "tools.bench.stages", "--client", f"{host}:{port}", "--api", ",".join(apis),
                 "-n", str(n), "--warmup", str(warmup), "--seconds", str(seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )
            reader = threading.Thread(target=control, args=(proc,), daemon=True)
            reader.start()
            try:
                await anyio.to_thread.run_sync(functools.partial(proc.wait, budget))
            except subprocess.TimeoutExpired:
                failure.append(f"client did not finish within {budget:.0f}s")
                proc.kill()
                proc.wait(10)
            reader.join(10)

    options = {"use_uvloop": True} if use_uvloop else {}
    try:
        anyio.run(main, backend="asyncio", backend_options=options)
    finally:
        gc.callbacks.remove(rec.on_gc)
    for api, b in rec.buckets.items():
        b.requests = counts.get(api, 0)
    if failure:
        client_results["_error"] = failure[0]
    return rec.buckets, where, client_results


def timer_overhead_ns(rounds: int = 20000) -> tuple[float, float]:
    """What one wrapped call adds, in ns, measured here: (a plain function, a coroutine)."""
    import asyncio

    rec = Recorder()
    rec.current = Bucket()

    def plain() -> None:
        return None

    async def coro() -> None:
        return None

    f, g = _timed(plain, "decode", rec), _timed(coro, "handler", rec)

    async def loop(fn: Callable[[], Any]) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            await fn()
        return time.perf_counter_ns() - t0

    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        f()
    t1 = time.perf_counter_ns()
    for _ in range(rounds):
        plain()
    t2 = time.perf_counter_ns()
    wrapped, bare = asyncio.run(loop(g)), asyncio.run(loop(coro))
    return ((t1 - t0) - (t2 - t1)) / rounds, (wrapped - bare) / rounds


@contextlib.contextmanager
def _data_dir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="kbroker-stages-") as d:
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench.stages", description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", default=",".join(DEFAULT_APIS), help="comma-separated hot APIs "
                    f"(default: {','.join(DEFAULT_APIS)})")
    ap.add_argument("-n", type=int, default=5000, help="measured requests per API (default 5000)")
    ap.add_argument("--warmup", type=int, default=200, help="unrecorded requests per API first (default 200)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time bound of each API's loop (default 60)")
    ap.add_argument("--no-uvloop", action="store_true", help="plain asyncio instead of uvloop")
    ap.add_argument("--data-dir", help="the broker's data directory (default: a temporary one)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--client", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    apis = [a for a in args.api.split(",") if a]
    from tools.bench.rawapi import HOT_APIS

    unknown = [a for a in apis if a not in HOT_APIS]
    if unknown:
        print(f"unknown APIs {unknown}; known: {','.join(HOT_APIS)}", file=sys.stderr)
        return 2
    if args.client:
        host, _, port = args.client.rpartition(":")
        return client_main(host, int(port), apis, args.n, args.warmup, args.seconds)
    with _data_dir(args.data_dir) as d:
        buckets, where, client = serve_and_drive(apis, args.n, args.warmup, args.seconds, d, not args.no_uvloop)
    overhead = timer_overhead_ns()
    print("stages wrapped:")
    for stage, at in where.items():
        print(f"  {stage:8} {at or 'NOT FOUND: left out'}")
    for api in apis:
        r = client.get(api)
        if r is None:
            print(f"{api}: FAILED: no result from the client" + (f" ({client['_error']})" if "_error" in client else ""))
        elif r.get("error"):
            print(f"{api}: FAILED: {r['error']}")
    measured = {a: b for a, b in buckets.items() if b.requests and not (client.get(a) or {}).get("error")}
    if measured:
        print("\nbroker thread CPU µs per request (mean) / per call (p50); every figure includes its timers "
              f"(~{overhead[0] / 1000:.1f} µs per wrapped function, ~{overhead[1] / 1000:.1f} µs per wrapped "
              "coroutine: read, handler, write)\n")
        print(render(stage_rows(measured, where)))
        print("\nclient round trip p50/p99 ms: " + "; ".join(
            f"{a} {client[a].get('p50_ms', 0):.3f}/{client[a].get('p99_ms', 0):.3f}" for a in measured))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "where": where, "timer_overhead_ns": overhead, "client": client,
            "apis": {a: {"requests": b.requests, "process_cpu_ns": b.process_cpu_ns, "gc_count": b.gc_count,
                         "gc_pause_ns": b.gc_pause_ns, "gc_max_ns": b.gc_max_ns,
                         "cpu_ns": {s: sum(v) for s, v in b.cpu.items()},
                         "cpu_p50_ns": {s: (_p50(v) or 0) * 1000 for s, v in b.cpu.items()},
                         "wall_ns": {s: sum(v) for s, v in b.wall.items()}} for a, b in buckets.items()},
        }, indent=2) + "\n")
    failed = any((client.get(a) or {}).get("error") or a not in client for a in apis)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
