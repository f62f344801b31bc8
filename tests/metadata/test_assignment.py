"""Replica placement, checked against the examples of Kafka's own tests."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.metadata.assignment import AssignmentError, assign_replicas, rack_alternated_brokers


def test_rack_unaware_matches_kafka_example() -> None:
    got = assign_replicas({b: None for b in range(5)}, 10, 3, fixed_start_index=0)
    assert got == {0: [0, 1, 2], 1: [1, 2, 3], 2: [2, 3, 4], 3: [3, 4, 0], 4: [4, 0, 1],
                   5: [0, 2, 3], 6: [1, 3, 4], 7: [2, 4, 0], 8: [3, 0, 1], 9: [4, 1, 2]}


def test_rack_alternated_broker_list() -> None:
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert rack_alternated_brokers(racks) == [0, 3, 1, 5, 4, 2]


def test_rack_aware_matches_kafka_example() -> None:
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    got = assign_replicas(racks, 7, 3, fixed_start_index=0)
    assert got == {0: [0, 3, 1], 1: [3, 1, 5], 2: [1, 5, 4], 3: [5, 4, 2], 4: [4, 2, 0], 5: [2, 0, 3],
                   6: [0, 4, 2]}


def test_rack_aware_spreads_replicas_over_racks() -> None:
    racks = {0: "a", 1: "a", 2: "b", 3: "b", 4: "c", 5: "c"}
    got = assign_replicas(racks, 60, 3, rng=random.Random(7))
    for replicas in got.values():
        assert len({racks[b] for b in replicas}) == 3
    leaders = Counter(r[0] for r in got.values())
    assert set(leaders.values()) == {10}


def test_random_start_keeps_replicas_distinct_and_balanced() -> None:
    got = assign_replicas({b: None for b in (3, 7, 9)}, 30, 2, rng=random.Random(1))
    assert all(len(set(r)) == 2 for r in got.values())
    assert set(Counter(r[0] for r in got.values()).values()) == {10}
    assert set(Counter(b for r in got.values() for b in r).values()) == {20}


def test_start_partition_numbers_new_partitions() -> None:
    got = assign_replicas({b: None for b in range(3)}, 2, 1, fixed_start_index=0, start_partition=4)
    assert sorted(got) == [4, 5]


@pytest.mark.parametrize("rf", [0, -1, 4])
def test_bad_replication_factor(rf: int) -> None:
    with pytest.raises(AssignmentError) as e:
        assign_replicas({b: None for b in range(3)}, 1, rf)
    assert e.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


def test_some_brokers_without_rack_refused() -> None:
    with pytest.raises(AssignmentError, match="rack information"):
        assign_replicas({0: "a", 1: None}, 1, 1)
