"""``kbroker configs`` against a real broker; the expected lines are what Kafka's kafka-configs.sh prints
for the same steps against the same broker."""

from __future__ import annotations

from typing import Any

import pytest

from kbroker.cli.configs import parse_add_config
from kbroker.client.errors import KafkaError

Runner = Any  # the `cli` fixture from conftest.py


def test_topic_configs(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "t1", "--partitions", "1").code == 0
    r = cli("configs", "--alter", "--entity-type", "topics", "--entity-name", "t1",
            "--add-config", "retention.ms=3600000,cleanup.policy=[compact,delete]")
    assert (r.code, r.out) == (0, "Completed updating config for topic t1.\n"), r.err
    r = cli("configs", "--describe", "--entity-type", "topics", "--entity-name", "t1")
    assert r.out.splitlines() == [
        "Dynamic configs for topic t1 are:",
        "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, "
        "DEFAULT_CONFIG:log.cleanup.policy=delete}",
        "  retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}",
    ]
    r = cli("configs", "--alter", "--topic", "t1", "--delete-config", "cleanup.policy")
    assert r.code == 0, r.err
    assert cli("configs", "--describe", "--topic", "t1").out.splitlines()[1:] == [
        "  retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}"]
    everything = cli("configs", "--describe", "--topic", "t1", "--all").out.splitlines()
    assert everything[0] == "All configs for topic t1 are:"
    assert any(line.startswith("  segment.bytes=1073741824 sensitive=false synonyms={DEFAULT_CONFIG:log.segment.bytes=")
               for line in everything)
    # Every topic when no name is given.
    assert cli("topics", "--create", "--topic", "t2", "--partitions", "1").code == 0
    r = cli("configs", "--describe", "--entity-type", "topics")
    assert [line for line in r.out.splitlines() if not line.startswith("  ")] == [
        "Dynamic configs for topic t1 are:", "Dynamic configs for topic t2 are:"]


def test_topic_config_errors(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "e", "--partitions", "1").code == 0
    r = cli("configs", "--alter", "--topic", "e", "--delete-config", "segment.ms")
    assert (r.code, r.err) == (1, "kbroker: error: INVALID_CONFIG: Invalid config(s): segment.ms\n")
    r = cli("configs", "--alter", "--topic", "e", "--add-config", "retention.ms=soon")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_CONFIG: ")
    r = cli("configs", "--alter", "--topic", "e", "--add-config", "no.such.config=1")
    assert r.code == 1 and "no.such.config" in r.err
    r = cli("configs", "--alter", "--topic", "e")
    assert r.err == ("kbroker: error: INVALID_REQUEST: At least one of --add-config or --delete-config must be "
                     "specified with --alter\n")
    r = cli("configs", "--describe", "--topic", "missing")
    assert (r.code, r.out) == (0, "The topic 'missing' doesn't exist and doesn't have dynamic config.\n")
    r = cli("configs", "--alter", "--topic", "missing", "--add-config", "retention.ms=1")
    assert r.code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in r.err
    r = cli("configs", "--describe", "--entity-type", "topics", "--entity-default")
    assert r.code == 1 and "--entity-default applies to --entity-type brokers only" in r.err
    r = cli("configs", "--describe", "--entity-name", "e")
    assert r.code == 1 and "--entity-type" in r.err
    r = cli("configs", "--describe", "--topic", "e", "--add-config", "a=1")
    assert r.code == 1 and "apply to --alter" in r.err


def test_broker_configs(cli: Runner) -> None:
    r = cli("configs", "--alter", "--entity-type", "brokers", "--entity-name", "1",
            "--add-config", "log.retention.ms=7200000")
    assert (r.code, r.out) == (0, "Completed updating config for broker 1.\n"), r.err
    line = ("  log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=7200000, "
            "DEFAULT_CONFIG:log.retention.hours=168}")
    r = cli("configs", "--describe", "--broker", "1")
    assert r.out.splitlines() == ["Dynamic configs for broker 1 are:", line]
    r = cli("configs", "--describe", "--entity-type", "brokers")
    assert r.out.splitlines() == ["Dynamic configs for broker 1 are:", line,
                                  "Default configs for brokers in the cluster are:"]
    r = cli("configs", "--alter", "--entity-type", "brokers", "--entity-default", "--add-config", "log.roll.ms=5000000")
    assert (r.code, r.out) == (0, "Completed updating default config for brokers in the cluster.\n"), r.err
    r = cli("configs", "--alter", "--broker", "1", "--delete-config", "log.retention.ms")
    assert r.code == 0, r.err
    assert "log.retention.ms" not in cli("configs", "--describe", "--broker", "1").out
    r = cli("configs", "--alter", "--broker", "1", "--add-config", "log.retention.minutes=100")
    assert r.code == 1 and r.err.startswith("kbroker: error: INVALID_")
    r = cli("configs", "--describe", "--entity-type", "brokers", "--entity-name", "one")
    assert r.code == 1 and "must be a valid integer broker id" in r.err


def test_group_configs(cli: Runner) -> None:
    r = cli("configs", "--alter", "--entity-type", "groups", "--entity-name", "g",
            "--add-config", "consumer.session.timeout.ms=50000")
    assert (r.code, r.out) == (0, "Completed updating config for group g.\n"), r.err
    r = cli("configs", "--describe", "--group", "g")
    assert r.out.splitlines() == [
        "Dynamic configs for group g are:",
        "  consumer.session.timeout.ms=50000 sensitive=false synonyms={GROUP_CONFIG:consumer.session.timeout.ms=50000}"]
    r = cli("configs", "--alter", "--group", "g", "--delete-config", "share.auto.offset.reset")
    assert (r.code, r.err) == (1, "kbroker: error: INVALID_CONFIG: Invalid config(s): share.auto.offset.reset\n")


def test_add_config_syntax() -> None:
    assert parse_add_config("a=1, b=[x,y,z],c=k=v") == {"a": "1", "b": "x,y,z", "c": "k=v"}
    assert parse_add_config("") == {}
    with pytest.raises(KafkaError, match="key=val"):
        parse_add_config("a=1,b")
