"""TxnOffsetCommit (key 28) and OffsetFetch require_stable over the wire, with kbroker's codec."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kbroker.groups.storage import CONSUMER_OFFSETS
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic

from .helpers import subscription

OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN, SYNC = 8, 9, 10, 11, 14
INIT_PRODUCER_ID, ADD_OFFSETS, END_TXN, TXN_OFFSET_COMMIT = 22, 25, 26, 28
NONE, UNKNOWN_TOPIC_OR_PARTITION, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE = 0, 3, 14, 15
ILLEGAL_GENERATION, INVALID_GROUP_ID, UNKNOWN_MEMBER_ID = 22, 24, 25
INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING = 47, 48, 49
OFFSET_METADATA_TOO_LARGE, UNSTABLE_OFFSET_COMMIT, FENCED_INSTANCE_ID, TRANSACTION_ABORTABLE = 12, 88, 82, 120


def _retrying(call: Any, *retry_on: int) -> Any:
    """Call until the answer is not one of ``retry_on`` (the coordinators load in the background)."""
    deadline = time.monotonic() + 10
    while True:
        r = call()
        if r.error_code not in retry_on or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


class Txn:
    """A transactional producer driven over the raw protocol."""

    def __init__(self, c: WireClient, transactional_id: str) -> None:
        self.c = c
        self.transactional_id = transactional_id
        r = c.call(FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": [transactional_id]})
        assert r.coordinators[0].error_code == NONE
        r = _retrying(lambda: c.call(INIT_PRODUCER_ID, 4, {
            "transactional_id": transactional_id, "transaction_timeout_ms": 60_000, "producer_id": -1,
            "producer_epoch": -1}), COORDINATOR_LOAD_IN_PROGRESS, 51)
        assert r.error_code == NONE, r
        self.producer_id, self.epoch = r.producer_id, r.producer_epoch

    def add_offsets(self, group: str) -> int:
        return int(_retrying(lambda: self.c.call(ADD_OFFSETS, 3, {
            "transactional_id": self.transactional_id, "producer_id": self.producer_id,
            "producer_epoch": self.epoch, "group_id": group}), 51).error_code)  # CONCURRENT_TRANSACTIONS

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int], *, version: int = 3,
                       generation: int = -1, member: str = "", instance: str | None = None,
                       metadata: str | None = "m", epoch: int | None = None) -> dict[tuple[str, int], int]:
        topics: dict[str, list[dict[str, Any]]] = {}
        for (topic, p), o in offsets.items():
            topics.setdefault(topic, []).append({"partition_index": p, "committed_offset": o,
                                                 "committed_leader_epoch": 1, "committed_metadata": metadata})
        r = self.c.call(TXN_OFFSET_COMMIT, version, {
            "transactional_id": self.transactional_id, "group_id": group, "producer_id": self.producer_id,
            "producer_epoch": self.epoch if epoch is None else epoch, "generation_id": generation,
            "member_id": member, "group_instance_id": instance,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]})
        return {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}

    def end(self, commit: bool) -> int:
        return int(_retrying(lambda: self.c.call(END_TXN, 3, {
            "transactional_id": self.transactional_id, "producer_id": self.producer_id,
            "producer_epoch": self.epoch, "committed": commit}), 51, COORDINATOR_LOAD_IN_PROGRESS).error_code)


def fetch(c: WireClient, group: str, partitions: list[tuple[str, int]] | None, *, version: int = 7,
          stable: bool = True) -> dict[tuple[str, int], tuple[int, int]]:
    """``(committed offset, error)`` by partition."""
    topics = None
    if partitions is not None:
        by_topic: dict[str, list[int]] = {}
        for t, p in partitions:
            by_topic.setdefault(t, []).append(p)
        topics = [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]
    if version >= 8:
        r = c.call(OFFSET_FETCH, version, {"groups": [{"group_id": group, "topics": topics}], "require_stable": stable})
        assert r.groups[0].error_code == NONE
        out_topics = r.groups[0].topics
    else:
        r = c.call(OFFSET_FETCH, version, {"group_id": group, "topics": topics, "require_stable": stable})
        assert r.error_code == NONE
        out_topics = r.topics
    return {(t.name, p.partition_index): (p.committed_offset, p.error_code) for t in out_topics for p in t.partitions}


def settled(c: WireClient, group: str, partitions: list[tuple[str, int]] | None, *, version: int = 7
            ) -> dict[tuple[str, int], tuple[int, int]]:
    """A stable fetch once no partition is UNSTABLE_OFFSET_COMMIT: EndTxn answers before
    the markers are written, so the offsets settle a moment later."""
    deadline = time.monotonic() + 10
    while True:
        got = fetch(c, group, partitions, version=version)
        if all(e != UNSTABLE_OFFSET_COMMIT for _, e in got.values()) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.fixture
def c(kafka_broker: BrokerThread) -> Any:
    create_topic(kafka_broker, "wt", 3)
    client = WireClient(kafka_broker.bootstrap)
    assert client.call(FIND_COORDINATOR, 1, {"key": "g", "key_type": 0}).error_code == NONE
    yield client
    client.close()


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 5])
def test_offsets_commit_with_the_transaction(c: WireClient, version: int) -> None:
    group = f"g{version}"
    txn = Txn(c, f"tx-commit-{version}")
    assert txn.add_offsets(group) == NONE
    assert txn.commit_offsets(group, {("wt", 0): 5, ("wt", 1): 6}, version=version) == {("wt", 0): 0, ("wt", 1): 0}
    # Pending: unstable for require_stable fetches (per partition, v7 and v8), invisible to the others.
    assert fetch(c, group, [("wt", 0), ("wt", 2)]) == {("wt", 0): (-1, UNSTABLE_OFFSET_COMMIT), ("wt", 2): (-1, 0)}
    assert fetch(c, group, [("wt", 0)], version=8) == {("wt", 0): (-1, UNSTABLE_OFFSET_COMMIT)}
    assert fetch(c, group, [("wt", 0)], stable=False) == {("wt", 0): (-1, 0)}
    assert fetch(c, group, [("wt", 0)], version=6) == {("wt", 0): (-1, 0)}  # before require_stable existed
    assert txn.end(commit=True) == NONE
    assert settled(c, group, [("wt", 0), ("wt", 1)]) == {("wt", 0): (5, 0), ("wt", 1): (6, 0)}
    assert settled(c, group, None, version=9) == {("wt", 0): (5, 0), ("wt", 1): (6, 0)}


def test_aborted_offsets_are_dropped(c: WireClient) -> None:
    r = c.call(OFFSET_COMMIT, 8, {"group_id": "ga", "generation_id_or_member_epoch": -1, "member_id": "",
                                  "topics": [{"name": "wt", "partitions": [
                                      {"partition_index": 0, "committed_offset": 2, "committed_metadata": ""}]}]})
    assert r.topics[0].partitions[0].error_code == NONE
    txn = Txn(c, "tx-abort")
    assert txn.add_offsets("ga") == NONE
    assert txn.commit_offsets("ga", {("wt", 0): 9}) == {("wt", 0): 0}
    assert fetch(c, "ga", None) == {("wt", 0): (-1, UNSTABLE_OFFSET_COMMIT)}
    assert fetch(c, "ga", None, stable=False) == {("wt", 0): (2, 0)}
    assert txn.end(commit=False) == NONE
    assert settled(c, "ga", None) == {("wt", 0): (2, 0)}


def test_unknown_topics_and_partitions_are_answered_first(c: WireClient) -> None:
    txn = Txn(c, "tx-unknown")
    assert txn.add_offsets("gu") == NONE
    out = txn.commit_offsets("gu", {("wt", 0): 1, ("wt", 7): 1, ("nope", 0): 1})
    assert out == {("wt", 0): NONE, ("wt", 7): UNKNOWN_TOPIC_OR_PARTITION, ("nope", 0): UNKNOWN_TOPIC_OR_PARTITION}
    # Nothing known to commit: no group coordinator involved, even for an invalid group id.
    assert txn.commit_offsets("", {("nope", 0): 1}) == {("nope", 0): UNKNOWN_TOPIC_OR_PARTITION}
    assert txn.commit_offsets("", {("wt", 0): 1}) == {("wt", 0): INVALID_GROUP_ID}
    big = "x" * 5000
    assert txn.commit_offsets("gu", {("wt", 1): 1}, metadata=big) == {("wt", 1): OFFSET_METADATA_TOO_LARGE}
    assert txn.end(commit=True) == NONE
    assert settled(c, "gu", None) == {("wt", 0): (1, 0)}


@pytest.mark.parametrize(("version", "expected"), [(3, INVALID_TXN_STATE), (4, TRANSACTION_ABORTABLE)])
def test_group_partition_not_added_to_the_transaction(c: WireClient, version: int, expected: int) -> None:
    txn = Txn(c, f"tx-unadded-{version}")
    # No AddOffsetsToTxn: the offsets partition is not in the transaction.
    assert txn.commit_offsets("gn", {("wt", 0): 1}, version=version) == {("wt", 0): expected}
    assert fetch(c, "gn", [("wt", 0)]) == {("wt", 0): (-1, 0)}


def test_fenced_and_unknown_producers(c: WireClient) -> None:
    txn = Txn(c, "tx-fence")
    assert txn.add_offsets("gf") == NONE
    assert txn.commit_offsets("gf", {("wt", 0): 1}, epoch=txn.epoch + 1) == {
        ("wt", 0): INVALID_PRODUCER_EPOCH}
    other = Txn(c, "tx-other")
    # Another transactional id's producer id: not the mapping the coordinator knows.
    r = c.call(TXN_OFFSET_COMMIT, 3, {
        "transactional_id": "tx-fence", "group_id": "gf", "producer_id": other.producer_id, "producer_epoch": 0,
        "generation_id": -1, "member_id": "", "group_instance_id": None,
        "topics": [{"name": "wt", "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                   "committed_metadata": None}]}]})
    assert r.topics[0].partitions[0].error_code == INVALID_PRODUCER_ID_MAPPING
    # A new producer with the same transactional id fences the first one.
    newer = Txn(c, "tx-fence")
    assert newer.epoch > txn.epoch
    assert txn.commit_offsets("gf", {("wt", 0): 2}) == {("wt", 0): INVALID_PRODUCER_EPOCH}
    assert fetch(c, "gf", [("wt", 0)]) == {("wt", 0): (-1, 0)}


def _member(c: WireClient, group: str) -> tuple[str, int]:
    def join(member_id: str) -> Any:
        return c.call(JOIN, 9, {"group_id": group, "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000,
                                "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
                                "protocols": [{"name": "range", "metadata": subscription("wt")}]})
    r = join(join("").member_id)
    assert r.error_code == NONE
    s = c.call(SYNC, 5, {"group_id": group, "generation_id": r.generation_id, "member_id": r.member_id,
                         "protocol_type": "consumer", "protocol_name": "range",
                         "assignments": [{"member_id": r.member_id, "assignment": b""}]})
    assert s.error_code == NONE
    return r.member_id, r.generation_id


def test_member_checks_from_v3(c: WireClient) -> None:
    member, gen = _member(c, "gm")
    txn = Txn(c, "tx-member")
    assert txn.add_offsets("gm") == NONE
    assert txn.commit_offsets("gm", {("wt", 0): 1}, generation=gen + 1, member=member) == {
        ("wt", 0): ILLEGAL_GENERATION}
    assert txn.commit_offsets("gm", {("wt", 0): 1}, generation=gen, member="ghost") == {("wt", 0): UNKNOWN_MEMBER_ID}
    assert txn.commit_offsets("gm", {("wt", 0): 1}, generation=gen, member=member, instance="i9") == {
        ("wt", 0): UNKNOWN_MEMBER_ID}
    assert txn.commit_offsets("gm", {("wt", 0): 3}, generation=gen, member=member) == {("wt", 0): NONE}
    # v2 carries no member: accepted although the group has one.
    assert txn.commit_offsets("gm", {("wt", 1): 4}, version=2) == {("wt", 1): NONE}
    # Verification comes first: the unknown group's partition must be in the transaction too.
    assert txn.add_offsets("unknown-group") == NONE
    assert txn.commit_offsets("unknown-group", {("wt", 0): 1}, generation=1, member="m") == {
        ("wt", 0): ILLEGAL_GENERATION}
    assert txn.end(commit=True) == NONE
    assert settled(c, "gm", None) == {("wt", 0): (3, 0), ("wt", 1): (4, 0)}


def test_restart_keeps_pending_and_committed_offsets(tmp_path: Any) -> None:
    with BrokerThread(tmp_path, {"offsets.topic.num.partitions": "2"}) as b:
        create_topic(b, "wt", 1)
        c = WireClient(b.bootstrap)
        c.call(FIND_COORDINATOR, 1, {"key": "g", "key_type": 0})
        done, open_ = Txn(c, "tx-done"), Txn(c, "tx-open")
        for txn, group in ((done, "gd"), (open_, "go")):
            assert txn.add_offsets(group) == NONE
            assert txn.commit_offsets(group, {("wt", 0): 11}) == {("wt", 0): NONE}
        assert done.end(commit=True) == NONE
        c.close()
    with BrokerThread(tmp_path, {"offsets.topic.num.partitions": "2"}) as b:
        c = WireClient(b.bootstrap)
        # The commit's markers may be written only after the transaction coordinator reloads.
        assert settled(c, "gd", None) == {("wt", 0): (11, 0)}
        assert fetch(c, "go", [("wt", 0)]) == {("wt", 0): (-1, UNSTABLE_OFFSET_COMMIT)}
        # The transaction coordinator reloads the open transaction and can end it.
        reopened = Txn.__new__(Txn)
        reopened.c, reopened.transactional_id = c, "tx-open"
        reopened.producer_id, reopened.epoch = open_.producer_id, open_.epoch
        assert reopened.end(commit=True) == NONE
        assert settled(c, "go", [("wt", 0)]) == {("wt", 0): (11, 0)}
        assert b.broker.groups.partition_for("go") in range(2)
        assert b.broker.metadata.topic(CONSUMER_OFFSETS) is not None
        c.close()


def test_without_verification_the_write_is_not_checked(tmp_path: Any) -> None:
    with BrokerThread(tmp_path, {"transaction.partition.verification.enable": "false"}) as b:
        create_topic(b, "wt", 1)
        c = WireClient(b.bootstrap)
        c.call(FIND_COORDINATOR, 1, {"key": "gv", "key_type": 0})
        txn = Txn(c, "tx-unverified")
        # As Kafka with verification off: written although the partition was never added.
        assert txn.commit_offsets("gv", {("wt", 0): 3}) == {("wt", 0): NONE}
        assert fetch(c, "gv", [("wt", 0)]) == {("wt", 0): (-1, UNSTABLE_OFFSET_COMMIT)}
        c.close()
