"""FindCoordinator in a cluster: the leader of the key's internal partition, on the request's listener."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kbroker.clock import ManualClock
from kbroker.codec import decode_request, decode_response, encode_request, encode_response
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.groups import GroupCoordinator
from kbroker.groups.storage import CONSUMER_OFFSETS, MemoryOffsetsLog
from kbroker.handlers import find_coordinator
from kbroker.handlers.api import RequestContext, Session
from kbroker.metadata.model import PartitionInfo
from kbroker.txn.coordinator import TransactionCoordinator
from kbroker.txn.log import TRANSACTION_STATE, MemoryTransactionLog
from kbroker.txn.producer_ids import ProducerIdManager

from .helpers import CONFIG

API = 10
NOT_AVAILABLE, INVALID_REQUEST = 15, 42


class FakeClusterView:
    """The two metadata methods the cluster path reads."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionInfo] = {}
        #: (node, listener) -> endpoint
        self.endpoints: dict[tuple[int, str], tuple[str, int]] = {}
        self.asked: list[tuple[int, str]] = []

    def partition(self, topic: str, partition: int) -> PartitionInfo | None:
        return self.partitions.get((topic, partition))

    def broker_endpoint(self, node_id: int, listener: str) -> tuple[str, int] | None:
        self.asked.append((node_id, listener))
        return self.endpoints.get((node_id, listener))


def broker(tmp_path: Path, *, clustered: bool, offsets_exist: bool = True) -> Any:
    offsets = MemoryOffsetsLog(4)
    if not offsets_exist:
        offsets.ensure = lambda: False  # type: ignore[method-assign]  # creation under way elsewhere
    groups = GroupCoordinator(CONFIG, ManualClock(), offsets, node_id=1, clustered=clustered)
    txns = TransactionCoordinator(ConfigHolder(BrokerConfig({})), ManualClock(), ProducerIdManager(tmp_path),
                                  MemoryTransactionLog(3), None,  # type: ignore[arg-type]
                                  offsets_partition=groups.partition_for, partition_exists=lambda tp: True,
                                  node_id=1, clustered=clustered)
    return SimpleNamespace(authorizer=None, node_id=1, endpoints={"PLAINTEXT": ("127.0.0.1", 9092)},
                           groups=groups, transactions=txns, metadata=FakeClusterView())


def call(b: Any, version: int, body: dict[str, Any], listener: str = "PLAINTEXT") -> Any:
    request = decode_request(encode_request(API, version, 1, body)[4:])
    ctx = RequestContext(b, Session(listener, "127.0.0.1", 1), request)
    out = asyncio.run(find_coordinator.handle(ctx))
    _, resp = decode_response(API, version, encode_response(API, version, 1, out)[4:])
    return resp


def lead(b: Any, topic: str, partition: int, leader: int) -> None:
    b.metadata.partitions[(topic, partition)] = PartitionInfo(topic, partition, leader, 3, [1, 2, 3], [1, 2, 3])


def test_group_coordinator_is_the_partition_leader(tmp_path: Path) -> None:
    b = broker(tmp_path, clustered=True)
    p = b.groups.partition_for("g")
    lead(b, CONSUMER_OFFSETS, p, 2)
    b.metadata.endpoints[(2, "INTERNAL")] = ("10.0.0.2", 19092)
    b.metadata.endpoints[(2, "PLAINTEXT")] = ("host-2", 9093)
    resp = call(b, 3, {"key": "g", "key_type": 0})
    assert (resp.error_code, resp.node_id, resp.host, resp.port) == (0, 2, "host-2", 9093)
    assert b.metadata.asked == [(2, "PLAINTEXT")]  # the listener the request came in on


def test_batched_keys_each_get_their_partitions_leader(tmp_path: Path) -> None:
    b = broker(tmp_path, clustered=True)
    keys = [f"tx-{i}" for i in range(12)]
    for p in range(3):
        lead(b, TRANSACTION_STATE, p, p + 1)
        b.metadata.endpoints[(p + 1, "PLAINTEXT")] = (f"h{p + 1}", 9000 + p + 1)
    resp = call(b, 4, {"key_type": 1, "coordinator_keys": keys})
    for c in resp.coordinators:
        leader = b.transactions.partition_for(c.key) + 1
        assert (c.error_code, c.node_id, c.host, c.port) == (0, leader, f"h{leader}", 9000 + leader)
    assert len({c.node_id for c in resp.coordinators}) > 1


@pytest.mark.parametrize("case", ["no partition", "no leader", "no endpoint", "topic not created"])
def test_coordinator_not_available(tmp_path: Path, case: str) -> None:
    b = broker(tmp_path, clustered=True, offsets_exist=case != "topic not created")
    p = b.groups.partition_for("g")
    if case != "no partition":
        lead(b, CONSUMER_OFFSETS, p, -1 if case == "no leader" else 2)
    if case != "no endpoint":
        b.metadata.endpoints[(2, "PLAINTEXT")] = ("h2", 1)
    for version in (3, 4):
        body = {"key": "g", "key_type": 0} if version < 4 else {"key_type": 0, "coordinator_keys": ["g"]}
        resp = call(b, version, body)
        entry = resp if version < 4 else resp.coordinators[0]
        assert (entry.error_code, entry.node_id, entry.host, entry.port) == (NOT_AVAILABLE, -1, "", -1)


def test_single_broker_answers_itself(tmp_path: Path) -> None:
    b = broker(tmp_path, clustered=False)
    resp = call(b, 4, {"key_type": 0, "coordinator_keys": ["a", "b"]})
    assert [(c.error_code, c.node_id, c.host, c.port) for c in resp.coordinators] == [
        (0, 1, "127.0.0.1", 9092)] * 2
    assert b.metadata.asked == []  # the cluster view is not consulted
    assert call(b, 3, {"key": "x", "key_type": 7}).error_code == INVALID_REQUEST
