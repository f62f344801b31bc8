"""Fuzzing a live broker: mutated frames over many pipelined connections.

Per request the fuzzer expects a response or the connection closed; it watches the
broker process (an exit is a finding; the broker is restarted and the run goes on), its
log (ERROR records and tracebacks are findings), its RSS, and its responsiveness (a
probe connection sends ApiVersions every few seconds). At the end it attributes each
finding to one request by replaying the recent requests of the same API alone, then
checks with confluent-kafka that the broker still produces and consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbroker.codec import CodecError, api_table, decode_response, encode_request
from tools.fuzz import payloads
from tools.fuzz.corpus import Seed, encode_traced
from tools.fuzz.findings import Findings
from tools.fuzz.mutate import Case, Mutator

_LISTENING = re.compile(r"listening on PLAINTEXT://([0-9.]+):(\d+)")
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (\S+): (.*)$")
_FILE = re.compile(r'^\s+File "([^"]+)", line (\d+), in (\S+)')
_EXC = re.compile(r"^([A-Za-z_][\w.]*)(?::.*)?$")
_API = re.compile(r"\b([A-Z][A-Za-z]+) v(\d+)\b")
#: An ApiVersions probe slower than this means one request kept the event loop busy.
STALL_SECONDS = 5.0
#: Broker settings for fuzzing: no initial rebalance delay (JoinGroup would stall every worker).
OVERRIDES = ("group.initial.rebalance.delay.ms=0",)


# ---------------------------------------------------------------- the broker process


class BrokerProcess:
    """``python -m kbroker serve`` on an ephemeral port, output to ``log_path``; ended only by PID."""

    def __init__(self, data_dir: Path, log_path: Path, overrides: tuple[str, ...] = OVERRIDES,
                 log_level: str = "ERROR") -> None:
        self.data_dir = data_dir
        self.log_level = log_level
        self.log_path = log_path
        self.overrides = ["listeners=PLAINTEXT://127.0.0.1:0", f"log.dirs={data_dir}", *overrides]
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def start(self, timeout: float = 60.0) -> None:
        args = [sys.executable, "-m", "kbroker", "serve", "--log-level", self.log_level]
        for o in self.overrides:
            args += ["--override", o]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                m = _LISTENING.search(f.read().decode("utf-8", "replace"))
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"broker did not start; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---------------------------------------------------------------- the broker log


@dataclass
class LogError:
    """One ERROR (or worse) record of the broker log, or a stray traceback."""

    level: str
    logger: str
    message: str
    traceback: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        m = _API.search(self.message)
        return f"{m.group(1)} v{m.group(2)}" if m else ""

    @property
    def signature(self) -> str:
        msg = re.sub(r"\bv\d+\b", "vN", re.sub(r"\b\d+(\.\d+)*\b", "N", self.message))[:160]
        exc, where = "", ""
        for line in self.traceback:
            fm = _FILE.match(line)
            if fm and "/kbroker/" in fm.group(1):
                where = f" at kbroker/{fm.group(1).split('/kbroker/', 1)[1]}:{fm.group(2)} in {fm.group(3)}"
            if line and not line[0].isspace():
                em = _EXC.match(line)
                if em and line != "Traceback (most recent call last):":
                    exc = em.group(1)
        return f"{self.logger}: {msg}" + (f" -> {exc}{where}" if exc else "")

    def text(self) -> str:
        return "\n".join([f"{self.level} {self.logger}: {self.message}", *self.traceback])


class LogMonitor:
    """Tails the broker log and yields its error records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""
        self.current: LogError | None = None
        self.current_is_error = False

    def poll(self, final: bool = False) -> list[LogError]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out: list[LogError] = []
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            m = _RECORD.match(line)
            if m:
                self._finish(out)
                self.current = LogError(m.group(1), m.group(2), m.group(3))
                self.current_is_error = m.group(1) in ("ERROR", "CRITICAL")
            elif line.startswith("Traceback") or self.current is not None and line[:1].isspace():
                if self.current is None:
                    self.current = LogError("STDERR", "-", "traceback outside a log record")
                if line.startswith("Traceback"):
                    self.current_is_error = True
                self.current.traceback.append(line)
            elif self.current is not None and self.current.traceback:
                self.current.traceback.append(line)  # the exception line ending a traceback
            elif line.strip() and not _LISTENING.search(line):
                self._finish(out)
                self.current = LogError("STDERR", "-", line[:300])
                self.current_is_error = "Error" in line or "error" in line
        if final:
            self._finish(out)
        return out

    def _finish(self, out: list[LogError]) -> None:
        if self.current is not None and self.current_is_error:
            out.append(self.current)
        self.current = None
        self.current_is_error = False


