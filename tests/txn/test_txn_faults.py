"""Transactions against failures and hostile or buggy clients, over the raw wire."""

from __future__ import annotations

from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic, fetch, partitions_of
from tests.txn.test_txn_wire import (
    END_TXN,
    WRITE_TXN_MARKERS,
    add_partitions,
    init,
    txn_batch,
    txn_produce,
    wait_state,
)

E = ErrorCode
FIND_COORDINATOR, ADD_OFFSETS, TXN_OFFSET_COMMIT = 10, 25, 28


def test_a_failed_completion_write_is_retried(kafka_broker: BrokerThread, wire: WireClient) -> None:
    """A storage error writing CompleteCommit (a full disk, say) is transient: the coordinator
    retries it rather than leaving the id in PrepareCommit, refusing its producer, until a restart."""
    create_topic(kafka_broker, "t")
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0)).error_code == 0
    coordinator = kafka_broker.broker.transactions
    plog: Any = kafka_broker.broker.log_manager.get_log("__transaction_state", coordinator.partition_for("tx"))
    real = plog.append
    calls = []

    def failing(records: Any, **kw: Any) -> Any:
        calls.append(records)
        if len(calls) == 2:  # PrepareCommit is written, CompleteCommit hits the full disk
            raise OSError(28, "No space left on device")
        return real(records, **kw)

    plog.append = failing
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    assert len(calls) == 3
    assert init(wire, "tx").error_code == 0  # the producer can start over


def test_a_marker_from_a_coordinator_epoch_that_never_was_is_refused(kafka_broker: BrokerThread,
                                                                     wire: WireClient) -> None:
    """This broker's coordinator writes every marker at coordinator epoch 0, for good. A client's
    WriteTxnMarkers claiming a newer one would fence it out of the partition forever: the
    producer's next transaction would stay PrepareCommit and hold the partition's LSO."""
    create_topic(kafka_broker, "t")
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0)).error_code == 0
    forged = {"producer_id": pid, "producer_epoch": epoch, "transaction_result": False, "coordinator_epoch": 7,
              "topics": [{"name": "t", "partition_indexes": [0]}]}
    resp = wire.call(WRITE_TXN_MARKERS, 1, {"markers": [forged]})
    assert resp.markers[0].topics[0].partitions[0].error_code == E.INVALID_REQUEST
    assert kafka_broker.broker.replica_manager.has_ongoing_transaction(TopicPartition("t", 0), pid)
    # The transaction carries on and completes; the LSO moves past it.
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 1)).error_code == 0
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    part = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
    assert part.last_stable_offset == part.high_watermark == 3
    # An administrator's abort names the coordinator epoch the partition knows: still served.
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 2)).error_code == 0
    admin = {**forged, "coordinator_epoch": 0}
    resp = wire.call(WRITE_TXN_MARKERS, 1, {"markers": [admin]})
    assert resp.markers[0].topics[0].partitions[0].error_code == 0
    assert not kafka_broker.broker.replica_manager.has_ongoing_transaction(TopicPartition("t", 0), pid)


def test_a_newer_epoch_cannot_slip_into_an_open_transaction_unverified(kafka_broker: BrokerThread,
                                                                        wire: WireClient) -> None:
    """As Kafka, a partition counts as already verified only when the producer's transaction is
    open there at the batch's own epoch. A batch naming the producer id at a newer epoch would
    otherwise bump the epoch in the partition: the coordinator's markers (at the older epoch)
    would be refused and the transaction would hold the partition's LSO forever."""
    create_topic(kafka_broker, "t")
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0)).error_code == 0
    for txn_id in ("tx", "other"):
        forged = txn_produce(wire, txn_id, txn_batch(pid, epoch + 1, 0), version=11)
        assert forged.error_code in (E.INVALID_PRODUCER_EPOCH, E.INVALID_PRODUCER_ID_MAPPING), txn_id
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    part = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
    assert part.last_stable_offset == part.high_watermark == 2


def test_a_newer_epoch_cannot_commit_offsets_into_an_open_transaction_unverified(kafka_broker: BrokerThread,
                                                                                  wire: WireClient) -> None:
    """TxnOffsetCommit likewise: at a newer epoch than the open transaction's, it is verified."""
    create_topic(kafka_broker, "t")
    assert wire.call(FIND_COORDINATOR, 3, {"key": "g", "key_type": 0}).error_code == 0
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    offsets = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"}
    assert wire.call(ADD_OFFSETS, 3, offsets).error_code == 0

    def commit(producer_epoch: int) -> int:
        resp = wire.call(TXN_OFFSET_COMMIT, 3, {
            **offsets, "producer_epoch": producer_epoch, "generation_id": -1, "member_id": "",
            "group_instance_id": None, "topics": [{"name": "t", "partitions": [
                {"partition_index": 0, "committed_offset": 5, "committed_leader_epoch": -1,
                 "committed_metadata": ""}]}]})
        return int(resp.topics[0].partitions[0].error_code)

    assert commit(epoch) == 0
    assert commit(epoch + 1) == E.INVALID_PRODUCER_EPOCH
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    offsets_tp = TopicPartition("__consumer_offsets", kafka_broker.broker.groups.partition_for("g"))
    assert not kafka_broker.broker.replica_manager.has_ongoing_transaction(offsets_tp, pid)
