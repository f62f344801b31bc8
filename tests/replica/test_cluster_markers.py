"""Transaction markers in a cluster: local partitions written here, others sent to their leaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.etcd.server import free_port
from kbroker.records.batch import iter_headers
from kbroker.replica.markers import ClusterMarkerWriter
from kbroker.replica.peer import connect_plaintext
from kbroker.testing import BrokerThread
from kbroker.txn.markers import MarkerResults, TxnMarker
from tests.broker.replica_wire import create_topic

pytestmark = pytest.mark.anyio

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


class LocalLog:
    def __init__(self) -> None:
        self.calls: list[list[TxnMarker]] = []

    async def __call__(self, markers: Sequence[TxnMarker]) -> MarkerResults:
        self.calls.append(list(markers))
        return [dict.fromkeys(m.partitions, ErrorCode.NONE) for m in markers]


def writer(leaders: dict[TopicPartition, int], endpoints: dict[int, tuple[str, int]],
           local: LocalLog) -> ClusterMarkerWriter:
    return ClusterMarkerWriter(node_id=1, leader_of=leaders.get, endpoint=endpoints.get, local=local,
                               connect=connect_plaintext, timeout_s=5, backoff_s=0.05)


async def test_markers_go_to_each_partitions_leader(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:  # node 1 of its own: here it plays broker 2
        create_topic(broker, "b")
        host, port = broker.bootstrap.rsplit(":", 1)
        local = LocalLog()
        w = writer({A0: 1, A1: 1, B0: 2}, {2: (host, int(port))}, local)
        try:
            marker = TxnMarker(4000, 0, 0, True, (A0, B0, A1))
            with anyio.fail_after(20):
                (outcome,) = await w([marker])
        finally:
            await w.aclose()
        assert outcome == {A0: 0, A1: 0, B0: 0}
        assert [m.partitions for m in local.calls[0]] == [(A0, A1)]
        # The remote leader wrote a COMMIT control batch for producer 4000.
        log = broker.broker.log_manager.get_log("b", 0)
        assert log is not None
        (header,) = [h for _, h in iter_headers(log.read(0, 1 << 20))]
        assert header.producer_id == 4000 and header.is_control


async def test_no_leader_unknown_partition_and_an_unreachable_leader_are_retriable() -> None:
    local = LocalLog()
    dead = ("127.0.0.1", free_port())
    unknown = TopicPartition("gone", 0)
    w = writer({A0: -1, B0: 3, A1: 7}, {3: dead}, local)
    try:
        with anyio.fail_after(20):
            (outcome,) = await w([TxnMarker(1, 0, 0, False, (A0, B0, A1, unknown))])
    finally:
        await w.aclose()
    assert outcome == {A0: ErrorCode.NOT_LEADER_OR_FOLLOWER, B0: ErrorCode.REQUEST_TIMED_OUT,
                       A1: ErrorCode.NOT_LEADER_OR_FOLLOWER, unknown: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert local.calls == []


async def test_a_marker_from_a_coordinator_epoch_no_coordinator_had_is_refused() -> None:
    import uuid
    from types import SimpleNamespace

    from kbroker.codec.frames import decode_request, encode_request
    from kbroker.handlers import write_txn_markers
    from kbroker.handlers.api import RequestContext, Session
    from kbroker.metadata.model import PartitionInfo, TopicInfo

    state = TopicInfo("__transaction_state", uuid.uuid4(), {
        0: PartitionInfo("__transaction_state", 0, 1, 4, [1, 2], [1, 2]),
        1: PartitionInfo("__transaction_state", 1, 2, 9, [2, 1], [2, 1])}, internal=True)
    written: list[TxnMarker] = []

    async def write(markers: Sequence[TxnMarker]) -> MarkerResults:
        written.extend(markers)
        return [dict.fromkeys(m.partitions, ErrorCode.NONE) for m in markers]

    broker = SimpleNamespace(authorizer=None, transactions=SimpleNamespace(clustered=True),
                             metadata=SimpleNamespace(topic={"__transaction_state": state}.get),
                             replica_manager=SimpleNamespace(write_txn_markers=write),
                             groups=SimpleNamespace(on_transaction_completed=lambda *a: None))

    def marker(producer_id: int, coordinator_epoch: int) -> dict[str, object]:
        return {"producer_id": producer_id, "producer_epoch": 0, "transaction_result": True,
                "coordinator_epoch": coordinator_epoch, "topics": [{"name": "a", "partition_indexes": [0]}]}

    request = decode_request(encode_request(27, 1, 1, {"markers": [marker(5, 9), marker(6, 10),
                                                                  marker(7, 2**31 - 1)]})[4:])
    out = await write_txn_markers.handle(RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1), request))
    codes = {m["producer_id"]: m["topics"][0]["partitions"][0]["error_code"] for m in out["markers"]}
    # Epoch 9 is __transaction_state-1's: written. Above every leader epoch known: refused, retriable.
    assert codes == {5: ErrorCode.NONE, 6: ErrorCode.REQUEST_TIMED_OUT, 7: ErrorCode.REQUEST_TIMED_OUT}
    assert [m.producer_id for m in written] == [5]
