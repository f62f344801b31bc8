"""Raw-wire tests of the metadata and admin APIs, every version, against a live broker.

A tiny blocking client speaks the protocol through kbroker's own codec so each API
version is exercised exactly (real clients each pick only their favourite version).
"""

from __future__ import annotations

import socket
import struct
import uuid
from typing import Any

import pytest

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread

ZERO = uuid.UUID(int=0)


class WireClient:
    """One connection; ``call(api_key, version, body)`` returns the decoded response body."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.cid = 0

    def call(self, api_key: int, version: int, body: dict[str, Any]) -> Any:
        self.cid += 1
        self.sock.sendall(encode_request(api_key, version, self.cid, body, client_id="wire-test"))
        (size,) = struct.unpack(">i", self._read(4))
        cid, resp = decode_response(api_key, version, self._read(size))
        assert cid == self.cid
        return resp

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()



def create(wire: WireClient, name: str, partitions: int = 1, version: int = 7, **extra: Any) -> Any:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1,
                        "assignments": [], "configs": extra.pop("configs", [])}],
            "timeout_ms": 1000, **extra}
    return wire.call(19, version, body).topics[0]


@pytest.mark.parametrize("version", range(0, 8))
def test_create_topics_every_version(wire: WireClient, version: int) -> None:
    r = create(wire, f"ct-{version}", 2, version,
               configs=[{"name": "retention.ms", "value": "1000"}])
    assert r.error_code == 0 and r.name == f"ct-{version}"
    again = create(wire, f"ct-{version}", 2, version)
    assert again.error_code == 36
    if version >= 1:
        assert "already exists" in again.error_message
    if version >= 5:
        assert r.num_partitions == 2 and r.replication_factor == 1
        configs = {c.name: c for c in r.configs}
        assert configs["retention.ms"].value == "1000" and configs["retention.ms"].config_source == 1
        assert configs["segment.bytes"].config_source == 5  # defaults are reported too
    if version >= 7:
        assert r.topic_id != ZERO


def test_create_topics_validate_only_and_duplicates(wire: WireClient) -> None:
    r = create(wire, "vo", -1, 7, validate_only=True)
    assert r.error_code == 0 and r.num_partitions == 1
    assert r.topic_id.int != 0  # as Kafka: an id is drawn though nothing is created
    md = wire.call(3, 12, {"topics": None, "allow_auto_topic_creation": False,
                           "include_topic_authorized_operations": False})
    assert [t.name for t in md.topics] == []
    body = {"topics": [{"name": "dup", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                        "configs": []}] * 2, "timeout_ms": 1000, "validate_only": False}
    resp = wire.call(19, 7, body)
    assert [(t.name, t.error_code) for t in resp.topics] == [("dup", 42)]


@pytest.mark.parametrize(("name", "partitions", "rf", "code"), [
    ("bad topic", 1, 1, 17), ("a" * 250, 1, 1, 17), (".", 1, 1, 17), ("..", 1, 1, 17), ("", 1, 1, 17),
    ("zero", 0, 1, 37), ("minus-two", -2, 1, 37), ("rf3", 1, 3, 38), ("rf0", 1, 0, 38),
])
def test_create_topics_errors(wire: WireClient, name: str, partitions: int, rf: int, code: int) -> None:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": rf,
                        "assignments": [], "configs": []}], "timeout_ms": 1000}
    r = wire.call(19, 5, body).topics[0]
    assert (r.error_code, r.num_partitions) == (code, -1)
    assert r.error_message


def test_create_topics_bad_config_and_collision(wire: WireClient) -> None:
    bad = create(wire, "badcfg", 1, 5, configs=[{"name": "segment.bytes", "value": "nope"}])
    assert bad.error_code == 40 and "segment.bytes" in bad.error_message
    unknown = create(wire, "badcfg", 1, 5, configs=[{"name": "no.such.config", "value": "1"}])
    assert unknown.error_code == 40
    assert create(wire, "a.b").error_code == 0
    clash = create(wire, "a_b")
    assert clash.error_code == 17 and "collides" in clash.error_message


def test_create_topics_with_assignments(wire: WireClient) -> None:
    body = {"topics": [{"name": "assigned", "num_partitions": -1, "replication_factor": -1,
                        "assignments": [{"partition_index": 0, "broker_ids": [1]},
                                        {"partition_index": 1, "broker_ids": [1]}],
                        "configs": []}], "timeout_ms": 1000}
    assert wire.call(19, 7, body).topics[0].num_partitions == 2
    body["topics"][0]["name"] = "assigned-unknown-broker"
    body["topics"][0]["assignments"] = [{"partition_index": 0, "broker_ids": [7]}]
    assert wire.call(19, 7, body).topics[0].error_code == 39


@pytest.mark.parametrize("version", range(0, 14))
def test_metadata_every_version(wire: WireClient, version: int) -> None:
    create(wire, "md-topic", 3)
    body: dict[str, Any] = {"topics": [{"name": "md-topic", "topic_id": ZERO}],
                            "allow_auto_topic_creation": False,
                            "include_cluster_authorized_operations": False,
                            "include_topic_authorized_operations": version >= 8}
    md = wire.call(3, version, body)
    assert [(b.node_id, b.port) for b in md.brokers] == [(1, int(wire.sock.getpeername()[1]))]
    (t,) = md.topics
    assert t.error_code == 0 and t.name == "md-topic"
    assert [(p.partition_index, p.leader_id, p.replica_nodes, p.isr_nodes) for p in t.partitions] == [
        (i, 1, [1], [1]) for i in range(3)]
    if version >= 1:
        assert md.controller_id == 1
    if version >= 2:
        assert md.cluster_id and len(md.cluster_id) == 22
    if version >= 7:
        assert all(p.leader_epoch == 0 for p in t.partitions)
    if version >= 8:
        assert t.topic_authorized_operations not in (0, -(2**31))
    if version >= 10:
        assert t.topic_id != ZERO
        by_id = wire.call(3, version, {**body, "topics": [{"name": None, "topic_id": t.topic_id}]})
        assert by_id.topics[0].name == "md-topic" and by_id.topics[0].error_code == 0
        missing = wire.call(3, version, {**body, "topics": [{"name": None, "topic_id": uuid.uuid4()}]})
        assert missing.topics[0].error_code == 100
    # All topics: an empty list in v0, null from v1.
    every = wire.call(3, version, {**body, "topics": [] if version == 0 else None})
    assert [x.name for x in every.topics] == ["md-topic"]
    if version >= 1:
        assert wire.call(3, version, {**body, "topics": []}).topics == []


def test_metadata_unknown_and_invalid_topics(tmp_path: Any) -> None:
    with BrokerThread(tmp_path / "noauto", {"auto.create.topics.enable": "false"}) as b:
        c = WireClient(b.bootstrap)
        md = c.call(3, 12, {"topics": [{"name": "nope", "topic_id": ZERO}, {"name": "bad name", "topic_id": ZERO}],
                            "allow_auto_topic_creation": True, "include_topic_authorized_operations": False})
        assert [(t.name, t.error_code) for t in md.topics] == [("nope", 3), ("bad name", 17)]
        c.close()


def test_metadata_auto_creates_ready_topic(wire: WireClient) -> None:
    body = {"topics": [{"name": "auto-1", "topic_id": ZERO}], "allow_auto_topic_creation": True,
            "include_topic_authorized_operations": False}
    (t,) = wire.call(3, 12, body).topics
    assert t.error_code == 0 and len(t.partitions) == 1 and t.partitions[0].leader_id == 1
    # The client may forbid it even when the broker allows it.
    (t2,) = wire.call(3, 12, {**body, "topics": [{"name": "auto-2", "topic_id": ZERO}],
                              "allow_auto_topic_creation": False}).topics
    assert t2.error_code == 3
    # Pre-v4 requests have no flag and imply auto-creation.
    (t3,) = wire.call(3, 1, {"topics": [{"name": "auto-3"}]}).topics
    assert t3.error_code == 0


def test_metadata_internal_topic_flag(wire: WireClient) -> None:
    (t,) = wire.call(3, 12, {"topics": [{"name": "__consumer_offsets", "topic_id": ZERO}],
                             "allow_auto_topic_creation": True,
                             "include_topic_authorized_operations": False}).topics
    assert t.error_code == 0 and t.is_internal and len(t.partitions) == 50


@pytest.mark.parametrize("version", range(0, 7))
def test_delete_topics_every_version(wire: WireClient, version: int) -> None:
    r = create(wire, "del-me", 2)
    if version >= 6:
        body: dict[str, Any] = {"topics": [{"name": None, "topic_id": r.topic_id},
                                           {"name": "missing", "topic_id": ZERO},
                                           {"name": None, "topic_id": uuid.uuid4()}], "timeout_ms": 1000}
    else:
        body = {"topic_names": ["del-me", "missing"], "timeout_ms": 1000}
    resp = wire.call(20, version, body)
    got = [(x.name, x.error_code) for x in resp.responses]
    expected = [("del-me", 0), ("missing", 3)] + ([(None, 100)] if version >= 6 else [])
    assert got == expected
    md = wire.call(3, 1, {"topics": None})
    assert md.topics == []


@pytest.mark.parametrize("version", range(0, 4))
def test_create_partitions_every_version(wire: WireClient, version: int) -> None:
    create(wire, "grow", 1)
    body = {"topics": [{"name": "grow", "count": 4, "assignments": None},
                       {"name": "ghost", "count": 2, "assignments": None}],
            "timeout_ms": 1000, "validate_only": False}
    resp = wire.call(37, version, body)
    assert [(x.name, x.error_code) for x in resp.results] == [("grow", 0), ("ghost", 3)]
    shrink = wire.call(37, version, {**body, "topics": [{"name": "grow", "count": 2, "assignments": None}]})
    assert shrink.results[0].error_code == 37
    same = wire.call(37, version, {**body, "topics": [{"name": "grow", "count": 4, "assignments": None}]})
    assert same.results[0].error_code == 37
    validate = wire.call(37, version, {**body, "validate_only": True,
                                       "topics": [{"name": "grow", "count": 9, "assignments": None}]})
    assert validate.results[0].error_code == 0
    md = wire.call(3, 1, {"topics": [{"name": "grow"}]})
    assert len(md.topics[0].partitions) == 4


@pytest.mark.parametrize("version", range(0, 3))
def test_describe_cluster_every_version(wire: WireClient, version: int) -> None:
    resp = wire.call(60, version, {"include_cluster_authorized_operations": True, "endpoint_type": 1,
                                   "include_fenced_brokers": False})
    assert resp.error_code == 0 and resp.controller_id == 1 and len(resp.cluster_id) == 22
    assert [(b.broker_id, b.host) for b in resp.brokers] == [(1, "127.0.0.1")]
    assert resp.cluster_authorized_operations > 0
    if version >= 1:
        assert resp.endpoint_type == 1
        controllers = wire.call(60, version, {"endpoint_type": 2})
        assert controllers.error_code == 114  # MISMATCHED_ENDPOINT_TYPE, as Kafka
        assert controllers.endpoint_type == 1


@pytest.mark.parametrize("version", range(0, 5))
def test_describe_configs_every_version(wire: WireClient, version: int) -> None:
    create(wire, "cfg", 1, configs=[{"name": "cleanup.policy", "value": "compact"}])
    body = {"resources": [{"resource_type": 2, "resource_name": "cfg", "configuration_keys": None},
                          {"resource_type": 2, "resource_name": "cfg",
                           "configuration_keys": ["cleanup.policy", "retention.ms"]},
                          {"resource_type": 2, "resource_name": "ghost", "configuration_keys": None},
                          {"resource_type": 4, "resource_name": "1", "configuration_keys": ["num.partitions"]},
                          {"resource_type": 4, "resource_name": "2", "configuration_keys": None}],
            "include_synonyms": True, "include_documentation": True}
    full, some, ghost, broker, other = wire.call(32, version, body).results
    configs = {c.name: c for c in full.configs}
    assert len(configs) > 20 and configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].value == "604800000"
    assert [c.name for c in some.configs] == ["cleanup.policy", "retention.ms"]
    assert ghost.error_code == 3 and ghost.configs == []
    assert broker.error_code == 0 and [c.name for c in broker.configs] == ["num.partitions"]
    assert other.error_code == 42
    if version == 0:
        assert configs["retention.ms"].is_default and not configs["cleanup.policy"].is_default
    else:
        assert configs["cleanup.policy"].config_source == 1 and configs["retention.ms"].config_source == 5
        assert [s.source for s in configs["cleanup.policy"].synonyms][:2] == [1, 5]
    if version >= 3:
        assert configs["retention.ms"].config_type == 5  # LONG
        assert configs["retention.ms"].documentation

