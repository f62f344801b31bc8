"""TopicStore persistence and LogConfig overrides."""

from __future__ import annotations

import json
import uuid

import pytest

from kbroker.log import LogConfig, TopicStore


def test_topics_survive_restart(tmp_path):
    store = TopicStore(tmp_path)
    rec = store.create("orders", 3, {"retention.ms": "1000"})
    tid = uuid.uuid4()
    store.create("events", 1, topic_id=tid)
    with pytest.raises(KeyError):
        store.create("orders", 1)
    store.set_configs("orders", {"segment.bytes": "4096"})
    store.set_partition_count("orders", 5)
    with pytest.raises(ValueError):
        store.set_partition_count("orders", 2)
    again = TopicStore(tmp_path)
    orders = again.get("orders")
    assert orders is not None
    assert (orders.topic_id, orders.partitions, orders.configs) == (rec.topic_id, 5, {"segment.bytes": "4096"})
    assert again.get_by_id(tid).name == "events"  # type: ignore[union-attr]
    assert again.delete("events") is not None
    assert "events" not in TopicStore(tmp_path)
    assert json.loads(store.path.read_text())["version"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_log_config_overrides():
    cfg = LogConfig().with_overrides({
        "segment.bytes": "1000", "segment.ms": "60000", "retention.ms": "-1", "flush.messages": "1",
        "message.timestamp.type": "LogAppendTime", "cleanup.policy": "compact", "unknown.key": "x",
    })
    assert cfg.segment_bytes == 1000 and cfg.segment_ms == 60000
    assert cfg.retention_ms is None and cfg.flush_interval_messages == 1
    assert cfg.log_append_time and cfg.cleanup_policy == "compact"
    props = cfg.to_properties()
    assert props["retention.ms"] == "-1" and props["segment.bytes"] == "1000"
    assert LogConfig().with_overrides(props) == LogConfig().with_overrides(LogConfig().with_overrides(props).to_properties())
    with pytest.raises(ValueError):
        LogConfig(message_timestamp_type="Nope")  # type: ignore[arg-type]
