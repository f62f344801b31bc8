"""Property test: the log behaves like a list of batches across rolls and restarts."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from log_helpers import batch_offsets, build_batch

from kbroker.clock import ManualClock
from kbroker.log import LogConfig, PartitionLog

_batch = st.tuples(st.integers(1, 5), st.integers(0, 300), st.integers(0, 10_000))
_op = st.one_of(
    st.tuples(st.just("append"), st.lists(_batch, min_size=1, max_size=3)),
    st.tuples(st.just("restart"), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 2000)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, min_size=1, max_size=25),
    segment_bytes=st.integers(200, 3000),
    interval=st.integers(0, 500),
    max_bytes=st.integers(1, 2000),
)
def test_log_matches_model(ops, segment_bytes, interval, max_bytes):
    tmp = Path(tempfile.mkdtemp())
    try:
        clock = ManualClock()
        cfg = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=interval, segment_ms=1000,
                        segment_index_bytes=8 * 8)
        path = tmp / "p-0"
        plog = PartitionLog(path, cfg, clock)
        model: list[tuple[int, int]] = []  # (base, last) per batch
        for op in ops:
            if op[0] == "append":
                data = b"".join(build_batch([b"v" * size] * n, base_timestamp=ts) for n, size, ts in op[1])
                if len(data) > segment_bytes:
                    continue
                info = plog.append(data, leader_epoch=1)
                off = info.base_offset
                for n, _, _ in op[1]:
                    model.append((off, off + n - 1))
                    off += n
                assert info.last_offset == off - 1
            elif op[0] == "restart":
                if op[1]:
                    plog.flush()
                plog.close()
                plog = PartitionLog(path, cfg, clock, had_clean_shutdown=op[1], recovery_point=plog.recovery_point)
            else:
                clock.advance(op[1])
            assert plog.log_end_offset == (model[-1][1] + 1 if model else 0)
        for seg in plog.segments:
            assert seg.size <= segment_bytes
        for i, (base, last) in enumerate(model):
            for off in (base, last):
                got = batch_offsets(plog.read(off, max_bytes))
                assert got[0] == (base, last)
                assert got == model[i : i + len(got)]
        plog.close()
    finally:
        shutil.rmtree(tmp)
