"""The coordinator's timer scheduler: deadlines, cancellation, and timers extended in place."""

from __future__ import annotations

import pytest

from kbroker.clock import ManualClock
from kbroker.groups.timers import Scheduler


def test_timer_runs_once_at_its_deadline() -> None:
    clock = ManualClock()
    s = Scheduler(clock)
    ran: list[str] = []
    s.call_later(100, lambda: ran.append("a"))
    clock.advance(99)
    assert s.run_due() == 0
    clock.advance(1)
    assert s.run_due() == 1
    clock.advance(1000)
    assert s.run_due() == 0
    assert ran == ["a"]


def test_extended_timer_waits_for_its_new_deadline_without_new_entries() -> None:
    clock = ManualClock()
    s = Scheduler(clock)
    ran: list[int] = []
    timer = s.call_later(100, lambda: ran.append(clock.time_ms()))
    start = clock.time_ms()
    for _ in range(50):  # a heartbeat every 10 ms: the deadline keeps moving
        clock.advance(10)
        assert s.extend(timer, 100)
        assert s.run_due() == 0
    assert len(s._heap) == 1  # extended in place, never pushed again while its entry waits
    assert s.pending() == 1
    clock.advance(99)
    assert s.run_due() == 0
    clock.advance(1)
    assert s.run_due() == 1
    assert ran == [start + 600]
    assert not s.extend(timer, 100)  # it ran: the caller needs a new timer
    assert s.pending() == 0


def test_extend_refuses_an_earlier_deadline_and_a_cancelled_timer() -> None:
    clock = ManualClock()
    s = Scheduler(clock)
    ran: list[str] = []
    timer = s.call_later(1000, lambda: ran.append("x"))
    assert not s.extend(timer, 500)  # earlier: the caller cancels and schedules anew
    assert timer.deadline == clock.monotonic() + 1.0
    timer.cancel()
    assert not s.extend(timer, 2000)
    clock.advance(5000)
    assert s.run_due() == 0
    assert ran == []


def _a_extended_past_b() -> tuple[ManualClock, Scheduler, list[str]]:
    """Timer a due at 100 ms, b at 150 ms, then a extended to 200 ms."""
    clock = ManualClock()
    s = Scheduler(clock)
    ran: list[str] = []
    a = s.call_later(100, lambda: ran.append("a"))
    s.call_later(150, lambda: ran.append("b"))
    assert s.extend(a, 200)
    return clock, s, ran


def test_extended_timer_keeps_order_with_others() -> None:
    clock, s, ran = _a_extended_past_b()
    clock.advance(100)
    assert s.run_due() == 0  # a's old entry came due: pushed again at 200
    clock.advance(50)
    assert s.run_due() == 1
    clock.advance(50)
    assert s.run_due() == 1
    assert ran == ["b", "a"]


def test_extended_timer_keeps_deadline_order_when_the_clock_jumps_past_both() -> None:
    # One run_due after a long stall (or a ManualClock advanced far): timers still run in deadline
    # order, as a timer cancelled and scheduled anew would; the extended one's old entry comes
    # due first but must not run before a timer whose deadline is earlier than its new one.
    clock, s, ran = _a_extended_past_b()
    clock.advance(1000)
    assert s.run_due() == 2
    assert ran == ["b", "a"]


@pytest.mark.parametrize("then_ms", [80, 500])  # to exactly the shared deadline, and past it
def test_timers_due_at_the_same_instant_run_in_the_order_they_were_set_or_extended(then_ms: int) -> None:
    # Equal deadlines (common on a ManualClock): the order is that of scheduling, an extension
    # counting as scheduling anew (what cancel + call_later did).
    clock = ManualClock()
    s = Scheduler(clock)
    ran: list[str] = []
    a = s.call_later(50, lambda: ran.append("a"))
    clock.advance(10)
    s.call_later(100, lambda: ran.append("b"))  # due at 110
    clock.advance(10)
    assert s.extend(a, 90)  # due at 110 too, set after b
    c = s.call_later(60, lambda: ran.append("c"))  # due at 80
    clock.advance(10)
    assert s.extend(c, 80)  # due at 110 too, set last
    clock.advance(then_ms)
    assert s.run_due() == 3
    assert ran == ["b", "a", "c"]
