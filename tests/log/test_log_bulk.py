"""Bulk partition creation, background roll flushes/checkpoints and batched shutdown."""

from __future__ import annotations

import threading
import uuid

from log_helpers import batch_of_size, batch_offsets, build_batch
from wait_helpers import wait_until

from kbroker.log import LogConfig, LogManager, OffsetCheckpointFile
from kbroker.log.checkpoint import CLEAN_SHUTDOWN_FILE, PartitionMetadataFile


def test_prepared_logs_are_lazy_and_survive_restart(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    tid = uuid.uuid4()
    prepared = mgr.prepare_logs("wide", range(100), tid)
    assert mgr.get_log("wide", 0) is None  # nothing visible before registration
    assert mgr.register_prepared(prepared) == []
    d = tmp_path / "wide-7"
    assert sorted(p.name for p in d.iterdir()) == ["00000000000000000000.log", "partition.metadata"]
    assert PartitionMetadataFile(d).read() == tid
    plog = mgr.get_log("wide", 7)
    assert plog is not None and plog.topic_id == tid and plog.log_end_offset == 0
    assert plog.read(0, 1000) == b""
    plog.append(build_batch([b"a", b"b"]), leader_epoch=0)
    assert batch_offsets(plog.read(0, 1000)) == [(0, 1)]
    mgr.shutdown()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert "wide 7 2" in (tmp_path / "recovery-point-offset-checkpoint").read_text()

    mgr2 = LogManager([tmp_path], clock, LogConfig())
    assert len(mgr2.all_logs()) == 100
    assert mgr2.get_log("wide", 7).log_end_offset == 2
    assert mgr2.get_log("wide", 8).log_end_offset == 0
    assert mgr2.get_log("wide", 8).topic_id == tid
    mgr2.shutdown()


def test_leftover_directory_goes_the_usual_way(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    (tmp_path / "t-1").mkdir()
    prepared = mgr.prepare_logs("t", [0, 1, 2], uuid.uuid4())
    assert prepared.others == [1]
    assert mgr.register_prepared(prepared) == [1]
    mgr.get_or_create_log("t", 1, topic_id=prepared.topic_id)
    assert len(mgr.all_logs()) == 3
    mgr.shutdown()


def test_discard_prepared_removes_directories(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    prepared = mgr.prepare_logs("t", range(5), uuid.uuid4())
    mgr.discard_prepared(prepared)
    assert not any(tmp_path.glob("t-*"))
    mgr.shutdown()


def test_placement_balances_log_dirs(tmp_path, clock):
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = LogManager(dirs, clock, LogConfig())
    mgr.create_logs("t", range(10), topic_id=uuid.uuid4())
    mgr.get_or_create_log("u", 0)
    counts = {d: sum(1 for _ in d.glob("*-*")) for d in dirs}
    assert sorted(counts.values()) == [5, 6]
    assert mgr.delete_partitions("t", range(10)) == 2
    assert len(mgr.all_logs()) == 1
    mgr.shutdown()


def test_roll_flushes_in_background_and_checkpoints(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig(segment_bytes=1024))
    plog = mgr.get_or_create_log("r", 0)
    for _ in range(10):
        plog.append(batch_of_size(300), leader_epoch=0)
    active = plog.active_segment.base_offset
    assert active > 0
    wait_until(lambda: plog.recovery_point >= active, what="the background flush")
    assert plog.recovery_point == active
    assert not any(seg.needs_sync for seg in plog.segments[:-1])
    cp = OffsetCheckpointFile(tmp_path / "recovery-point-offset-checkpoint")
    wait_until(lambda: cp.read().get(("r", 0)) == active, what="the recovery-point checkpoint")
    # A crash now recovers only the active segment.
    mgr._stop_background()
    mgr.release_dir_locks()
    mgr2 = LogManager([tmp_path], clock, LogConfig(segment_bytes=1024))
    assert mgr2.get_log("r", 0).log_end_offset == 10
    mgr2.shutdown()


def test_periodic_checkpoint_after_flush(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig(flush_interval_messages=1), checkpoint_interval_ms=20)
    plog = mgr.get_or_create_log("f", 0)
    plog.append(build_batch([b"x"]), leader_epoch=0)
    cp = OffsetCheckpointFile(tmp_path / "recovery-point-offset-checkpoint")
    wait_until(lambda: cp.read().get(("f", 0)) == 1, what="the periodic checkpoint")
    mgr.shutdown()
    assert not any(t.name == "kbroker-log-flusher" for t in threading.enumerate())


def test_batched_shutdown_of_many_logs(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    mgr.create_logs("m", range(100), topic_id=uuid.uuid4())
    for i in range(0, 100, 2):
        mgr.get_log("m", i).append(build_batch([b"v"]), leader_epoch=0)
    mgr.shutdown()
    rps = OffsetCheckpointFile(tmp_path / "recovery-point-offset-checkpoint").read()
    assert all(rps[("m", i)] == (1 if i % 2 == 0 else 0) for i in range(100))
    mgr2 = LogManager([tmp_path], clock, LogConfig())
    assert [mgr2.get_log("m", i).log_end_offset for i in range(4)] == [1, 0, 1, 0]
    mgr2.shutdown()


def test_empty_partition_metadata_reads_as_absent(tmp_path):
    (tmp_path / "partition.metadata").write_bytes(b"")
    assert PartitionMetadataFile(tmp_path).read() is None
