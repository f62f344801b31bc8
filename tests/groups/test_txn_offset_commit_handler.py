"""The TxnOffsetCommit handler against small stand-ins for the broker's services."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from kbroker.clock import ManualClock
from kbroker.codec import decode_request, encode_request
from kbroker.common import TopicPartition
from kbroker.groups import Errors, GroupConfig, GroupCoordinator
from kbroker.groups.storage import CONSUMER_OFFSETS, MemoryOffsetsLog
from kbroker.handlers import txn_offset_commit
from kbroker.handlers.api import RequestContext, Session
from kbroker.metadata.model import PartitionInfo, TopicInfo

from .helpers import coordinator

pytestmark = pytest.mark.anyio


class _Transactions:
    def __init__(self, error: Errors) -> None:
        self.error = error
        self.calls: list[tuple[str, int, int, list[TopicPartition]]] = []
        self.remote_verify = None  # a single broker: its own coordinator answers

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: list[TopicPartition]) -> dict[TopicPartition, Errors]:
        self.calls.append((transactional_id, producer_id, producer_epoch, list(partitions)))
        return dict.fromkeys(partitions, self.error)


def _services(groups: GroupCoordinator, *, verify_error: Errors = Errors.NONE, ongoing: bool = False,
              verification: bool = True) -> Any:
    topic = TopicInfo("t", uuid.uuid4(), {0: PartitionInfo("t", 0, 1, 0, [1], [1])})
    return SimpleNamespace(
        authorizer=None,
        clock=ManualClock(), groups=groups, transactions=_Transactions(verify_error),
        config=SimpleNamespace(get=lambda key: verification if key == txn_offset_commit.VERIFICATION_ENABLE else None),
        metadata=SimpleNamespace(topic=lambda name: topic if name == "t" else None),
        replica_manager=SimpleNamespace(has_ongoing_transaction=lambda tp, pid, epoch=None: ongoing))


async def _call(services: Any, version: int, partitions: list[tuple[str, int]], group: str = "g") -> dict[Any, int]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for t, p in partitions:
        topics.setdefault(t, []).append({"partition_index": p, "committed_offset": 7, "committed_metadata": None})
    body = {"transactional_id": "tx", "group_id": group, "producer_id": 5, "producer_epoch": 1,
            "generation_id": -1, "member_id": "", "group_instance_id": None,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]}
    request = decode_request(encode_request(txn_offset_commit.API_KEY, version, 1, body)[4:])
    ctx = RequestContext(services, Session("PLAINTEXT", "127.0.0.1", 1), request)
    out = await txn_offset_commit.handle(ctx)
    return {(t["name"], p["partition_index"]): p["error_code"] for t in out["topics"] for p in t["partitions"]}


def _loading() -> GroupCoordinator:
    """A coordinator not started yet: its groups are still loading."""
    return GroupCoordinator(GroupConfig(), ManualClock(), MemoryOffsetsLog(5))


@pytest.mark.parametrize(("version", "expected"), [(0, Errors.COORDINATOR_NOT_AVAILABLE),
                                                   (1, Errors.COORDINATOR_NOT_AVAILABLE),
                                                   (2, Errors.COORDINATOR_LOAD_IN_PROGRESS),
                                                   (5, Errors.COORDINATOR_LOAD_IN_PROGRESS)])
async def test_loading_coordinator_answer_by_version(version: int, expected: Errors) -> None:
    services = _services(_loading())
    assert await _call(services, version, [("t", 0), ("x", 0)]) == {("t", 0): expected,
                                                              ("x", 0): Errors.UNKNOWN_TOPIC_OR_PARTITION}


async def test_verifies_the_groups_offsets_partition() -> None:
    async with coordinator() as h:
        coord = h.coord
        services = _services(coord)
        assert await _call(services, 3, [("t", 0)]) == {("t", 0): Errors.NONE}
        assert services.transactions.calls == [
            ("tx", 5, 1, [TopicPartition(CONSUMER_OFFSETS, coord.partition_for("g"))])]
        assert coord.manager.pending_partitions("g") == {TopicPartition("t", 0)}


@pytest.mark.parametrize("kw", [{"ongoing": True}, {"verification": False}])
async def test_no_verification_with_a_transaction_open_in_the_partition_or_when_disabled(kw: dict[str, bool]) -> None:
    async with coordinator() as h:
        services = _services(h.coord, verify_error=Errors.TRANSACTION_ABORTABLE, **kw)
        assert await _call(services, 4, [("t", 0)]) == {("t", 0): Errors.NONE}
        assert services.transactions.calls == []


async def test_failed_verification_writes_nothing() -> None:
    async with coordinator() as h:
        services = _services(h.coord, verify_error=Errors.PRODUCER_FENCED)
        assert await _call(services, 3, [("t", 0)]) == {("t", 0): Errors.INVALID_PRODUCER_EPOCH}
        assert not list(h.log.replay(h.coord.partition_for("g")))
        assert not h.coord.manager.has_open_transactions("g")


async def test_only_unknown_partitions_involve_no_coordinator() -> None:
    services = _services(_loading(), verify_error=Errors.PRODUCER_FENCED)
    assert await _call(services, 3, [("t", 3), ("x", 0)]) == {("t", 3): Errors.UNKNOWN_TOPIC_OR_PARTITION,
                                                        ("x", 0): Errors.UNKNOWN_TOPIC_OR_PARTITION}
    assert services.transactions.calls == []
    assert await _call(services, 3, [("t", 0)], group="") == {("t", 0): Errors.INVALID_GROUP_ID}
    assert services.transactions.calls == []
