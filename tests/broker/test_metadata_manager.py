"""MetadataManager and log_config_for without sockets: a Broker built but not serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.broker import Broker
from kbroker.codec.error_codes import ErrorCode
from kbroker.config import BrokerConfig
from kbroker.metadata import errors as E
from kbroker.metadata.log_config import log_config_for
from kbroker.testing import make_config


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(make_config(tmp_path / "data"))
    b.endpoints["PLAINTEXT"] = ("127.0.0.1", 9092)
    yield b
    b.log_manager.shutdown()


def test_log_config_follows_broker_and_topic_keys() -> None:
    cfg = BrokerConfig.load(env={}, overrides={"log.segment.bytes": "2048", "log.retention.hours": "1",
                                               "log.message.timestamp.type": "LogAppendTime"})
    base = log_config_for(cfg, {})
    assert (base.segment_bytes, base.retention_ms, base.message_timestamp_type) == (2048, 3_600_000, "LogAppendTime")
    assert base.flush_interval_messages is None and base.retention_bytes is None
    topic = log_config_for(cfg, {"segment.bytes": "4096", "retention.ms": "-1", "cleanup.policy": "compact",
                                 "max.message.bytes": "100", "flush.messages": "10", "segment.ms": "5000",
                                 "index.interval.bytes": "1", "segment.index.bytes": "1024",
                                 "retention.bytes": "77", "flush.ms": "9"})
    assert (topic.segment_bytes, topic.retention_ms, topic.cleanup_policy) == (4096, None, "compact")
    assert (topic.max_message_bytes, topic.flush_interval_messages, topic.segment_ms) == (100, 10, 5000)
    assert (topic.index_interval_bytes, topic.segment_index_bytes, topic.retention_bytes) == (1, 1024, 77)
    assert topic.flush_interval_ms == 9


def test_create_rules(broker: Broker) -> None:
    md = broker.metadata
    assert md.create_topic("ok", 2, 1, {}) == E.OK
    assert md.create_topic("ok", 2, 1, {})[0] == ErrorCode.TOPIC_ALREADY_EXISTS
    assert md.create_topic("o_k", 1, 1, {}) == E.OK
    assert md.create_topic("o.k", 1, 1, {})[0] == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert md.create_topic("x" * 249, 1, 1, {}) == E.OK
    assert md.create_topic("y" * 250, 1, 1, {})[0] == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert md.create_topic("cfg", 1, 1, {"retention.ms": None})[0] == ErrorCode.INVALID_CONFIG
    assert md.create_topic("cfg", 1, 1, {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})[0] == \
        ErrorCode.INVALID_CONFIG
    assert md.create_topic("dry", 1, 1, {}, validate_only=True) == E.OK and md.topic("dry") is None
    topic = md.topic("ok")
    assert topic is not None and md.topic_by_id(topic.topic_id) is topic
    assert md.partition("ok", 1) is not None and md.partition("ok", 2) is None
    assert broker.log_manager.get_log("ok", 1) is not None


def test_delete_frees_name_and_collision(broker: Broker) -> None:
    md = broker.metadata
    md.create_topic("a.b", 1, 1, {})
    deleted: list[str] = []
    md.on_topic_deleted.append(lambda t: deleted.append(t.name))
    assert anyio.run(md.delete_topic, "a.b") == (E.OK, "a.b") and deleted == ["a.b"]
    assert broker.log_manager.get_log("a.b", 0) is None
    # The partition directory is gone; its renamed "-delete" copy is removed in the background.
    assert [p for p in broker.log_dirs[0].glob("a.b-*") if not p.name.endswith("-delete")] == []
    assert md.create_topic("a_b", 1, 1, {}) == E.OK
    assert anyio.run(md.delete_topic, "a.b")[0][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_alter_configs_reach_open_logs(broker: Broker) -> None:
    md = broker.metadata
    md.create_topic("t", 2, 1, {"retention.ms": "1000"})
    assert md.alter_topic_configs("t", {"segment.bytes": "nope"})[0] == ErrorCode.INVALID_CONFIG
    assert md.alter_topic_configs("t", {"segment.bytes": "65536"}) == E.OK
    plog: Any = broker.log_manager.get_log("t", 1)
    assert plog.config.segment_bytes == 65536 and plog.config.retention_ms == 1000
    assert md.alter_topic_configs("t", {"retention.ms": None}) == E.OK
    assert md.topic("t").configs == {"segment.bytes": "65536"}  # type: ignore[union-attr]
    assert md.alter_topic_configs("t", {"cleanup.policy": "compact"}, incremental=False) == E.OK
    assert md.topic("t").configs == {"cleanup.policy": "compact"}  # type: ignore[union-attr]
    assert broker.log_manager.get_log("t", 0).config.segment_bytes == 1 << 30  # type: ignore[union-attr]


def test_internal_and_auto_created_topics(tmp_path: Path) -> None:
    b = Broker(make_config(tmp_path / "d", {"num.partitions": "3", "offsets.topic.num.partitions": "5",
                                            "auto.create.topics.enable": "false"}))
    try:
        md = b.metadata
        assert md.ensure_topic("user") is None
        assert md.auto_create("user")[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert md.ensure_internal_topic("__consumer_offsets") == E.OK
        offsets = md.topic("__consumer_offsets")
        assert offsets is not None and offsets.internal and len(offsets.partitions) == 5
        assert offsets.configs["cleanup.policy"] == "compact"
        assert md.create_topic("plain", -1, -1, {}) == E.OK
        assert len(md.topic("plain").partitions) == 3  # type: ignore[union-attr]
    finally:
        b.log_manager.shutdown()


def test_stray_logs_are_removed_on_start(tmp_path: Path) -> None:
    b = Broker(make_config(tmp_path / "d"))
    b.log_manager.get_or_create_log("ghost", 0)
    b.log_manager.shutdown()
    b2 = Broker(make_config(tmp_path / "d"))
    try:
        assert b2.log_manager.get_log("ghost", 0) is None
        assert not (tmp_path / "d" / "ghost-0").exists()
    finally:
        b2.log_manager.shutdown()


def test_create_partitions_rules(broker: Broker) -> None:
    md = broker.metadata
    md.create_topic("g", 2, 1, {})
    assert md.create_partitions("g", 2)[0] == ErrorCode.INVALID_PARTITIONS
    assert md.create_partitions("g", 1)[0] == ErrorCode.INVALID_PARTITIONS
    assert md.create_partitions("g", 4, [[1]])[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert md.create_partitions("g", 4, [[1], [2]])[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert md.create_partitions("g", 4, [[1], [1]]) == E.OK
    assert sorted(md.topic("g").partitions) == [0, 1, 2, 3]  # type: ignore[union-attr]
    assert broker.log_manager.get_log("g", 3) is not None
