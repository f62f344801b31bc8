"""LogManager: loading, placement, checkpoints, clean shutdown, metadata."""

from __future__ import annotations

import uuid

import pytest
from log_helpers import batch_of_size, batch_offsets, build_batch
from wait_helpers import wait_until

from kbroker.log import (
    LogConfig,
    LogManager,
    OffsetCheckpointFile,
    PartitionMetadataFile,
    decode_topic_id,
    encode_topic_id,
)
from kbroker.log.checkpoint import CLEAN_SHUTDOWN_FILE


def test_create_append_shutdown_restart(tmp_path, clock):
    cfg = LogConfig(segment_bytes=300)
    mgr = LogManager([tmp_path], clock, cfg)
    plog = mgr.get_or_create_log("orders", 0)
    assert mgr.get_or_create_log("orders", 0) is plog
    assert mgr.get_log("orders", 1) is None
    for _ in range(5):
        plog.append(batch_of_size(120), leader_epoch=0)
    plog.delete_records_before(3)
    mgr.shutdown()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    rp = (tmp_path / "recovery-point-offset-checkpoint").read_text()
    assert rp == "0\n1\norders 0 5\n"
    assert (tmp_path / "log-start-offset-checkpoint").read_text() == "0\n1\norders 0 3\n"

    mgr2 = LogManager([tmp_path], clock, cfg)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()  # a crash from now on means recovery
    plog2 = mgr2.get_log("orders", 0)
    assert plog2 is not None
    assert (plog2.log_start_offset, plog2.log_end_offset) == (3, 5)
    assert batch_offsets(plog2.read(3, 1 << 20)) == [(3, 3)]
    mgr2.shutdown()


