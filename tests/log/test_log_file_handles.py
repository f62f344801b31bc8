"""Open segment files stay bounded however many partitions and segments are written."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from log_helpers import batch_offsets, build_batch

from kbroker.clock import ManualClock
from kbroker.log import KafkaStorageError, LogConfig, LogManager

_HERE = Path(__file__).parent

# Runs in a child whose soft RLIMIT_NOFILE is 256: 1,100 written partitions and a
# topic rolled into 400 segments need far more descriptors than that if each stays open.
_SCRIPT = textwrap.dedent('''
    import os, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from log_helpers import batch_offsets, build_batch
    from kbroker.clock import ManualClock
    from kbroker.log import LogConfig, LogManager

    data = Path(sys.argv[1])
    clock = ManualClock()
    peak = 0

    def count():
        global peak
        peak = max(peak, len(os.listdir("/proc/self/fd")))

    mgr = LogManager([data], clock, LogConfig())
    for p in range(1100):
        mgr.get_or_create_log("wide", p).append(build_batch([b"w%d" % p]), leader_epoch=0)
        count()
    small = mgr.get_or_create_log("small", 0, LogConfig(segment_bytes=100))
    for i in range(400):
        small.append(build_batch([b"s%d" % i]), leader_epoch=0)
        count()
    assert len(small.segments) >= 400, len(small.segments)
    mgr.shutdown()

    mgr = LogManager([data], clock, LogConfig())
    small = mgr.get_log("small", 0)
    for i in range(400):
        assert batch_offsets(small.read(i, 1 << 20, upper_bound=i + 1)) == [(i, i)], i
        count()
    for p in range(1100):
        plog = mgr.get_log("wide", p)
        assert batch_offsets(plog.read(0, 1 << 20)) == [(0, 0)], p
        plog.append(build_batch([b"again"]), leader_epoch=0)
        count()
    mgr.shutdown()
    print("peak", peak)
''')


@pytest.mark.integration  # a subprocess under a low descriptor limit
def test_open_files_bounded_under_low_rlimit(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.split()[-1])
    assert peak < 256


def _open_files_under(root: Path) -> int:
    """Descriptors of this process open on files below ``root``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(root))
    return n


def test_segment_descriptors_stay_within_cache_capacity(tmp_path: Path) -> None:
    from kbroker.log.handles import SEGMENT_FILES

    old = SEGMENT_FILES.capacity
    SEGMENT_FILES.capacity = 8
    try:
        mgr = LogManager([tmp_path], ManualClock(), LogConfig(segment_bytes=100))
        plog = mgr.get_or_create_log("t", 0)
        for i in range(60):
            plog.append(build_batch([b"v%d" % i]), leader_epoch=0)
            assert SEGMENT_FILES.open_count <= 8
        for p in range(1, 40):
            mgr.get_or_create_log("t", p).append(build_batch([b"p"]), leader_epoch=0)
        # The cache's 8, plus the one file the background flusher may be syncing.
        assert _open_files_under(tmp_path) <= 8 + 2
        # Every segment reads back through reopened descriptors.
        assert [o for i in range(60) for o in batch_offsets(plog.read(i, 1 << 20, upper_bound=i + 1))] == \
            [(i, i) for i in range(60)]
        plog.flush()  # fsync reopens evicted segments rather than skipping them
        assert not any(seg.needs_sync for seg in plog.segments)
        mgr.shutdown()
        assert _open_files_under(tmp_path) == 0
    finally:
        SEGMENT_FILES.capacity = old


def test_pinned_descriptors_are_not_evicted(tmp_path: Path) -> None:
    from kbroker.log.handles import FileHandleCache

    class Owner:
        def __init__(self, path: Path) -> None:
            self._fd: int | None = None
            self._pins = 0
            self.path = path

        def _open_fd(self) -> int:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    cache = FileHandleCache(capacity=1)
    a, b = Owner(tmp_path / "a"), Owner(tmp_path / "b")
    fd_a = cache.acquire(a)
    cache.acquire(b)  # over capacity, but a is pinned
    assert a._fd == fd_a and cache.open_count == 2
    cache.release(a)  # back within capacity: the least recently used (a) closes
    assert a._fd is None and b._fd is not None and cache.open_count == 1
    cache.release(b)
    cache.drop(b)
    assert cache.open_count == 0


