"""Kafka's own command-line tools against kbroker and against Apache Kafka: same answers.

Each scenario runs the same sequence of tool invocations (``kafka-topics``,
``kafka-console-producer``/``-consumer``, ``kafka-consumer-groups``, ``kafka-configs``,
``kafka-get-offsets``, ``kafka-delete-records``, ``kafka-transactions``,
``kafka-broker-api-versions``) against a kbroker subprocess and against the reference Kafka
(``kafka_reference``, tools/kafka_reference), and asserts that the outputs, normalised (host
and port, topic ids, member ids, timestamps, column widths and stack frames left out), and
exit codes are equal. The two sides run at the same time, each in its own thread.

A scenario where kbroker still differs for a reason that cannot be fixed now is marked
``xfail(strict=True)`` with the reason, so that it fails the day it starts passing.

Every tool run is a JVM start (1-3 s); the scenarios not marked ``slow`` take about two
minutes on two busy cores. ``KAFKA_TOOLS_SLOW=1`` adds the longer ones (a live consumer group).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ci_helpers import need

from compat.broker import Broker

SLOW = os.environ.get("KAFKA_TOOLS_SLOW") == "1"

#: kbroker runs with the settings tools/kafka_reference gives Kafka, so defaults line up.
KBROKER_OVERRIDES = {
    "num.partitions": "1",
    "offsets.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
}


# --------------------------------------------------------------------------- normalising

_DROP = (
    re.compile(r"^SLF4J"),
    re.compile(r"^\[\d{4}-\d\d-\d\d"),  # log4j lines
    re.compile(r"^\s+at [\w$.]+\("),  # stack frames
    re.compile(r"^\s*\.\.\. \d+ more$"),
)
_SUBST = (
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}:\d+\b"), "HOST:PORT"),
    (re.compile(r"/(?:\d{1,3}\.){3}\d{1,3}\b"), "/HOST"),
    (re.compile(r"TopicId: \S+"), "TopicId: ID"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "UUID"),
    (re.compile(r"\b1\d{12}\b"), "TIMESTAMP"),  # epoch milliseconds
    (re.compile(r"^\d\d:\d\d:\d\d\.\d{3} "), "TIME "),  # the default log4j layout
)


def normalise(text: str, token: str) -> list[str]:
    """Lines of a tool's output without what legitimately differs between two brokers."""
    out = []
    for line in text.replace(token, "T").splitlines():
        if any(p.search(line) for p in _DROP):
            continue
        for pat, rep in _SUBST:
            line = pat.sub(rep, line)
        line = " ".join(line.split())  # column widths
        if line:
            out.append(line)
    return out


# --------------------------------------------------------------------------- running


@dataclass
class Side:
    """One broker (kbroker or Kafka) and the normalised result of every tool run against it."""

    name: str
    bootstrap: str
    token: str
    steps: list[tuple[str, int, list[str]]] = field(default_factory=list, repr=False)

    def tool(self, tool: str, args: list[str], stdin: str | None = None, label: str = "",
             sort: bool = False, timeout: float = 90) -> list[str]:
        """Run ``tool`` with ``--bootstrap-server`` first; record and return its normalised output."""
        from tools.kafka_reference import run_tool

        proc = run_tool(tool, args, bootstrap=self.bootstrap, input=stdin, timeout=timeout)
        lines = normalise(proc.stdout + proc.stderr, self.token)
        if sort:
            lines.sort()
        self.steps.append((label or f"{tool} {' '.join(args)}", proc.returncode, lines))
        return lines


Scenario = Callable[[Side], Any]


def compare(kbroker: Side, kafka: Side, scenario: Scenario) -> None:
    """Run ``scenario`` on both sides at once; assert that every step had the same result."""
    errors: dict[str, BaseException] = {}

    def run(side: Side) -> None:
        try:
            scenario(side)
        except BaseException as e:  # reported below, after both sides finished
            errors[side.name] = e

    threads = [threading.Thread(target=run, args=(s,)) for s in (kbroker, kafka)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors.values():
        raise e
    assert [s[0] for s in kbroker.steps] == [s[0] for s in kafka.steps]
    for (label, rc_k, out_k), (_, rc_r, out_r) in zip(kbroker.steps, kafka.steps, strict=True):
        assert (rc_k, out_k) == (rc_r, out_r), (
            f"`{label}` differs\n--- kbroker (exit {rc_k})\n" + "\n".join(out_k)
            + f"\n--- Kafka (exit {rc_r})\n" + "\n".join(out_r))


def _tools_unavailable() -> str | None:
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Kafka's tools run from Maven Central's jars)"
    return None


