"""The cleaner manager driving real passes (``clean_log``) in worker processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.common import TopicPartition
from kbroker.log import LogConfig, LogManager, PartitionLog
from kbroker.log.cleaner.manager import CLEANER_CHECKPOINT_FILE, CleanerConfig
from kbroker.records.batch import iter_headers
from kbroker.records.builder import build_batch
from kbroker.records.record import iter_records

T0 = 1_700_000_000_000
COMPACT = LogConfig(cleanup_policy="compact", segment_bytes=256 * 1024, min_cleanable_dirty_ratio=0.01,
                    file_delete_delay_ms=0)
#: A pass over ``write_many`` takes half an hour at this rate.
SLOW = CleanerConfig(threads=1, backoff_ms=60_000, io_buffer_size=8192, io_max_bytes_per_second=2_000)


def write(plog: PartitionLog, n: int, keys: int = 10, pad: int = 0) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    for i in range(n):
        k, v = b"k%d" % (i % keys), b"v%06d" % i + b"." * pad
        plog.append(build_batch([(k, v, (), T0)]), leader_epoch=0)
        latest[k] = v
    return latest


def write_many(plog: PartitionLog) -> dict[bytes, bytes]:
    """200,000 small records in 2,000 batches (3.4 MB): per-record work makes the pass last."""
    latest: dict[bytes, bytes] = {}
    for i in range(2000):
        recs = [(b"k%d" % (j % 10), b"v%06d" % (i * 100 + j)) for j in range(100)]
        plog.append(build_batch([(k, v, (), T0) for k, v in recs]), leader_epoch=0)
        latest.update(recs)
    return latest


def records(plog: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:  # a read returns one segment's batches at most
        data = bytes(plog.read(offset, 1 << 30))
        for pos, h in iter_headers(data):
            out += [(r.offset, r.key, r.value) for r in iter_records(data[pos:pos + h.batch_length + 12])]
            offset = h.last_offset + 1
    return out


@pytest.fixture
def open_manager(tmp_path: Path) -> Iterator[Callable[..., LogManager]]:
    made: list[LogManager] = []

    def make(config: CleanerConfig | None = None, **kw: object) -> LogManager:
        lm = LogManager([tmp_path / "d"], ManualClock(T0), COMPACT, cleaner_config=config, **kw)  # type: ignore[arg-type]
        made.append(lm)
        return lm

    yield make
    for lm in made:
        lm.shutdown()


def wait_for(cond: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_pass_in_a_worker_dedupes_and_checkpoints(open_manager: Callable[..., LogManager]) -> None:
    lm = open_manager()
    plog = lm.get_or_create_log("t", 0)
    latest = write(plog, 5000, pad=100)
    active = plog.active_segment.base_offset
    assert active > 0
    assert lm.run_cleaner() == 1
    got = records(plog)
    assert [o for o, _, _ in got] == sorted(o for o, _, _ in got)
    below = [k for o, k, _ in got if o < active]
    assert len(below) == len(set(below)) <= 10
    assert {k: v for _, k, v in got} == latest
    assert plog.last_cleaning is not None and plog.last_cleaning.cleaned_up_to == active
    assert lm.cleaner.all_checkpoints() == {TopicPartition("t", 0): active}
    assert f"t 0 {active}" in (lm.log_dirs[0] / CLEANER_CHECKPOINT_FILE).read_text()
    assert lm.run_cleaner() == 0


def test_shutdown_during_a_real_pass_discards_it(open_manager: Callable[..., LogManager], tmp_path: Path) -> None:
    lm = open_manager(SLOW)
    plog = lm.get_or_create_log("t", 0)
    latest = write_many(plog)
    before = records(plog)
    lm.start()
    lm.cleaner.wakeup()
    wait_for(lambda: lm.cleaner.state_of(TopicPartition("t", 0)) == "in-progress")
    wait_for(lm.cleaner.worker_pids)
    time.sleep(0.5)  # the worker is well into the throttled pass
    started = time.monotonic()
    lm.shutdown()
    assert time.monotonic() - started < 5
    assert plog.last_cleaning is None
    again = open_manager()
    reopened = again.get_log("t", 0)
    assert reopened is not None and records(reopened) == before
    assert {k: v for _, k, v in records(reopened)} == latest
    assert not list((tmp_path / "d" / "t-0").glob("*.cleaned")) and not list((tmp_path / "d" / "t-0").glob("*.swap"))
    assert again.cleaner.all_checkpoints() == {}
    assert again.run_cleaner() == 1  # the next broker cleans it


def test_a_killed_worker_fails_one_pass_and_the_log_stays_usable(open_manager: Callable[..., LogManager],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    lm = open_manager(SLOW)
    plog = lm.get_or_create_log("t", 0)
    latest = write_many(plog)
    lm.cleaner._uncleanable_backoff_ms = 300
    cleaning = threading.Thread(target=lm.run_cleaner)
    cleaning.start()
    wait_for(lm.cleaner.worker_pids)
    time.sleep(0.3)
    for pid in lm.cleaner.worker_pids():
        os.kill(pid, signal.SIGKILL)  # the worker, started by this test's cleaner
    cleaning.join(10)
    assert not cleaning.is_alive()
    tp = TopicPartition("t", 0)
    assert lm.cleaner.is_uncleanable(tp) and plog.last_cleaning is None
    assert "cleaning of t-0 failed (WorkerDied" in caplog.text
    assert {k: v for _, k, v in records(plog)} == latest
    write(plog, 10)  # still appendable
    wait_for(lambda: not lm.cleaner.is_uncleanable(tp))
    lm.reconfigure_cleaner(CleanerConfig(threads=1))  # full speed again
    assert lm.run_cleaner() == 1
    assert plog.last_cleaning is not None


def test_deleting_a_partition_aborts_a_worker_pass_quickly(open_manager: Callable[..., LogManager],
                                                           tmp_path: Path) -> None:
    lm = open_manager(dataclasses.replace(SLOW, backoff_ms=10))
    plog = lm.get_or_create_log("t", 0)
    write_many(plog)
    lm.start()
    wait_for(lambda: lm.cleaner.state_of(TopicPartition("t", 0)) == "in-progress")
    started = time.monotonic()
    assert lm.delete_partition("t", 0)
    assert time.monotonic() - started < 2
    assert lm.get_log("t", 0) is None and plog.last_cleaning is None
    assert lm.cleaner.state_of(TopicPartition("t", 0)) is None
    assert not (tmp_path / "d" / "t-0").exists()


_ORPHAN_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[2])
from test_manager_clean import COMPACT, SLOW, write_many
from kbroker.clock import ManualClock
from kbroker.log import LogManager
lm = LogManager([sys.argv[1]], ManualClock(1_700_000_000_000), COMPACT, cleaner_config=SLOW)
write_many(lm.get_or_create_log("t", 0))
lm.start()
lm.cleaner.wakeup()
deadline = time.monotonic() + 30
while not lm.cleaner.worker_pids() and time.monotonic() < deadline:
    time.sleep(0.01)
print(" ".join(map(str, lm.cleaner.worker_pids())), flush=True)
time.sleep(0.3)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_broker_killed_mid_pass_leaves_no_worker_behind(tmp_path: Path) -> None:
    # An orphaned worker would go on writing .cleaned files beside the next broker's own passes.
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _ORPHAN_SCRIPT, str(tmp_path / "data"), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), f"cleaner workers {pids} outlived the killed broker"


_EARLY_DEATH_SCRIPT = """
import os, signal, sys, time
from kbroker.log.cleaner.worker import WorkerProcess
worker = WorkerProcess(time.sleep, 30)
worker.poll(0.01)  # the job is on its way; the worker has not armed its death signal yet
print(worker.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_whose_broker_died_before_it_started_does_not_run(tmp_path: Path) -> None:
    # The broker can die while its worker's interpreter is still starting: the death signal
    # is not armed yet, and the worker must see that its parent is gone instead of running
    # its job as an orphan (holding the broker's pipes, writing .cleaned files).
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _EARLY_DEATH_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    pid = int(proc.stdout.readline())  # type: ignore[union-attr]
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(pid), "the worker of a dead broker ran its job"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
