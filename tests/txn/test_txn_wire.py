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
def test_add_partitions_internal_topic_refused_to_producers(kafka_broker: BrokerThread, wire: WireClient,
                                                            version: int) -> None:
    """Producers (v0-3) may not add internal topics (Kafka's write-authorisation filter never passes
    them); brokers (v4+) may."""
    create_topic(kafka_broker, "t", 1)
    assert wire.call(FIND_COORDINATOR, 3, {"key": "g", "key_type": 0}).error_code == 0  # makes __consumer_offsets
    r = init(wire, "tx")
    got = add_partitions(wire, version, "tx", r.producer_id, r.producer_epoch, {"t": [0], "__consumer_offsets": [0]})
    if version < 4:
        assert got == {("t", 0): E.OPERATION_NOT_ATTEMPTED, ("__consumer_offsets", 0): E.TOPIC_AUTHORIZATION_FAILED}
        assert kafka_broker.broker.transactions.transactions["tx"].state.kafka_name == "Empty"
    else:
        assert got == {("t", 0): 0, ("__consumer_offsets", 0): 0}


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
    # As Kafka, an entry with an error has the schema's zero defaults, not -1.
    assert (s3.transaction_state, s3.transaction_timeout_ms, s3.transaction_start_time_ms, s3.producer_id,
            s3.producer_epoch, list(s3.topics)) == ("", 0, 0, 0, 0, [])

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


PRODUCE, FETCH, WRITE_TXN_MARKERS = 0, 1, 27


def txn_batch(pid: int, epoch: int, seq: int, value: bytes = b"v") -> bytes:
    from kbroker.records.builder import build_batch

    return build_batch([(None, value, (), None)], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                       transactional=True)


def txn_produce(wire: WireClient, txn_id: str | None, records: bytes, version: int = 9,
                partition: int = 0) -> Any:
    resp = wire.call(PRODUCE, version, {"transactional_id": txn_id, "acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": "t", "partition_data": [{"index": partition, "records": records}]}]})
    return resp.responses[0].partition_responses[0]


def wait_state(broker: BrokerThread, txn_id: str, state: str) -> None:
    """Wait until ``txn_id`` is in ``state`` (after a restart, loading may still be going on)."""
    deadline = time.monotonic() + 10
    while (txn := broker.broker.transactions.transactions.get(txn_id)) is None or txn.state.kafka_name != state:
        assert time.monotonic() < deadline, txn
        time.sleep(0.01)


@pytest.mark.parametrize(("version", "code"), [(9, E.INVALID_TXN_STATE), (11, E.TRANSACTION_ABORTABLE)])
def test_produce_to_a_partition_not_in_the_transaction_is_refused(kafka_broker: BrokerThread, wire: WireClient,
                                                                  version: int, code: int) -> None:
    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    refused = txn_produce(wire, "tx", txn_batch(pid, epoch, 0), version, partition=1)
    assert refused.error_code == code
    if code == E.INVALID_TXN_STATE:
        assert refused.error_message == "Partition was not added to the transaction"
    stale = txn_produce(wire, "tx", txn_batch(pid, epoch + 1, 0), version)
    assert stale.error_code == E.INVALID_PRODUCER_EPOCH  # PRODUCER_FENCED as producers expect it
    ok = txn_produce(wire, "tx", txn_batch(pid, epoch, 0), version)
    assert (ok.error_code, ok.base_offset) == (0, 0)
    # With the transaction open in the partition, later batches need no verification.
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 1), version).error_code == 0


def test_produce_verification_can_be_disabled(tmp_path: Any) -> None:
    with BrokerThread(tmp_path / "d", {"transaction.partition.verification.enable": "false"}) as broker:
        wire = WireClient(broker.bootstrap)
        try:
            create_topic(broker, "t")
            r = init(wire, "tx")
            # Not added to the transaction, yet appended: nothing checks.
            assert txn_produce(wire, "tx", txn_batch(r.producer_id, r.producer_epoch, 0)).error_code == 0
        finally:
            wire.close()


