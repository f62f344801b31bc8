"""KIP-890 verification with a transaction coordinator on another broker: the partition leader
asks the coordinator with AddPartitionsToTxn ``verify_only`` (Kafka's AddPartitionsToTxnManager)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from kbroker.client.cluster import KafkaClient
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.etcd.server import free_port
from kbroker.replica.markers import TRANSACTION_STATE, RemoteTxnVerifier
from kbroker.replica.peer import connect_plaintext
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import create_topic

pytestmark = pytest.mark.anyio

B0, B1 = TopicPartition("b", 0), TopicPartition("b", 1)
STATE = 7  # the transactional id's __transaction_state partition, as the verifier is told


def verifier(leaders: dict[TopicPartition, int], endpoints: dict[int, tuple[str, int]]) -> RemoteTxnVerifier:
    return RemoteTxnVerifier(node_id=2, leader_of=leaders.get, endpoint=endpoints.get, connect=connect_plaintext,
                             timeout_s=5, backoff_s=0.05)


def _open_transaction(bootstrap: str, transactional_id: str, partitions: list[TopicPartition]) -> tuple[int, int]:
    """InitProducerId and AddPartitionsToTxn (v3, as a producer) on the coordinator: (id, epoch)."""
    with KafkaClient(bootstrap) as client:
        deadline = time.monotonic() + 20
        while True:
            init = client.request(22, {"transactional_id": transactional_id, "transaction_timeout_ms": 60000,
                                       "producer_id": -1, "producer_epoch": -1})
            if init.error_code == 0:
                break
            assert time.monotonic() < deadline, init  # the state topic is being created meanwhile
            time.sleep(0.1)
        _, added = client.connection().request(24, {
            "v3_and_below_transactional_id": transactional_id, "v3_and_below_producer_id": init.producer_id,
            "v3_and_below_producer_epoch": init.producer_epoch,
            "v3_and_below_topics": [{"name": tp.topic, "partitions": [tp.partition]} for tp in partitions]},
            version=3)
        assert added is not None
        assert all(p.partition_error_code == 0 for t in added.results_by_topic_v3_and_below
                   for p in t.results_by_partition), added
    return int(init.producer_id), int(init.producer_epoch)


async def test_the_coordinator_on_another_broker_answers_per_partition(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:  # it plays the coordinator, broker 1
        create_topic(broker, "b", partitions=2)
        pid, epoch = await anyio.to_thread.run_sync(_open_transaction, broker.bootstrap, "t1", [B0])
        host, port = broker.bootstrap.rsplit(":", 1)
        v = verifier({TopicPartition(TRANSACTION_STATE, STATE): 1}, {1: (host, int(port))})
        try:
            with anyio.fail_after(20):
                ok = await v("t1", pid, epoch, STATE, [B0, B1])
                fenced = await v("t1", pid, epoch - 1 if epoch > 0 else epoch + 1, STATE, [B0])
                unknown = await v("t1", pid + 1000, epoch, STATE, [B0])
        finally:
            await v.aclose()
    # b-1 was never added: the producer must abort (KIP-890's TRANSACTION_ABORTABLE, v5).
    assert ok == {B0: ErrorCode.NONE, B1: ErrorCode.TRANSACTION_ABORTABLE}
    assert fenced == {B0: ErrorCode.PRODUCER_FENCED}
    assert unknown == {B0: ErrorCode.INVALID_PRODUCER_ID_MAPPING}


async def test_no_coordinator_an_unreachable_one_and_itself_are_retriable() -> None:
    dead = ("127.0.0.1", free_port())
    state = TopicPartition(TRANSACTION_STATE, STATE)
    for leaders, endpoints, expected in (
            ({state: -1}, {}, ErrorCode.COORDINATOR_NOT_AVAILABLE),
            ({}, {}, ErrorCode.COORDINATOR_NOT_AVAILABLE),
            ({state: 3}, {}, ErrorCode.COORDINATOR_NOT_AVAILABLE),  # no endpoint for it
            ({state: 3}, {3: dead}, ErrorCode.NETWORK_EXCEPTION),
            ({state: 2}, {}, ErrorCode.NOT_COORDINATOR)):  # this broker, not yet its coordinator
        v = verifier(leaders, endpoints)
        try:
            with anyio.fail_after(20):
                assert await v("t1", 5, 0, STATE, [B0, B1]) == {B0: expected, B1: expected}, (leaders, endpoints)
        finally:
            await v.aclose()
