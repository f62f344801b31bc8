"""``kbroker topics`` against a real broker."""

from __future__ import annotations

from typing import Any

Runner = Any  # the `cli` fixture from conftest.py


def test_create_list_describe_alter_delete(cli: Runner) -> None:
    r = cli("topics", "--create", "--topic", "orders", "--partitions", "3", "--replication-factor", "1",
            "--config", "retention.ms=60000", "--config", "cleanup.policy=compact")
    assert (r.code, r.out) == (0, "Created topic orders.\n")
    assert cli("topics", "--create", "--topic", "audit").code == 0

    r = cli("topics", "--list")
    assert r.code == 0
    assert [t for t in r.out.split() if not t.startswith("__")] == ["audit", "orders"]

    r = cli("topics", "--describe", "--topic", "orders")
    assert r.code == 0, r.err
    head, *parts = r.out.splitlines()
    assert head.startswith("Topic: orders\tTopicId: ")
    assert "\tPartitionCount: 3\tReplicationFactor: 1\t" in head
    assert "cleanup.policy=compact" in head and "retention.ms=60000" in head
    assert parts == [f"\tTopic: orders\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1" for p in range(3)]

    r = cli("topics", "--describe")
    assert "Topic: audit\t" in r.out and "Topic: orders\t" in r.out

    assert cli("topics", "--alter", "--topic", "orders", "--partitions", "5").code == 0
    r = cli("topics", "--describe", "--topic", "orders")
    assert "PartitionCount: 5" in r.out and "\tPartition: 4\t" in r.out

    assert cli("topics", "--delete", "--topic", "orders").code == 0
    r = cli("topics", "--list")
    assert "orders" not in r.out.split()


def test_errors_are_one_line_with_the_kafka_error_name(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "dup", "--partitions", "1").code == 0
    r = cli("topics", "--create", "--topic", "dup")
    assert r.code == 1
    assert r.err.startswith("kbroker: error: TOPIC_ALREADY_EXISTS: ")
    assert "Traceback" not in r.err
    assert cli("topics", "--create", "--topic", "dup", "--if-not-exists").code == 0

    r = cli("topics", "--describe", "--topic", "missing")
    assert (r.code, r.err) == (1, "kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: Topic 'missing' does not exist.\n")
    r = cli("topics", "--delete", "--topic", "missing")
    assert r.code == 1 and r.err.startswith("kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: ")
    assert cli("topics", "--delete", "--topic", "missing", "--if-exists").code == 0

    r = cli("topics", "--alter", "--topic", "dup", "--partitions", "1")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_PARTITIONS: ")
    r = cli("topics", "--create", "--topic", "rf", "--replication-factor", "3")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_REPLICATION_FACTOR: ")
    r = cli("topics", "--create", "--topic", "bad", "--config", "no.such.config=1")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_CONFIG: ")


def test_usage_errors(cli: Runner) -> None:
    r = cli("topics", "--create")
    assert r.code != 0 and r.err.startswith("kbroker: error: ")
    r = cli("topics", "--alter", "--topic", "x")
    assert r.code != 0 and "--partitions" in r.err


def test_connection_refused_is_reported_not_raised(cli: Runner) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = cli("topics", "--list", bootstrap=f"127.0.0.1:{port}")
    assert r.code == 1
    assert r.err.startswith("kbroker: error: NETWORK_EXCEPTION: Connection to 127.0.0.1:")
    assert "Traceback" not in r.err
