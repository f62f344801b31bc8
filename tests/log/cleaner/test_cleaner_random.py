"""Random logs through several cleaning passes, as the cleaner thread would run them: the
invariants of compaction hold after every pass, and a final full pass gives the exact result."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from cleaner_helpers import all_records, append, clean, expected_compaction, recovery_accepts

from kbroker.clock import ManualClock
from kbroker.log import PartitionLog
from kbroker.log.cleaner.offset_map import BYTES_PER_ENTRY

MakeLog = Callable[..., PartitionLog]


@pytest.mark.parametrize("seed", range(8))
def test_random_logs_compact_to_the_latest_value_of_every_key(make_log: MakeLog, clock: ManualClock,
                                                              seed: int) -> None:
    rnd = random.Random(seed)
    plog = make_log(segment_bytes=rnd.choice([700, 1_500, 4_000]), delete_retention_ms=10**9,
                    index_interval_bytes=rnd.choice([50, 4096]))
    keys = [b"k%d" % i for i in range(rnd.randint(3, 25))]
    checkpoint = 0
    for _round in range(4):
        for _ in range(rnd.randint(10, 40)):
            n = rnd.randint(1, 6)
            pairs = [(rnd.choice(keys), None if rnd.random() < 0.15 else b"v%d" % rnd.randint(0, 10**6))
                     for _ in range(n)]
            append(plog, pairs, compression=rnd.choice([0, 0, 1, 2, 3, 4]))
            if rnd.random() < 0.1:
                plog.roll()
        plog.roll()
        append(plog, [(b"tail", b"x")])
        before = all_records(plog)
        end = plog.active_segment.base_offset
        # Room for a few keys only, sometimes: partial passes as the checkpoint advances.
        dedupe = rnd.choice([4 * BYTES_PER_ENTRY, 10 * BYTES_PER_ENTRY, 1 << 20])
        result = clean(plog, clock, first_dirty=checkpoint, end=end, dedupe=dedupe)
        after = all_records(plog)
        assert checkpoint <= result.end_offset <= end
        checkpoint = result.end_offset
        assert set(after) <= set(before)
        assert [r for r in after if r[0] >= checkpoint] == [r for r in before if r[0] >= checkpoint]
        # The latest record of every key stays (tombstones too: no horizon has passed yet).
        latest = {k: (o, k, v) for o, k, v in before}
        assert set(latest.values()) <= set(after)
        recovery_accepts(plog.dir)
        clock.advance(rnd.randint(0, 600))
    # A pass with room for everything, then one after the delete horizon it set: exactly the
    # compacted log, with no tombstone left below the end.
    end = plog.active_segment.base_offset
    before = all_records(plog)
    clean(plog, clock, first_dirty=0, end=end)
    assert all_records(plog) == expected_compaction(before, end)
    clock.advance(10**9)
    clean(plog, clock, first_dirty=0, end=end)
    assert all_records(plog) == expected_compaction(before, end, keep_tombstones=False)
    recovery_accepts(plog.dir)
