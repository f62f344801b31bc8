"""Share group APIs against hostile and racing clients on the raw wire: every request is
answered (no exception reaches the listener), and the work per request stays bounded."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kbroker.codec.error_codes import ErrorCode as E
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, batch, create_topic, produce_one
from tests.share.test_share_wire import (
    ALTER_OFFSETS,
    DESCRIBE_OFFSETS,
    FETCH,
    LIST_GROUPS,
    one_partition,
    share_ack,
    share_fetch,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    b = BrokerThread(tmp_path_factory.mktemp("sharehostile"), {
        "group.share.record.lock.duration.ms": "30000"}).start()
    yield b
    b.stop()


@pytest.fixture
def wire(broker: BrokerThread) -> Iterator[WireClient]:
    w = WireClient(broker.bootstrap)
    yield w
    w.close()


def acquire(wire: WireClient, group: str, topic: str, tid: uuid.UUID, n: int = 3) -> Any:
    assert share_fetch(wire, group, "m1", 0, {(tid, 0): []}).error_code == 0
    produce_one(wire, topic, 0, batch([b"v%d" % i for i in range(n)]))
    got = one_partition(share_fetch(wire, group, "m1", 1, {}, max_wait_ms=2000))
    assert [(r.first_offset, r.last_offset) for r in got.acquired_records] == [(0, n - 1)]
    return got


def test_huge_and_malformed_acknowledgement_ranges_are_refused_cheaply(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "h-range", 1)
    acquire(wire, "g-range", "h-range", tid)
    key = (tid, 0)
    t0 = time.monotonic()
    cases = [([(0, 2**62, [1])], E.INVALID_RECORD_STATE),
             ([(2, 0, [1])], E.INVALID_REQUEST),
             ([(0, 2, [1, 1])], E.INVALID_REQUEST),
             ([(0, 2, [])], E.INVALID_REQUEST),
             ([(0, 2, [9])], E.INVALID_REQUEST),
             ([(0, 0, [1]), (0, 0, [1])], E.INVALID_REQUEST),
             ([(-5, 1, [1])], E.INVALID_REQUEST)]
    for epoch, (acks, code) in enumerate(cases, start=2):
        part = one_partition(share_fetch(wire, "g-range", "m1", epoch, {key: acks}))
        assert part.acknowledge_error_code == code, acks
    assert time.monotonic() - t0 < 5
    # Nothing was applied: the records are still acquired and can be accepted.
    ok = share_ack(wire, "g-range", "m1", len(cases) + 2, tid, 0, [(0, 2, [1])])
    assert one_partition(ok).error_code == 0
    assert broker.broker.shares.start_offset("g-range", tid, 0) == 3


def test_topic_deleted_while_an_acknowledging_fetch_waits(broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(broker, "h-gone", 1)
    acquire(wire, "g-gone", "h-gone", tid)
    cid = wire.send(FETCH, 1, {"group_id": "g-gone", "member_id": "m1", "share_session_epoch": 2,
                               "max_wait_ms": 1500, "min_bytes": 1, "max_bytes": 1 << 20, "max_records": 10,
                               "batch_size": 10, "forgotten_topics_data": [], "topics": [
                                   {"topic_id": tid, "partitions": [{"partition_index": 0, "acknowledgement_batches": [
                                       {"first_offset": 0, "last_offset": 2, "acknowledge_types": [1]}]}]}]})
    time.sleep(0.4)
    (code, _), _ = broker.call(broker.broker.metadata.delete_topic, "h-gone")
    assert code == 0
    resp = wire.receive(FETCH, 1, cid)
    assert resp.error_code == 0, resp


def test_read_committed_long_poll_over_an_open_transaction_does_not_spin(broker: BrokerThread,
                                                                         wire: WireClient) -> None:
    from confluent_kafka import Producer

    tid = create_topic(broker, "h-txn", 1)
    shares = broker.broker.shares
    previous_setting, previous_read = shares.group_setting, shares._read
    shares.group_setting = lambda g, k: "read_committed" if (g, k) == ("g-txn", "share.isolation.level") \
        else previous_setting(g, k)
    reads = 0

    async def counting_read(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await previous_read(*args)

    shares._read = counting_read
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "h-open-txn"})
    try:
        assert share_fetch(wire, "g-txn", "m1", 0, {(tid, 0): []}).error_code == 0
        p.init_transactions(10)
        p.begin_transaction()
        p.produce("h-txn", value=b"pending")
        p.flush(10)
        reads = 0
        resp = share_fetch(wire, "g-txn", "m1", 1, {}, max_wait_ms=1000)
        assert resp.error_code == 0 and not any(pt.acquired_records for t in resp.responses for pt in t.partitions)
        # One pass, one long poll, maybe one more pass at the deadline: not a read per event-loop turn.
        assert reads <= 6, reads
        # The commit wakes a waiting fetch.
        t0 = time.monotonic()
        cid = wire.send(FETCH, 1, {"group_id": "g-txn", "member_id": "m1", "share_session_epoch": 2,
                                   "max_wait_ms": 8000, "min_bytes": 1, "max_bytes": 1 << 20, "max_records": 10,
                                   "batch_size": 10, "topics": [], "forgotten_topics_data": []})
        time.sleep(0.3)
        p.commit_transaction(10)
        got = one_partition(wire.receive(FETCH, 1, cid))
        assert [(r.first_offset, r.last_offset) for r in got.acquired_records] == [(0, 0)]
        assert time.monotonic() - t0 < 6
    finally:
        shares.group_setting, shares._read = previous_setting, previous_read


def test_a_partition_the_topic_does_not_have_is_unknown(broker: BrokerThread, wire: WireClient) -> None:
    """As Kafka's ReplicaManager.getPartitionOrError: a partition missing from the metadata is
    UNKNOWN_TOPIC_OR_PARTITION (NOT_LEADER_OR_FOLLOWER would send the client to refresh metadata
    and retry forever), for the fetch and for acknowledgements."""
    tid = create_topic(broker, "h-parts", 2)
    for index in (2, 99, -1):
        resp = share_fetch(wire, "g-parts", f"m{index}", 0, {(tid, index): []})
        assert one_partition(resp).error_code == E.UNKNOWN_TOPIC_OR_PARTITION, (index, resp)
        acked = share_fetch(wire, "g-parts", f"m{index}", 1, {(tid, index): [(0, 0, [1])]})
        part = one_partition(acked)
        assert (part.error_code, part.acknowledge_error_code) == (E.UNKNOWN_TOPIC_OR_PARTITION,) * 2
        part = one_partition(share_ack(wire, "g-parts", f"m{index}", 2, tid, index, [(0, 0, [1])]))
        assert part.error_code == E.UNKNOWN_TOPIC_OR_PARTITION


def test_share_offsets_admin_refuses_a_consumer_groups_id(broker: BrokerThread, wire: WireClient) -> None:
    """One namespace: AlterShareGroupOffsets of a KIP-848 consumer group's id is GROUP_ID_NOT_FOUND
    (as Kafka's "is not a share group"); it must not create a share group shadowing it."""
    create_topic(broker, "h-ns", 1)
    cgh = {"group_id": "h-cg", "member_id": "c1", "member_epoch": 0, "instance_id": None, "rack_id": None,
           "rebalance_timeout_ms": 5000, "subscribed_topic_names": ["h-ns"], "subscribed_topic_regex": None,
           "server_assignor": None, "topic_partitions": []}
    assert wire.call(68, 1, cgh).error_code == 0
    alter = wire.call(ALTER_OFFSETS, 0, {"group_id": "h-cg", "topics": [
        {"topic_name": "h-ns", "partitions": [{"partition_index": 0, "start_offset": 0}]}]})
    assert (alter.error_code, alter.error_message) == (E.GROUP_ID_NOT_FOUND, "Group h-cg is not a share group.")
    listed = {g.group_id: g.group_type for g in wire.call(LIST_GROUPS, 5, {"states_filter": [], "types_filter": []}).groups}
    assert listed["h-cg"] == "consumer"
    assert wire.call(DESCRIBE_OFFSETS, 0, {"groups": [{"group_id": "h-cg", "topics": None}]}).groups[0].error_code \
        == E.GROUP_ID_NOT_FOUND


def test_a_fetch_during_the_state_load_does_not_start_the_partition_over(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart the listeners answer before ``__share_group_state`` is read: a ShareFetch
    then must wait for the stored state, not create the share-partition at the reset offset
    (losing the records in flight, and overwriting the stored state at its first write)."""
    from kbroker.share.state_store import TopicShareStateStore

    first = BrokerThread(tmp_path).start()
    try:
        tid = create_topic(first, "h-load", 1)
        w = WireClient(first.bootstrap)
        acquire(w, "g-load", "h-load", tid, n=4)
        assert one_partition(share_ack(w, "g-load", "m1", 2, tid, 0, [(0, 1, [1])])).error_code == 0
        w.close()
        port = first.port
    finally:
        first.stop()
    slow_load = TopicShareStateStore.load

    def load(self: TopicShareStateStore) -> Any:
        time.sleep(1.5)
        return slow_load(self)

    monkeypatch.setattr(TopicShareStateStore, "load", load)
    second = BrokerThread(tmp_path, {"listeners": f"PLAINTEXT://127.0.0.1:{port}"})
    starter = threading.Thread(target=second.start, kwargs={"timeout": 30})
    starter.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                w = WireClient(f"127.0.0.1:{port}")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert not second._started.is_set()  # asked while the state is loading
        opened = share_fetch(w, "g-load", "m2", 0, {(tid, 0): []})
        assert opened.error_code == 0
        acquired = [(r.first_offset, r.last_offset, r.delivery_count)
                    for t in opened.responses for p in t.partitions for r in p.acquired_records]
        if not acquired:
            again = share_fetch(w, "g-load", "m2", 1, {}, max_wait_ms=3000)
            acquired = [(r.first_offset, r.last_offset, r.delivery_count)
                        for t in again.responses for p in t.partitions for r in p.acquired_records]
        # Only what was in flight comes back, delivered a second time; the accepted records do not.
        assert acquired == [(2, 3, 2)]
        w.close()
    finally:
        starter.join()
        second.stop()
