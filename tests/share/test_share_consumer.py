"""confluent-kafka's ShareConsumer against kbroker over a real socket (KIP-932 share groups)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer

from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic

OVERRIDES = {
    "group.share.record.lock.duration.ms": "1000",  # Kafka's minimum
    "group.share.delivery.count.limit": "2",
    "group.share.heartbeat.interval.ms": "200",
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    b = BrokerThread(tmp_path_factory.mktemp("share"), OVERRIDES).start()
    yield b
    b.stop()


def consumer(bootstrap: str, group: str, topic: str, **conf: Any) -> ShareConsumer:
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, **conf})
    c.subscribe([topic])
    return c


def initialized(broker: BrokerThread, group: str, topic: str, consumers: list[ShareConsumer],
                timeout: float = 15.0) -> None:
    """Poll until the broker has the share-partition (its start offset is then fixed: latest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(k[0] == group and sp.topic == topic for k, sp in list(broker.broker.shares.partitions.items())):
            return
        for c in consumers:
            assert not [m for m in c.poll(0.2) if m.error() is None]
    raise AssertionError("the share-partition was never initialized")


def produce(bootstrap: str, topic: str, values: list[bytes], batch: int = 10) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(0, len(values), batch):
        for v in values[i:i + batch]:
            p.produce(topic, value=v)
        p.flush()  # one batch per flush: several batches for members to split


def poll_until(c: ShareConsumer, want: Callable[[list[Any]], bool], timeout: float = 15.0,
               each: Callable[[Any], None] | None = None) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want(got):
        for m in c.poll(0.3):
            assert m.error() is None, m.error()
            got.append(m)
            if each is not None:
                each(m)
    return got


def test_two_members_split_one_partition_each_record_accepted_once(broker: BrokerThread) -> None:
    bs = broker.bootstrap
    create_topic(broker, "split", 1)
    a = consumer(bs, "g-split", "split", **{"max.poll.records": 5})
    b = consumer(bs, "g-split", "split", **{"max.poll.records": 5})
    try:
        initialized(broker, "g-split", "split", [a, b])
        values = [b"m%03d" % i for i in range(100)]
        produce(bs, "split", values)
        seen: dict[str, list[bytes]] = {"a": [], "b": []}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen["a"]) + len(seen["b"]) < len(values):
            for name, c in (("a", a), ("b", b)):
                seen[name] += [m.value() for m in c.poll(0.2) if m.error() is None]
        everything = seen["a"] + seen["b"]
        assert sorted(everything) == values  # each record once: no duplicates, none lost
        assert seen["a"] and seen["b"], "both members got records of the partition"
        a.commit_sync()
        b.commit_sync()
        desc = broker.call(_describe, broker, "g-split")
        assert desc["group_state"] == "Stable" and len(desc["members"]) == 2
    finally:
        a.close()
        b.close()
    # Everything was accepted: the start offset moved past it, and nothing is redelivered.
    assert _start_offset(broker, "g-split", "split") == 100
    again = consumer(bs, "g-split", "split")
    try:
        assert poll_until(again, lambda got: False, timeout=2.0) == []
    finally:
        again.close()


async def _describe(broker: BrokerThread, group: str) -> dict[str, Any]:
    return broker.broker.share_groups.describe(group)


def _start_offset(broker: BrokerThread, group: str, topic: str) -> int:
    for (g, _, _), sp in list(broker.broker.shares.partitions.items()):
        if g == group and sp.topic == topic:
            return int(sp.start_offset)
    raise AssertionError("no share-partition")


def test_release_redelivers_with_delivery_count_and_reject_archives(broker: BrokerThread) -> None:
    bs = broker.bootstrap
    create_topic(broker, "relrej", 1)
    c = consumer(bs, "g-relrej", "relrej", **{"share.acknowledgement.mode": "explicit"})
    try:
        initialized(broker, "g-relrej", "relrej", [c])
        produce(bs, "relrej", [b"release-me", b"reject-me", b"accept-me"], batch=3)
        first = poll_until(c, lambda got: len(got) >= 3)
        assert [m.value() for m in first] == [b"release-me", b"reject-me", b"accept-me"]
        assert all(m.delivery_count() == 1 for m in first)
        c.acknowledge(first[0], AcknowledgeType.RELEASE)
        c.acknowledge(first[1], AcknowledgeType.REJECT)
        c.acknowledge(first[2], AcknowledgeType.ACCEPT)
        c.commit_sync()
        again = poll_until(c, lambda got: len(got) >= 1)
        assert [(m.value(), m.delivery_count()) for m in again] == [(b"release-me", 2)]
        c.acknowledge(again[0], AcknowledgeType.ACCEPT)
        c.commit_sync()
        # The rejected record never comes back.
        assert poll_until(c, lambda got: False, timeout=1.5) == []
    finally:
        c.close()
    assert _start_offset(broker, "g-relrej", "relrej") == 3


