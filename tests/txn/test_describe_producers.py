"""DescribeProducers (key 61): the idempotent producer state of a partition, over the raw wire."""

from __future__ import annotations

from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic, produce_one

from .helpers import pbatch

DESCRIBE_PRODUCERS = 61



def describe(wire: WireClient, topics: dict[str, list[int]]) -> Any:
    body = {"topics": [{"name": n, "partition_indexes": p} for n, p in topics.items()]}
    return wire.call(DESCRIBE_PRODUCERS, 0, body)


def _pid(wire: WireClient) -> int:
    answer = wire.call(22, 4, {"transactional_id": None, "transaction_timeout_ms": -1, "producer_id": -1,
                                "producer_epoch": -1})
    assert answer.error_code == 0
    return int(answer.producer_id)


def test_active_producers_of_a_partition(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    first, second = _pid(wire), _pid(wire)
    assert produce_one(wire, "t", 0, pbatch(first, 0, 0, 3)).error_code == 0
    assert produce_one(wire, "t", 0, pbatch(second, 0, 0, 1)).error_code == 0
    assert produce_one(wire, "t", 0, pbatch(first, 0, 3, 2)).error_code == 0
    resp = describe(wire, {"t": [0]})
    [topic] = resp.topics
    [part] = topic.partitions
    assert (topic.name, part.partition_index, part.error_code, part.error_message) == ("t", 0, 0, None)
    states = {p.producer_id: p for p in part.active_producers}
    assert sorted(states) == sorted([first, second])
    assert (states[first].producer_epoch, states[first].last_sequence) == (0, 4)
    assert (states[second].producer_epoch, states[second].last_sequence) == (0, 0)
    for p in part.active_producers:
        assert p.last_timestamp > 0 and (p.coordinator_epoch, p.current_txn_start_offset) == (-1, -1)


def test_no_producers_and_unknown_partitions(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    resp = describe(wire, {"t": [0, 7], "missing": [0]})
    got = [(t.name, [(p.partition_index, p.error_code, len(p.active_producers)) for p in t.partitions])
           for t in resp.topics]
    assert got == [("t", [(0, ErrorCode.NONE, 0), (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, 0)]),
                   ("missing", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, 0)])]
