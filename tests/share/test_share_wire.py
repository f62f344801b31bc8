"""Share group APIs on the raw wire: Kafka's error codes for hostile and wrong requests, and the admin APIs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kbroker.codec.error_codes import ErrorCode as E
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, batch, create_topic, produce_one

HEARTBEAT, DESCRIBE, FETCH, ACK, DESCRIBE_OFFSETS, ALTER_OFFSETS, DELETE_OFFSETS = 76, 77, 78, 79, 90, 91, 92
LIST_GROUPS, DELETE_GROUPS, JOIN_GROUP = 16, 42, 11


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    b = BrokerThread(tmp_path_factory.mktemp("sharewire"), {
        "group.share.max.size": "2", "group.share.max.share.sessions": "3",
        "group.share.record.lock.duration.ms": "1000"}).start()
    yield b
    b.stop()


@pytest.fixture
def wire(broker: BrokerThread) -> Iterator[WireClient]:
    w = WireClient(broker.bootstrap)
    yield w
    w.close()


def heartbeat(w: WireClient, group: str, member: str, epoch: int, topics: list[str] | None = None) -> Any:
    return w.call(HEARTBEAT, 1, {"group_id": group, "member_id": member, "member_epoch": epoch, "rack_id": None,
                                 "subscribed_topic_names": topics})


def share_fetch(w: WireClient, group: str, member: str, epoch: int, parts: dict[tuple[uuid.UUID, int], list[Any]],
                *, forget: list[Any] | None = None, max_wait_ms: int = 0, max_records: int = 500) -> Any:
    topics: dict[uuid.UUID, list[Any]] = {}
    for (tid, p), acks in parts.items():
        topics.setdefault(tid, []).append({"partition_index": p, "acknowledgement_batches": [
            {"first_offset": a, "last_offset": b, "acknowledge_types": t} for a, b, t in acks]})
    return w.call(FETCH, 1, {"group_id": group, "member_id": member, "share_session_epoch": epoch,
                             "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
                             "max_records": max_records, "batch_size": 500,
                             "topics": [{"topic_id": t, "partitions": ps} for t, ps in topics.items()],
                             "forgotten_topics_data": forget or []})


def share_ack(w: WireClient, group: str, member: str, epoch: int, tid: uuid.UUID, p: int, acks: list[Any]) -> Any:
    return w.call(ACK, 1, {"group_id": group, "member_id": member, "share_session_epoch": epoch, "topics": [
        {"topic_id": tid, "partitions": [{"partition_index": p, "acknowledgement_batches": [
            {"first_offset": a, "last_offset": b, "acknowledge_types": t} for a, b, t in acks]}]}]})


def one_partition(resp: Any) -> Any:
    assert resp.error_code == 0, resp
    [topic] = resp.responses
    [part] = topic.partitions
    return part


def test_heartbeat_errors_as_kafka(broker: BrokerThread, wire: WireClient) -> None:
    create_topic(broker, "hb", 3)
    assert heartbeat(wire, "g-hb", "", 0, ["hb"]).error_code == E.INVALID_REQUEST  # no member id
    assert heartbeat(wire, "g-hb", "m1", 0, None).error_code == E.INVALID_REQUEST  # join without topics
    assert heartbeat(wire, "g-hb", "m1", -2, ["hb"]).error_code == E.INVALID_REQUEST
    assert heartbeat(wire, "g-hb", "m1", 3, ["hb"]).error_code == E.UNKNOWN_MEMBER_ID
    joined = heartbeat(wire, "g-hb", "m1", 0, ["hb"])
    assert joined.error_code == 0 and joined.member_epoch == 1
    assert sorted(joined.assignment.topic_partitions[0].partitions) == [0, 1, 2]
    assert heartbeat(wire, "g-hb", "m1", 7, None).error_code == E.FENCED_MEMBER_EPOCH
    second = heartbeat(wire, "g-hb", "m2", 0, ["hb"])
    assert second.member_epoch == 2
    full = heartbeat(wire, "g-hb", "m3", 0, ["hb"])
    assert full.error_code == E.GROUP_MAX_SIZE_REACHED
    # m1 moves to epoch 2 at its next heartbeat, and gives partitions to m2 (no revocation in share groups).
    again = heartbeat(wire, "g-hb", "m1", 1, None)
    assert again.member_epoch == 2
    mine = set(again.assignment.topic_partitions[0].partitions)
    theirs = set(second.assignment.topic_partitions[0].partitions)
    assert mine | theirs == {0, 1, 2} and not mine & theirs
    desc = wire.call(DESCRIBE, 1, {"group_ids": ["g-hb", "nope"], "include_authorized_operations": True})
    g, missing = desc.groups
    assert g.error_code == 0 and g.group_state == "Stable" and g.group_epoch == 2 and g.assignor_name == "simple"
    assert {m.member_id for m in g.members} == {"m1", "m2"}
    assert missing.error_code == E.GROUP_ID_NOT_FOUND
    # Leaving: epoch -1; the member is gone and a second leave is refused.
    assert heartbeat(wire, "g-hb", "m2", -1, None).member_epoch == -1
    assert heartbeat(wire, "g-hb", "m2", -1, None).error_code == E.UNKNOWN_MEMBER_ID
    # A classic group's id cannot be a share group's.
    body = {"group_id": "classic-g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
            "group_instance_id": None, "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}],
            "reason": None}
    wire.call(JOIN_GROUP, 9, body)
    assert heartbeat(wire, "classic-g", "m1", 0, ["hb"]).error_code == E.INCONSISTENT_GROUP_PROTOCOL


def test_simple_assignor_shares_partitions_when_members_outnumber_them(broker: BrokerThread,
                                                                       wire: WireClient) -> None:
    from kbroker.groups.share_group import simple_assign

    tid = uuid.uuid4()

    def lookup(name: str) -> tuple[uuid.UUID, int] | None:
        return (tid, 2) if name == "t" else None

    out = simple_assign({f"m{i}": ("t",) for i in range(4)}, {}, lookup)
    per_partition = {p: sum(p in a.get(tid, ()) for a in out.values()) for p in (0, 1)}
    assert per_partition == {0: 2, 1: 2}  # ceil(4 / 2) members per partition
    assert all(len(a[tid]) == 1 for a in out.values())
    # Sticky: a member keeps what it had when the balance allows.
    current = {"m0": {tid: frozenset({1})}}
    assert simple_assign({"m0": ("t",), "m1": ("t",)}, current, lookup)["m0"] == {tid: frozenset({1})}
    # A topic that does not exist assigns nothing.
    assert simple_assign({"m0": ("missing",)}, {}, lookup) == {"m0": {}}


def test_share_sessions_and_acknowledgement_errors(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "sess", 1)
    key = (tid, 0)
    # Not opened yet: any epoch but 0 is SHARE_SESSION_NOT_FOUND; ShareAcknowledge cannot open one.
    assert share_fetch(wire, "g-s", "m1", 1, {key: []}).error_code == E.SHARE_SESSION_NOT_FOUND
    assert share_ack(wire, "g-s", "m1", 0, tid, 0, [(0, 0, [1])]).error_code == E.INVALID_SHARE_SESSION_EPOCH
    assert share_fetch(wire, "g-s", "", 0, {key: []}).error_code == E.UNKNOWN_MEMBER_ID
    opened = share_fetch(wire, "g-s", "m1", 0, {key: []})
    assert opened.error_code == 0 and opened.acquisition_lock_timeout_ms == 1000
    produce_one(wire, "sess", 0, batch([b"a", b"b", b"c"]))
    got = one_partition(share_fetch(wire, "g-s", "m1", 1, {}, max_wait_ms=2000))
    assert [(r.first_offset, r.last_offset, r.delivery_count) for r in got.acquired_records] == [(0, 2, 1)]
    assert got.records
    # Wrong epochs: a replay of the last one, or one ahead.
    assert share_fetch(wire, "g-s", "m1", 1, {}).error_code == E.INVALID_SHARE_SESSION_EPOCH
    assert share_fetch(wire, "g-s", "m1", 5, {}).error_code == E.INVALID_SHARE_SESSION_EPOCH
    # Acknowledgements outside the acquired records, overlapping, or of another member: refused, nothing changes.
    bad = one_partition(share_fetch(wire, "g-s", "m1", 2, {key: [(0, 5, [1])]}))
    assert bad.acknowledge_error_code == E.INVALID_RECORD_STATE
    bad = one_partition(share_fetch(wire, "g-s", "m1", 3, {key: [(0, 1, [1]), (1, 2, [1])]}))
    assert bad.acknowledge_error_code == E.INVALID_REQUEST
    assert share_fetch(wire, "g-s", "m2", 0, {key: [(0, 0, [1])]}).error_code == E.INVALID_REQUEST  # opening
    assert share_fetch(wire, "g-s", "m2", 0, {}).error_code == 0
    other = share_fetch(wire, "g-s", "m2", 1, {key: [(0, 0, [1])]})
    assert one_partition(other).acknowledge_error_code == E.INVALID_RECORD_STATE
    huge = [(i * 2, i * 2, [1]) for i in range(20_000)]
    resp = share_ack(wire, "g-s", "m1", 4, tid, 0, huge)
    assert resp.error_code == 0 and one_partition(resp).error_code == E.INVALID_REQUEST
    ok = share_ack(wire, "g-s", "m1", 5, tid, 0, [(0, 2, [1])])
    assert one_partition(ok).error_code == 0
    assert broker.broker.shares.start_offset("g-s", tid, 0) == 3
    # A final ShareFetch may not fetch; a final ShareAcknowledge closes the session.
    assert share_fetch(wire, "g-s", "m1", -1, {key: []}).error_code == E.INVALID_REQUEST
    assert share_ack(wire, "g-s", "m1", -1, tid, 0, []).error_code == 0
    assert share_fetch(wire, "g-s", "m1", 6, {}).error_code == E.SHARE_SESSION_NOT_FOUND
    # Bounded sessions: beyond group.share.max.share.sessions (3) the least recently used goes.
    for m in ("x1", "x2", "x3", "x4"):
        assert share_fetch(wire, "g-s", m, 0, {}).error_code == 0
    assert share_fetch(wire, "g-s", "m2", 1, {}).error_code == E.SHARE_SESSION_NOT_FOUND
    assert share_fetch(wire, "g-s", "x4", 1, {}).error_code == 0


def test_share_fetch_long_poll_wakes_on_append_and_on_lock_expiry(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "poll", 1)
    key = (tid, 0)
    share_fetch(wire, "g-p", "m1", 0, {key: []})
    producer = WireClient(broker.bootstrap)
    try:
        t0 = time.monotonic()
        cid = wire.send(FETCH, 1, {"group_id": "g-p", "member_id": "m1", "share_session_epoch": 1,
                                   "max_wait_ms": 5000, "min_bytes": 1, "max_bytes": 1 << 20, "max_records": 10,
                                   "batch_size": 10, "topics": [], "forgotten_topics_data": []})
        time.sleep(0.3)
        produce_one(producer, "poll", 0, batch([b"x"]))
        got = one_partition(wire.receive(FETCH, 1, cid))
        assert time.monotonic() - t0 < 3
        assert [(r.first_offset, r.delivery_count) for r in got.acquired_records] == [(0, 1)]
    finally:
        producer.close()
    # Nothing more to acquire: a second member's long poll is answered when m1's lock expires (1 s).
    share_fetch(wire, "g-p", "m2", 0, {key: []})
    t0 = time.monotonic()
    got = one_partition(share_fetch(wire, "g-p", "m2", 1, {}, max_wait_ms=5000))
    assert 0.5 < time.monotonic() - t0 < 4
    assert [(r.first_offset, r.delivery_count) for r in got.acquired_records] == [(0, 2)]
    # An empty poll waits its max_wait_ms and answers with nothing.
    t0 = time.monotonic()
    resp = share_fetch(wire, "g-p", "m2", 2, {}, max_wait_ms=300)
    assert resp.error_code == 0 and not any(p.acquired_records for t in resp.responses for p in t.partitions)
    assert time.monotonic() - t0 >= 0.25


def test_share_group_offsets_admin_and_delete_group(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "adm", 2)
    for _ in range(3):
        produce_one(wire, "adm", 0, batch([b"1", b"2"]))
    # An unknown group.
    resp = wire.call(DESCRIBE_OFFSETS, 0, {"groups": [{"group_id": "g-adm", "topics": None}]})
    assert resp.groups[0].error_code == E.GROUP_ID_NOT_FOUND
    # Reset on a group nobody is in: it is created, the start offset moves (clamped to the log).
    alter = wire.call(ALTER_OFFSETS, 0, {"group_id": "g-adm", "topics": [
        {"topic_name": "adm", "partitions": [{"partition_index": 0, "start_offset": 2},
                                             {"partition_index": 9, "start_offset": 0}]},
        {"topic_name": "nope", "partitions": [{"partition_index": 0, "start_offset": 0}]}]})
    assert alter.error_code == 0
    codes = {(t.topic_name, p.partition_index): p.error_code for t in alter.responses for p in t.partitions}
    assert codes == {("adm", 0): 0, ("adm", 9): E.UNKNOWN_TOPIC_OR_PARTITION, ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    desc = wire.call(DESCRIBE_OFFSETS, 0, {"groups": [{"group_id": "g-adm", "topics": [
        {"topic_name": "adm", "partitions": [0, 1]}]}]})
    parts = {p.partition_index: p.start_offset for p in desc.groups[0].topics[0].partitions}
    assert parts == {0: 2, 1: -1}
    all_of = wire.call(DESCRIBE_OFFSETS, 0, {"groups": [{"group_id": "g-adm", "topics": None}]})
    assert [(t.topic_id, [p.start_offset for p in t.partitions]) for t in all_of.groups[0].topics] == [(tid, [2])]
    # The first fetch starts at the reset offset.
    share_fetch(wire, "g-adm", "m1", 0, {(tid, 0): []})
    got = one_partition(share_fetch(wire, "g-adm", "m1", 1, {}, max_wait_ms=1000))
    assert got.acquired_records[0].first_offset == 2
    # A non-empty group refuses resets and offset deletes, and DeleteGroups.
    assert heartbeat(wire, "g-adm", "m1", 0, ["adm"]).error_code == 0
    alter = wire.call(ALTER_OFFSETS, 0, {"group_id": "g-adm", "topics": [
        {"topic_name": "adm", "partitions": [{"partition_index": 0, "start_offset": 0}]}]})
    assert alter.error_code == E.NON_EMPTY_GROUP
    assert wire.call(DELETE_OFFSETS, 0, {"group_id": "g-adm", "topics": [{"topic_name": "adm"}]}).error_code \
        == E.NON_EMPTY_GROUP
    assert wire.call(DELETE_GROUPS, 2, {"groups_names": ["g-adm"]}).results[0].error_code == E.NON_EMPTY_GROUP
    assert heartbeat(wire, "g-adm", "m1", -1, None).error_code == 0
    deleted = wire.call(DELETE_OFFSETS, 0, {"group_id": "g-adm", "topics": [{"topic_name": "adm"}]})
    assert deleted.error_code == 0 and deleted.responses[0].error_code == 0
    desc = wire.call(DESCRIBE_OFFSETS, 0, {"groups": [{"group_id": "g-adm", "topics": None}]})
    assert desc.groups[0].topics == []
    assert wire.call(DELETE_GROUPS, 2, {"groups_names": ["g-adm"]}).results[0].error_code == 0
    listed = wire.call(LIST_GROUPS, 5, {"states_filter": [], "types_filter": ["share"]})
    assert "g-adm" not in {g.group_id for g in listed.groups}
    assert wire.call(DELETE_OFFSETS, 0, {"group_id": "g-adm", "topics": []}).error_code == E.GROUP_ID_NOT_FOUND


def test_deleting_a_topic_drops_its_share_partitions(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "gone", 1)
    share_fetch(wire, "g-gone", "m1", 0, {(tid, 0): []})
    produce_one(wire, "gone", 0, batch([b"x"]))
    assert one_partition(share_fetch(wire, "g-gone", "m1", 1, {}, max_wait_ms=1000)).acquired_records
    md = broker.broker.metadata
    (code, _), _ = broker.call(md.delete_topic, "gone")
    assert code == 0
    assert (("g-gone", tid, 0)) not in broker.broker.shares.partitions
    resp = share_fetch(wire, "g-gone", "m1", 2, {(tid, 0): []})
    assert one_partition(resp).error_code == E.UNKNOWN_TOPIC_ID


def test_max_bytes_zero_acquires_nothing(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "zero", 1)
    share_fetch(wire, "g-zero", "m1", 0, {(tid, 0): []})
    produce_one(wire, "zero", 0, batch([b"x"]))
    resp = wire.call(FETCH, 1, {"group_id": "g-zero", "member_id": "m1", "share_session_epoch": 1,
                                "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 0, "max_records": 10,
                                "batch_size": 10, "topics": [], "forgotten_topics_data": []})
    assert resp.error_code == 0 and resp.responses == []
    assert share_fetch(wire, "g-zero", "m1", 2, {}, max_records=0).responses == []
    assert one_partition(share_fetch(wire, "g-zero", "m1", 3, {}, max_wait_ms=1000)).acquired_records


def test_one_namespace_for_classic_consumer_and_share_groups(broker: BrokerThread, wire: WireClient) -> None:
    """A group id belongs to one type: a share group's id refuses classic JoinGroup
    (INCONSISTENT_GROUP_PROTOCOL) and ConsumerGroupHeartbeat (GROUP_ID_NOT_FOUND, "not a consumer
    group"), a consumer group's id refuses ShareGroupHeartbeat; ListGroups reports each type."""
    create_topic(broker, "ns", 1)
    assert heartbeat(wire, "ns-share", "m1", 0, ["ns"]).error_code == 0
    join = {"group_id": "ns-share", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
            "group_instance_id": None, "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}],
            "reason": None}
    assert wire.call(JOIN_GROUP, 9, join).error_code == E.INCONSISTENT_GROUP_PROTOCOL
    cgh = {"group_id": "ns-share", "member_id": "c1", "member_epoch": 0, "instance_id": None, "rack_id": None,
           "rebalance_timeout_ms": 5000, "subscribed_topic_names": ["ns"], "subscribed_topic_regex": None,
           "server_assignor": None, "topic_partitions": []}
    refused = wire.call(68, 1, cgh)
    assert (refused.error_code, refused.error_message) == (E.GROUP_ID_NOT_FOUND, "Group ns-share is not a consumer group.")
    assert wire.call(68, 1, dict(cgh, group_id="ns-consumer")).error_code == 0
    assert heartbeat(wire, "ns-consumer", "m1", 0, ["ns"]).error_code == E.INCONSISTENT_GROUP_PROTOCOL
    listed = {g.group_id: g.group_type for g in wire.call(LIST_GROUPS, 5, {"states_filter": [], "types_filter": []}).groups}
    assert listed["ns-share"] == "share" and listed["ns-consumer"] == "consumer"
    only_share = wire.call(LIST_GROUPS, 5, {"states_filter": [], "types_filter": ["share"]}).groups
    assert "ns-share" in {g.group_id for g in only_share} and "ns-consumer" not in {g.group_id for g in only_share}