def test_unacknowledged_record_comes_back_after_the_lock_and_delivery_limit_archives(broker: BrokerThread) -> None:
    bs = broker.bootstrap
    create_topic(broker, "locks", 1)
    holder = consumer(bs, "g-locks", "locks", **{"share.acknowledgement.mode": "explicit"})
    other: ShareConsumer | None = None
    try:
        initialized(broker, "g-locks", "locks", [holder])
        produce(bs, "locks", [b"poison"], batch=1)
        got = poll_until(holder, lambda got: len(got) >= 1)
        t0 = time.monotonic()
        assert [(m.value(), m.delivery_count()) for m in got] == [(b"poison", 1)]
        # A second member (it prefetches in the background: started only now).
        other = consumer(bs, "g-locks", "locks", **{"share.acknowledgement.mode": "explicit"})
        # The holder never acknowledges; after the 1 s lock the record is offered again.
        redelivered = poll_until(other, lambda got: len(got) >= 1)
        assert time.monotonic() - t0 >= 0.5
        assert [(m.value(), m.delivery_count()) for m in redelivered] == [(b"poison", 2)]
        # Second delivery (the limit) expires too: archived, never offered again.
        time.sleep(1.2)
        assert _start_offset(broker, "g-locks", "locks") == 1
        checker = consumer(bs, "g-locks", "locks")
        try:
            assert poll_until(checker, lambda got: False, timeout=1.5) == []
        finally:
            checker.close()
    finally:
        holder.close()
        if other is not None:
            other.close()


def share_groups_listed(bootstrap: str) -> dict[str, str]:
    """ListGroups v5 filtered to type share: group id -> state."""
    w = WireClient(bootstrap)
    try:
        resp = w.call(16, 5, {"states_filter": [], "types_filter": ["share"]})
    finally:
        w.close()
    assert resp["error_code"] == 0
    assert all(g["group_type"] == "share" for g in resp["groups"])
    return {g["group_id"]: g["group_state"] for g in resp["groups"]}


def test_list_groups_shows_share_groups(broker: BrokerThread) -> None:
    bs = broker.bootstrap
    create_topic(broker, "admin-t", 2)
    c = consumer(bs, "g-admin", "admin-t")
    try:
        initialized(broker, "g-admin", "admin-t", [c])
        assert share_groups_listed(bs)["g-admin"] == "Stable"
    finally:
        c.close()
    assert share_groups_listed(bs)["g-admin"] == "Empty"  # close() left the group


def test_restart_loses_no_acknowledgement_and_redelivers_in_flight(tmp_path: Path) -> None:
    overrides = dict(OVERRIDES, **{"group.share.record.lock.duration.ms": "30000"})
    b = BrokerThread(tmp_path, overrides).start()
    try:
        bs = b.bootstrap
        create_topic(b, "restart", 1)
        c = consumer(bs, "g-restart", "restart", **{"share.acknowledgement.mode": "explicit"})
        initialized(b, "g-restart", "restart", [c])
        produce(bs, "restart", [b"r%d" % i for i in range(6)], batch=6)
        got = poll_until(c, lambda got: len(got) >= 6)
        for m in got[:3]:
            c.acknowledge(m, AcknowledgeType.ACCEPT)
        c.acknowledge(got[3], AcknowledgeType.REJECT)
        c.commit_sync()  # answered only once written to __share_group_state
        # r4 and r5 stay acquired (30 s lock) when the broker stops.
        port = b.port
    finally:
        b.stop()
    c.close()
    b = BrokerThread(tmp_path, dict(overrides, listeners=f"PLAINTEXT://127.0.0.1:{port}")).start()
    try:
        bs = b.bootstrap
        assert "g-restart" in share_groups_listed(bs)
        c2 = consumer(bs, "g-restart", "restart", **{"share.acknowledgement.mode": "explicit"})
        try:
            again = poll_until(c2, lambda got: len(got) >= 2)
            # Only what was in flight comes back, its delivery count kept; nothing acknowledged returns.
            assert [(m.value(), m.delivery_count()) for m in again] == [(b"r4", 2), (b"r5", 2)]
            for m in again:
                c2.acknowledge(m, AcknowledgeType.ACCEPT)
            c2.commit_sync()
        finally:
            c2.close()
        assert _start_offset(b, "g-restart", "restart") == 6
    finally:
        b.stop()


def test_read_committed_share_group_skips_aborted_transactions(broker: BrokerThread) -> None:
    bs = broker.bootstrap
    create_topic(broker, "txn-t", 1)
    shares = broker.broker.shares
    previous = shares.group_setting
    shares.group_setting = lambda g, k: "read_committed" if (g, k) == ("g-rc", "share.isolation.level") \
        else previous(g, k)
    c = consumer(bs, "g-rc", "txn-t")
    try:
        initialized(broker, "g-rc", "txn-t", [c])
        p = Producer({"bootstrap.servers": bs, "transactional.id": "share-txn"})
        p.init_transactions(10)
        p.begin_transaction()
        p.produce("txn-t", value=b"aborted")
        p.flush()
        p.abort_transaction(10)
        p.begin_transaction()
        p.produce("txn-t", value=b"committed")
        p.commit_transaction(10)
        got = poll_until(c, lambda got: len(got) >= 1)
        assert [m.value() for m in got] == [b"committed"]
        assert poll_until(c, lambda got: False, timeout=1.0) == []
    finally:
        c.close()
        shares.group_setting = previous
    assert _start_offset(broker, "g-rc", "txn-t") == 4  # aborted record, two markers, committed record