@pytest.fixture(scope="module")
def kbroker_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kbroker subprocess for this module, configured like the reference Kafka."""
    why = _tools_unavailable()
    if why is not None:
        need(why)
    log = tmp_path_factory.mktemp("kbroker-tools") / "kbroker.log"
    broker = Broker(KBROKER_OVERRIDES, log_path=log).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def sides(kbroker_bootstrap: str, kafka_reference: Any) -> tuple[Side, Side]:
    """A (kbroker, Kafka) pair sharing a fresh token for topic and group names."""
    token = uuid.uuid4().hex[:10]
    return Side("kbroker", kbroker_bootstrap, token), Side("kafka", kafka_reference.bootstrap, token)


def _names(side: Side, *suffixes: str) -> list[str]:
    return [f"tools-{side.token}-{s}" for s in suffixes]


# --------------------------------------------------------------------------- kafka-topics


def _topics_lifecycle(s: Side) -> None:
    t, u = _names(s, "a", "b")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "3", "--replication-factor", "1",
                      "--config", "retention.ms=3600000", "--config", "cleanup.policy=compact"])
    s.tool("topics", ["--create", "--topic", u])
    s.tool("topics", ["--create", "--topic", t], label="create an existing topic")
    s.tool("topics", ["--create", "--topic", t, "--if-not-exists"])
    s.tool("topics", ["--create", "--topic", f"{u}-bad", "--config", "retention.ms=soon"],
           label="create with a bad config")
    s.tool("topics", ["--list", "--topic", f"tools-{s.token}-.*"])
    s.tool("topics", ["--alter", "--topic", t, "--partitions", "5"])
    s.tool("topics", ["--alter", "--topic", t, "--partitions", "2"], label="alter to fewer partitions")
    s.tool("topics", ["--delete", "--topic", u])
    s.tool("topics", ["--delete", "--topic", u], label="delete a deleted topic")
    s.tool("topics", ["--list", "--topic", f"tools-{s.token}-.*"])
    s.tool("topics", ["--describe", "--topic", t, "--partitions"], label="describe")


def test_topics_create_list_alter_delete(sides: tuple[Side, Side]) -> None:
    """kafka-topics --create (partitions, configs), --list, --alter --partitions, --delete."""
    def scenario(s: Side) -> None:
        _topics_lifecycle(s)
        s.steps.pop()  # the describe, compared in test_topics_describe

    compare(*sides, scenario)


def _describe_topics(s: Side) -> None:
    t, = _names(s, "d")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "2", "--config", "retention.ms=3600000"])
    s.tool("topics", ["--describe", "--topic", t])
    s.tool("topics", ["--describe", "--topic", f"{t}-none"], label="describe a missing topic")
    s.tool("topics", ["--describe", "--topic", f"tools-{s.token}-.*", "--exclude-internal"], label="describe by regex")


_CONFIGS = re.compile(r"\tConfigs: .*|Configs: .*$")


def test_topics_describe(sides: tuple[Side, Side]) -> None:
    """kafka-topics --describe (partitions, leaders, ISR, ELR; DescribeTopicPartitions), configs aside."""
    def scenario(s: Side) -> None:
        _describe_topics(s)
        s.steps = [(label, rc, [_CONFIGS.sub("Configs: ...", ln) for ln in lines]) for label, rc, lines in s.steps]

    compare(*sides, scenario)


@pytest.mark.xfail(strict=True, reason=(
    "Kafka 4.1 sets a cluster-level min.insync.replicas=1 (DYNAMIC_DEFAULT_BROKER_CONFIG, written by the "
    "controller for ELR) that kafka-topics --describe lists under Configs:; kbroker has no cluster-level "
    "dynamic configs"))
def test_topics_describe_configs(sides: tuple[Side, Side]) -> None:
    """kafka-topics --describe: the Configs: column (the non-default configs of the topic)."""
    def scenario(s: Side) -> None:
        t, = _names(s, "dc")
        s.tool("topics", ["--create", "--topic", t, "--config", "retention.ms=3600000"])
        s.tool("topics", ["--describe", "--topic", t])

    compare(*sides, scenario)


# --------------------------------------------------------------------------- console tools, groups


def _produce_consume_groups(s: Side) -> None:
    t, one = _names(s, "keyed", "single")
    g, = _names(s, "group")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "3"])
    s.tool("topics", ["--create", "--topic", one, "--partitions", "1"])
    keyed = "".join(f"k{i % 4}:v{i}\n" for i in range(12))
    s.tool("console-producer", ["--topic", t, "--property", "parse.key=true", "--property", "key.separator=:"],
           stdin=keyed)
    s.tool("console-producer", ["--topic", one], stdin="".join(f"m{i}\n" for i in range(10)))
    # Keyed records land on the same partitions on both (murmur2 of the key); order within one.
    s.tool("console-consumer", ["--topic", t, "--from-beginning", "--max-messages", "12", "--property",
                                "print.key=true", "--property", "print.partition=true", "--property",
                                "print.offset=true", "--timeout-ms", "30000"], sort=True)
    # A group consumes 4 of 10 records; then its lag is described.
    s.tool("console-consumer", ["--topic", one, "--from-beginning", "--max-messages", "4", "--group", g,
                                "--consumer-property", "max.poll.records=1", "--timeout-ms", "30000"])
    s.tool("consumer-groups", ["--list"], label="list groups", sort=True)
    s.tool("consumer-groups", ["--describe", "--group", g])
    s.tool("consumer-groups", ["--describe", "--group", g, "--state"])
    s.tool("consumer-groups", ["--describe", "--group", g, "--members"])
    s.tool("consumer-groups", ["--list", "--state", "Empty", "--type"], label="list groups with state and type",
           sort=True)
    s.tool("consumer-groups", ["--describe", "--group", f"{g}-none"], label="describe a missing group")


def test_console_producer_consumer_and_group_lag(sides: tuple[Side, Side]) -> None:
    """console-producer with keys, console-consumer with a group, consumer-groups --describe with lag."""
    def scenario(s: Side) -> None:
        _produce_consume_groups(s)
        # Only this scenario's groups (named tools-T-...): other tests share the reference Kafka.
        for i, (label, rc, lines) in enumerate(s.steps):
            if label.startswith("list groups"):
                s.steps[i] = (label, rc, [ln for ln in lines if "tools-T-" in ln or ln.startswith("GROUP")])

    compare(*sides, scenario)


def _reset_and_delete(s: Side) -> None:
    t, = _names(s, "reset")
    g, = _names(s, "rgroup")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "2"])
    s.tool("console-producer", ["--topic", t, "--property", "parse.key=true", "--property", "key.separator=:"],
           stdin="".join(f"k{i % 2}:v{i}\n" for i in range(10)))
    s.tool("console-consumer", ["--topic", t, "--from-beginning", "--max-messages", "10", "--group", g,
                                "--timeout-ms", "30000"], sort=True)
    s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--topic", t, "--to-earliest", "--dry-run"])
    s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--topic", t, "--to-earliest", "--execute"])
    s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--topic", f"{t}:1", "--to-offset", "3",
                               "--execute"])
    s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--all-topics", "--shift-by", "2", "--execute"])
    s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--topic", t, "--to-latest", "--shift-by", "1"],
           label="two reset options")
    s.tool("consumer-groups", ["--describe", "--group", g, "--offsets"])
    s.tool("consumer-groups", ["--delete-offsets", "--group", g, "--topic", f"{t}:0"])
    s.tool("consumer-groups", ["--delete-offsets", "--group", g, "--topic", f"{t}-none"],
           label="delete offsets of a missing topic")
    s.tool("consumer-groups", ["--describe", "--group", g])
    s.tool("consumer-groups", ["--delete", "--group", g])
    s.tool("consumer-groups", ["--delete", "--group", g], label="delete a deleted group")


def test_consumer_groups_reset_offsets_and_delete(sides: tuple[Side, Side]) -> None:
    """consumer-groups --reset-offsets (--to-earliest/--to-offset/--shift-by, --dry-run/--execute),
    --delete-offsets and --delete."""
    compare(*sides, _reset_and_delete)


def _live_group(s: Side, protocol: str = "classic") -> None:
    t, = _names(s, "live")
    g, = _names(s, "lgroup")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "2"])
    from tools.kafka_reference import tool_class
    from tools.kafka_reference.reference import _java
    consumer = subprocess.Popen(_java(tool_class("console-consumer"), [
        "--bootstrap-server", s.bootstrap, "--topic", t, "--group", g, "--consumer-property",
        "client.id=live-client", "--consumer-property", f"group.protocol={protocol}"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and consumer.poll() is None:
            from tools.kafka_reference import run_tool
            state = run_tool("consumer-groups", ["--describe", "--group", g, "--state"], bootstrap=s.bootstrap)
            if "Stable" in state.stdout:
                break
            time.sleep(1)
        s.tool("consumer-groups", ["--describe", "--group", g, "--state"])
        s.tool("consumer-groups", ["--describe", "--group", g, "--members"])
        s.tool("consumer-groups", ["--describe", "--group", g, "--members", "--verbose"])
        s.tool("consumer-groups", ["--delete", "--group", g], label="delete an active group")
        s.tool("consumer-groups", ["--reset-offsets", "--group", g, "--topic", t, "--to-earliest", "--execute"],
               label="reset an active group")
    finally:
        consumer.terminate()
        consumer.wait(30)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="longer set: KAFKA_TOOLS_SLOW=1")
def test_consumer_groups_describe_active_group(sides: tuple[Side, Side]) -> None:
    """consumer-groups --describe --members/--state of a group with a live console consumer."""
    compare(*sides, _live_group)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="longer set: KAFKA_TOOLS_SLOW=1")
def test_consumer_groups_describe_active_consumer_protocol_group(sides: tuple[Side, Side]) -> None:
    """The same, with a console consumer on the consumer group protocol (KIP-848)."""
    compare(*sides, lambda s: _live_group(s, "consumer"))


# --------------------------------------------------------------------------- kafka-configs


def _topic_configs(s: Side) -> None:
    t, = _names(s, "configs")
    s.tool("topics", ["--create", "--topic", t, "--config", "retention.ms=3600000", "--config",
                      "cleanup.policy=compact"])
    s.tool("configs", ["--describe", "--entity-type", "topics", "--entity-name", t])
    s.tool("configs", ["--alter", "--entity-type", "topics", "--entity-name", t, "--add-config",
                       "max.message.bytes=20000,segment.ms=3600000,cleanup.policy=[compact,delete]"])
    s.tool("configs", ["--alter", "--entity-type", "topics", "--entity-name", t, "--delete-config", "retention.ms"])
    s.tool("configs", ["--describe", "--entity-type", "topics", "--entity-name", t])
    s.tool("configs", ["--alter", "--entity-type", "topics", "--entity-name", t, "--add-config",
                       "no.such.config=1"], label="alter an unknown topic config")
    s.tool("configs", ["--alter", "--entity-type", "topics", "--entity-name", t, "--add-config",
                       "retention.ms=soon"], label="alter with a bad value")
    s.tool("configs", ["--describe", "--entity-type", "topics", "--entity-name", f"{t}-none"],
           label="describe a missing topic")


def test_configs_topic(sides: tuple[Side, Side]) -> None:
    """kafka-configs --describe/--alter (--add-config, --delete-config) of topic configs, with synonyms."""
    compare(*sides, _topic_configs)


def _broker_configs(s: Side) -> None:
    try:
        s.tool("configs", ["--alter", "--entity-type", "brokers", "--entity-name", "1", "--add-config",
                           "log.retention.ms=7200000,message.max.bytes=2000000"])
        s.tool("configs", ["--describe", "--entity-type", "brokers", "--entity-name", "1"])
        s.tool("configs", ["--alter", "--entity-type", "brokers", "--entity-name", "1", "--add-config",
                           "log.retention.minutes=100"], label="alter a read-only broker config")
    finally:
        s.tool("configs", ["--alter", "--entity-type", "brokers", "--entity-name", "1", "--delete-config",
                           "log.retention.ms,message.max.bytes"], label="restore")
    s.tool("configs", ["--describe", "--entity-type", "brokers", "--entity-name", "1"])


def test_configs_broker_dynamic(sides: tuple[Side, Side]) -> None:
    """kafka-configs --entity-type brokers --entity-name 1: alter, describe, a read-only key, delete."""
    compare(*sides, _broker_configs)


@pytest.mark.xfail(strict=True, reason=(
    "topic configs of Kafka 4.x that kbroker lacks: remote.log.copy.disable "
    "and remote.log.delete.on.disable are missing, and Kafka's cluster-level min.insync.replicas=1 "
    "(DYNAMIC_DEFAULT_BROKER_CONFIG) is not there"))
def test_configs_topic_all(sides: tuple[Side, Side]) -> None:
    """kafka-configs --describe --all of a topic: every topic config with its source and synonyms."""
    def scenario(s: Side) -> None:
        t, = _names(s, "all")
        s.tool("topics", ["--create", "--topic", t])
        s.tool("configs", ["--describe", "--entity-type", "topics", "--entity-name", t, "--all"])

    compare(*sides, scenario)


@pytest.mark.xfail(strict=True, reason=(
    "Kafka 4.1 reports a cluster-level min.insync.replicas=1 (written by the controller for ELR) "
    "under --entity-default; kbroker has no cluster-level dynamic configs set"))
def test_configs_broker_defaults(sides: tuple[Side, Side]) -> None:
    """kafka-configs --entity-type brokers --entity-default --describe."""
    def scenario(s: Side) -> None:
        s.tool("configs", ["--describe", "--entity-type", "brokers", "--entity-default"])

    compare(*sides, scenario)


@pytest.mark.xfail(strict=True, reason=(
    "kbroker keeps one dynamic broker layer: an --entity-default change is stored and reported as the "
    "broker's own DYNAMIC_BROKER_CONFIG, and --describe --entity-default lists nothing (Kafka: "
    "DYNAMIC_DEFAULT_BROKER_CONFIG, listed under the default entity, beside min.insync.replicas=1)"))
def test_configs_broker_defaults_alter(sides: tuple[Side, Side]) -> None:
    """kafka-configs --entity-type brokers --entity-default: alter, describe, delete."""
    def scenario(s: Side) -> None:
        default = ["--entity-type", "brokers", "--entity-default"]
        try:
            s.tool("configs", ["--alter", *default, "--add-config", "log.roll.ms=5000000"])
            s.tool("configs", ["--describe", *default])
            s.tool("configs", ["--describe", "--entity-type", "brokers", "--entity-name", "1"])
        finally:
            s.tool("configs", ["--alter", *default, "--delete-config", "log.roll.ms"], label="restore")

    compare(*sides, scenario)


# --------------------------------------------------------------------------- offsets, records


def _offsets(s: Side) -> None:
    t, = _names(s, "offsets")
    s.tool("topics", ["--create", "--topic", t, "--partitions", "3"])
    s.tool("console-producer", ["--topic", t, "--property", "parse.key=true", "--property", "key.separator=:"],
           stdin="".join(f"k{i % 5}:v{i}\n" for i in range(15)))
    s.tool("get-offsets", ["--topic", t])
    s.tool("get-offsets", ["--topic", t, "--time", "-2"])
    # Max timestamp (-3): one record per partition, since which of several records produced in
    # the same millisecond wins depends on timing.
    s.tool("topics", ["--create", "--topic", f"{t}-one", "--partitions", "2"])
    s.tool("console-producer", ["--topic", f"{t}-one", "--property", "parse.key=true"],
           stdin="a\tx\n")
    s.tool("get-offsets", ["--topic", f"{t}-one", "--time", "-3"])
    s.tool("get-offsets", ["--topic-partitions", f"{t}:0,{t}:2", "--time", "0"])
    s.tool("get-offsets", ["--topic-partitions", f"{t}:1-", "--time", "-1"])
    s.tool("get-offsets", ["--topic", f"{t}-none"], label="offsets of a missing topic")


def test_get_offsets(sides: tuple[Side, Side]) -> None:
    """kafka-get-offsets: latest, earliest, max-timestamp, by timestamp, partition ranges."""
    compare(*sides, _offsets)


def test_delete_records(sides: tuple[Side, Side], tmp_path: Path) -> None:
    """kafka-delete-records moves the log start offset; get-offsets --time -2 shows it."""
    def scenario(s: Side) -> None:
        t, = _names(s, "delrec")
        s.tool("topics", ["--create", "--topic", t, "--partitions", "1"])
        s.tool("console-producer", ["--topic", t], stdin="".join(f"m{i}\n" for i in range(5)))
        spec = tmp_path / f"{s.name}.json"
        spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": t, "partition": 0, "offset": 3}]}))
        s.tool("delete-records", ["--offset-json-file", str(spec)], label="delete-records --offset-json-file SPEC")
        s.tool("get-offsets", ["--topic", t, "--time", "-2"])

    compare(*sides, scenario)


def test_log_dirs(sides: tuple[Side, Side]) -> None:
    """kafka-log-dirs --describe (the Java client's DescribeLogDirs): each partition's size on
    disk, offset lag and future flag in the broker's log dir (its path aside)."""
    def scenario(s: Side) -> None:
        t, = _names(s, "logdirs")
        s.tool("topics", ["--create", "--topic", t, "--partitions", "2"])
        # One record: the batch has the same size on both brokers (several could differ in their
        # timestamp deltas' varint lengths).
        s.tool("console-producer", ["--topic", t, "--property", "parse.key=true"], stdin="a\tx\n")
        lines = s.tool("org.apache.kafka.tools.LogDirsCommand", ["--describe", "--topic-list", t],
                       label="log-dirs --describe --topic-list T")
        label, code, _ = s.steps[-1]
        out = []
        for line in lines:
            if line.startswith("{"):
                js = json.loads(line)
                for b in js["brokers"]:
                    for d in b["logDirs"]:
                        assert d["logDir"].startswith("/"), d
                        d["logDir"] = "DIR"
                        d["partitions"].sort(key=lambda p: p["partition"])
                        assert [p["size"] > 0 for p in d["partitions"]].count(True) == 1, d
                line = json.dumps(js, sort_keys=True)
            out.append(line)
        s.steps[-1] = (label, code, out)

    compare(*sides, scenario)


# --------------------------------------------------------------------------- transactions, api versions


def test_transactions_describe_producers(sides: tuple[Side, Side]) -> None:
    """kafka-transactions describe-producers: the idempotent console producer's state per partition."""
    def scenario(s: Side) -> None:
        t, = _names(s, "producers")
        s.tool("topics", ["--create", "--topic", t, "--partitions", "2"])
        s.tool("console-producer", ["--topic", t, "--property", "parse.key=true", "--property", "key.separator=:"],
               stdin="k:a\nk:b\nk:c\n")
        for partition in ("0", "1"):
            lines = s.tool("transactions", ["describe-producers", "--topic", t, "--partition", partition])
            # Producer ids are the brokers' own: the first column of the rows after the header.
            s.steps[-1] = (s.steps[-1][0], s.steps[-1][1], lines[:1] + [re.sub(r"^\d+ ", "PID ", ln)
                                                                        for ln in lines[1:]])

    compare(*sides, scenario)


def test_transactions_list_and_describe(sides: tuple[Side, Side]) -> None:
    """kafka-transactions list, and describe of an unknown transactional id."""
    def scenario(s: Side) -> None:
        s.tool("transactions", ["describe", "--transactional-id", f"tools-{s.token}-none"])
        lines = s.tool("transactions", ["list"])
        s.steps[-1] = (s.steps[-1][0], s.steps[-1][1], lines[:1])  # the header: other tests' ids vary

    compare(*sides, scenario)


def _open_transaction(s: Side, topic: str, txn_id: str) -> None:
    """Over the raw wire: a topic with two plain records, then a transaction of two records on
    partition 0 left open (offsets 2-3)."""
    from compat.wirediff import catalog
    from compat.wirediff.runner import Side as WireSide

    wire = WireSide(s.name, s.bootstrap)
    try:
        st = catalog.State()
        for prep in [catalog.create_topic(topic, 1), catalog.produce(topic, 0, [b"p0", b"p1"]),
                     *catalog.txn_init(txn_id), *catalog.open_txn(txn_id, topic)]:
            prep(wire, st)
        assert catalog.pid_epoch(st)[0] >= 0, st.get("tpid")
    finally:
        wire.close()


def _mask_columns(s: Side, columns: tuple[str, ...]) -> None:
    """Replace the named columns of the last step's table (header, then rows) by their names."""
    label, rc, lines = s.steps[-1]
    if not lines:
        return
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) >= len(header):
            cells = [h if h in columns else c for h, c in zip(header, cells, strict=False)] + cells[len(header):]
        rows.append(" ".join(cells))
    s.steps[-1] = (label, rc, lines[:1] + rows)


