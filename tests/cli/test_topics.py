"""``kbroker topics`` against a real broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kbroker.common import CleaningSummary

if TYPE_CHECKING:  # type hints only
    from kbroker.testing import BrokerThread

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
    assert parts == [f"\tTopic: orders\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1\t"
                     "LogStartOffset: 0\tSize: 0\tLastCleaning: -" for p in range(3)]

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


# -- --delete-records and the log columns of --describe ------------------------------------------


def _produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    from kbroker.client import KafkaClient, data

    with KafkaClient(bootstrap) as client:
        for i in range(count):
            data.produce(client, topic, partition, [(b"key-%d" % i, b"value-%d" % i)])


def _partition_line(out: str, partition: int) -> dict[str, str]:
    """The ``key: value`` fields of one partition line of ``--describe``."""
    for line in out.splitlines():
        fields = dict(f.split(": ", 1) for f in line.strip("\t").split("\t") if ": " in f)
        if line.startswith("\t") and fields.get("Partition") == str(partition):
            return fields
    raise AssertionError(f"no line for partition {partition} in {out!r}")


def test_delete_records_prints_the_low_watermark(cli: Runner, kafka_bootstrap: str) -> None:
    assert cli("topics", "--create", "--topic", "dr", "--partitions", "2").code == 0
    _produce(kafka_bootstrap, "dr", 6)
    r = cli("topics", "--delete-records", "--topic", "dr", "--partition", "0", "--offset", "4")
    assert (r.code, r.out, r.err) == (0, "partition: dr-0\tlow_watermark: 4\n", "")
    assert _partition_line(cli("topics", "--describe", "--topic", "dr").out, 0)["LogStartOffset"] == "4"
    # -1 is the high watermark, as kafka-delete-records.sh takes it; never backwards.
    r = cli("topics", "--delete-records", "--topic", "dr", "--partition", "0", "--offset", "-1")
    assert (r.code, r.out) == (0, "partition: dr-0\tlow_watermark: 6\n")
    r = cli("topics", "--delete-records", "--topic", "dr", "--partition", "0", "--offset", "2")
    assert (r.code, r.out) == (0, "partition: dr-0\tlow_watermark: 6\n")
    r = cli("topics", "--delete-records", "--topic", "dr", "--partition", "1", "--offset", "-1")
    assert (r.code, r.out) == (0, "partition: dr-1\tlow_watermark: 0\n")


@pytest.mark.parametrize(("topic", "partition", "offset", "error"), [
    ("dre", "5", "0", "UNKNOWN_TOPIC_OR_PARTITION"),
    ("missing", "0", "0", "UNKNOWN_TOPIC_OR_PARTITION"),
    ("dre", "0", "4", "OFFSET_OUT_OF_RANGE"),
    ("dre", "0", "-2", "OFFSET_OUT_OF_RANGE"),
    ("drc", "0", "0", "POLICY_VIOLATION"),
])
def test_delete_records_errors(cli: Runner, kafka_bootstrap: str, topic: str, partition: str, offset: str,
                               error: str) -> None:
    assert cli("topics", "--create", "--topic", "dre").code == 0
    assert cli("topics", "--create", "--topic", "drc", "--config", "cleanup.policy=compact").code == 0
    _produce(kafka_bootstrap, "dre", 3)
    r = cli("topics", "--delete-records", "--topic", topic, "--partition", partition, "--offset", offset)
    assert (r.code, r.out) == (1, "")
    assert r.err.startswith(f"kbroker: error: {error}: partition {topic}-{partition}: "), r.err
    assert r.err.count("\n") == 1
    assert _partition_line(cli("topics", "--describe", "--topic", "dre").out, 0)["LogStartOffset"] == "0"


def test_delete_records_from_kafkas_offset_json_file(cli: Runner, kafka_bootstrap: str, tmp_path: Path) -> None:
    assert cli("topics", "--create", "--topic", "j1", "--partitions", "2").code == 0
    _produce(kafka_bootstrap, "j1", 5)
    spec = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"partitions": [{"topic": "j1", "partition": 0, "offset": 3},
                                               {"topic": "j1", "partition": 1, "offset": -1},
                                               {"topic": "j1", "partition": 9, "offset": 0}], "version": 1}))
    r = cli("topics", "--delete-records", "--offset-json-file", str(spec))
    # Each partition answers on its own: the good ones are deleted, the bad one is an error.
    assert r.code == 1
    assert r.out == "partition: j1-0\tlow_watermark: 3\npartition: j1-1\tlow_watermark: 0\n"
    assert r.err.startswith("kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: partition j1-9: ")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "The input string is not a valid JSON"),
    ('{"partitions": [], "version": 2}', "Not supported version field value 2"),
    ('{"version": 1}', "Missing partitions field"),
    ('{"partitions": [{"topic": "t", "partition": 0, "offset": 1}, {"topic": "t", "partition": 0, "offset": 2}]}',
     "Offset json file contains duplicate topic partitions: t-0"),
    ('{"partitions": [{"topic": "t", "partition": "0", "offset": 1}]}', "partition and offset integers"),
])
def test_delete_records_rejects_bad_offset_json(cli: Runner, tmp_path: Path, content: str, message: str) -> None:
    spec = tmp_path / "offsets.json"
    spec.write_text(content)
    r = cli("topics", "--delete-records", "--offset-json-file", str(spec))
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_REQUEST: ") and message in r.err, r.err


def test_delete_records_usage_errors(cli: Runner, tmp_path: Path) -> None:
    r = cli("topics", "--delete-records", "--topic", "t", "--partition", "0")
    assert r.code == 1 and r.err == "kbroker: error: INVALID_REQUEST: --delete-records needs --offset " \
                                    "(or --offset-json-file)\n"
    r = cli("topics", "--delete-records", "--offset-json-file", str(tmp_path / "absent.json"))
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_REQUEST: cannot read ")
    r = cli("topics", "--delete-records", "--offset-json-file", str(tmp_path / "x"), "--topic", "t")
    assert r.code == 1 and "excludes --topic" in r.err


def test_describe_shows_start_size_and_last_cleaning(cli: Runner, kafka_broker: BrokerThread,
                                                     kafka_bootstrap: str) -> None:
    assert cli("topics", "--create", "--topic", "ds", "--partitions", "2",
               "--config", "cleanup.policy=compact,delete").code == 0
    _produce(kafka_bootstrap, "ds", 4)
    assert cli("topics", "--delete-records", "--topic", "ds", "--partition", "0", "--offset", "1").code == 0
    plog = kafka_broker.broker.log_manager.get_log("ds", 1)
    plog.last_cleaning = CleaningSummary(ended_ms=1_764_395_000_123, duration_ms=7, segments_before=4,
                                         segments_after=1, bytes_before=8192, bytes_after=2048, records_read=40,
                                         records_retained=10, cleaned_up_to=40)
    r = cli("topics", "--describe", "--topic", "ds")
    assert r.code == 0, r.err
    part0 = kafka_broker.broker.log_manager.get_log("ds", 0)
    on_disk = sum(f.stat().st_size for f in part0.dir.glob("*.log"))
    assert on_disk > 0
    assert _partition_line(r.out, 0) == {
        "Topic": "ds", "Partition": "0", "Leader": "1", "Replicas": "1", "Isr": "1",
        "LogStartOffset": "1", "Size": str(on_disk), "LastCleaning": "-"}
    line1 = _partition_line(r.out, 1)
    assert (line1["LogStartOffset"], line1["Size"]) == ("0", "0")
    assert line1["LastCleaning"] == "2025-11-29T05:43:20.123Z 8192->2048 bytes"
    # Every topic at once gives the same lines.
    assert _partition_line(cli("topics", "--describe").out.split("Topic: ds\tTopicId")[1], 1) == line1


def test_describe_names_a_failed_log_dir_and_a_broker_without_describe_log_dirs(
        cli: Runner, kafka_broker: BrokerThread, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from kbroker.cli import topics
    from kbroker.client import KafkaClient

    assert cli("topics", "--create", "--topic", "fd").code == 0

    def failing(path: object) -> os.statvfs_result:
        raise OSError(errno.EIO, "Input/output error", str(path))

    with monkeypatch.context() as m:
        m.setattr(os, "statvfs", failing)  # the broker runs in this process: its log dir fails
        line = _partition_line(cli("topics", "--describe", "--topic", "fd").out, 0)
    assert (line["LogStartOffset"], line["Size"], line["LastCleaning"]) == (
        "0", "KAFKA_STORAGE_ERROR", "KAFKA_STORAGE_ERROR")
    with KafkaClient(kafka_bootstrap) as client:
        md = client.metadata(["fd"])
        client.connection(1).broker_versions.pop(35)  # as a broker that does not serve DescribeLogDirs
        columns = topics._log_columns(client, [md.topic("fd")])
    assert columns == {("fd", 0): "LogStartOffset: 0\tSize: -\tLastCleaning: -"}