# ---------------------------------------------------------------- the run


@dataclass
class BrokerSummary:
    sent: int = 0
    responses: int = 0
    closes: int = 0
    timeouts: int = 0
    connections: int = 0
    connect_errors: int = 0
    #: Requests of group sessions (ids from the broker's answers; not reproducible from an index).
    session_requests: int = 0
    broker_exits: int = 0
    max_rss: int = 0
    #: Slowest answer to the ApiVersions probe: how long the event loop was kept from serving.
    probe_max: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)
    seconds: float = 0.0
    health: str = "not run"
    findings: Findings = field(default_factory=Findings)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@dataclass
class BrokerOptions:
    requests: int | None = 3000
    seconds: float | None = None
    workers: int = 16
    pipeline: int = 8
    bootstrap: str | None = None
    broker_log: Path | None = None
    work_dir: Path | None = None
    read_timeout: float = 5.0
    attribute_seconds: float = 120.0
    health: bool = True
    progress: float = 0.0  # seconds between progress lines (0: none)
    #: Share of a worker's turns spent on a group session instead of a pipeline of cases.
    sessions: float = 0.03


class BrokerFuzz:
    """One fuzzing run against a broker (started here unless ``bootstrap`` is given)."""

    def __init__(self, mutator: Mutator, opts: BrokerOptions) -> None:
        self.m = mutator
        self.o = opts
        self.s = BrokerSummary()
        self.next_index = 0
        self.ring: deque[int] = deque(maxlen=512)
        self.api_rings: dict[tuple[int, int], deque[int]] = {}
        #: Recent group-session requests (their ids came from the broker: kept as bytes).
        self.session_ring: deque[tuple[str, bytes]] = deque(maxlen=64)
        self.exit_sessions: list[list[tuple[str, bytes]]] = []
        self.broker: BrokerProcess | None = None
        self.log: LogMonitor | None = None
        self.host, self.port = "127.0.0.1", 0
        self.t0 = 0.0
        self.stop = False
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -------------------------------------------------------------- set-up

    def _setup(self) -> None:
        if self.o.bootstrap:
            host, port = self.o.bootstrap.rsplit(":", 1)
            self.host, self.port = host, int(port)
            if self.o.broker_log:
                self.log = LogMonitor(self.o.broker_log)
                self.log.poll()  # only what the broker logs from now on
            return
        if self.o.work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kbroker-fuzz-")
            work = Path(self._tmp.name)
        else:
            work = self.o.work_dir
            work.mkdir(parents=True, exist_ok=True)
        self.broker = BrokerProcess(work / "data", work / "broker.log")
        self.broker.start()
        self.host, self.port = self.broker.host, self.broker.port
        self.log = LogMonitor(self.broker.log_path)

    def _prime(self) -> None:
        """Create the topics the seeds name and put a few records in them."""
        from tools.fuzz.corpus import TOPICS
        from tools.fuzz.payloads import batch

        topics = [{"name": t, "num_partitions": 3, "replication_factor": 1} for t in TOPICS]
        replay(self.host, self.port, encode_request(19, 4, 1, {"topics": topics, "timeout_ms": 5000}))
        r = random.Random(0)
        for t in TOPICS:
            for p in range(3):
                body = {"acks": -1, "timeout_ms": 5000, "topic_data": [
                    {"name": t, "partition_data": [{"index": p, "records": bytes(batch(r, n=3))}]}]}
                replay(self.host, self.port, encode_request(0, 9, 2, body))

    # -------------------------------------------------------------- workers

    def _done(self) -> bool:
        if self.stop:
            return True
        if self.o.requests is not None and self.next_index >= self.o.requests:
            return True
        return self.o.seconds is not None and time.monotonic() - self.t0 >= self.o.seconds

    def _take(self, r: random.Random) -> list[Case]:
        cases: list[Case] = []
        for _ in range(r.randint(1, self.o.pipeline)):
            if self._done():
                break
            case = self.m.case(self.next_index)
            self.next_index += 1
            cases.append(case)
            self.ring.append(case.index)
            ring = self.api_rings.get((case.api_key, case.version))
            if ring is None:
                ring = self.api_rings[(case.api_key, case.version)] = deque(maxlen=256)
            ring.append(case.index)
            if case.strategy == "framing":
                break  # what follows a broken frame is not a frame
        return cases

    async def _worker(self, wid: int) -> None:
        r = random.Random(self.m.seed * 7919 + wid)
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None

        def close() -> None:
            nonlocal reader, writer
            if writer is not None:
                writer.transport.abort()
            reader = writer = None

        try:
            while not self._done():
                if writer is None or r.random() < 0.1:
                    close()
                    try:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
                        self.s.connections += 1
                    except (OSError, TimeoutError):
                        self.s.connect_errors += 1
                        await asyncio.sleep(0.2)
                        continue
                assert reader is not None and writer is not None
                if r.random() < self.o.sessions:
                    await self._session(reader, writer, r)
                    close()
                    continue
                cases = self._take(r)
                if not cases:
                    break
                self.s.sent += len(cases)
                try:
                    writer.write(b"".join(c.wire for c in cases))
                    await asyncio.wait_for(writer.drain(), self.o.read_timeout)
                except (OSError, TimeoutError):
                    self.s.closes += 1
                    close()
                    continue
                want = sum(c.expect_response for c in cases)
                tail = cases[-1].strategy == "framing"
                outcome = await self._read(reader, want, self.o.read_timeout)
                if outcome == "ok" and tail:
                    outcome = await self._read(reader, 1, 0.3)
                    if outcome == "timeout":
                        outcome = "stalled"
                if outcome == "closed":
                    self.s.closes += 1
                elif outcome == "timeout":
                    self.s.timeouts += 1
                if outcome != "ok" or tail or not all(c.expect_response for c in cases):
                    close()
        finally:
            close()

    async def _read(self, reader: asyncio.StreamReader, want: int, timeout: float) -> str:
        for _ in range(want):
            try:
                head = await asyncio.wait_for(reader.readexactly(4), timeout)
                (size,) = struct.unpack(">i", head)
                if size < 4 or size > 512 * 1024 * 1024:
                    self.s.findings.add("bad-response", f"response frame of declared size {size}")
                    return "closed"
                await asyncio.wait_for(reader.readexactly(size), timeout)
                self.s.responses += 1
            except (asyncio.IncompleteReadError, OSError):
                return "closed"
            except TimeoutError:
                return "timeout"
        return "ok"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: random.Random) -> None:
        """A group member's life with the ids the broker handed out, fields mutated on the way:
        JoinGroup, then SyncGroup, Heartbeat, OffsetCommit and LeaveGroup as that member."""
        group = f"fuzz-s{r.randrange(4)}"
        ids: dict[str, Any] = {"group_id": group, "group_instance_id": f"fuzz-static-{r.randrange(3)}",
                               "protocol_type": "consumer", "protocol_name": "range"}
        join = {**ids, "member_id": "", "session_timeout_ms": 10000, "rebalance_timeout_ms": 2000,
                "protocols": [{"name": "range", "metadata": payloads.subscription(r)}]}
        resp = await self._exchange(reader, writer, 11, 5, join, mutate=False, r=r)
        if resp is None or resp.error_code:
            return
        ids.update(member_id=resp.member_id, generation_id=resp.generation_id,
                   generation_id_or_member_epoch=resp.generation_id)
        steps: list[tuple[int, int, dict[str, Any]]] = [
            (14, 3, {**ids, "assignments": [{"member_id": resp.member_id, "assignment": payloads.assignment(r)}]}),
            (12, 3, dict(ids)),
            (8, 7, {**ids, "topics": [{"name": "fuzz-0", "partitions": [
                {"partition_index": 0, "committed_offset": r.choice([0, 1, -1]), "committed_metadata": "m"}]}]}),
            (13, 3, {"group_id": group, "members": [{"member_id": resp.member_id,
                                                      "group_instance_id": ids["group_instance_id"]}]}),
        ]
        for key, version, body in steps:
            if await self._exchange(reader, writer, key, version, body, mutate=r.random() < 0.5, r=r) is None:
                return

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: int, version: int,
                        body: dict[str, Any], *, mutate: bool, r: random.Random) -> Any:
        """Send one request (with one field mutated if ``mutate``); its decoded response, or None."""
        api = api_table()[key]
        frame, spans = encode_traced(api, version, r.randrange(1 << 30), body)
        if mutate:
            frame = bytes(self.m.mutate_fields(Seed(key, api.name, version, frame, spans), r))
        self.s.sent += 1
        self.s.session_requests += 1
        self.session_ring.append((f"{api.name} v{version}", frame))
        writer.write(frame)
        try:
            await asyncio.wait_for(writer.drain(), self.o.read_timeout)
            head = await asyncio.wait_for(reader.readexactly(4), self.o.read_timeout)
            data = await asyncio.wait_for(reader.readexactly(struct.unpack(">i", head)[0]), self.o.read_timeout)
        except (asyncio.IncompleteReadError, OSError):
            self.s.closes += 1
            return None
        except TimeoutError:
            self.s.timeouts += 1
            return None
        self.s.responses += 1
        if mutate:
            return True  # a mutated header may name another API or version: the answer is not ours to decode
        try:
            return decode_response(key, version, data)[1]
        except CodecError:
            self.s.findings.add("bad-response", f"{api.name} v{version} response does not decode",
                                api=f"{api.name} v{version}", reproducer_hex=frame.hex())
            return None

    # -------------------------------------------------------------- monitoring

    async def _monitor(self) -> None:
        last_rss = 0.0
        last_progress = time.monotonic()
        while not self.stop:
            await asyncio.sleep(0.5)
            self._poll_log()
            if self.broker is not None:
                rc = self.broker.exit_code()
                if rc is not None:
                    await self._on_exit(rc)
                now = time.monotonic()
                if now - last_rss >= 1.0:
                    last_rss = now
                    rss = self.broker.rss_bytes()
                    self.s.rss.append((now - self.t0, rss))
                    self.s.max_rss = max(self.s.max_rss, rss)
            if self.o.progress and time.monotonic() - last_progress >= self.o.progress:
                last_progress = time.monotonic()
                el = time.monotonic() - self.t0
                print(f"[{el:7.0f}s] sent {self.s.sent} responses {self.s.responses} closes {self.s.closes} "
                      f"timeouts {self.s.timeouts} exits {self.s.broker_exits} findings {len(self.s.findings)} "
                      f"rss {self.s.rss[-1][1] >> 20 if self.s.rss else 0} MiB "
                      f"rate {self.s.sent / max(el, 1e-9):.0f}/s", flush=True)

    async def _probe(self) -> None:
        """ApiVersions on a fresh connection every few seconds: the event loop must keep serving."""
        frame = encode_request(18, 0, 7, {})
        while not self.stop:
            await asyncio.sleep(5)
            t = time.monotonic()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 30)
                try:
                    writer.write(frame)
                    head = await asyncio.wait_for(reader.readexactly(4), 30)
                    await asyncio.wait_for(reader.readexactly(struct.unpack(">i", head)[0]), 30)
                    took = time.monotonic() - t
                    self.s.probe_max = max(self.s.probe_max, took)
                    if took > STALL_SECONDS:
                        self.s.findings.add("stall", f"ApiVersions probe answered after more than {STALL_SECONDS} s",
                                            candidates=list(self.ring)[-64:],
                                            detail=f"{took:.1f} s at {t - self.t0:.0f} s into the run")
                finally:
                    writer.transport.abort()
            except TimeoutError:
                self.s.findings.add("unresponsive", "ApiVersions probe unanswered for 30 s",
                                    candidates=list(self.ring)[-64:], detail=f"at {t - self.t0:.0f}s into the run")
            except OSError:
                pass  # an exit; the monitor reports it

    def _poll_log(self, final: bool = False) -> None:
        if self.log is None:
            return
        for err in self.log.poll(final):
            api = err.api
            cands: list[int] = []
            if api:
                name, _, ver = api.partition(" v")
                for (key, v), ring in self.api_rings.items():
                    if v == int(ver) and api_table()[key].name == name:
                        cands = list(ring)
            self.s.findings.add("broker-error", err.signature, api=api, detail=err.text(),
                                candidates=cands or list(self.ring)[-128:])

    async def _on_exit(self, rc: int) -> None:
        assert self.broker is not None
        self.s.broker_exits += 1
        self._poll_log(final=True)
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self.broker.log_path.read_text("utf-8", "replace").splitlines()[-30:])
        f = self.s.findings.add("broker-exit", f"exit code {rc}: {exit_signature(tail)}", detail=tail,
                                candidates=list(self.ring)[-128:])
        if f.count == 1:
            self.exit_sessions.append(list(self.session_ring))
        if self.s.broker_exits <= 20:
            await asyncio.to_thread(self.broker.start)
            self.host, self.port = self.broker.host, self.broker.port

    async def _main(self) -> None:
        self.t0 = time.monotonic()
        monitor = asyncio.create_task(self._monitor())
        probe = asyncio.create_task(self._probe())
        await asyncio.gather(*(self._worker(i) for i in range(self.o.workers)))
        self.s.seconds = time.monotonic() - self.t0
        self.stop = True
        for t in (monitor, probe):
            t.cancel()
        await asyncio.gather(monitor, probe, return_exceptions=True)

    # -------------------------------------------------------------- after the run

    def _attribute(self) -> None:
        """Replay each finding's candidate requests alone until one reproduces it."""
        deadline = time.monotonic() + self.o.attribute_seconds
        for f in self.s.findings.of_kind("broker-error"):
            if self.log is None or f.reproducer_hex:
                continue
            for index in reversed(f.candidates):
                if time.monotonic() > deadline:
                    return
                case = self.m.case(index)
                replay(self.host, self.port, case.wire, timeout=1.0)
                time.sleep(0.02)
                errs = self.log.poll(final=True)
                hit = any(e.signature == f.signature for e in errs)
                for e in errs:
                    if e.signature != f.signature:
                        self.s.findings.add("broker-error", e.signature, api=e.api, detail=e.text())
                if hit:
                    f.case_index, f.reproducer_hex = index, case.wire.hex()
                    break
        for f in self.s.findings.of_kind("stall", "unresponsive"):
            slowest, took = None, 0.0
            for index in reversed(f.candidates):
                if time.monotonic() > deadline:
                    break
                case = self.m.case(index)
                t = time.monotonic()
                replay(self.host, self.port, case.wire, timeout=60.0)
                if time.monotonic() - t > took:
                    slowest, took = case, time.monotonic() - t
            if slowest is not None and took > STALL_SECONDS / 2:
                f.case_index, f.reproducer_hex = slowest.index, slowest.wire.hex()
                f.api = f"{slowest.api_name} v{slowest.version}: answered in {took:.1f} s alone"
        sessions = iter(self.exit_sessions)
        for f in self.s.findings.of_kind("broker-exit"):
            raw = next(sessions, [])
            if self.broker is None or f.reproducer_hex:
                continue
            tries: list[tuple[int | None, str, bytes]] = [
                *((i, f"{c.api_name} v{c.version}", c.wire) for i, c in ((i, self.m.case(i)) for i in reversed(f.candidates))),
                *((None, f"{name} (group session)", frame) for name, frame in reversed(raw))]
            for idx, name, wire in tries:
                if time.monotonic() > deadline:
                    return
                replay(self.host, self.port, wire, timeout=1.0)
                time.sleep(0.05)
                if self.broker.exit_code() is not None:
                    f.case_index, f.reproducer_hex = idx, wire.hex()
                    alone = "kills a fresh broker alone" if _kills_fresh_broker(wire) else \
                        "did not kill a fresh broker alone: it needs the state the run built"
                    f.api = f"{name} ({alone})"
                    self.broker.start()
                    self.host, self.port = self.broker.host, self.broker.port
                    break

    def run(self) -> BrokerSummary:
        self._setup()
        try:
            self._prime()
            asyncio.run(self._main())
            self._poll_log(final=True)
            if self.broker is not None and self.broker.exit_code() is not None:
                asyncio.run(self._on_exit(self.broker.exit_code() or 0))
            self._attribute()
            if self.o.health:
                self.s.health = health_check(f"{self.host}:{self.port}")
                if self.s.health != "passed":
                    self.s.findings.add("health", self.s.health)
        finally:
            if self.broker is not None:
                rc = self.broker.terminate()
                if rc not in (0, None, -signal.SIGTERM):
                    tail = ""
                    with contextlib.suppress(OSError):
                        tail = "\n".join(self.broker.log_path.read_text("utf-8", "replace").splitlines()[-40:])
                    self.s.findings.add("shutdown", f"exit code {rc} after SIGTERM: {exit_signature(tail)}",
                                        detail=tail)
            if self._tmp is not None:
                self._tmp.cleanup()
        return self.s


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|error))\b")


