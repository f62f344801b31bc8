"""Member expiry, offset resumption, commit modes and static membership, for every client."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.testing import BrokerThread

from .clients import (
    BROKER_OVERRIDES,
    TOPIC_PARTITIONS,
    WORKERS,
    Options,
    ThreadWorker,
    committed,
    group_of,
    produce,
    wait_all_committed,
    wait_until,
)

CLIENTS = list(WORKERS)
ROOT = str(Path(__file__).resolve().parents[2])

#: A consumer in a child process, so it can die without a word (SIGKILL): no LeaveGroup, no heartbeats.
VICTIM = """
import sys
sys.path[:0] = [sys.argv[5], sys.argv[5] + "/tests"]
from tests.groups.clients import WORKERS, Options
from wait_helpers import wait_until
w = WORKERS[sys.argv[1]]("victim", sys.argv[2], sys.argv[3], sys.argv[4], Options(session_ms=2000))
w.start()
wait_until(lambda: w.assignment, what="the victim's assignment")
print("ASSIGNED", sorted(w.assignment), flush=True)
w.join()  # consume until killed
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", BROKER_OVERRIDES) as b:
        yield b


def consume_exactly(broker: BrokerThread, worker: ThreadWorker, expected: list[bytes], total: int) -> None:
    """``worker`` (committing after each batch) reads exactly ``expected``; its topic then holds
    ``total`` records, all of which its group has committed once it is done."""
    worker.start()
    wait_until(lambda: len(worker.consumed) >= len(expected), what=f"{worker.name} to consume")
    wait_all_committed(broker, worker.args[1], total)  # anything read twice has been read by now
    worker.stop()
    assert sorted(worker.consumed) == sorted(expected)


@pytest.mark.parametrize("client", CLIENTS)
def test_silent_member_expires_and_its_partitions_move(broker: BrokerThread, client: str) -> None:
    produce(broker.bootstrap, "events", 0, 6)
    survivor = WORKERS[client]("survivor", broker.bootstrap, "expiry", "events", Options(session_ms=2000))
    survivor.start()
    wait_until(lambda: len(survivor.assignment) == TOPIC_PARTITIONS, what="survivor assigned")
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, client, broker.bootstrap, "expiry", "events", ROOT],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        assert line.startswith("ASSIGNED"), line
        wait_until(lambda: len(survivor.assignment) < TOPIC_PARTITIONS, what="survivor to give up partitions")
        assert len(group_of(broker, "expiry").members) == 2
    finally:
        victim.kill()
        victim.wait()
    killed_at = time.monotonic()
    wait_until(lambda: len(survivor.assignment) == TOPIC_PARTITIONS, timeout=15, what="partitions to move back")
    assert time.monotonic() - killed_at >= 1.0  # it took the session timeout, not a LeaveGroup
    assert len(group_of(broker, "expiry").members) == 1
    survivor.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_resume_after_consumer_and_broker_restart(tmp_path: Path, client: str) -> None:
    data = tmp_path / "data"
    make = WORKERS[client]
    with BrokerThread(data, BROKER_OVERRIDES) as b:
        first = produce(b.bootstrap, "resume", 0, 30)
        consume_exactly(b, make("one", b.bootstrap, "resume-g", "resume"), first, 30)
        second = produce(b.bootstrap, "resume", 30, 60)
        consume_exactly(b, make("two", b.bootstrap, "resume-g", "resume"), second, 60)
        before = committed(b, "resume-g")
        assert sum(before.values()) == 60
    with BrokerThread(data, BROKER_OVERRIDES) as b:
        assert committed(b, "resume-g") == before
        third = produce(b.bootstrap, "resume", 60, 90)
        consume_exactly(b, make("three", b.bootstrap, "resume-g", "resume"), third, 90)
        assert sum(committed(b, "resume-g").values()) == 90


@pytest.mark.parametrize("mode", ["auto", "async"])
@pytest.mark.parametrize("client", CLIENTS)
def test_auto_and_async_commits(broker: BrokerThread, client: str, mode: str) -> None:
    make = WORKERS[client]
    opts = Options(auto_commit=mode == "auto", async_commit=mode == "async")
    produce(broker.bootstrap, "commits", 0, 30)
    w = make("committer", broker.bootstrap, "commit-g", "commits", opts)
    w.start()
    wait_until(lambda: len(w.consumed) == 30, what="consume")
    wait_until(lambda: sum(committed(broker, "commit-g").values()) == 30, what="offsets committed")
    w.stop()
    later = produce(broker.bootstrap, "commits", 30, 40)
    consume_exactly(broker, make("after", broker.bootstrap, "commit-g", "commits"), later, 40)


@pytest.mark.parametrize("client", CLIENTS)
def test_static_member_restart_keeps_partitions_without_rebalance(broker: BrokerThread, client: str) -> None:
    make = WORKERS[client]
    produce(broker.bootstrap, "static", 0, 6)
    workers = [make(f"s{i}", broker.bootstrap, "static-g", "static", Options(instance_id=f"inst-{i}"))
               for i in range(3)]
    for w in workers:
        w.start()
    wait_until(lambda: all(w.assignment for w in workers)
               and sum(len(w.assignment) for w in workers) == TOPIC_PARTITIONS, what="three static members")
    group = group_of(broker, "static-g")
    wait_until(lambda: group.state.value == "Stable" and len(group.members) == 3, what="a stable group of three")
    generation = group.generation_id
    seen = [w.assignments_seen for w in workers]
    leaving = workers[1]
    owned = set(leaving.assignment)
    leaving.stop()  # static members do not send LeaveGroup on close
    back = make("s1-again", broker.bootstrap, "static-g", "static", Options(instance_id="inst-1"))
    back.start()
    wait_until(lambda: bool(back.assignment), what="restarted member assigned")
    # A rebalance, had the rejoin started one, would have begun before the member got its
    # assignment: the group would have left Stable or moved to a new generation by now.
    assert back.assignment == owned
    assert group_of(broker, "static-g").generation_id == generation
    assert [workers[0].assignments_seen, workers[2].assignments_seen] == [seen[0], seen[2]]
    assert group.state.value == "Stable"
    for w in (workers[0], workers[2], back):
        w.stop()
