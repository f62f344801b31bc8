"""``kbroker groups`` against the group coordinator, with kafka-python consumers in the group."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer

from kbroker.client import KafkaClient
from kbroker.client import groups as g

Runner = Any  # the `cli` fixture from conftest.py
GROUP = "readers"


@pytest.fixture
def client(kafka_bootstrap: str) -> Iterator[KafkaClient]:
    with KafkaClient(kafka_bootstrap) as c:
        if not c.supports(10) or not c.supports(15):
            pytest.skip("the broker has no group coordinator yet")
        yield c


def _group_consumer(bootstrap: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=GROUP, auto_offset_reset="earliest",
                         enable_auto_commit=False, client_id="reader-1", heartbeat_interval_ms=200,
                         session_timeout_ms=6000,
                         # kafka-python's leader assigns from its own metadata cache; a short max
                         # age makes it rejoin quickly if that cache lagged behind topic creation.
                         metadata_max_age_ms=1000)


def _read(consumer: KafkaConsumer, n: int, timeout: float = 20.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=200).values():
            out.extend(r.value for r in recs)
    return out


def _setup(cli: Runner, kafka_bootstrap: str) -> None:
    """Topic ``t`` (2 partitions, 5 records each) and an empty group that consumed 3 + 5."""
    assert cli("topics", "--create", "--topic", "t", "--partitions", "2").code == 0
    for p in (0, 1):
        stdin = "".join(f"p{p}-{i}\n" for i in range(5))
        assert cli("produce", "--topic", "t", "--partition", str(p), stdin=stdin).code == 0


def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def test_describe_active_group_then_reset(cli: Runner, client: KafkaClient, kafka_bootstrap: str) -> None:
    _setup(cli, kafka_bootstrap)
    consumer = _group_consumer(kafka_bootstrap, "t")
    try:
        assert len(_read(consumer, 10)) == 10
        consumer.commit()

        r = cli("groups", "--list")
        assert (r.code, r.out) == (0, f"{GROUP}\n")

        r = cli("groups", "--describe", "--group", GROUP)
        assert r.code == 0, r.err
        header, *rows = _table(r.out)
        assert header == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                          "CONSUMER-ID", "HOST", "CLIENT-ID"]
        assert [row[:6] for row in rows] == [[GROUP, "t", "0", "5", "5", "0"], [GROUP, "t", "1", "5", "5", "0"]]
        assert all(row[6] != "-" and row[8] == "reader-1" for row in rows)
        # A classic group's member: no epochs (Kafka prints "-"), its assignment as topic:p,p.
        r = cli("groups", "--describe", "--group", GROUP, "--members", "--verbose")
        header, row = _table(r.out)
        assert header[-4:] == ["CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
        assert row[3:] == ["reader-1", "2", "-", "t:0,1", "-", "-"] and r.err == ""
        header, row = _table(cli("groups", "--describe", "--group", GROUP, "--state").out)
        assert row[0] == GROUP and row[-3:] == ["range", "Stable", "1"]

        r = cli("groups", "--reset-offsets", "--group", GROUP, "--topic", "t", "--to-earliest", "--execute")
        assert r.code == 1
        assert r.err.startswith(f"kbroker: error: NON_EMPTY_GROUP: Assignments can only be reset if the "
                                f"group '{GROUP}' is inactive")
        r = cli("groups", "--delete", "--group", GROUP)
        assert r.code == 1 and r.err.startswith("kbroker: error: NON_EMPTY_GROUP: ")
    finally:
        consumer.close()

    r = cli("groups", "--describe", "--group", GROUP)
    assert f"Consumer group '{GROUP}' has no active members." in r.out
    assert [row[:6] for row in _table(r.out)[2:]] == [[GROUP, "t", "0", "5", "5", "0"],
                                                     [GROUP, "t", "1", "5", "5", "0"]]

    # Dry run: prints the plan, changes nothing.
    r = cli("groups", "--reset-offsets", "--group", GROUP, "--topic", "t:1", "--to-offset", "2")
    assert r.code == 0, r.err
    assert _table(r.out) == [["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], [GROUP, "t", "1", "2"]]
    assert "--execute" in r.err
    assert {tp: o.offset for tp, o in g.fetch_offsets(client, GROUP).items()} == {("t", 0): 5, ("t", 1): 5}

    r = cli("groups", "--reset-offsets", "--group", GROUP, "--topic", "t:1", "--to-offset", "2", "--execute")
    assert r.code == 0, r.err
    assert _table(r.out)[1] == [GROUP, "t", "1", "2"]
    assert {tp: o.offset for tp, o in g.fetch_offsets(client, GROUP).items()} == {("t", 0): 5, ("t", 1): 2}

    consumer = _group_consumer(kafka_bootstrap, "t")
    try:
        assert sorted(_read(consumer, 3)) == [b"p1-2", b"p1-3", b"p1-4"]
        assert _read(consumer, 1, timeout=0.5) == []
    finally:
        consumer.close()


def test_reset_specs(cli: Runner, client: KafkaClient, kafka_bootstrap: str) -> None:
    _setup(cli, kafka_bootstrap)
    g.commit_offsets(client, GROUP, {("t", 0): 3, ("t", 1): 1})

    def plan(*spec: str) -> dict[tuple[str, int], int]:
        r = cli("groups", "--reset-offsets", "--group", GROUP, "--topic", "t", *spec, "--dry-run")
        assert r.code == 0, r.err
        return {(row[1], int(row[2])): int(row[3]) for row in _table(r.out)[1:]}

    assert plan("--to-earliest") == {("t", 0): 0, ("t", 1): 0}
    assert plan("--to-latest") == {("t", 0): 5, ("t", 1): 5}
    assert plan("--to-offset", "99") == {("t", 0): 5, ("t", 1): 5}
    assert plan("--shift-by", "-2") == {("t", 0): 1, ("t", 1): 0}
    assert plan("--shift-by", "3") == {("t", 0): 5, ("t", 1): 4}
    past = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
    assert plan("--to-datetime", past) == {("t", 0): 0, ("t", 1): 0}
    assert plan("--to-datetime", "2999-01-01T00:00:00.000") == {("t", 0): 5, ("t", 1): 5}
    # Nothing above committed anything.
    assert {tp: o.offset for tp, o in g.fetch_offsets(client, GROUP).items()} == {("t", 0): 3, ("t", 1): 1}

    r = cli("groups", "--reset-offsets", "--group", GROUP, "--all-topics", "--to-latest", "--execute")
    assert r.code == 0, r.err
    assert {tp: o.offset for tp, o in g.fetch_offsets(client, GROUP).items()} == {("t", 0): 5, ("t", 1): 5}


def test_delete_and_missing_groups(cli: Runner, client: KafkaClient, kafka_bootstrap: str) -> None:
    _setup(cli, kafka_bootstrap)
    g.commit_offsets(client, GROUP, {("t", 0): 1})
    assert cli("groups", "--list").out == f"{GROUP}\n"
    r = cli("groups", "--delete", "--group", GROUP)
    assert (r.code, r.out) == (0, f"Deletion of requested consumer groups ('{GROUP}') was successful.\n")
    assert cli("groups", "--list").out == ""

    r = cli("groups", "--describe", "--group", "ghost")
    assert (r.code, r.err) == (1, "kbroker: error: GROUP_ID_NOT_FOUND: Consumer group 'ghost' does not exist.\n")
    r = cli("groups", "--delete", "--group", "ghost")
    assert r.code == 1 and r.err.startswith("kbroker: error: GROUP_ID_NOT_FOUND: ")
    r = cli("groups", "--reset-offsets", "--group", "g2", "--topic", "t", "--shift-by", "1")
    assert r.code == 1 and "Cannot shift offset for partition t-0" in r.err
    r = cli("groups", "--reset-offsets", "--group", "g2", "--topic", "t")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_REQUEST: --reset-offsets needs one of")