def test_produce_while_the_transaction_completes_is_retriable(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", 2)
    coordinator = kafka_broker.broker.transactions
    r = init(wire, "tx")
    add_partitions(wire, 3, "tx", r.producer_id, r.producer_epoch, {"t": [0, 1]})
    kafka_broker.call(coordinator.shutdown)  # from now on the coordinator answers NOT_COORDINATOR
    resp = txn_produce(wire, "tx", txn_batch(r.producer_id, r.producer_epoch, 0))
    assert resp.error_code == E.NOT_ENOUGH_REPLICAS and "NOT_COORDINATOR" in resp.error_message


def test_commit_over_the_wire_writes_markers(kafka_broker: BrokerThread, wire: WireClient) -> None:
    from tests.broker.replica_wire import fetch, partitions_of, records_of

    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0, b"a")).error_code == 0
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    assert wire.call(END_TXN, 3, end).error_code == 0  # a retry after completion
    part = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
    assert (part.high_watermark, part.last_stable_offset) == (2, 2)  # the record and the COMMIT marker
    # The record, then the COMMIT control record (key: version 0, type 1; value: version 0, coordinator epoch 0).
    assert [(rec.key, rec.value) for rec in records_of(part.records)] == [
        (None, b"a"), (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")]


@pytest.mark.parametrize("version", [1, 2])
def test_write_txn_markers(kafka_broker: BrokerThread, wire: WireClient, version: int) -> None:
    create_topic(kafka_broker, "t", 2)
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0)).error_code == 0
    replicas = kafka_broker.broker.replica_manager
    marker = {"producer_id": pid, "producer_epoch": epoch, "transaction_result": False, "coordinator_epoch": 0,
              "topics": [{"name": "t", "partition_indexes": [0, 1]}, {"name": "nope", "partition_indexes": [0]}]}
    if version >= 2:
        marker["transaction_version"] = 1
    resp = wire.call(WRITE_TXN_MARKERS, version, {"markers": [marker]})
    got = {(t.name, p.partition_index): p.error_code for m in resp.markers for t in m.topics for p in t.partitions}
    assert resp.markers[0].producer_id == pid
    assert got == {("t", 0): 0, ("t", 1): 0, ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    from kbroker.common import TopicPartition as TP
    assert not replicas.has_ongoing_transaction(TP("t", 0), pid)
    stale = {**marker, "producer_epoch": epoch - 1 if epoch else 0, "topics": [{"name": "t", "partition_indexes": [0]}]}
    if epoch:
        resp = wire.call(WRITE_TXN_MARKERS, version, {"markers": [stale]})
        assert resp.markers[0].topics[0].partitions[0].error_code == E.INVALID_PRODUCER_EPOCH
    # As Kafka, the answer is keyed by producer id: a marker without partitions has no entry,
    # and two markers of one producer share one.
    empty = {**marker, "producer_id": pid + 1000, "topics": []}
    second = {**marker, "topics": [{"name": "nope", "partition_indexes": [1]}]}
    resp = wire.call(WRITE_TXN_MARKERS, version, {"markers": [empty, marker, second]})
    assert [m.producer_id for m in resp.markers] == [pid]
    got = {(t.name, p.partition_index): p.error_code for t in resp.markers[0].topics for p in t.partitions}
    assert set(got) == {("t", 0), ("t", 1), ("nope", 0), ("nope", 1)}
    assert wire.call(WRITE_TXN_MARKERS, version, {"markers": [empty]}).markers == []


def test_write_txn_markers_writes_one_marker_per_partition_named_twice(kafka_broker: BrokerThread,
                                                                      wire: WireClient) -> None:
    """As Kafka, whose handler keys a marker's control batches by partition: a partition named
    twice in one marker (in one topic entry or in two) gets one control batch and one answer."""
    from kbroker.common import TopicPartition as TP

    create_topic(kafka_broker, "t", 1)
    plog = kafka_broker.broker.replica_manager._leader_log(TP("t", 0))[1]
    before = plog.log_end_offset
    marker = {"producer_id": 77, "producer_epoch": 0, "transaction_result": False, "coordinator_epoch": 0,
              "topics": [{"name": "t", "partition_indexes": [0, 0]}, {"name": "t", "partition_indexes": [0]}]}
    resp = wire.call(WRITE_TXN_MARKERS, 1, {"markers": [marker]})
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for m in resp.markers
            for t in m.topics] == [("t", [(0, 0)])]
    assert plog.log_end_offset == before + 1


