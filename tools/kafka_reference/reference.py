"""Resolve, configure, start and stop a pinned Apache Kafka broker; run its CLI tools."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from kbroker.codec import decode_response, encode_request

KAFKA_VERSION = "4.1.1"
_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_CACHE = _HERE.parent / ".cache"

# Short names for the command-line tools; anything else is taken as a fully qualified main class.
TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "configs": "kafka.admin.ConfigCommand",
    "acls": "org.apache.kafka.tools.AclCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "transactions": "org.apache.kafka.tools.TransactionsCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "features": "org.apache.kafka.tools.FeatureCommand",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "storage": "kafka.tools.StorageTool",
    "broker-api-versions": "org.apache.kafka.tools.BrokerApiVersionsCommand",
    "producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
}

# Kafka's own log4j2 output goes to the process's stdout, which we point at a log file.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def lib_dir() -> Path:
    """The git-ignored directory holding the release's jars."""
    return _CACHE / f"kafka-{KAFKA_VERSION}" / "lib"


def java_classpath() -> str:
    """A classpath of every jar of the release (resolving them first if needed)."""
    resolve_jars()
    return str(lib_dir() / "*")


def resolve_jars(force: bool = False) -> Path:
    """Copy the release's jars into :func:`lib_dir` with Maven; a no-op once done."""
    lib = lib_dir()
    marker = lib.parent / "resolved"
    # The marker records which pom produced the jars, so editing the pom resolves again.
    pom_stamp = str(_POM.stat().st_mtime_ns)
    if not force and marker.exists() and marker.read_text() == pom_stamp:
        return lib
    lib.mkdir(parents=True, exist_ok=True)
    mvn = subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(_POM),
                          "dependency:copy-dependencies", f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
                         capture_output=True, text=True, timeout=900, check=False)
    if mvn.returncode:
        raise RuntimeError(f"resolving the Kafka jars failed:\n{mvn.stdout}{mvn.stderr}")
    marker.write_text(pom_stamp)
    return lib


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _cluster_id() -> str:
    """A Kafka Uuid string: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java(main: str, args: list[str], heap: str = "256m") -> list[str]:
    return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-cp", java_classpath(), main, *args]


def api_versions(host: str, port: int, timeout: float = 2.0) -> dict[int, tuple[int, int]]:
    """One ApiVersions v3 exchange; returns ``{api_key: (min_version, max_version)}``."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(encode_request(18, 3, 1, {"client_software_name": "kafka-reference",
                                            "client_software_version": "1"}))
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        _, body = decode_response(18, 3, recv_exact(s, size))
    if body.error_code:
        raise ConnectionError(f"ApiVersions error {body.error_code}")
    return {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}