_SERVE_LIMITED = textwrap.dedent('''
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from kbroker.cli import main
    sys.exit(main(sys.argv[1:]))
''')


@pytest.mark.integration  # a subprocess under a low descriptor limit
def test_broker_under_low_rlimit_serves_many_partitions_and_segments(tmp_path: Path) -> None:
    """A real ``kbroker serve`` limited to 256 descriptors takes one message on each of 600
    partitions and 300 one-message segments, and serves them all again after a restart."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    data = tmp_path / "data"
    common = {"bootstrap.servers": "", "broker.address.family": "v4"}

    def serve() -> tuple[subprocess.Popen[str], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
        proc = subprocess.Popen([sys.executable, "-c", _SERVE_LIMITED, "serve", "--override",
                                 "listeners=PLAINTEXT://127.0.0.1:0", "--override", f"log.dirs={data}"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "PLAINTEXT://" in line, line
        return proc, line.split("PLAINTEXT://", 1)[1].split(",", 1)[0].strip()

    def read_all(bootstrap: str, topic: str, partitions: int, count: int) -> list[bytes]:
        c = Consumer({**common, "bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[bytes] = []
        deadline = time.monotonic() + 60
        try:
            while len(out) < count and time.monotonic() < deadline:
                for msg in c.consume(500, 0.5):
                    if msg.error() is None:
                        out.append(msg.value())
        finally:
            c.close()
        return out

    proc, bootstrap = serve()
    try:
        admin = AdminClient({**common, "bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("wide", 600, 1),
                                      NewTopic("small", 1, 1, config={"segment.bytes": "100"})]).values():
            f.result(60)
        errors: list[object] = []
        p = Producer({**common, "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            if err:
                errors.append(err)

        for i in range(600):
            p.produce("wide", f"w{i}".encode(), partition=i, on_delivery=on_delivery)
        assert p.flush(60) == 0
        for i in range(300):  # one batch (and so one segment) each: a batch must fit segment.bytes
            p.produce("small", f"s{i}".encode(), on_delivery=on_delivery)
            assert p.flush(60) == 0
        assert errors == []
        assert sorted(read_all(bootstrap, "wide", 600, 600)) == sorted(f"w{i}".encode() for i in range(600))
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(60)
    assert len(list((data / "small-0").glob("*.log"))) >= 300
    proc, bootstrap = serve()
    try:
        assert read_all(bootstrap, "small", 1, 300) == [f"s{i}".encode() for i in range(300)]
        assert sorted(read_all(bootstrap, "wide", 600, 600)) == sorted(f"w{i}".encode() for i in range(600))
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(60)


def test_failed_write_is_cut_back_and_retried_at_the_same_offset(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = LogManager([tmp_path], ManualClock(), LogConfig())
    plog = mgr.get_or_create_log("t", 0)
    plog.append(build_batch([b"a"]), leader_epoch=0)
    seg = plog.active_segment
    size = seg.size
    real_pwrite, real_pwritev = os.pwrite, os.pwritev

    def short_pwritev(fd, buffers, offset):  # type: ignore[no-untyped-def]
        data = b"".join(bytes(b) for b in buffers)
        return real_pwrite(fd, data[: len(data) // 2], offset)  # part of it lands on disk

    def full_pwrite(fd, data, offset):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwritev", short_pwritev)
    monkeypatch.setattr(os, "pwrite", full_pwrite)
    with pytest.raises(KafkaStorageError) as info:
        plog.append(build_batch([b"b"]), leader_epoch=0)
    assert info.value.error_code == 56
    assert seg.log_path.stat().st_size == size and plog.log_end_offset == 1
    assert batch_offsets(plog.read(0, 1 << 20)) == [(0, 0)]  # reads go on
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert plog.append(build_batch([b"c"]), leader_epoch=0).base_offset == 1
    mgr.shutdown()
    mgr = LogManager([tmp_path], ManualClock(), LogConfig())
    assert batch_offsets(mgr.get_log("t", 0).read(0, 1 << 20)) == [(0, 0), (1, 1)]
    mgr.shutdown()
