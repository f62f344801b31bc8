"""LocalCluster's process management: start and readiness, kill/pause/resume/restart/terminate by
pid, the state file, attaching from another process, and no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbroker.etcd.server import EtcdNotFound, EtcdServer
from kbroker.localcluster import ClusterError, LocalCluster, _cmdline, cluster_defaults
from kbroker.testing import local_cluster
from tests.ci_helpers import need
from tests.cluster.marks import CLUSTER_FEATURES

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _etcd_installed() -> None:
    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        need(str(e))


def _state(root: Path) -> dict:
    return json.loads((root / "cluster.json").read_text())


def _gone(pid: int) -> bool:
    return _cmdline(pid) is None


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()


def _wait_state(pid: int, states: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while (s := _proc_state(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    return s


def _answers(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def test_start_every_broker_listens_with_cluster_settings_and_stop_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "c"
    with LocalCluster(root, 3, {"num.partitions": "2", "default.replication.factor": "2"},
                      per_broker={1: {"broker.rack": "r1", "num.partitions": "5"}}) as c:
        state = _state(root)
        pids = [b["pid"] for b in state["brokers"]] + [state["etcd"]["pid"]]
        assert all(isinstance(p, int) and not _gone(p) for p in pids)
        assert len(set(c.ports)) == 3 and c.bootstrap_servers == ",".join(f"127.0.0.1:{p}" for p in c.ports)
        assert EtcdServer(root, client_port=c.etcd_client_port).healthy()
        for i in range(3):
            log = c.log_path(i).read_text()
            assert f"kbroker {i} listening on PLAINTEXT://127.0.0.1:{c.ports[i]}" in log
            assert _answers(c.bootstrap(i))
            cmd = _cmdline(c.pids[i] or 0) or ""
            # Cluster defaults, the user's overrides over them, the broker's identity.
            assert f"node.id={i}" in cmd and f"etcd.endpoints={c.etcd_endpoint}" in cmd
            assert f"cluster.id={c.cluster_id}" in cmd and "broker.session.timeout.ms=3000" in cmd
            assert "default.replication.factor=2" in cmd and "default.replication.factor=3" not in cmd
            assert (root / f"broker-{i}" / "data" / "meta.properties").exists()
            assert ("broker.rack=r1" in cmd and "num.partitions=5" in cmd) == (i == 1)
        assert LocalCluster.attach(root).per_broker == {1: {"broker.rack": "r1", "num.partitions": "5"}}
    assert all(_gone(p) for p in pids)
    assert all(b["pid"] is None for b in _state(root)["brokers"]) and _state(root)["etcd"]["pid"] is None


def test_defaults_follow_the_broker_count() -> None:
    one = cluster_defaults(1)
    assert one["offsets.topic.replication.factor"] == "1" and one["transaction.state.log.min.isr"] == "1"
    five = cluster_defaults(5)
    assert five["default.replication.factor"] == "3" and five["transaction.state.log.min.isr"] == "2"
    with pytest.raises(ValueError):
        LocalCluster(Path("unused"), 0)


def test_kill_pause_resume_restart_terminate(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "c", brokers=2) as c:
        port1, pid1 = c.ports[1], c.pids[1]
        assert pid1 is not None
        c.kill(1)
        assert _gone(pid1) and not c.alive(1) and _state(c.root)["brokers"][1]["pid"] is None
        with pytest.raises(ClusterError, match="not running"):
            c.kill(1)
        with pytest.raises(ClusterError, match="not running"):
            c.pause(1)
        c.restart(1)
        assert c.ports[1] == port1 and c.pids[1] != pid1 and c.alive(1)
        assert _answers(c.bootstrap(1))
        assert c.log_path(1).read_text().count("kbroker 1 listening on") == 2  # one log across restarts

        pid0 = c.pids[0]
        assert pid0 is not None
        c.pause(0)
        assert _wait_state(pid0, "T") == "T"
        assert c.status()[0]["state"] == "paused" and _state(c.root)["brokers"][0]["paused"]
        c.resume(0)
        assert _wait_state(pid0, "SR") in "SR" and c.status()[0]["state"] == "running"

        # A paused broker still stops on SIGTERM (it is continued), in a controlled shutdown.
        c.pause(0)
        c.terminate(0)
        assert _gone(pid0) and c.status()[0] == {"id": 0, "port": c.ports[0], "pid": None, "state": "stopped"}
        assert "received SIGTERM, shutting down" in c.log_path(0).read_text()
        with pytest.raises(ClusterError, match="no broker 2"):
            c.kill(2)
        # restart of a running broker: stopped then started again.
        pid1 = c.pids[1]
        c.restart(1)
        assert pid1 is not None and _gone(pid1) and c.alive(1)


def test_attach_acts_on_a_cluster_another_process_started(tmp_path: Path) -> None:
    root = tmp_path / "c"
    code = ("import sys; from kbroker.localcluster import LocalCluster; "
            f"c = LocalCluster({str(root)!r}, 2).start(); print(c.bootstrap_servers)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    c = LocalCluster.attach(root)
    try:
        assert out.stdout.strip() == c.bootstrap_servers and all(c.alive(i) for i in range(2))
        pid = c.pids[0]
        assert pid is not None
        c.kill(0)  # not our child: waited for through /proc until init reaps it
        assert _gone(pid)
        # A second start in the same folder while it runs is refused.
        with pytest.raises(ClusterError, match="already running"):
            LocalCluster(root, 2).start()
    finally:
        pids = [p for p in c.pids if p] + [c.etcd_pid or 0]
        c.stop()
    assert all(_gone(p) for p in pids if p)
    # Started again, the folder keeps its cluster id and ports.
    with LocalCluster(root, 2) as again:
        assert again.cluster_id == c.cluster_id and again.ports == c.ports
    with pytest.raises(ClusterError, match="holds a cluster of 2 brokers"):
        LocalCluster(root, 3).start()


def test_a_pid_reused_by_another_process_is_never_signalled(tmp_path: Path) -> None:
    root = tmp_path / "c"
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        c = LocalCluster(root, 1)
        c.pids[0] = stranger.pid  # as if the state file named a pid now used by something else
        c.etcd_pid = stranger.pid
        assert not c.alive(0) and not c.running()
        with pytest.raises(ClusterError, match="not running"):
            c.kill(0)
        with pytest.raises(ClusterError, match="not running"):
            c.pause(0)
        c.stop()
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_broker_that_cannot_start_fails_start_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "c"
    with pytest.raises(ClusterError, match=r"broker 0 exited with 2.*log: "):
        LocalCluster(root, 2, {"num.partitions": "not-a-number"}).start()
    state = _state(root)
    assert state["etcd"]["pid"] is None and all(b["pid"] is None for b in state["brokers"])
    assert "num.partitions" in (root / "broker-0" / "broker.log").read_text()


def test_readiness_times_out_and_the_broker_is_ended(tmp_path: Path) -> None:
    # A "broker" that never prints its line: python sleeping under the same command line.
    c = LocalCluster(tmp_path / "c", 1, python=sys.executable, startup_timeout=1.0)
    c.command = lambda i: [sys.executable, "-c", "import time; time.sleep(60)",  # type: ignore[method-assign]
                           f"log.dirs={c.broker_dir(i) / 'data'}"]
    started = time.monotonic()
    with pytest.raises(ClusterError, match="not listening within 1 s"):
        c.start()
    assert all(p is None for p in c.pids) and c.etcd_pid is None
    # Ended, not waited for: a child of ours that runs something unexpected is still ours
    # (the whole 60 s sleep was once waited out).
    assert time.monotonic() - started < 30


def test_attach_without_a_state_file_or_with_a_bad_one(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="no cluster in"):
        LocalCluster.attach(tmp_path)
    (tmp_path / "cluster.json").write_text("{}")
    with pytest.raises(ClusterError, match="not a cluster state file"):
        LocalCluster.attach(tmp_path)
    (tmp_path / "cluster.json").write_text('{"version": 1}')
    with pytest.raises(ClusterError, match="malformed"):
        LocalCluster.attach(tmp_path)


def test_kafka_cluster_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.kafka_cluster(brokers=2, overrides={"num.partitions": "3"})
        def test_cluster(kafka_cluster):
            assert kafka_cluster.brokers == 2
            assert all(kafka_cluster.alive(i) for i in range(2))
            assert len(kafka_cluster.bootstrap_servers.split(",")) == 2
            print("PIDS", *kafka_cluster.pids)
        """
    )
    result = pytester.runpytest_subprocess("-q", "-s")
    result.assert_outcomes(passed=1)
    pids = [int(p) for line in result.outlines if line.startswith("PIDS") for p in line.split()[1:]]
    assert len(pids) == 2 and all(_gone(p) for p in pids)


