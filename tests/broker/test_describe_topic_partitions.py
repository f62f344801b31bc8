"""DescribeTopicPartitions (key 75) on the wire: sorting, unknown topics, pagination, cursor errors."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread


def _call(bootstrap: str, api_key: int, version: int, body: dict[str, Any]) -> Any:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(encode_request(api_key, version, 7, body, client_id="dtp-test"))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        _, resp = decode_response(api_key, version, buf[4:])
        return resp


def _describe(bootstrap: str, names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None) -> Any:
    body = {"topics": [{"name": n} for n in names], "response_partition_limit": limit,
            "cursor": {"topic_name": cursor[0], "partition_index": cursor[1]} if cursor else None}
    return _call(bootstrap, 75, 0, body)


@pytest.fixture
def broker(kafka_broker: BrokerThread) -> str:
    body = {"topics": [{"name": n, "num_partitions": p, "replication_factor": 1, "assignments": [], "configs": []}
                       for n, p in (("b-three", 3), ("a-two", 2), ("c-one", 1))], "timeout_ms": 5000}
    resp = _call(kafka_broker.bootstrap, 19, 7, body)
    assert [t.error_code for t in resp.topics] == [0, 0, 0]
    return kafka_broker.bootstrap


def test_named_topics_sorted_with_partitions_and_empty_elr(broker: str) -> None:
    resp = _describe(broker, ["c-one", "b-three", "no-such", "bad topic"])
    assert [(t.name, t.error_code) for t in resp.topics] == [
        ("b-three", 0), ("bad topic", 17), ("c-one", 0), ("no-such", 3)]
    three = resp.topics[0]
    assert [p.partition_index for p in three.partitions] == [0, 1, 2]
    p = three.partitions[0]
    assert (p.error_code, p.leader_id, p.replica_nodes, p.isr_nodes) == (0, 1, [1], [1])
    assert p.eligible_leader_replicas == [] and p.last_known_elr == [] and p.offline_replicas == []
    assert three.topic_id.int != 0 and not three.is_internal
    assert resp.topics[3].partitions == [] and resp.topics[3].topic_id.int == 0
    assert resp.next_cursor is None
    # As Kafka (checked against 4.1.1): every answered topic, unknown ones too, has its operations.
    assert {t.topic_authorized_operations for t in resp.topics} == {3576}


def test_every_topic_when_none_named(broker: str) -> None:
    resp = _describe(broker, [])
    assert [t.name for t in resp.topics] == ["a-two", "b-three", "c-one"]


def test_partition_limit_pages_with_a_cursor(broker: str) -> None:
    first = _describe(broker, [], limit=3)
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in first.topics] == [
        ("a-two", [0, 1]), ("b-three", [0])]
    assert (first.next_cursor.topic_name, first.next_cursor.partition_index) == ("b-three", 1)
    second = _describe(broker, [], limit=2, cursor=("b-three", 1))
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in second.topics] == [("b-three", [1, 2])]
    # The limit was used up exactly at a topic's end: the cursor points at the next topic's start.
    assert (second.next_cursor.topic_name, second.next_cursor.partition_index) == ("c-one", 0)
    last = _describe(broker, [], limit=2, cursor=("c-one", 0))
    assert [t.name for t in last.topics] == ["c-one"] and last.next_cursor is None
    # A limit below 1 describes one partition.
    assert [len(t.partitions) for t in _describe(broker, ["a-two"], limit=0).topics] == [1]


def test_bad_cursor_is_an_invalid_request(broker: str) -> None:
    not_named = _describe(broker, ["a-two"], cursor=("c-one", 0))
    assert [(t.name, t.error_code, t.partitions) for t in not_named.topics] == [("a-two", 42, [])]
    assert not_named.topics[0].topic_authorized_operations == -(2**31)  # unset, as Kafka's error response
    negative = _describe(broker, ["a-two"], cursor=("a-two", -1))
    assert [t.error_code for t in negative.topics] == [42]