def test_transactions_open_transaction_describe_and_abort(sides: tuple[Side, Side]) -> None:
    """kafka-transactions on an open transaction: describe, describe-producers (its start offset),
    find-hanging, then abort it (WriteTxnMarkers) and describe-producers again."""
    def scenario(s: Side) -> None:
        t, txn = _names(s, "open", "txn")
        _open_transaction(s, t, txn)
        s.tool("transactions", ["describe", "--transactional-id", txn])
        _mask_columns(s, ("CoordinatorId", "ProducerId", "TransactionDurationMs"))
        s.tool("transactions", ["describe-producers", "--topic", t, "--partition", "0"])
        _mask_columns(s, ("ProducerId", "LastTimestamp"))
        s.tool("transactions", ["find-hanging", "--topic", t])
        s.tool("transactions", ["abort", "--topic", t, "--partition", "0", "--start-offset", "2"])
        s.tool("transactions", ["describe-producers", "--topic", t, "--partition", "0"])
        _mask_columns(s, ("ProducerId", "LastTimestamp"))
        s.tool("get-offsets", ["--topic", t, "--time", "-1"])

    compare(*sides, scenario)


_API_LINE = re.compile(r"^(\w+)\((\d+)\): (.*)$")


def _api_versions(s: Side) -> None:
    lines = s.tool("broker-api-versions", [])
    apis = {}
    for line in lines:
        m = _API_LINE.match(line.rstrip(","))
        if m:
            usable = re.search(r"\[usable: (\d+)\]", m.group(3))
            apis[m.group(1)] = usable.group(1) if usable else m.group(3)
    s.steps[-1] = (s.steps[-1][0], s.steps[-1][1], [f"{k}: {v}" for k, v in apis.items()])