def recv_exact(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``s``; ConnectionError if the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def tool_class(name: str) -> str:
    """The main class for a short tool name (see ``TOOLS``) or a fully qualified class name."""
    return TOOLS.get(name, name)


#: Tools that run long enough for the optimising (C2) JIT compiler to pay off.
_LONG_RUNNING = {TOOLS["producer-perf-test"], TOOLS["consumer-perf-test"]}
#: JVM options for a short-lived tool: the C1 compiler only (a tool is done before C2 would
#: pay off) and no JVM log lines (a class-data archive that does not match is skipped silently).
_SHORT_JVM = ["-XX:TieredStopAtLevel=1", "-Xshare:auto", "-Xlog:disable", "-Xlog:all=error:stderr"]


def _cds_archive(main: str) -> Path:
    """Where the class-data-sharing archive of one tool's classes lives (per classpath)."""
    digest = hashlib.sha1(f"{main}\0{java_classpath()}".encode()).hexdigest()[:16]
    return lib_dir().parent / "cds" / f"{main.rsplit('.', 1)[-1]}-{digest}.jsa"


def run_tool(name: str, args: list[str], bootstrap: str | None = None, timeout: float = 120,
             input: str | None = None, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's CLI tools; ``bootstrap`` adds ``--bootstrap-server`` first.

    The first run of a tool records the classes it loads into a class-data-sharing archive
    (``-XX:ArchiveClassesAtExit``, under the jar cache); later runs map it, which with the C1
    compiler alone starts a tool in about a third of the time.
    """
    full = (["--bootstrap-server", bootstrap] if bootstrap else []) + list(args)
    main = tool_class(name)
    if main in _LONG_RUNNING:
        return subprocess.run(_java(main, full), input=input, capture_output=capture, text=True,
                              timeout=timeout, check=False)
    archive = _cds_archive(main)
    dump: Path | None = None
    if archive.exists():
        cds = [f"-XX:SharedArchiveFile={archive}"]
    else:
        archive.parent.mkdir(parents=True, exist_ok=True)
        dump = archive.with_name(f"{archive.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        cds = [f"-XX:ArchiveClassesAtExit={dump}"]
    cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", *_SHORT_JVM, *cds, "-cp", java_classpath(), main, *full]
    try:
        return subprocess.run(cmd, input=input, capture_output=capture, text=True, timeout=timeout, check=False)
    finally:
        if dump is not None and dump.exists():
            os.replace(dump, archive)  # atomic: a concurrent run sees a whole archive or none


def write_kafka_path(dest: str | os.PathLike[str]) -> Path:
    """Lay out a ``KAFKA_PATH``: ``dest/bin/kafka-<tool>.sh`` for every short name in ``TOOLS``.

    Scripts that expect a Kafka distribution (librdkafka's test suite runs
    ``$KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server ...``) get shell scripts that run
    the tool's main class from the cached jars; ``kafka-run-class.sh CLASS ARGS`` runs any
    class (with ``$CLASSPATH`` in front, as Kafka's does) and ``dest/libs`` links to the jars.
    The jars are resolved first; rewriting an existing directory is harmless.
    """
    root = Path(dest).resolve()
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cp = java_classpath()
    run = f"exec java -Xmx256m -XX:+UseSerialGC {' '.join(_SHORT_JVM)} -Djava.awt.headless=true"
    scripts = {f"kafka-{name}.sh": f'{run} -cp "{cp}" {main} "$@"\n' for name, main in TOOLS.items()}
    scripts["kafka-run-class.sh"] = f'{run} -cp "${{CLASSPATH:+$CLASSPATH:}}{cp}" "$@"\n'
    # Concurrent writers (test runs in parallel) each replace whole files atomically, so a
    # script being run is never half written.
    tmp = f".{os.getpid()}.{threading.get_ident()}.tmp"
    for name, line in scripts.items():
        path = bin_dir / name
        text = "#!/bin/sh\n# Generated by tools/kafka_reference (write_kafka_path).\n" + line
        if path.exists() and path.read_text() == text:
            continue
        staged = path.with_name(name + tmp)
        staged.write_text(text)
        staged.chmod(0o755)
        os.replace(staged, path)
    libs, target = root / "libs", lib_dir().resolve()
    if not (libs.is_symlink() and libs.resolve() == target):
        staged = root / ("libs" + tmp)
        staged.symlink_to(target, target_is_directory=True)
        os.replace(staged, libs)
    return root


class KafkaReference:
    """A single-node Kafka (broker and KRaft controller in one process) under ``workdir``."""

    def __init__(self, workdir: str | os.PathLike[str], heap: str = "512m",
                 extra_config: dict[str, str] | None = None, start_timeout: float = 90) -> None:
        self.workdir = Path(workdir).resolve()
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.start_timeout = start_timeout
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.format_seconds = 0.0

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the PLAINTEXT listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the broker's stdout/stderr (its log4j output) goes."""
        return self.workdir / "kafka.log"

    def _write_config(self) -> Path:
        self.port, self.controller_port = _free_ports(2)
        conf = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        conf.update(self.extra_config)
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        return path

    def start(self) -> KafkaReference:
        """Format storage, spawn the broker and wait for it to answer ApiVersions."""
        if self.proc is not None:
            raise RuntimeError("already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        # A workdir that already holds a log is restarted as is (same cluster id, same data).
        if not (self.workdir / "data" / "meta.properties").exists():
            t_fmt = time.monotonic()
            # A static voter set (controller.quorum.voters) is formatted without --standalone.
            # "--cluster-id=..." in one argument: an id may begin with "-", which argparse would
            # otherwise take for an option.
            fmt = subprocess.run(_java("kafka.tools.StorageTool", ["format", f"--cluster-id={_cluster_id()}",
                                                                   "-c", str(props)]),
                                 capture_output=True, text=True, timeout=120, check=False)
            if fmt.returncode:
                raise RuntimeError(f"storage format failed: {fmt.stdout}{fmt.stderr}")
            self.format_seconds = time.monotonic() - t_fmt
        cmd = ["java", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.workdir}", "-cp", java_classpath(), "kafka.Kafka", str(props)]
        t0 = time.monotonic()
        # The child keeps its own descriptor of the log; ours can close at once.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.proc is not None
        last: Exception | None = None
        while time.monotonic() - t0 < self.start_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited with {self.proc.returncode}; see {self.log_path}")
            try:
                api_versions("127.0.0.1", self.port, timeout=1.0)
                return
            except (OSError, ConnectionError) as e:
                last = e
                time.sleep(0.1)
        raise TimeoutError(f"kafka not ready after {self.start_timeout}s ({last}); see {self.log_path}")

    def tool(self, name: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a Kafka CLI tool (see :func:`run_tool`) against this broker."""
        return run_tool(name, args, bootstrap=self.bootstrap, **kwargs)

    def rss_bytes(self) -> int:
        """Resident set size of the broker process (0 if not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker we started (a controlled shutdown), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> KafkaReference:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