def test_cluster_features_flag_matches_the_code() -> None:
    # The etcd-backed metadata (kbroker/metadata/cluster.py) is what makes brokers a cluster.
    present = (ROOT / "kbroker" / "metadata" / "cluster.py").exists()
    assert present == CLUSTER_FEATURES, (
        "flip CLUSTER_FEATURES in tests/cluster/marks.py: the tests marked requires_cluster_features "
        "would be skipped" if present else "CLUSTER_FEATURES is set but the cluster code is absent")



def test_a_port_taken_meanwhile_is_replaced_at_first_start_not_at_restart(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        c = LocalCluster(tmp_path / "c", 1)
        c.ports[0] = port  # as if another process took the port picked for broker 0
        with c:
            assert c.ports[0] != port and c.alive(0)
            assert "cannot listen on" in c.log_path(0).read_text()
            c.kill(0)
            c.ports[0] = port  # a restart keeps its port: it fails rather than move
            with pytest.raises(ClusterError, match="broker 0 exited"):
                c.restart(0)
            assert not c.alive(0)
    c.ports[0] = 0
    with pytest.raises(ClusterError, match="etcd is not running"):
        c.restart(0)


def test_processes_that_only_mention_the_cluster_paths_are_never_signalled(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "c"
    c = LocalCluster(root, brokers=1)
    # As ``tail -f c/etcd.log`` and ``grep log.dirs=c/broker-0/data``: the paths, not as options.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(root / "etcd.log"),
                                  str(root / "etcd"), f"log.dirs={c.broker_dir(0) / 'data'}"])
    try:
        c.etcd_pid = c.pids[0] = bystander.pid
        c.save()
        attached = LocalCluster.attach(root)
        assert not attached.etcd_alive() and not attached.alive(0) and not attached.running()
        with pytest.raises(ClusterError):
            attached.kill(0)
        attached.stop()
        assert bystander.poll() is None  # still running: nothing was signalled
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("pid", ["123", "self", -1, 0, True, 1.5, [1]])
def test_a_state_file_with_a_pid_that_is_not_one_is_refused(tmp_path: Path, pid: object) -> None:
    c = LocalCluster(tmp_path, brokers=1)
    c.save()
    state = json.loads(c.state_path.read_text())
    state["brokers"][0]["pid"] = pid
    c.state_path.write_text(json.dumps(state))
    with pytest.raises(ClusterError, match="malformed"):
        LocalCluster.attach(tmp_path)
    state["brokers"][0]["pid"] = None
    state["etcd"]["pid"] = pid
    c.state_path.write_text(json.dumps(state))
    with pytest.raises(ClusterError, match="malformed"):
        LocalCluster.attach(tmp_path)


def test_a_killed_process_is_waited_for_while_it_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Between SIGKILL and becoming a zombie, a process's command line reads empty: kill() took
    # that for "gone" and returned while /proc still showed the process (a CI failure).
    import kbroker.localcluster as lc

    c = LocalCluster(tmp_path / "c", 1)
    marker = ("--override", "log.dirs=/x")
    seen = iter([["python", "--override", "log.dirs=/x"], [], [], None])
    calls: list[int] = []

    def argv(pid: int) -> list[str] | None:
        calls.append(pid)
        return next(seen)

    monkeypatch.setattr(lc, "_argv", argv)
    assert c._wait_gone(4242, marker, 5.0)
    assert len(calls) == 4  # through the empty command lines to the end
    # A pid that runs something else now is not waited for.
    seen = iter([["sleep", "60"]])
    assert c._wait_gone(4242, marker, 5.0)