def test_state_survives_a_restart(tmp_path: Any) -> None:
    data = tmp_path / "data"
    with BrokerThread(data) as broker:
        wire = WireClient(broker.bootstrap)
        create_topic(broker, "t", 1)
        r = init(wire, "tx", timeout_ms=42_000)
        add_partitions(wire, 3, "tx", r.producer_id, r.producer_epoch, {"t": [0]})
        assert txn_produce(wire, "tx", txn_batch(r.producer_id, r.producer_epoch, 0)).error_code == 0
        wire.close()
    with BrokerThread(data) as broker:
        wire = WireClient(broker.bootstrap)
        try:
            desc = wire.call(DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]}).transaction_states[0]
            while desc.error_code == E.COORDINATOR_LOAD_IN_PROGRESS:
                time.sleep(0.02)
                desc = wire.call(DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]}).transaction_states[0]
            assert (desc.transaction_state, desc.producer_id, desc.transaction_timeout_ms) == (
                "Ongoing", r.producer_id, 42_000)
            # The ongoing transaction carries on: the producer commits it after the restart.
            end = {"transactional_id": "tx", "producer_id": r.producer_id, "producer_epoch": r.producer_epoch,
                   "committed": True}
            assert wire.call(END_TXN, 3, end).error_code == 0
            wait_state(broker, "tx", "CompleteCommit")
            again = init(wire, "tx")
            assert (again.producer_id, again.producer_epoch) == (r.producer_id, r.producer_epoch + 1)
        finally:
            wire.close()


def test_timed_out_transaction_is_aborted_by_the_broker(tmp_path: Any) -> None:
    settings = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "50"}
    with BrokerThread(tmp_path / "d", settings) as broker:
        wire = WireClient(broker.bootstrap)
        try:
            create_topic(broker, "t")
            r = init(wire, "tx", timeout_ms=200)
            add_partitions(wire, 3, "tx", r.producer_id, r.producer_epoch, {"t": [0]})
            assert txn_produce(wire, "tx", txn_batch(r.producer_id, r.producer_epoch, 0)).error_code == 0
            wait_state(broker, "tx", "CompleteAbort")
            end = {"transactional_id": "tx", "producer_id": r.producer_id, "producer_epoch": r.producer_epoch,
                   "committed": True}
            assert wire.call(END_TXN, 3, end).error_code == E.PRODUCER_FENCED
        finally:
            wire.close()


@pytest.mark.parametrize("commit", [True, False])
def test_markers_complete_the_groups_transactional_offsets(kafka_broker: BrokerThread, wire: WireClient,
                                                           commit: bool) -> None:
    from kbroker.common import TopicPartition as TP
    from kbroker.groups.records import OffsetAndMetadata

    create_topic(kafka_broker, "t")
    groups = kafka_broker.broker.groups
    assert wire.call(FIND_COORDINATOR, 3, {"key": "g", "key_type": 0}).error_code == 0
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    offsets = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"}
    assert wire.call(ADD_OFFSETS, 3, offsets).error_code == 0
    errors = kafka_broker.call(groups.txn_commit_offsets, "tx", "g", pid, epoch, -1, "", None,
                               {TP("t", 0): OffsetAndMetadata(42)})
    assert set(errors.values()) == {0}
    assert kafka_broker.call(_fetch, groups, True) == "UNSTABLE_OFFSET_COMMIT"
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": commit}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit" if commit else "CompleteAbort")
    assert kafka_broker.call(_fetch, groups, True) == (42 if commit else None)


async def _fetch(groups: Any, require_stable: bool) -> Any:
    from kbroker.common import TopicPartition as TP

    got = groups.fetch_offsets("g", [TP("t", 0)], require_stable)[TP("t", 0)]
    return getattr(got, "offset", getattr(got, "name", got))


