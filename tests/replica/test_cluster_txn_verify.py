"""A partition leader verifies a transactional produce with the transaction coordinator on
another broker (AddPartitionsToTxn v4 ``verify_only``, KIP-890): ClusterMarkerWriter.verify_partitions."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.etcd.server import free_port
from kbroker.replica.markers import ClusterMarkerWriter
from kbroker.replica.peer import connect_plaintext
from kbroker.testing import BrokerThread
from kbroker.txn.markers import MarkerResults, TxnMarker
from tests.broker.replica_wire import create_topic

pytestmark = pytest.mark.anyio

A0, A1 = TopicPartition("a", 0), TopicPartition("a", 1)


async def _no_local(markers: object) -> MarkerResults:
    raise AssertionError("nothing is written here")


def writer(endpoints: dict[int, tuple[str, int]]) -> ClusterMarkerWriter:
    return ClusterMarkerWriter(node_id=1, leader_of=lambda tp: None, endpoint=endpoints.get, local=_no_local,
                               connect=connect_plaintext, timeout_s=5, backoff_s=0.05)


async def test_the_coordinator_answers_per_partition_whether_it_is_in_the_transaction(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:  # node 1 of its own: here it plays broker 2
        create_topic(broker, "a", partitions=2)
        txns = broker.broker.transactions
        code, pid, epoch = broker.call(txns.init_producer_id, "t1", 60000)
        assert code == 0
        assert broker.call(txns.add_partitions, "t1", pid, epoch, [A0]) == {A0: 0}
        host, port = broker.bootstrap.rsplit(":", 1)
        w = writer({2: (host, int(port))})
        try:
            with anyio.fail_after(20):
                added = await w.verify_partitions(2, "t1", pid, epoch, [A0, A1])
                fenced = await w.verify_partitions(2, "t1", pid, epoch + 1, [A0])
                unknown = await w.verify_partitions(2, "nobody", 7, 0, [A0])
        finally:
            await w.aclose()
    assert added == {A0: ErrorCode.NONE, A1: ErrorCode.TRANSACTION_ABORTABLE}
    assert fenced == {A0: ErrorCode.PRODUCER_FENCED}
    assert unknown == {A0: ErrorCode.INVALID_PRODUCER_ID_MAPPING}


async def test_an_unreachable_or_unknown_coordinator_is_a_retriable_error() -> None:
    w = writer({3: ("127.0.0.1", free_port())})
    try:
        with anyio.fail_after(20):
            unreachable = await w.verify_partitions(3, "t1", 1, 0, [A0, A1])
            unknown = await w.verify_partitions(5, "t1", 1, 0, [A0])
            itself = await w.verify_partitions(1, "t1", 1, 0, [A0])
    finally:
        await w.aclose()
    assert unreachable == {A0: ErrorCode.NETWORK_EXCEPTION, A1: ErrorCode.NETWORK_EXCEPTION}
    assert unknown == itself == {A0: ErrorCode.NOT_COORDINATOR}


def test_a_marker_written_during_verification_is_counted(tmp_path: Path) -> None:
    """The guard a remotely verified produce checks: every marker written to a partition counts."""
    with BrokerThread(tmp_path / "data") as broker:
        create_topic(broker, "a", partitions=2)
        replicas = broker.broker.replica_manager
        before = replicas.markers_written(A0), replicas.markers_written(A1)
        (outcome,) = broker.call(replicas.write_txn_markers, [TxnMarker(4000, 0, 0, False, (A0,))])
        assert outcome == {A0: 0}
        assert (replicas.markers_written(A0), replicas.markers_written(A1)) == (before[0] + 1, before[1])


class _Replicas:
    def __init__(self) -> None:
        self.markers = 0

    def has_ongoing_transaction(self, tp: TopicPartition, pid: int, epoch: int) -> bool:
        return False

    def markers_written(self, tp: TopicPartition) -> int:
        return self.markers


def _ctx(remote_answer: int, marker_meanwhile: bool, coordinator: int = 2) -> tuple[object, list[object]]:
    """A produce's context on broker 1 whose transaction coordinator is ``coordinator``."""
    from types import SimpleNamespace

    replicas = _Replicas()
    calls: list[object] = []

    async def remote(broker: int, txn_id: str, pid: int, epoch: int, tps: list[TopicPartition]) -> dict:
        calls.append((broker, txn_id, pid, epoch, list(tps)))
        if marker_meanwhile:
            replicas.markers += 1  # the coordinator ended the transaction while we waited
        return dict.fromkeys(tps, remote_answer)

    transactions = SimpleNamespace(
        verify_partitions=lambda txn_id, pid, epoch, tps: dict.fromkeys(tps, ErrorCode.NOT_COORDINATOR),
        remote_verify=remote, partition_for=lambda txn_id: 7)
    metadata = SimpleNamespace(
        topic=lambda name: SimpleNamespace(partitions={0: None}) if name == "a" else None,
        partition=lambda topic, p: (SimpleNamespace(leader=coordinator)
                                    if (topic, p) == ("__transaction_state", 7) else None))
    broker = SimpleNamespace(config={"transaction.partition.verification.enable": True}, replica_manager=replicas,
                             metadata=metadata, transactions=transactions, node_id=1)
    return SimpleNamespace(broker=broker, version=11), calls


def _txn_batch() -> bytes:
    from kbroker.records.builder import build_batch

    return build_batch([(None, b"v", (), None)], producer_id=4000, producer_epoch=3, base_sequence=0,
                       transactional=True)


@pytest.mark.parametrize(("answer", "meanwhile", "expected"), [
    (ErrorCode.NONE, False, None),
    # A marker written while the coordinator's answer was awaited: stale, retried by the producer.
    (ErrorCode.NONE, True, ErrorCode.NOT_ENOUGH_REPLICAS),
    (ErrorCode.TRANSACTION_ABORTABLE, False, ErrorCode.TRANSACTION_ABORTABLE),
    (ErrorCode.NETWORK_EXCEPTION, False, ErrorCode.NOT_ENOUGH_REPLICAS),
])
async def test_a_produce_verified_with_another_brokers_coordinator(answer: int, meanwhile: bool,
                                                                   expected: int | None) -> None:
    from kbroker.handlers.produce import _verify

    ctx, calls = _ctx(answer, meanwhile)
    failed = await _verify(ctx, "t1", {A0: _txn_batch()})  # type: ignore[arg-type]
    assert calls == [(2, "t1", 4000, 3, [A0])]
    assert (failed[A0].error_code if A0 in failed else None) == expected


async def test_no_known_coordinator_is_retried_without_asking() -> None:
    from kbroker.handlers.produce import _verify

    ctx, calls = _ctx(ErrorCode.NONE, False, coordinator=-1)
    failed = await _verify(ctx, "t1", {A0: _txn_batch()})  # type: ignore[arg-type]
    assert calls == [] and failed[A0].error_code == ErrorCode.NOT_ENOUGH_REPLICAS
