"""The transaction APIs over the raw wire against a real broker (every version the broker serves)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic

E = ErrorCode
FIND_COORDINATOR, INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN = 10, 22, 24, 25, 26
DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 65, 66


def init(wire: WireClient, txn_id: str, version: int = 4, timeout_ms: int = 60_000, **ids: int) -> Any:
    """InitProducerId, waiting out the coordinator's start-up load like a client would."""
    deadline = time.monotonic() + 10
    while True:
        resp = wire.call(INIT_PRODUCER_ID, version, {"transactional_id": txn_id, "transaction_timeout_ms": timeout_ms,
                                                     "producer_id": ids.get("pid", -1),
                                                     "producer_epoch": ids.get("epoch", -1)})
        if resp.error_code not in (E.COORDINATOR_LOAD_IN_PROGRESS, E.CONCURRENT_TRANSACTIONS) \
                or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def add_partitions(wire: WireClient, version: int, txn_id: str, pid: int, epoch: int,
                   topics: dict[str, list[int]]) -> dict[tuple[str, int], int]:
    tops = [{"name": t, "partitions": ps} for t, ps in topics.items()]
    if version < 4:
        resp = wire.call(ADD_PARTITIONS, version, {
            "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch, "v3_and_below_topics": tops})
        results = resp.results_by_topic_v3_and_below
    else:
        resp = wire.call(ADD_PARTITIONS, version, {"transactions": [{
            "transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "verify_only": False,
            "topics": tops}]})
        assert resp.error_code == 0
        results = resp.results_by_transaction[0].topic_results
    return {(t.name, p.partition_index): p.partition_error_code for t in results for p in t.results_by_partition}


def test_find_coordinator_for_a_transactional_id_creates_the_state_topic(kafka_broker: BrokerThread,
                                                                         wire: WireClient) -> None:
    resp = wire.call(FIND_COORDINATOR, 3, {"key": "tx", "key_type": 1})
    assert (resp.error_code, resp.node_id) == (0, kafka_broker.broker.node_id)
    topic = kafka_broker.broker.metadata.topic("__transaction_state")
    assert topic is not None and len(topic.partitions) == 50
    assert topic.configs["cleanup.policy"] == "compact" and topic.configs["segment.bytes"] == "104857600"
    resp = wire.call(FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": ["a", "b"]})
    assert [(c.key, c.error_code, c.node_id) for c in resp.coordinators] == [
        ("a", 0, kafka_broker.broker.node_id), ("b", 0, kafka_broker.broker.node_id)]


@pytest.mark.parametrize("version", range(6))
def test_init_producer_id_for_a_transactional_id(wire: WireClient, version: int) -> None:
    first = init(wire, "tx", version)
    second = init(wire, "tx", version)
    assert (first.error_code, first.producer_epoch, second.error_code) == (0, 0, 0)
    assert (second.producer_id, second.producer_epoch) == (first.producer_id, 1)


@pytest.mark.parametrize(("version", "code"), [(3, E.INVALID_PRODUCER_EPOCH), (4, E.PRODUCER_FENCED)])
def test_init_producer_id_fenced_epoch_by_version(wire: WireClient, version: int, code: int) -> None:
    first = init(wire, "tx")
    init(wire, "tx")
    init(wire, "tx")
    resp = init(wire, "tx", version, pid=first.producer_id, epoch=0)
    assert (resp.error_code, resp.producer_id) == (code, -1)


def test_add_partitions_unknown_partition_fails_the_whole_transaction(kafka_broker: BrokerThread,
                                                                      wire: WireClient) -> None:
    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx")
    assert add_partitions(wire, 3, "tx", r.producer_id, r.producer_epoch, {"t": [0, 5], "nope": [0]}) == {
        ("t", 0): E.OPERATION_NOT_ATTEMPTED, ("t", 5): E.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    assert kafka_broker.broker.transactions.transactions["tx"].state.kafka_name == "Empty"


@pytest.mark.parametrize("version", range(6))
def test_add_partitions_every_version(kafka_broker: BrokerThread, wire: WireClient, version: int) -> None:
    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx")
    assert add_partitions(wire, version, "tx", r.producer_id, r.producer_epoch, {"t": [0, 1]}) == {
        ("t", 0): 0, ("t", 1): 0}
    fenced = E.INVALID_PRODUCER_EPOCH if version < 2 else E.PRODUCER_FENCED
    assert add_partitions(wire, version, "tx", r.producer_id, r.producer_epoch + 1, {"t": [0]}) == {
        ("t", 0): fenced}
    assert add_partitions(wire, version, "tx", r.producer_id + 1, r.producer_epoch, {"t": [0]}) == {
        ("t", 0): E.INVALID_PRODUCER_ID_MAPPING}


def test_add_partitions_v4_batches_and_verifies(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", 2)
    a, b = init(wire, "a"), init(wire, "b")
    assert add_partitions(wire, 3, "a", a.producer_id, a.producer_epoch, {"t": [0]}) == {("t", 0): 0}
    resp = wire.call(ADD_PARTITIONS, 5, {"transactions": [
        {"transactional_id": "a", "producer_id": a.producer_id, "producer_epoch": a.producer_epoch,
         "verify_only": True, "topics": [{"name": "t", "partitions": [0, 1]}]},
        {"transactional_id": "b", "producer_id": b.producer_id, "producer_epoch": b.producer_epoch,
         "verify_only": False, "topics": [{"name": "t", "partitions": [1]}]},
        {"transactional_id": "zz", "producer_id": 1, "producer_epoch": 0,
         "verify_only": True, "topics": [{"name": "t", "partitions": [1]}]},
    ]})
    got = {(r.transactional_id, p.partition_index): p.partition_error_code
           for r in resp.results_by_transaction for t in r.topic_results for p in t.results_by_partition}
    assert got == {("a", 0): 0, ("a", 1): E.TRANSACTION_ABORTABLE, ("b", 1): 0,
                   ("zz", 1): E.INVALID_PRODUCER_ID_MAPPING}
    # Verification changes nothing; the add does.
    txns = kafka_broker.broker.transactions.transactions
    assert [(tp.topic, tp.partition) for tp in txns["a"].partitions] == [("t", 0)]
    assert [(tp.topic, tp.partition) for tp in txns["b"].partitions] == [("t", 1)]


@pytest.mark.parametrize("version", range(5))
def test_add_offsets_and_end_txn_errors(kafka_broker: BrokerThread, wire: WireClient, version: int) -> None:
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, version, end).error_code == E.INVALID_TXN_STATE  # nothing to commit
    assert wire.call(END_TXN, version, {**end, "producer_id": pid + 1}).error_code == E.INVALID_PRODUCER_ID_MAPPING
    fenced = E.INVALID_PRODUCER_EPOCH if version < 2 else E.PRODUCER_FENCED
    assert wire.call(END_TXN, version, {**end, "producer_epoch": epoch + 1}).error_code == fenced
    offsets = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"}
    assert wire.call(ADD_OFFSETS, version, {**offsets, "producer_epoch": epoch + 1}).error_code == fenced
    assert wire.call(ADD_OFFSETS, version, offsets).error_code == 0
    group_partition = kafka_broker.broker.groups.partition_for("g")
    assert [(tp.topic, tp.partition) for tp in kafka_broker.broker.transactions.transactions["tx"].partitions] == [
        ("__consumer_offsets", group_partition)]


def test_describe_and_list_transactions(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx-1", timeout_ms=45_000)
    add_partitions(wire, 3, "tx-1", r.producer_id, r.producer_epoch, {"t": [1, 0]})
    idle = init(wire, "tx-2")
    resp = wire.call(DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx-1", "tx-2", "none"]})
    s1, s2, s3 = resp.transaction_states
    assert (s1.error_code, s1.transaction_state, s1.producer_id, s1.producer_epoch, s1.transaction_timeout_ms) == (
        0, "Ongoing", r.producer_id, 0, 45_000)
    assert [(t.topic, list(t.partitions)) for t in s1.topics] == [("t", [0, 1])] and s1.transaction_start_time_ms > 0
    assert (s2.transaction_state, s2.transaction_start_time_ms, list(s2.topics)) == ("Empty", -1, [])
    assert (s3.transactional_id, s3.error_code) == ("none", E.TRANSACTIONAL_ID_NOT_FOUND)

    def listed(version: int, **body: Any) -> tuple[int, list[str], list[tuple[str, int, str]]]:
        full = {"state_filters": [], "producer_id_filters": [], **body}
        resp = wire.call(LIST_TRANSACTIONS, version, full)
        return resp.error_code, list(resp.unknown_state_filters), sorted(
            (t.transactional_id, t.producer_id, t.transaction_state) for t in resp.transaction_states)

    both = [("tx-1", r.producer_id, "Ongoing"), ("tx-2", idle.producer_id, "Empty")]
    assert listed(0) == (0, [], both)
    assert listed(0, state_filters=["Ongoing", "Nope"]) == (0, ["Nope"], both[:1])
    assert listed(1, producer_id_filters=[idle.producer_id]) == (0, [], both[1:])
    assert listed(1, duration_filter=3_600_000) == (0, [], both[1:])  # tx-1 is younger than an hour
    assert listed(2, transactional_id_pattern="tx-[1]") == (0, [], both[:1])
    assert listed(2, transactional_id_pattern="[") == (128, [], [])  # INVALID_REGULAR_EXPRESSION
