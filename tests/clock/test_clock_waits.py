"""Waiting through the clock: the system clock's waits are anyio's; a ManualClock's end when
advance() reaches their deadline (or after as long in real time), from any thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.clock import SYSTEM_CLOCK, ManualClock
from kbroker.common import TopicPartition
from kbroker.groups.timers import Scheduler
from kbroker.log import LogConfig, PartitionLog
from kbroker.log.cleaner.manager import CleanerConfig, LogCleaner
from kbroker.log.retention import RetentionScheduler
from kbroker.records.builder import build_batch

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_system_clock_waits_with_anyio_itself() -> None:
    # Nothing between the serving path and anyio: the same functions, no wrapper.
    assert SYSTEM_CLOCK.move_on_after is anyio.move_on_after
    assert SYSTEM_CLOCK.sleep is anyio.sleep
    called: list[int] = []
    SYSTEM_CLOCK.on_advance(lambda: called.append(1))()  # subscribing and unsubscribing: no-ops
    assert called == []


async def test_system_clock_waits_end_in_real_time() -> None:
    started = time.monotonic()
    with SYSTEM_CLOCK.move_on_after(0.02) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught and time.monotonic() - started >= 0.015


async def test_a_manual_wait_ends_exactly_when_advance_reaches_its_deadline() -> None:
    clock = ManualClock()
    done = anyio.Event()
    caught: list[bool] = []

    async def waiter() -> None:
        with clock.move_on_after(60) as scope:
            await anyio.sleep_forever()
        caught.append(scope.cancelled_caught)
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert clock.pending_waits() == 1
            clock.advance(59_999)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()  # a millisecond short: still waiting
            clock.advance(1)
            await done.wait()
    assert caught == [True]
    assert clock.pending_waits() == 0


async def test_a_manual_wait_ended_by_its_event_is_not_woken_later() -> None:
    clock = ManualClock()
    event = anyio.Event()
    event.set()
    with clock.move_on_after(10) as scope:
        await event.wait()
    assert not scope.cancelled_caught
    assert clock.pending_waits() == 0
    clock.advance(20_000)  # the ended wait's entry is dropped, nothing is cancelled
    assert not scope.cancel_called


async def test_a_manual_wait_also_ends_after_as_long_in_real_time() -> None:
    # The fallback that lets a consumer's long poll on an idle topic answer without advance().
    clock = ManualClock()
    with anyio.fail_after(5):
        await clock.sleep(0.03)
    assert clock.monotonic() == 0.0


async def test_a_wait_longer_than_the_advance_keeps_waiting() -> None:
    clock = ManualClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            ended: list[float] = []

            async def sleeper() -> None:
                await clock.sleep(100)
                ended.append(clock.monotonic())

            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            for _ in range(9):
                clock.advance(10_000)
            await anyio.wait_all_tasks_blocked()
            assert ended == []
            clock.advance(10_000)
    assert ended == [100.0]


async def test_advance_from_another_thread_wakes_the_loop_safely() -> None:
    # A test thread moving the clock of a broker served by another thread's loop.
    clock = ManualClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            woke = anyio.Event()

            async def sleeper() -> None:
                await clock.sleep(30)
                woke.set()

            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            mover = threading.Thread(target=clock.advance, args=(30_000,))
            mover.start()
            mover.join()
            await woke.wait()


def test_the_clock_cannot_move_backwards() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.monotonic() == 0.0


def test_listeners_hear_every_advance_until_unsubscribed() -> None:
    clock = ManualClock()
    heard: list[float] = []
    unsubscribe = clock.on_advance(lambda: heard.append(clock.monotonic()))
    clock.advance(1000)
    clock.advance(500)
    unsubscribe()
    clock.advance(1000)
    assert heard == [1.0, 1.5]


async def test_ended_waits_do_not_pile_up_on_a_clock_never_moved() -> None:
    clock = ManualClock()
    event = anyio.Event()
    event.set()
    for _ in range(1000):  # long polls answered by data, the clock never advanced
        with clock.move_on_after(60):
            await event.wait()
    assert len(clock._waiters) <= 130
    assert clock.pending_waits() == 0


async def test_the_timer_task_is_woken_by_advance_without_a_poke() -> None:
    clock = ManualClock()
    scheduler = Scheduler(clock)
    fired = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            scheduler.call_later(45_000, fired.set)  # a session timeout
            await anyio.wait_all_tasks_blocked()
            clock.advance(44_999)
            await anyio.wait_all_tasks_blocked()
            assert not fired.is_set()
            clock.advance(1)
            await fired.wait()
            tg.cancel_scope.cancel()


def test_a_periodic_check_runs_when_the_clock_passes_its_interval() -> None:
    clock = ManualClock()
    runs: list[float] = []
    # An hour between checks in real time: only the clock can bring one on here.
    sched = RetentionScheduler(lambda: runs.append(clock.monotonic()), 3_600_000, initial_delay_ms=60_000, clock=clock)
    sched.start()
    try:
        assert sched.wait_idle(5)
        clock.advance(59_999)
        assert sched.wait_idle(5) and runs == []
        clock.advance(1)
        assert sched.wait_idle(5) and runs == [60.0]
        clock.advance(10 * 3_600_000)  # hours at once: one check, not a burst of catch-up runs
        assert sched.wait_idle(5) and runs == [60.0, 36_060.0]
        clock.advance(3_600_000)
        assert sched.wait_idle(5) and runs == [60.0, 36_060.0, 39_660.0]
    finally:
        sched.stop()
    assert not sched._thread.is_alive()  # type: ignore[union-attr]
    assert sched.wait_idle(0)  # stopped: idle at once


def test_wait_idle_times_out_while_a_check_runs() -> None:
    clock = ManualClock()
    release = threading.Event()
    sched = RetentionScheduler(lambda: release.wait(5), 1000, initial_delay_ms=1000, clock=clock)
    sched.start()
    try:
        assert sched.wait_idle(5)
        clock.advance(1000)
        assert not sched.wait_idle(0.05)  # the check is under way
        release.set()
        assert sched.wait_idle(5)
    finally:
        release.set()
        sched.stop()


def test_the_cleaner_looks_for_due_logs_when_the_clock_moves(tmp_path: Path) -> None:
    # A cleaner thread backing off for an hour between looks: a log made due by the clock
    # (max.compaction.lag.ms) is cleaned as soon as the clock moves, not an hour later.
    t0 = 1_700_000_000_000
    clock = ManualClock(t0)
    config = LogConfig(cleanup_policy="compact", segment_bytes=400, min_cleanable_dirty_ratio=0.99,
                       max_compaction_lag_ms=60_000)
    plog = PartitionLog(tmp_path / "lazy-0", config, clock)
    for i in range(30):
        plog.append(build_batch([(b"k%d" % (i % 5), b"v" * 40, (), t0 - 1000)]), leader_epoch=0)
    cleaned = threading.Event()

    def clean(plog: PartitionLog, **kw: Any) -> Any:
        cleaned.set()
        raise RuntimeError("recorded; nothing to swap")  # the pass fails: the log backs off

    cleaner = LogCleaner([tmp_path], logs=lambda: {TopicPartition("lazy", 0): plog}, log_dir_of=lambda t, p: tmp_path,
                         clock=clock, config=CleanerConfig(backoff_ms=3_600_000), clean=clean,
                         run_in_process=False, job_fn=lambda job: job)
    cleaner.update_checkpoints(tmp_path, (TopicPartition("lazy", 0), plog.segments[1].base_offset))
    try:
        cleaner.start()
        time.sleep(0.05)  # the thread found nothing due and backs off
        assert not cleaned.is_set()
        clock.advance(60_000)
        assert cleaned.wait(5)
    finally:
        cleaner.shutdown()
        plog.close()
    assert len(clock._listeners) == 0  # the cleaner stopped listening to the clock


def test_a_manual_clock_moves_by_whole_milliseconds_only() -> None:
    # A fractional advance made time_ms() a float, and the broker crashed stamping LogAppendTime.
    clock = ManualClock(start_ms=1_000)
    for bad in (1.5, 2.0, "5", None):
        with pytest.raises(TypeError, match="whole milliseconds"):
            clock.advance(bad)  # type: ignore[arg-type]
    assert (clock.time_ms(), clock.monotonic()) == (1_000, 0.0)
    clock.advance(10**13)  # centuries: still whole numbers
    assert type(clock.time_ms()) is int and clock.time_ms() == 1_000 + 10**13