def exit_signature(tail: str) -> str:
    """``Type at kbroker/file:line in function`` of the innermost exception a dying broker logged
    (exception groups nest tracebacks behind ``|`` margins)."""
    exc = ""
    frames: list[str] = []
    for raw in tail.splitlines():
        line = raw.strip().strip("|+").strip()
        fm = re.match(r'File "([^"]+)", line (\d+), in (\S+)', line)
        if fm and "/kbroker/" in fm.group(1):
            frames.append(f"kbroker/{fm.group(1).split('/kbroker/', 1)[1]}:{fm.group(2)} in {fm.group(3)}")
            continue
        em = _EXC_LINE.match(line)
        if em and not line.startswith(("ExceptionGroup", "BaseExceptionGroup")):
            exc = em.group(1)
    # The three innermost frames: the helper that raised and the callers that give it meaning.
    where = f" at {' < '.join(reversed(frames[-3:]))}" if frames else ""
    return f"{exc or 'no exception logged'}{where}"


def _kills_fresh_broker(wire: bytes) -> bool:
    """Whether ``wire`` alone makes a new broker (empty data dir) exit."""
    with tempfile.TemporaryDirectory(prefix="kbroker-fuzz-") as d:
        b = BrokerProcess(Path(d) / "data", Path(d) / "broker.log")
        b.start()
        try:
            replay(b.host, b.port, wire, timeout=5.0)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and b.exit_code() is None:
                time.sleep(0.05)
            return b.exit_code() is not None
        finally:
            b.kill()


