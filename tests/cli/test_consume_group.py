"""``kbroker consume --group``: a consumer-group-protocol member that commits, beside real clients;
``kbroker groups --describe --members/--state``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from kbroker.testing import BrokerThread

Runner = Any  # the `cli` fixture from conftest.py
ROOT = Path(__file__).resolve().parents[2]
#: Quick heartbeats so that a local group settles in a fraction of a second.
OVERRIDES = {"group.consumer.heartbeat.interval.ms": "100", "group.consumer.min.heartbeat.interval.ms": "100",
             "group.consumer.session.timeout.ms": "6000", "group.consumer.min.session.timeout.ms": "1000",
             "group.initial.rebalance.delay.ms": "0"}


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """The conftest's ``cli`` runs against this broker (quick consumer-protocol heartbeats)."""
    with BrokerThread(tmp_path / "data", OVERRIDES) as b:
        yield b


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def test_group_commits_and_the_next_run_resumes(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "gt", "--partitions", "2").code == 0
    assert cli("produce", "--topic", "gt", "--partition", "0", stdin="a\nb\nc\n").code == 0
    assert cli("produce", "--topic", "gt", "--partition", "1", stdin="d\ne\n").code == 0
    r = cli("consume", "--topic", "gt", "--group", "g", "--from-beginning", "--partition", "0")
    assert r.code == 1 and "--partition cannot be used with --group" in r.err
    r = cli("consume", "--topic", "gt", "--group", "g", "--from-beginning", "--max-messages", "3",
            "--format", r"%p:%s\n")
    assert r.code == 0, r.err
    first = r.out.splitlines()
    assert len(first) == 3
    r = cli("groups", "--describe", "--group", "g")
    rows = {(row[1], row[2]): row[3] for row in _table(r.out) if row[0] == "g"}
    committed = {("gt", "0"): 0, ("gt", "1"): 0}
    for line in first:
        committed[("gt", line.split(":")[0])] += 1
    assert {k: int(v) for k, v in rows.items()} == committed
    # The next member starts where the group stopped (not at the end: --from-beginning only resets).
    r = cli("consume", "--topic", "gt", "--group", "g", "-e", "--format", r"%p:%s\n")
    assert r.code == 0, r.err
    assert sorted(first + r.out.splitlines()) == ["0:a", "0:b", "0:c", "1:d", "1:e"]
    r = cli("groups", "--describe", "--group", "g", "--members")  # both runs left the group
    assert (r.out, r.err) == ("\nGROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS\n",
                              "\nConsumer group 'g' has no active members.\n")
    r = cli("groups", "--describe", "--group", "g", "--state", "--verbose")
    assert r.err == "\nConsumer group 'g' has no active members.\n"
    header, row = _table(r.out)
    assert header == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE", "GROUP-EPOCH",
                      "TARGET-ASSIGNMENT-EPOCH", "#MEMBERS"]
    assert row[0] == "g" and row[-4] == "Empty" and row[-3].isdigit() and row[-1] == "0"
    assert ["g", "Empty"] in _table(cli("groups", "--list", "--state").out)
    assert ["g", "Empty"] in _table(cli("groups", "--list", "--state", "stable,empty").out)
    assert _table(cli("groups", "--list", "--state", "Stable").out) == [["GROUP", "STATE"]]
    # --commit none reads everything and leaves no offsets behind.
    r = cli("consume", "--topic", "gt", "--group", "g-none", "--from-beginning", "-e", "--commit", "none")
    assert (r.code, len(r.out.splitlines())) == (0, 5)
    r = cli("groups", "--describe", "--group", "g-none")
    assert r.code == 0 and not [row for row in _table(r.out) if row[0] == "g-none"], r.out


def test_state_and_list_state_errors(cli: Runner) -> None:
    r = cli("groups", "--describe", "--group", "absent", "--state")
    assert r.code == 1 and "Consumer group 'absent' does not exist." in r.err
    r = cli("groups", "--describe", "--group", "absent", "--members")
    assert r.code == 1 and "does not exist" in r.err
    assert cli("groups", "--describe", "--group", "x", "--state", "--members").code == 2
    r = cli("groups", "--list", "--members")
    assert r.code == 1 and "apply only to --describe" in r.err
    r = cli("groups", "--describe", "--group", "x", "--state", "Stable")
    assert r.code == 1 and "--describe --state takes no value" in r.err


