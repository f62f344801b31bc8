"""Replica placement of new partitions: Kafka's ``AdminUtils.assignReplicasToBrokers``.

Two goals, as Kafka states them: spread replicas evenly among brokers, and for each
partition put its replicas on different brokers (and, when brokers have racks, on as
many racks as possible). The first replica of each partition is placed round robin
from a random start; the others are shifted from it by an amount that grows every
time the partitions wrap around the broker list, so that followers spread too.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from kbroker.codec.error_codes import ErrorCode

__all__ = ["AssignmentError", "assign_replicas", "rack_alternated_brokers"]


class AssignmentError(Exception):
    """The placement is impossible; ``code`` is the Kafka error to answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def assign_replicas(brokers: Mapping[int, str | None], partitions: int, replication_factor: int, *,
                    fixed_start_index: int = -1, start_partition: int = -1,
                    rng: random.Random | None = None) -> dict[int, list[int]]:
    """Replica lists of ``partitions`` partitions numbered from ``start_partition`` (0 when negative).

    ``brokers`` maps each eligible broker id to its rack (None: no rack). Rack-aware
    placement runs when every broker has a rack; when only some have one, Kafka refuses.
    ``fixed_start_index`` (when >= 0) replaces the random start and shift, for tests.
    """
    if replication_factor <= 0:
        raise AssignmentError(ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0.")
    if replication_factor > len(brokers):
        raise AssignmentError(ErrorCode.INVALID_REPLICATION_FACTOR,
                              f"Replication factor: {replication_factor} larger than available brokers: "
                              f"{len(brokers)}.")
    rng = rng or random.Random()
    with_rack = sum(1 for rack in brokers.values() if rack is not None)
    if with_rack == 0:
        return _rack_unaware(partitions, replication_factor, sorted(brokers), fixed_start_index, start_partition, rng)
    if with_rack < len(brokers):
        raise AssignmentError(ErrorCode.INVALID_REPLICATION_FACTOR,
                              "Not all brokers have rack information for replica rack aware assignment.")
    racks = {b: str(r) for b, r in brokers.items()}
    return _rack_aware(partitions, replication_factor, racks, fixed_start_index, start_partition, rng)


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    """The broker index of follower ``j``: shifted by 1..n-1 from the first replica, never onto it."""
    return (first + 1 + (shift + j) % (n - 1)) % n


def _rack_unaware(partitions: int, rf: int, brokers: list[int], fixed: int, start_partition: int,
                  rng: random.Random) -> dict[int, list[int]]:
    n = len(brokers)
    start = fixed if fixed >= 0 else rng.randrange(n)
    shift = fixed if fixed >= 0 else rng.randrange(n)
    current = max(0, start_partition)
    out: dict[int, list[int]] = {}
    for _ in range(partitions):
        if current > 0 and current % n == 0:
            shift += 1
        first = (current + start) % n
        out[current] = [brokers[first]] + [brokers[_replica_index(first, shift, j, n)] for j in range(rf - 1)]
        current += 1
    return out


def rack_alternated_brokers(racks: Mapping[int, str]) -> list[int]:
    """Brokers ordered rack by rack in turn (racks and brokers sorted): ``{0: a, 1: b, 2: a}`` → ``[0, 1, 2]``."""
    by_rack: dict[str, list[int]] = {}
    for broker in sorted(racks):
        by_rack.setdefault(racks[broker], []).append(broker)
    iterators = [iter(by_rack[r]) for r in sorted(by_rack)]
    out: list[int] = []
    index = 0
    while len(out) < len(racks):
        found = next(iterators[index], None)
        if found is not None:
            out.append(found)
        index = (index + 1) % len(iterators)
    return out


def _rack_aware(partitions: int, rf: int, racks: Mapping[int, str], fixed: int, start_partition: int,
                rng: random.Random) -> dict[int, list[int]]:
    arranged = rack_alternated_brokers(racks)
    n = len(arranged)
    num_racks = len(set(racks.values()))
    start = fixed if fixed >= 0 else rng.randrange(n)
    shift = fixed if fixed >= 0 else rng.randrange(n)
    current = max(0, start_partition)
    out: dict[int, list[int]] = {}
    for _ in range(partitions):
        if current > 0 and current % n == 0:
            shift += 1
        first = (current + start) % n
        leader = arranged[first]
        replicas = [leader]
        racks_used = {racks[leader]}
        brokers_used = {leader}
        k = 0
        for _j in range(rf - 1):
            while True:
                broker = arranged[_replica_index(first, shift * num_racks, k, n)]
                rack = racks[broker]
                k += 1
                # Skip a broker whose rack already has a replica while some rack has none,
                # or one that has a replica while some broker has none.
                if ((rack not in racks_used or len(racks_used) == num_racks)
                        and (broker not in brokers_used or len(brokers_used) == n)):
                    replicas.append(broker)
                    racks_used.add(rack)
                    brokers_used.add(broker)
                    break
        out[current] = replicas
        current += 1
    return out
