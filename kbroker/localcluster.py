"""A local kbroker cluster: one etcd and N ``kbroker serve`` subprocesses in one folder.

Layout of the cluster's folder (``root``)::

    cluster.json         the state file: cluster id, etcd and broker pids and ports
    etcd/, etcd.log      etcd's data and output
    broker-<i>/data/     broker i's log.dirs
    broker-<i>/broker.log  broker i's output

Every process is started in its own session and acted on by pid, and only after checking
that the pid still runs a command that names this folder (a pid reused by an unrelated
process is never signalled). The state file lets separate invocations (``kbroker cluster
up`` then ``kbroker cluster kill 1``) act on the same running cluster.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kbroker.etcd.server import EtcdServer, free_port

__all__ = ["ClusterError", "LocalCluster", "STATE_FILE", "cluster_defaults"]

#: The state file in the cluster's folder.
STATE_FILE = "cluster.json"
_STATE_VERSION = 1
#: What ``kbroker serve`` prints once it serves (kbroker/broker.py run()).
_READY_MARK = " listening on "


class ClusterError(RuntimeError):
    """A cluster operation failed (a broker did not start, no such broker, no state file)."""


def cluster_defaults(brokers: int) -> dict[str, str]:
    """Broker settings of a local cluster of ``brokers`` nodes (short sessions, quick failover,
    replicated internal topics); user overrides take precedence."""
    rf3, isr2 = str(min(3, brokers)), str(min(2, brokers))
    return {
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        "offsets.topic.replication.factor": rf3,
        "transaction.state.log.replication.factor": rf3,
        "transaction.state.log.min.isr": isr2,
        "default.replication.factor": rf3,
        "replica.lag.time.max.ms": "10000",
        "group.initial.rebalance.delay.ms": "0",
    }


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form (a UUID, URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _argv(pid: int) -> list[str] | None:
    """The arguments of ``pid``, or None when it is gone or a zombie."""
    if not os.path.isdir("/proc/self"):  # macOS, the BSDs: no /proc
        return _argv_from_ps(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the parenthesised command name, which may itself contain ")".
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read().decode(errors="replace")
        return data.removesuffix("\0").split("\0") if data else []
    except (OSError, IndexError):
        return None


def _argv_from_ps(pid: int) -> list[str] | None:
    """``_argv`` through ``ps`` where there is no /proc (arguments split at spaces)."""
    try:
        out = subprocess.run(["ps", "-ww", "-o", "stat=", "-o", "args=", "-p", str(pid)],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = out.stdout.strip().split()
    if out.returncode != 0 or not fields or fields[0].startswith("Z"):
        return None
    return fields[1:]


def _has_marker(argv: list[str], marker: tuple[str, str]) -> bool:
    """Whether ``marker``'s two arguments stand in a row in ``argv``."""
    return any(pair == marker for pair in zip(argv, argv[1:], strict=False))