def test_unclean_restart_recovers(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    plog = mgr.get_or_create_log("t", 0)
    plog.append(build_batch([b"a"]), leader_epoch=0)
    plog.append(build_batch([b"b"]), leader_epoch=0)
    mgr.checkpoint()  # recovery point 0: nothing flushed yet
    plog.close()  # "crash": no flush, no marker
    mgr.release_dir_locks()  # as the crashed process's exit would
    path = plog.active_segment.log_path
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")
    mgr2 = LogManager([tmp_path], clock, LogConfig())
    plog2 = mgr2.get_log("t", 0)
    assert plog2 is not None and plog2.log_end_offset == 2
    assert plog2.recovery_point == 0
    mgr2.shutdown()


def test_checkpoint_file_roundtrip_and_format(tmp_path):
    cp = OffsetCheckpointFile(tmp_path / "recovery-point-offset-checkpoint")
    assert cp.read() == {}
    cp.write({("b", 1): 10, ("a", 0): 7})
    assert cp.path.read_text() == "0\n2\na 0 7\nb 1 10\n"
    assert cp.read() == {("a", 0): 7, ("b", 1): 10}
    assert not (tmp_path / "recovery-point-offset-checkpoint.tmp").exists()


def test_partition_metadata(tmp_path, clock):
    tid = uuid.uuid4()
    mgr = LogManager([tmp_path], clock, LogConfig())
    plog = mgr.get_or_create_log("t", 0, topic_id=tid)
    text = (plog.dir / "partition.metadata").read_text()
    assert text == f"version: 0\ntopic_id: {encode_topic_id(tid)}\n"
    assert len(encode_topic_id(tid)) == 22 and "=" not in encode_topic_id(tid)
    assert decode_topic_id(encode_topic_id(tid)) == tid
    assert PartitionMetadataFile(plog.dir).read() == tid
    with pytest.raises(Exception, match="topic id"):
        mgr.get_or_create_log("t", 0, topic_id=uuid.uuid4())
    mgr.shutdown()
    mgr2 = LogManager([tmp_path], clock, LogConfig())
    loaded = mgr2.get_log("t", 0)
    assert loaded is not None and loaded.topic_id == tid
    mgr2.shutdown()


def test_placement_uses_least_loaded_dir(tmp_path, clock):
    dirs = [tmp_path / "d1", tmp_path / "d2", tmp_path / "d3"]
    mgr = LogManager(dirs, clock, LogConfig())
    for p in range(6):
        mgr.get_or_create_log("t", p)
    counts = {d: sum(1 for c in d.iterdir() if c.is_dir()) for d in dirs}
    assert set(counts.values()) == {2}
    mgr.delete_partition("t", 0)
    d0 = mgr.log_dir_of("t", 0)
    assert d0 is None
    new = mgr.get_or_create_log("u", 0)
    assert new.dir.parent == dirs[0]  # d1 lost a partition
    mgr.shutdown()
    mgr2 = LogManager(dirs, clock, LogConfig())
    assert len(mgr2.all_logs()) == 6
    for d in dirs:
        assert (d / "recovery-point-offset-checkpoint").exists()
    mgr2.shutdown()


def test_delete_partition(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    plog = mgr.get_or_create_log("gone", 3)
    plog.append(build_batch([b"x"]), leader_epoch=0)
    assert mgr.delete_partition("gone", 3)
    assert not mgr.delete_partition("gone", 3)
    assert not plog.dir.exists()
    assert mgr.get_log("gone", 3) is None
    # A half-finished delete from a crash is completed on start.
    (tmp_path / "gone-4.abc-delete").mkdir()
    mgr.shutdown()
    mgr2 = LogManager([tmp_path], clock, LogConfig())
    assert mgr2.all_logs() == {}
    # removed by the background thread
    wait_until(lambda: not (tmp_path / "gone-4.abc-delete").exists(), what="the -delete dir removed")
    mgr2.shutdown()


def test_config_for_and_update(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig())
    plog = mgr.get_or_create_log("t", 0, LogConfig(segment_bytes=500))
    assert plog.config.segment_bytes == 500
    mgr.get_or_create_log("t", 0, LogConfig(segment_bytes=600))
    assert plog.config.segment_bytes == 600
    mgr.shutdown()
    mgr2 = LogManager([tmp_path], clock, LogConfig(), config_for=lambda topic: LogConfig(segment_bytes=700))
    assert mgr2.get_log("t", 0).config.segment_bytes == 700  # type: ignore[union-attr]
    mgr2.shutdown()


def test_flush_all_and_dirty_logs(tmp_path, clock):
    mgr = LogManager([tmp_path], clock, LogConfig(flush_interval_ms=1000))
    a = mgr.get_or_create_log("a", 0)
    a.append(build_batch([b"x"]), leader_epoch=0)
    assert mgr.flush_dirty_logs() == 0
    clock.advance(1000)
    assert mgr.flush_dirty_logs() == 1
    assert a.recovery_point == 1
    a.append(build_batch([b"y"]), leader_epoch=0)
    mgr.flush_all()
    assert a.recovery_point == 2
    mgr.shutdown()


def test_thousand_partitions_open_and_close(tmp_path, clock):
    mgr = LogManager([tmp_path / "a", tmp_path / "b"], clock, LogConfig())
    for p in range(1000):
        mgr.get_or_create_log("many", p).append(build_batch([b"v"]), leader_epoch=0)
    mgr.shutdown()
    mgr2 = LogManager([tmp_path / "a", tmp_path / "b"], clock, LogConfig())
    logs = mgr2.all_logs()
    assert len(logs) == 1000
    assert all(plog.log_end_offset == 1 for plog in logs.values())
    mgr2.shutdown()


def test_deleted_segment_files_go_after_file_delete_delay(tmp_path, clock):
    # The manager's background thread removes .deleted files once file.delete.delay.ms passed
    # on the clock; .deleted files left by a stop are removed by the next load.
    mgr = LogManager([tmp_path], clock, LogConfig(segment_bytes=300, file_delete_delay_ms=300))
    plog = mgr.get_or_create_log("orders", 0)
    for _ in range(6):
        plog.append(batch_of_size(120), leader_epoch=0)
    mgr.start()
    plog.delete_records_before(4)
    assert list(plog.dir.glob("*.log.deleted"))
    clock.advance(300)
    wait_until(lambda: not list(plog.dir.glob("*.deleted")), timeout=10)
    slow = mgr.get_or_create_log("slow", 0, LogConfig(segment_bytes=300, file_delete_delay_ms=600_000))
    for _ in range(4):
        slow.append(batch_of_size(120), leader_epoch=0)
    slow.delete_records_before(2)
    assert list(slow.dir.glob("*.log.deleted"))
    mgr.shutdown()
    assert list(slow.dir.glob("*.log.deleted"))  # a stop does not wait for the delay
    mgr2 = LogManager([tmp_path], clock, LogConfig(segment_bytes=300))
    try:
        assert not list(slow.dir.glob("*.deleted"))
        assert mgr2.get_log("slow", 0).log_start_offset == 2
    finally:
        mgr2.shutdown()


def _open_deleted_files() -> list[str]:
    """Files this process holds open that are gone from the file system."""
    import os

    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(" (deleted)"):
            out.append(target)
    return out


def test_deleting_a_partition_releases_the_descriptors_of_segments_waiting_for_deletion(tmp_path, clock):
    # Segments retention or DeleteRecords took out wait for file.delete.delay.ms with their
    # descriptors in the LRU; the partition's deletion removes the files with the directory,
    # and no descriptor may keep them (and their disk space) alive afterwards.
    mgr = LogManager([tmp_path], clock, LogConfig(segment_bytes=300, file_delete_delay_ms=200))
    try:
        mgr.start()
        plog = mgr.get_or_create_log("gone", 0)
        for _ in range(6):
            plog.append(batch_of_size(120), leader_epoch=0)
        detached = plog.segments[:-1]
        plog.delete_records_before(4)
        assert any(seg._fd is not None for seg in detached)  # the scenario: descriptors in the LRU
        mgr.delete_partition("gone", 0)
        clock.advance(200)  # the delayed deletion comes due on the clock
        wait_until(lambda: not list(tmp_path.glob("gone-0*")), timeout=10)
        wait_until(lambda: all(seg._fd is None for seg in detached), timeout=10)
        assert not [p for p in _open_deleted_files() if "gone-0" in p]
    finally:
        mgr.shutdown()


def test_segments_detached_before_a_partition_deletion_release_their_descriptors(tmp_path, clock):
    # DeleteRecords takes segments out under the lock and renames them later (off the event
    # loop); a deletion in between leaves their files to the directory's removal, and their
    # descriptors must not outlive it.
    mgr = LogManager([tmp_path], clock, LogConfig(segment_bytes=300, file_delete_delay_ms=200))
    try:
        plog = mgr.get_or_create_log("gone", 0)
        for _ in range(6):
            plog.append(batch_of_size(120), leader_epoch=0)
        _, detached = plog.detach_records_before(4)
        assert any(seg._fd is not None for seg in detached)
        mgr.delete_partition("gone", 0)
        assert plog.delete_segments_async(detached) == 0
        assert all(seg._fd is None for seg in detached)
    finally:
        mgr.shutdown()


def test_a_shutdown_releases_the_descriptors_of_segments_waiting_for_deletion(tmp_path, clock):
    # The queue of deleted segments is dropped at shutdown (the next load removes the files);
    # their descriptors go with it, or the process keeps those files allocated.
    mgr = LogManager([tmp_path], clock, LogConfig(segment_bytes=300, file_delete_delay_ms=600_000))
    mgr.start()
    plog = mgr.get_or_create_log("t", 0)
    for _ in range(6):
        plog.append(batch_of_size(120), leader_epoch=0)
    detached = plog.segments[:-1]
    plog.delete_records_before(4)
    assert any(seg._fd is not None for seg in detached)
    mgr.shutdown()
    assert all(seg._fd is None for seg in detached)
