"""Group APIs over the wire with kbroker's own codec: version-specific shapes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kbroker.groups.storage import CONSUMER_OFFSETS, partition_for
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic

from .clients import wait_until
from .helpers import subscription

OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 8, 9, 10, 11, 12, 13, 14
DESCRIBE, LIST, DELETE, OFFSET_DELETE = 15, 16, 42, 47


def join(c: WireClient, version: int, member_id: str = "", instance: str | None = None) -> Any:
    return c.call(JOIN, version, {
        "group_id": "wg", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000, "member_id": member_id,
        "group_instance_id": instance, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": subscription("wt")}]})


def test_find_coordinator_versions_create_offsets_topic(kafka_broker: BrokerThread) -> None:
    c = WireClient(kafka_broker.bootstrap)
    r = c.call(FIND_COORDINATOR, 1, {"key": "g", "key_type": 0})
    assert r.error_code == 0 and r.node_id == kafka_broker.broker.node_id and r.port == kafka_broker.port
    topic = kafka_broker.broker.metadata.topic(CONSUMER_OFFSETS)
    assert topic is not None and topic.configs["cleanup.policy"] == "compact" and len(topic.partitions) == 50
    r = c.call(FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": ["tx-a", "tx-b"]})
    # Transaction coordinator lookups answer this broker too.
    assert [(x.key, x.error_code, x.node_id) for x in r.coordinators] == [
        ("tx-a", 0, kafka_broker.broker.node_id), ("tx-b", 0, kafka_broker.broker.node_id)]
    r = c.call(FIND_COORDINATOR, 4, {"key_type": 7, "coordinator_keys": ["x"]})
    assert r.coordinators[0].error_code == 42
    c.close()


def test_join_sync_commit_fetch_describe_list_delete(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "wt", 2)
    c = WireClient(kafka_broker.bootstrap)
    r = join(c, 9)
    assert r.error_code == 79 and r.member_id
    r = join(c, 9, r.member_id)
    assert r.error_code == 0 and r.leader == r.member_id and r.protocol_name == "range" and len(r.members) == 1
    me, gen = r.member_id, r.generation_id
    r = c.call(SYNC, 5, {"group_id": "wg", "generation_id": gen, "member_id": me, "protocol_type": "consumer",
                         "protocol_name": "range", "assignments": [{"member_id": me, "assignment": b"A"}]})
    assert r.error_code == 0 and r.assignment == b"A" and r.protocol_name == "range"
    assert c.call(HEARTBEAT, 4, {"group_id": "wg", "generation_id": gen, "member_id": me}).error_code == 0
    r = c.call(OFFSET_COMMIT, 9, {"group_id": "wg", "generation_id_or_member_epoch": gen, "member_id": me,
                                  "topics": [{"name": "wt", "partitions": [
                                      {"partition_index": 0, "committed_offset": 5, "committed_leader_epoch": 0,
                                       "committed_metadata": "hi"},
                                      {"partition_index": 9, "committed_offset": 1, "committed_metadata": None}]},
                                      {"name": "nope", "partitions": [
                                          {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}]}]})
    assert [[p.error_code for p in t.partitions] for t in r.topics] == [[0, 3], [3]]
    r = c.call(OFFSET_FETCH, 8, {"groups": [
        {"group_id": "wg", "topics": None},
        {"group_id": "other", "topics": [{"name": "wt", "partition_indexes": [1]}]}], "require_stable": True})
    wg, other = r.groups
    assert [(t.name, [(p.partition_index, p.committed_offset, p.metadata) for p in t.partitions])
            for t in wg.topics] == [("wt", [(0, 5, "hi")])]
    assert other.topics[0].partitions[0].committed_offset == -1
    r = c.call(OFFSET_FETCH, 3, {"group_id": "wg", "topics": [{"name": "wt", "partition_indexes": [0, 1]}]})
    assert [p.committed_offset for p in r.topics[0].partitions] == [5, -1]
    r = c.call(DESCRIBE, 5, {"groups": ["wg", "ghost"]})
    wg_desc, ghost = r.groups
    assert wg_desc.group_state == "Stable" and wg_desc.members[0].member_assignment == b"A"
    assert ghost.group_state == "Dead" and ghost.error_code == 0
    assert c.call(DESCRIBE, 6, {"groups": ["ghost"]}).groups[0].error_code == 69
    r = c.call(LIST, 5, {"states_filter": ["stable"], "types_filter": []})
    assert [(g.group_id, g.group_state, g.group_type) for g in r.groups] == [("wg", "Stable", "classic")]
    assert c.call(LIST, 5, {"states_filter": [], "types_filter": ["consumer"]}).groups == []
    assert c.call(DELETE, 2, {"groups_names": ["wg"]}).results[0].error_code == 68
    r = c.call(OFFSET_DELETE, 0, {"group_id": "wg", "topics": [{"name": "wt", "partitions": [{"partition_index": 0}]}]})
    assert r.topics[0].partitions[0].error_code == 86
    r = c.call(LEAVE, 5, {"group_id": "wg", "members": [{"member_id": me, "group_instance_id": None, "reason": "bye"}]})
    assert r.error_code == 0 and r.members[0].error_code == 0
    r = c.call(OFFSET_DELETE, 0, {"group_id": "wg", "topics": [{"name": "wt", "partitions": [{"partition_index": 0}]}]})
    assert r.error_code == 0 and r.topics[0].partitions[0].error_code == 0
    assert [x.error_code for x in c.call(DELETE, 2, {"groups_names": ["wg", "wg2"]}).results] == [0, 69]
    c.close()


def test_records_land_in_the_groups_partition(kafka_broker: BrokerThread) -> None:
    c = WireClient(kafka_broker.bootstrap)
    c.call(FIND_COORDINATOR, 3, {"key": "simple", "key_type": 0})
    create_topic(kafka_broker, "wt", 1)
    r = c.call(OFFSET_COMMIT, 2, {"group_id": "simple", "generation_id_or_member_epoch": -1, "member_id": "",
                                  "retention_time_ms": -1, "topics": [{"name": "wt", "partitions": [
                                      {"partition_index": 0, "committed_offset": 3, "committed_metadata": "m"}]}]})
    assert r.topics[0].partitions[0].error_code == 0
    c.close()
    part = partition_for("simple", 50)
    plog = kafka_broker.broker.log_manager.get_log(CONSUMER_OFFSETS, part)
    assert plog.log_end_offset == 1
    assert all(kafka_broker.broker.log_manager.get_log(CONSUMER_OFFSETS, p).log_end_offset == 0
               for p in range(50) if p != part)


def test_v0_join_and_single_leave(kafka_broker: BrokerThread) -> None:
    c = WireClient(kafka_broker.bootstrap)
    r = c.call(JOIN, 0, {"group_id": "old", "session_timeout_ms": 10_000, "member_id": "", "protocol_type": "consumer",
                         "protocols": [{"name": "range", "metadata": b""}]})
    assert r.error_code == 0 and r.generation_id == 1 and r.protocol_name == "range"
    assert c.call(LEAVE, 0, {"group_id": "old", "member_id": "nobody"}).error_code == 25
    assert c.call(LEAVE, 0, {"group_id": "old", "member_id": r.member_id}).error_code == 0
    c.close()


def test_static_member_fenced_over_the_wire(kafka_broker: BrokerThread) -> None:
    a, b = WireClient(kafka_broker.bootstrap), WireClient(kafka_broker.bootstrap)
    r = join(a, 5, instance="inst")
    assert r.error_code == 0
    old, gen = r.member_id, r.generation_id
    a.call(SYNC, 3, {"group_id": "wg", "generation_id": gen, "member_id": old, "group_instance_id": "inst",
                     "assignments": [{"member_id": old, "assignment": b"mine"}]})
    r = join(b, 5, instance="inst")
    assert r.error_code == 0 and r.member_id != old and r.generation_id == gen
    r2 = b.call(SYNC, 3, {"group_id": "wg", "generation_id": gen, "member_id": r.member_id,
                          "group_instance_id": "inst", "assignments": []})
    assert r2.assignment == b"mine"
    hb = a.call(HEARTBEAT, 3, {"group_id": "wg", "generation_id": gen, "member_id": old, "group_instance_id": "inst"})
    assert hb.error_code == 82
    a.close()
    b.close()


def test_shutdown_answers_blocked_join(tmp_path: Any) -> None:
    broker = BrokerThread(tmp_path / "d").start()
    c1, c2 = WireClient(broker.bootstrap), WireClient(broker.bootstrap)
    r = join(c1, 3)
    cid = c2.send(JOIN, 3, {"group_id": "wg", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 60_000,
                            "member_id": "", "protocol_type": "consumer",
                            "protocols": [{"name": "range", "metadata": b""}]})
    assert r.error_code == 0

    def blocked() -> bool:
        group = broker.call(lambda: broker.broker.groups.manager.get("wg"))
        return group is not None and len(group.members) == 2

    wait_until(blocked, what="the second join to block")
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", c2.receive(JOIN, 3, cid)))
    t.start()
    broker.stop(timeout=5)
    t.join(5)
    assert out["r"].error_code == 16  # NOT_COORDINATOR: the client looks for the coordinator again


def test_commit_with_the_largest_retention_is_stored(kafka_broker: BrokerThread) -> None:
    # v2-4 add the retention to the commit time: Long.MAX_VALUE must not overflow the stored record.
    create_topic(kafka_broker, "wt", 1)
    c = WireClient(kafka_broker.bootstrap)
    r = c.call(OFFSET_COMMIT, 2, {"group_id": "keep", "generation_id_or_member_epoch": -1, "member_id": "",
                                  "retention_time_ms": 2**63 - 1, "topics": [{"name": "wt", "partitions": [
                                      {"partition_index": 0, "committed_offset": 7, "committed_metadata": ""}]}]})
    assert r.topics[0].partitions[0].error_code == 0
    r = c.call(OFFSET_FETCH, 1, {"group_id": "keep", "topics": [{"name": "wt", "partition_indexes": [0]}]})
    assert r.topics[0].partitions[0].committed_offset == 7
    c.close()


def test_offset_delete_of_unknown_topics_and_partitions(kafka_broker: BrokerThread) -> None:
    # As Kafka: partitions that do not exist answer UNKNOWN_TOPIC_OR_PARTITION, not a deletion.
    create_topic(kafka_broker, "wt", 1)
    c = WireClient(kafka_broker.bootstrap)
    r = c.call(OFFSET_COMMIT, 2, {"group_id": "od", "generation_id_or_member_epoch": -1, "member_id": "",
                                  "retention_time_ms": -1, "topics": [{"name": "wt", "partitions": [
                                      {"partition_index": 0, "committed_offset": 3, "committed_metadata": ""}]}]})
    assert r.topics[0].partitions[0].error_code == 0
    r = c.call(OFFSET_DELETE, 0, {"group_id": "od", "topics": [
        {"name": "nosuch", "partitions": [{"partition_index": 0}]},
        {"name": "wt", "partitions": [{"partition_index": 2**31 - 1}, {"partition_index": 0}]}]})
    assert r.error_code == 0
    assert [[p.error_code for p in t.partitions] for t in r.topics] == [[3], [3, 0]]
    r = c.call(OFFSET_FETCH, 1, {"group_id": "od", "topics": [{"name": "wt", "partition_indexes": [0]}]})
    assert r.topics[0].partitions[0].committed_offset == -1
    r = c.call(OFFSET_DELETE, 0, {"group_id": "nobody", "topics": [{"name": "nosuch", "partitions": [
        {"partition_index": 0}]}]})
    assert r.error_code == 69  # GROUP_ID_NOT_FOUND
    c.close()


def _record_encoding_threads(monkeypatch: Any, api_key: int) -> list[str]:
    """The names of the threads that encode each ``api_key`` response from now on."""
    from kbroker.server import dispatch

    encoded_in: list[str] = []
    real = dispatch.encode_response_parts

    def recording(key: int, *args: Any) -> Any:
        if key == api_key:
            encoded_in.append(threading.current_thread().name)
        return real(key, *args)

    monkeypatch.setattr(dispatch, "encode_response_parts", recording)
    return encoded_in


def test_describing_thousands_of_groups_is_encoded_off_the_event_loop(kafka_broker: BrokerThread,
                                                                      monkeypatch: Any) -> None:
    # A 2 MB request naming 300,000 groups took seconds to encode, stalling every other connection.
    encoded_in = _record_encoding_threads(monkeypatch, DESCRIBE)
    c = WireClient(kafka_broker.bootstrap)
    join(c, 5)
    names = [f"g{i}" for i in range(5000)] + ["wg"]
    r = c.call(DESCRIBE, 5, {"groups": names, "include_authorized_operations": False})
    assert [g.group_id for g in r.groups] == names
    assert r.groups[-1].group_state == "Empty" and r.groups[0].group_state == "Dead"
    assert c.call(DESCRIBE, 5, {"groups": ["wg"], "include_authorized_operations": False}).groups[0].error_code == 0
    c.close()
    loop_thread = kafka_broker._thread.name
    assert len(encoded_in) == 2 and encoded_in[0] != loop_thread and encoded_in[1] == loop_thread


@pytest.mark.parametrize("api_key, version, body", [
    (9, 8, lambda names: {"groups": [{"group_id": g, "topics": None} for g in names], "require_stable": False}),
    (42, 2, lambda names: {"groups_names": names}),
])
def test_requests_naming_thousands_of_groups_are_encoded_off_the_event_loop(
        kafka_broker: BrokerThread, monkeypatch: Any, api_key: int, version: int, body: Any) -> None:
    """OffsetFetch (v8+) and DeleteGroups of many groups: worked through in chunks, encoded in a thread."""
    encoded_in = _record_encoding_threads(monkeypatch, api_key)
    c = WireClient(kafka_broker.bootstrap)
    names = [f"g{i}" for i in range(5000)]
    r = c.call(api_key, version, body(names))
    c.close()
    answered = r.groups if api_key == 9 else r.results
    assert [g.group_id for g in answered] == names
    assert encoded_in and encoded_in[0] != kafka_broker._thread.name