def test_state_topic_settings_take_effect(tmp_path: Any) -> None:
    settings = {"transaction.state.log.num.partitions": "7", "transaction.state.log.segment.bytes": "1048576",
                "transaction.state.log.min.isr": "1", "transaction.max.timeout.ms": "5000"}
    with BrokerThread(tmp_path / "d", settings) as broker:
        wire = WireClient(broker.bootstrap)
        try:
            assert wire.call(FIND_COORDINATOR, 3, {"key": "tx", "key_type": 1}).error_code == 0
            topic = broker.broker.metadata.topic("__transaction_state")
            assert len(topic.partitions) == 7
            assert (topic.configs["segment.bytes"], topic.configs["min.insync.replicas"]) == ("1048576", "1")
            assert init(wire, "tx", timeout_ms=5001).error_code == E.INVALID_TRANSACTION_TIMEOUT
            assert init(wire, "tx", timeout_ms=5000).error_code == 0
            from kbroker.common import partition_for

            assert broker.broker.transactions.partition_for("tx") == partition_for("tx", 7)
        finally:
            wire.close()


def test_prepared_commit_is_completed_after_a_restart(tmp_path: Any) -> None:
    from tests.broker.replica_wire import fetch, partitions_of

    data = tmp_path / "data"
    with BrokerThread(data) as broker:
        wire = WireClient(broker.bootstrap)
        create_topic(broker, "t", 1)
        r = init(wire, "tx")
        pid, epoch = r.producer_id, r.producer_epoch
        add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
        assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0, b"a")).error_code == 0

        async def never(markers: Any) -> Any:  # the broker stops before any marker is written
            import anyio

            await anyio.sleep_forever()

        broker.broker.transactions._write_markers = never
        end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
        assert wire.call(END_TXN, 3, end).error_code == 0
        assert broker.broker.transactions.transactions["tx"].state.kafka_name == "PrepareCommit"
        assert partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)].last_stable_offset == 0
        wire.close()
    with BrokerThread(data) as broker:
        wait_state(broker, "tx", "CompleteCommit")
        wire = WireClient(broker.bootstrap)
        try:
            part = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
            assert (part.high_watermark, part.last_stable_offset) == (2, 2)  # the record and its COMMIT marker
        finally:
            wire.close()


def test_a_marker_arriving_while_a_remote_coordinator_verifies_makes_the_produce_retry(
        kafka_broker: BrokerThread, wire: WireClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a cluster the coordinator may be another broker: while it is asked, the transaction it
    vouches for may end (its marker reaches this partition), and the produce must not append
    (Kafka's VerificationGuard). Here this broker plays the partition's leader, and the
    "other broker" answers through a stand-in."""
    from kbroker.common import TopicPartition

    create_topic(kafka_broker, "t", 1)
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    txns = kafka_broker.broker.transactions
    plog = kafka_broker.broker.log_manager.get_log("t", 0)
    assert plog is not None
    asked: list[list[TopicPartition]] = []

    async def aborted_meanwhile(txn_id: str, p: int, e: int, state: int,
                                tps: list[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        asked.append(list(tps))
        plog.append_marker(pid, epoch, 0, False, leader_epoch=0)  # the coordinator's abort reaches us
        return dict.fromkeys(tps, ErrorCode.NONE)  # its answer was sent before

    async def vouches(txn_id: str, p: int, e: int, state: int,
                      tps: list[TopicPartition]) -> dict[TopicPartition, ErrorCode]:
        asked.append(list(tps))
        return dict.fromkeys(tps, ErrorCode.NONE)

    monkeypatch.setattr(txns, "coordinates_elsewhere", lambda txn_id: True)
    monkeypatch.setattr(txns, "verify_elsewhere", aborted_meanwhile)
    retried = txn_produce(wire, "tx", txn_batch(pid, epoch, 0), 11)
    assert retried.error_code == ErrorCode.NOT_ENOUGH_REPLICAS  # retriable: the next try asks again
    assert plog.log_end_offset == 1  # the marker only
    monkeypatch.setattr(txns, "verify_elsewhere", vouches)
    ok = txn_produce(wire, "tx", txn_batch(pid, epoch, 0), 11)
    assert (ok.error_code, ok.base_offset) == (0, 1)
    assert asked == [[TopicPartition("t", 0)]] * 2
