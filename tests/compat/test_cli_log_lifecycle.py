"""kbroker's own ``topics --delete-records`` and ``topics --describe`` print the same against
kbroker and against Apache Kafka 4.1.1 (topic ids aside): the log start offset, the size on disk
that DescribeLogDirs reports, and the per-partition errors. Neither broker has cleaned these
partitions, so the last cleaning is ``-`` on both (Kafka never reports one)."""

from __future__ import annotations

import io
import re
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from kbroker.cli import main
from kbroker.client import KafkaClient, data
from kbroker.testing import BrokerThread


def _session(bootstrap: str, topic: str) -> list[tuple[int, str]]:
    """The same CLI sequence against one broker: exit codes and outputs, topic ids masked."""
    steps: list[tuple[int, str]] = []

    def run(*argv: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*argv, "--bootstrap-server", bootstrap])
        steps.append((code, re.sub(r"TopicId: \S+", "TopicId: ID", out.getvalue() + err.getvalue())))

    run("topics", "--create", "--topic", topic, "--partitions", "2", "--config", "cleanup.policy=compact,delete")
    run("topics", "--create", "--topic", f"{topic}-c", "--config", "cleanup.policy=compact")
    with KafkaClient(bootstrap) as client:
        for i in range(5):
            # Kafka answers NOT_LEADER_OR_FOLLOWER until its new partition has a leader.
            client.retry(lambda i=i: data.produce(client, topic, 0, [(b"k%d" % i, b"v%d" % i)]),
                         attempts=100, backoff=0.1)
    run("topics", "--describe", "--topic", topic)
    run("topics", "--delete-records", "--topic", topic, "--partition", "0", "--offset", "3")
    run("topics", "--delete-records", "--topic", topic, "--partition", "0", "--offset", "9")
    run("topics", "--delete-records", "--topic", topic, "--partition", "7", "--offset", "0")
    run("topics", "--delete-records", "--topic", f"{topic}-c", "--partition", "0", "--offset", "0")
    run("topics", "--delete-records", "--topic", topic, "--partition", "1", "--offset", "-1")
    run("topics", "--describe", "--topic", topic)
    return steps


def test_delete_records_and_describe_print_the_same_on_both(kafka_reference: Any, tmp_path: Path) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    with BrokerThread(tmp_path / "kbroker") as broker:
        ours = _session(broker.bootstrap, topic)
    theirs = _session(kafka_reference.bootstrap, topic)
    assert ours == theirs
    # The sequence did what it says: a size on disk, a moved start, each error by Kafka's name.
    describe = ours[-1][1]
    assert re.search(r"Partition: 0\t.*LogStartOffset: 3\tSize: [1-9]\d*\tLastCleaning: -", describe), describe
    assert [code for code, _ in ours[3:8]] == [0, 1, 1, 1, 0]
    assert "OFFSET_OUT_OF_RANGE" in ours[4][1] and "UNKNOWN_TOPIC_OR_PARTITION" in ours[5][1]
    assert "POLICY_VIOLATION" in ours[6][1]