def replay(host: str, port: int, wire: bytes, timeout: float = 5.0) -> str:
    """Send ``wire`` on a fresh connection; ``response``, ``closed`` or ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(wire)
            head = b""
            while len(head) < 4:
                chunk = s.recv(4 - len(head))
                if not chunk:
                    return "closed"
                head += chunk
            left = struct.unpack(">i", head)[0]
            while left > 0:
                chunk = s.recv(min(left, 1 << 20))
                if not chunk:
                    return "closed"
                left -= len(chunk)
            return "response"
    except TimeoutError:
        return "timeout"
    except OSError:
        return "closed"


def health_check(bootstrap: str, messages: int = 20, timeout: float = 60.0) -> str:
    """Produce and consume with confluent-kafka; ``passed`` or what went wrong."""
    try:
        from confluent_kafka import Consumer, Producer
    except ImportError:
        return "skipped (confluent-kafka is not installed)"
    topic = f"fuzz-health-{uuid.uuid4().hex[:8]}"
    errors: list[str] = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": int(timeout * 1000)})
    for i in range(messages):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i,
                  on_delivery=lambda err, msg: errors.append(str(err)) if err else None)
    left = p.flush(timeout)
    if left or errors:
        return f"failed: produce ({left} undelivered, errors {errors[:3]})"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                  "enable.auto.commit": True})
    try:
        c.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < messages and time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                errors.append(str(msg.error()))
                continue
            got.append(msg.value() or b"")
    finally:
        c.close()
    if sorted(got) != sorted(b"v%d" % i for i in range(messages)):
        return f"failed: consumed {len(got)} of {messages} (errors {errors[:3]})"
    return "passed"