#: How long ``kill`` waits for a SIGKILLed broker to be gone.
KILL_WAIT_S = 30.0


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (NULs as spaces), or None when it is gone or a zombie."""
    argv = _argv(pid)
    return None if argv is None else "".join(a + " " for a in argv)


def _pid(value: Any) -> int | None:
    """A pid of the state file: a positive integer or null (ValueError otherwise)."""
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise ValueError(f"not a process id: {value!r}")
    return value


class LocalCluster:
    """etcd plus ``brokers`` kbroker processes under ``root``; node ids are 0 .. brokers-1.

    ``start()`` returns once every broker printed its "listening on" line;
    :attr:`bootstrap_servers` lists their listeners. Use as a context manager to stop
    everything on exit. :meth:`attach` rebuilds the object of a cluster started elsewhere
    from its state file.
    """

    def __init__(self, root: Path, brokers: int = 3, overrides: Mapping[str, str] | None = None, *,
                 per_broker: Mapping[int, Mapping[str, str]] | None = None,
                 python: str = sys.executable, startup_timeout: float = 60.0,
                 stop_timeout: float = 45.0) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        self.root = Path(root).resolve()
        self.brokers = brokers
        self.overrides = dict(overrides or {})
        #: Settings of single brokers (``{0: {"broker.rack": "r0"}}``), over ``overrides``.
        self.per_broker = {int(i): dict(v) for i, v in (per_broker or {}).items()}
        self.python = python
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.cluster_id = new_cluster_id()
        self.etcd_client_port = 0
        self.etcd_peer_port = 0
        self.etcd_pid: int | None = None
        self.ports: list[int] = [0] * brokers
        self.pids: list[int | None] = [None] * brokers
        self.paused: set[int] = set()
        # Popen objects of the processes this object started, so that they are reaped.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._etcd: EtcdServer | None = None

    # --- state file

    @property
    def state_path(self) -> Path:
        """``<root>/cluster.json``."""
        return self.root / STATE_FILE

    def broker_dir(self, i: int) -> Path:
        """Broker ``i``'s folder (its data and its log)."""
        return self.root / f"broker-{i}"

    def log_path(self, i: int) -> Path:
        """Broker ``i``'s output (stdout and stderr)."""
        return self.broker_dir(i) / "broker.log"

    def _state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "cluster_id": self.cluster_id,
            "python": self.python,
            "overrides": self.overrides,
            "per_broker": {str(i): v for i, v in self.per_broker.items()},
            "etcd": {"pid": self.etcd_pid, "client_port": self.etcd_client_port, "peer_port": self.etcd_peer_port},
            "brokers": [{"id": i, "port": self.ports[i], "pid": self.pids[i], "paused": i in self.paused}
                        for i in range(self.brokers)],
        }

    def save(self) -> None:
        """Write the state file atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._state(), indent=1) + "\n")
        os.replace(tmp, self.state_path)

    @classmethod
    def attach(cls, root: Path, **kwargs: Any) -> LocalCluster:
        """The cluster described by ``<root>/cluster.json`` (running or not)."""
        path = Path(root) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {root} (no {STATE_FILE})") from None
        except (OSError, ValueError) as e:
            raise ClusterError(f"cannot read {path}: {e}") from e
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ClusterError(f"{path}: not a cluster state file of version {_STATE_VERSION}")
        try:
            brokers = state["brokers"]
            cluster = cls(root, len(brokers), state["overrides"], python=state["python"],
                          per_broker={int(i): v for i, v in state.get("per_broker", {}).items()}, **kwargs)
            cluster.cluster_id = state["cluster_id"]
            cluster.etcd_pid = _pid(state["etcd"]["pid"])
            cluster.etcd_client_port = state["etcd"]["client_port"]
            cluster.etcd_peer_port = state["etcd"]["peer_port"]
            for b in brokers:
                i = int(b["id"])
                cluster.ports[i], cluster.pids[i] = int(b["port"]), _pid(b["pid"])
                if b.get("paused"):
                    cluster.paused.add(i)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ClusterError(f"{path}: malformed state ({e!r})") from e
        return cluster

    # --- processes

    def _owned(self, pid: int | None, marker: tuple[str, str]) -> bool:
        """Whether ``pid`` runs with ``marker``'s two arguments in a row (an option naming a path
        of this cluster): another process merely mentioning the path, such as a ``tail`` of its
        log, is not ours."""
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None:
            # A child not yet reaped keeps its pid: nobody else can have it, whatever it runs.
            return child.poll() is None
        argv = _argv(pid)
        return argv is not None and _has_marker(argv, marker)

    def _broker_marker(self, i: int) -> tuple[str, str]:
        return "--override", f"log.dirs={self.broker_dir(i) / 'data'}"

    def _etcd_marker(self) -> tuple[str, str]:
        return "--data-dir", str(self.root / "etcd")

    def alive(self, i: int) -> bool:
        """Whether broker ``i``'s process runs (paused counts as running)."""
        self._check(i)
        return self._owned(self.pids[i], self._broker_marker(i))

    def etcd_alive(self) -> bool:
        """Whether this cluster's etcd runs."""
        return self._owned(self.etcd_pid, self._etcd_marker())

    def running(self) -> bool:
        """Whether any process of the cluster runs."""
        return self.etcd_alive() or any(self.alive(i) for i in range(self.brokers))

    def _check(self, i: int) -> None:
        if not 0 <= i < self.brokers:
            raise ClusterError(f"no broker {i} (brokers are 0..{self.brokers - 1})")

    def _signal(self, pid: int | None, marker: tuple[str, str], sig: signal.Signals) -> bool:
        """Send ``sig`` to ``pid`` if it still is our process; whether it was sent."""
        if pid is None or not self._owned(pid, marker):
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _wait_gone(self, pid: int, marker: tuple[str, str], timeout: float) -> bool:
        """Wait until ``pid`` has exited (reaping it when it is our child); whether it did."""
        child = self._children.get(pid)
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._children.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout
        while True:  # not our child: its parent (init) reaps it
            argv = _argv(pid)
            if argv is None:
                return True  # gone, or a zombie
            # An exiting process reads an empty command line before it is a zombie: still ours.
            if argv and not _has_marker(argv, marker):
                return True  # the pid now runs something else
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _end(self, pid: int | None, marker: tuple[str, str], timeout: float) -> None:
        """SIGTERM (and SIGCONT, should it be stopped), then SIGKILL after ``timeout``."""
        if pid is None or not self._signal(pid, marker, signal.SIGTERM):
            if pid is not None:
                self._reap(pid)
            return
        self._signal(pid, marker, signal.SIGCONT)
        if not self._wait_gone(pid, marker, timeout):
            self._signal(pid, marker, signal.SIGKILL)
            self._wait_gone(pid, marker, 10.0)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            child.wait()

    # --- etcd

    @property
    def etcd_endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` of the cluster's etcd."""
        return f"http://127.0.0.1:{self.etcd_client_port}"

    def _start_etcd(self) -> None:
        if self.etcd_alive():
            return
        server = EtcdServer(self.root, client_port=self.etcd_client_port, peer_port=self.etcd_peer_port)
        server.start()
        assert server.process is not None
        self._etcd = server
        self.etcd_client_port, self.etcd_peer_port = server.client_port, server.peer_port
        self.etcd_pid = server.process.pid
        self._children[server.process.pid] = server.process
        self.save()

    def _stop_etcd(self) -> None:
        if self.etcd_pid is not None:
            self._end(self.etcd_pid, self._etcd_marker(), 10.0)
        self.etcd_pid = None
        self._etcd = None

    # --- brokers

    def broker_config(self, i: int) -> dict[str, str]:
        """The ``--override`` settings of broker ``i`` (cluster defaults < user overrides < the
        broker's own < identity)."""
        config = cluster_defaults(self.brokers)
        config.update(self.overrides)
        config.update(self.per_broker.get(i, {}))
        config.update({
            "node.id": str(i),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]}",
            "log.dirs": str(self.broker_dir(i) / "data"),
            "etcd.endpoints": self.etcd_endpoint,
            "cluster.id": self.cluster_id,
        })
        return config

    def command(self, i: int) -> list[str]:
        """The command line of broker ``i``."""
        cmd = [self.python, "-m", "kbroker", "serve"]
        for key, value in self.broker_config(i).items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        self.broker_dir(i).mkdir(parents=True, exist_ok=True)
        log = self.log_path(i)
        with open(log, "ab") as out:
            out.write(f"--- starting broker {i} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            out.flush()
            env = dict(os.environ)
            # The broker runs this kbroker, wherever the caller imported it from.
            src = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
            proc = subprocess.Popen(self.command(i), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.broker_dir(i), env=env,
                                    start_new_session=True)
        self._children[proc.pid] = proc
        self.pids[i] = proc.pid
        self.paused.discard(i)
        return proc

    def _wait_ready(self, pending: dict[int, tuple[subprocess.Popen[bytes], int]], timeout: float) -> dict[int, str]:
        """Wait for each pending broker's "listening on" line: {broker: why it failed}."""
        failed: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for i, (proc, offset) in list(pending.items()):
                text = self._read_from(self.log_path(i), offset)
                if f"kbroker {i}{_READY_MARK}" in text:
                    del pending[i]
                elif proc.poll() is not None:
                    del pending[i]
                    self._reap(proc.pid)
                    failed[i] = f"exited with {proc.returncode}: " + " | ".join(text.strip().splitlines()[-3:])
            if pending and time.monotonic() >= deadline:
                for i, (proc, _) in pending.items():
                    failed[i] = f"not listening within {timeout:.0f} s"
                    self._end(proc.pid, self._broker_marker(i), 5.0)
                break
            if pending:
                time.sleep(0.05)
        return failed

    @staticmethod
    def _read_from(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _start_brokers(self, ids: list[int], *, retry_ports: bool) -> None:
        """Start brokers ``ids`` and wait until they listen; a fresh port is tried once for a
        first start that lost its port to another process."""
        attempts = 2 if retry_ports else 1
        for attempt in range(attempts):
            pending = {}
            for i in ids:
                if self.ports[i] == 0:
                    self.ports[i] = free_port()
                log = self.log_path(i)
                offset = log.stat().st_size if log.exists() else 0
                pending[i] = (self._spawn(i), offset)
            self.save()
            failed = self._wait_ready(pending, self.startup_timeout)
            for i in failed:
                self.pids[i] = None
            self.save()
            if not failed:
                return
            lost_port = [i for i, why in failed.items() if "cannot listen on" in why]
            if attempt + 1 < attempts and lost_port and len(lost_port) == len(failed):
                for i in lost_port:
                    self.ports[i] = 0
                ids = lost_port
                continue
            raise ClusterError("; ".join(f"broker {i} {why} (log: {self.log_path(i)})"
                                         for i, why in sorted(failed.items())))

    # --- public operations

    def start(self) -> LocalCluster:
        """Start etcd and every broker not running; return once all of them listen.

        A folder that already holds a stopped cluster keeps its cluster id, ports and data."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists():
            previous = LocalCluster.attach(self.root)
            if previous.brokers != self.brokers:
                raise ClusterError(f"{self.root} holds a cluster of {previous.brokers} brokers")
            if previous.running() and not self._children:
                raise ClusterError(f"a cluster is already running in {self.root}")
            self.cluster_id, self.ports = previous.cluster_id, previous.ports
            self.etcd_client_port, self.etcd_peer_port = previous.etcd_client_port, previous.etcd_peer_port
        try:
            self._start_etcd()
            self._start_brokers([i for i in range(self.brokers) if not self.alive(i)],
                                retry_ports=True)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:p0,127.0.0.1:p1,...`` of every broker."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def bootstrap(self, i: int) -> str:
        """``127.0.0.1:<port>`` of broker ``i``."""
        self._check(i)
        return f"127.0.0.1:{self.ports[i]}"

    def kill(self, i: int) -> None:
        """SIGKILL broker ``i`` (a crash) and wait until it is gone."""
        self._check(i)
        pid = self.pids[i]
        if not self._signal(pid, self._broker_marker(i), signal.SIGKILL):
            raise ClusterError(f"broker {i} is not running")
        assert pid is not None
        # A killed process can take a while to go on a loaded machine (its exit waits for the
        # disk); the drill's next step must not see it still there.
        if not self._wait_gone(pid, self._broker_marker(i), KILL_WAIT_S):
            raise ClusterError(f"broker {i} (pid {pid}) was sent SIGKILL but is still there after {KILL_WAIT_S:.0f} s")
        self.pids[i] = None
        self.paused.discard(i)
        self.save()

    def pause(self, i: int) -> None:
        """SIGSTOP broker ``i`` (a frozen process: its connections stay open, nothing answers)."""
        self._check(i)
        if not self._signal(self.pids[i], self._broker_marker(i), signal.SIGSTOP):
            raise ClusterError(f"broker {i} is not running")
        self.paused.add(i)
        self.save()

    def resume(self, i: int) -> None:
        """SIGCONT broker ``i``."""
        self._check(i)
        if not self._signal(self.pids[i], self._broker_marker(i), signal.SIGCONT):
            raise ClusterError(f"broker {i} is not running")
        self.paused.discard(i)
        self.save()

    def terminate(self, i: int, timeout: float | None = None) -> None:
        """SIGTERM broker ``i`` (a controlled shutdown) and wait for it; SIGKILL after ``timeout``."""
        self._check(i)
        if not self.alive(i):
            raise ClusterError(f"broker {i} is not running")
        self._end(self.pids[i], self._broker_marker(i), self.stop_timeout if timeout is None else timeout)
        self.pids[i] = None
        self.paused.discard(i)
        self.save()

    def restart(self, i: int) -> None:
        """Start broker ``i`` again on the same port and data (stopping it first if it runs)."""
        self._check(i)
        if self.alive(i):
            self.terminate(i)
        if not self.etcd_alive():
            raise ClusterError("etcd is not running: start the cluster")
        self._start_brokers([i], retry_ports=False)

    def status(self) -> list[dict[str, Any]]:
        """One entry per broker: id, port, pid, and state (running, paused or stopped)."""
        out = []
        for i in range(self.brokers):
            alive = self.alive(i)
            state = ("paused" if i in self.paused else "running") if alive else "stopped"
            out.append({"id": i, "port": self.ports[i], "pid": self.pids[i] if alive else None, "state": state})
        return out

    def stop(self) -> None:
        """Stop every broker (SIGTERM together, SIGKILL after the stop timeout), then etcd."""
        live = [(i, self.pids[i]) for i in range(self.brokers) if self.alive(i)]
        for i, pid in live:
            self._signal(pid, self._broker_marker(i), signal.SIGTERM)
            self._signal(pid, self._broker_marker(i), signal.SIGCONT)
        deadline = time.monotonic() + self.stop_timeout
        for i, pid in live:
            assert pid is not None
            if not self._wait_gone(pid, self._broker_marker(i), max(0.0, deadline - time.monotonic())):
                self._signal(pid, self._broker_marker(i), signal.SIGKILL)
                self._wait_gone(pid, self._broker_marker(i), 10.0)
        for pid in [p for p in self.pids if p is not None]:
            self._reap(pid)
        self.pids = [None] * self.brokers
        self.paused.clear()
        self._stop_etcd()
        if self.root.exists():
            self.save()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