@pytest.mark.xfail(strict=True, reason=(
    "kbroker does not offer every API Kafka 4.1 does (ACLs, transaction version 2, quotas, "
    "SCRAM, delegation tokens, share groups, ...)"))
def test_broker_api_versions_full_listing(sides: tuple[Side, Side]) -> None:
    """kafka-broker-api-versions: the same usable version (or UNSUPPORTED) for every API."""
    compare(*sides, _api_versions)


def test_broker_api_versions_usable(sides: tuple[Side, Side]) -> None:
    """For every API both support, the tool negotiates the same version with kbroker as with Kafka."""
    kb, kf = sides
    threads = [threading.Thread(target=_api_versions, args=(s,)) for s in sides]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert kb.steps[0][1] == kf.steps[0][1] == 0
    mine = dict(line.split(": ", 1) for line in kb.steps[0][2])
    theirs = dict(line.split(": ", 1) for line in kf.steps[0][2])
    assert set(mine) == set(theirs)  # the tool lists every API it knows, supported or not
    both = {k for k in mine if mine[k] != "UNSUPPORTED" and theirs[k] != "UNSUPPORTED"}
    assert len(both) > 20
    # EndTxn v5 is transaction version 2 (KIP-890 part 2, on by default in Kafka 4.x), which
    # kbroker does not implement: it serves EndTxn v0-4 and advertises no transaction.version.
    assert (mine.pop("EndTxn"), theirs.pop("EndTxn")) == ("4", "5")
    both.discard("EndTxn")
    # OffsetCommit/OffsetFetch v10 (topic ids, the last step of KIP-848) are known to the 4.1
    # tool but served only from Kafka 4.2; kbroker serves them.
    for api in ("OffsetCommit", "OffsetFetch"):
        assert (mine.pop(api), theirs.pop(api)) == ("10", "9")
        both.discard(api)
    assert {k: mine[k] for k in both} == {k: theirs[k] for k in both}
    extra = {k for k in mine if mine[k] != "UNSUPPORTED" and theirs[k] == "UNSUPPORTED"}
    assert not extra, f"kbroker supports APIs Kafka 4.1 does not: {sorted(extra)}"