def _start_cli(bootstrap: str, *argv: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "kbroker", "consume", *argv, "--bootstrap-server", bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def test_shares_a_topic_with_a_confluent_kafka_member(cli: Runner, kafka_broker: BrokerThread) -> None:
    bootstrap = kafka_broker.bootstrap
    assert cli("topics", "--create", "--topic", "shared", "--partitions", "4").code == 0
    proc, printed = _start_cli(bootstrap, "--topic", "shared", "--group", "mix", "-f", "--commit", "after-print",
                               "--format", r"%s\n")
    try:
        def members() -> dict[str, int]:
            r = cli("groups", "--describe", "--group", "mix", "--members")
            return {row[3]: int(row[4]) for row in _table(r.out) if row[0] == "mix"} if r.code == 0 else {}

        wait_until(lambda: members().get("kbroker-cli") == 4, 20, "the CLI to own the four partitions")
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mix", "group.protocol": "consumer",
                             "client.id": "librdkafka-member", "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 50})
        consumer.subscribe(["shared"])
        got: list[str] = []
        try:
            def balanced() -> bool:
                got.extend(m.value().decode() for m in consumer.consume(100, 0.05) if m.error() is None)
                return members() == {"kbroker-cli": 2, "librdkafka-member": 2}

            wait_until(balanced, 20, "the two members to split the partitions")
            r = cli("groups", "--describe", "--group", "mix", "--members", "--verbose")
            header, *rows = _table(r.out)
            assert header == ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "CURRENT-EPOCH",
                              "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
            for row in rows:  # settled: each member's current assignment is its target
                assert row[5].isdigit() and row[6] == row[8] and row[6].startswith("shared:"), row
            state = _table(cli("groups", "--describe", "--group", "mix", "--state").out)
            assert state[0] == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"]
            assert state[1][0] == "mix" and state[1][-2:] == ["Stable", "2"]
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            sent = [f"m{i}" for i in range(40)]
            for i, value in enumerate(sent):
                producer.produce("shared", value.encode(), partition=i % 4)
            assert producer.flush(15) == 0

            def all_seen() -> bool:
                got.extend(m.value().decode() for m in consumer.consume(100, 0.05) if m.error() is None)
                return len(got) + len(printed) >= len(sent)

            wait_until(all_seen, 20, "the two members to read every record")
            assert sorted(got + printed) == sorted(sent)  # each record once, by one member
            assert got and printed

            def cli_committed_all() -> bool:  # --commit after-print: committed while it runs
                rows = [row for row in _table(cli("groups", "--describe", "--group", "mix").out)
                        if row[0] == "mix" and row[8] == "kbroker-cli"]
                return len(rows) == 2 and all(row[5] == "0" for row in rows)

            wait_until(cli_committed_all, 10, "the CLI's commits")
        finally:
            consumer.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "Processed a total of" in err
    r = cli("groups", "--describe", "--group", "mix", "--members")  # it left the group on the way out
    assert r.err == "\nConsumer group 'mix' has no active members.\n"
    # The CLI committed what it printed: the group's offsets cover every partition it read.
    r = cli("groups", "--describe", "--group", "mix")
    rows = [row for row in _table(r.out) if row[0] == "mix"]
    assert r.code == 0 and len(rows) == 4 and all(row[5] == "0" for row in rows), r.out


def test_member_rejoins_after_being_fenced_and_ignores_a_stale_commit(cli: Runner, kafka_broker: BrokerThread) -> None:
    from kbroker.client import KafkaClient
    from kbroker.client import groups as g
    from kbroker.client.errors import KafkaError
    from kbroker.client.member import GroupMember
    from kbroker.common import TopicPartition

    assert cli("topics", "--create", "--topic", "fm", "--partitions", "2").code == 0
    both = {TopicPartition("fm", 0), TopicPartition("fm", 1)}
    with KafkaClient(kafka_broker.bootstrap) as client:
        member = GroupMember(client, "fenced", ["fm"])
        change = member.poll(force=True)
        assert change.added == both and member.member_epoch > 0
        epoch = member.member_epoch
        member.member_epoch = epoch + 5  # an epoch the broker never gave: it fences the member
        change = member.poll(force=True)
        assert (change.fenced, change.revoked, member.owned, member.member_epoch) == (True, both, set(), 0)
        change = member.poll(force=True)  # joins again from epoch 0 and gets the partitions back
        assert change.added == both and member.member_epoch > 0
        member.member_epoch -= 1  # a stale epoch: the commit is dropped, not an error
        assert member.commit({TopicPartition("fm", 0): 1}) == set()
        assert g.fetch_offsets(client, "fenced") == {}
        member.member_epoch += 1
        assert member.commit({TopicPartition("fm", 0): 0}) == {TopicPartition("fm", 0)}
        assert {tp: c.offset for tp, c in g.fetch_offsets(client, "fenced").items()} == {TopicPartition("fm", 0): 0}
        member.leave()
        assert g.describe_group(client, "fenced").members == ()
        # A broker without the consumer group protocol: refused up front, with the reason.
        client.connection().broker_versions.pop(68)
        with pytest.raises(KafkaError, match="consumer group protocol"):
            GroupMember(client, "old-broker", ["fm"])


def test_interrupted_member_commits_and_leaves(cli: Runner, kafka_broker: BrokerThread) -> None:
    assert cli("topics", "--create", "--topic", "intr", "--partitions", "1").code == 0
    assert cli("produce", "--topic", "intr", stdin="a\nb\nc\n").code == 0
    proc, printed = _start_cli(kafka_broker.bootstrap, "--topic", "intr", "--group", "gi", "--from-beginning")
    try:
        wait_until(lambda: len(printed) == 3, 20, "the CLI to print the three records")
        time.sleep(0.2)  # into the next (long-polling) fetch
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and err.endswith("Processed a total of 3 messages\n"), err
    # --commit auto commits at exit, Ctrl-C included, and leaves the group at once.
    r = cli("groups", "--describe", "--group", "gi")
    assert [row[:6] for row in _table(r.out) if row[0] == "gi"] == [["gi", "intr", "0", "3", "3", "0"]]
    assert "Consumer group 'gi' has no active members." in r.out


def test_retriable_group_errors_are_retried_not_lost(cli: Runner, kafka_broker: BrokerThread) -> None:
    # A heartbeat that times out, a final commit and a leave that meet a moved coordinator: Kafka's
    # consumer retries them all; the offsets printed must be committed and the member gone.
    from kbroker.client import KafkaClient
    from kbroker.client import groups as g
    from kbroker.client.member import GroupMember

    assert cli("topics", "--create", "--topic", "rt", "--partitions", "2").code == 0
    assert cli("produce", "--topic", "rt", "--partition", "0", stdin="a\nb\n").code == 0
    assert cli("produce", "--topic", "rt", "--partition", "1", stdin="c\nd\n").code == 0
    kafka_broker.faults.add("ConsumerGroupHeartbeat", error="REQUEST_TIMED_OUT")
    kafka_broker.faults.add("OffsetCommit", error="NOT_COORDINATOR")
    r = cli("consume", "--topic", "rt", "--group", "rg", "--from-beginning", "--max-messages", "4")
    assert r.code == 0, r.err
    assert sorted(r.out.split()) == ["a", "b", "c", "d"]
    r = cli("groups", "--describe", "--group", "rg")
    assert {(row[1], row[2], row[3]) for row in _table(r.out) if row[0] == "rg"} == {("rt", "0", "2"),
                                                                                    ("rt", "1", "2")}
    with KafkaClient(kafka_broker.bootstrap) as client:
        member = GroupMember(client, "rg2", ["rt"])
        assert member.poll(force=True).added
        kafka_broker.faults.add("ConsumerGroupHeartbeat", error="NOT_COORDINATOR")
        member.leave()
        assert g.describe_group(client, "rg2").members == ()
