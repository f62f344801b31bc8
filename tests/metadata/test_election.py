"""Kafka's partition change rules (PartitionChangeBuilder, ReplicationControlManager), as pure functions."""

from __future__ import annotations

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.metadata import election
from kbroker.metadata.cluster_state import NO_LEADER
from kbroker.metadata.election import Election, ElectionType, PartitionChangeError
from kbroker.metadata.model import PartitionInfo


def p(replicas: list[int], leader: int, isr: list[int], *, adding: list[int] | None = None,
      removing: list[int] | None = None, leader_epoch: int = 5, partition_epoch: int = 9) -> PartitionInfo:
    return PartitionInfo("t", 0, leader, leader_epoch, replicas, isr, partition_epoch=partition_epoch,
                         adding_replicas=adding or [], removing_replicas=removing or [])


def live(*ids: int) -> election.Acceptable:
    return lambda b: b in ids


def shape(info: PartitionInfo | None) -> tuple[object, ...] | None:
    if info is None:
        return None
    return (info.leader, info.isr, info.replicas, info.leader_epoch, info.partition_epoch,
            info.adding_replicas, info.removing_replicas)


# ------------------------------------------------------------------ elections

def test_no_change_is_none() -> None:
    assert election.build_change(p([1, 2, 3], 1, [1, 2, 3]), live(1, 2, 3)) is None
    assert election.reconcile(p([1, 2, 3], 2, [1, 2, 3]), live(1, 2, 3)) is None  # a valid leader stays


def test_online_election_takes_the_first_live_isr_member_in_replica_order() -> None:
    got = election.build_change(p([3, 1, 2], NO_LEADER, [2, 1]), live(1, 2))
    assert shape(got) == (1, [2, 1], [3, 1, 2], 6, 10, [], [])


def test_preferred_election_moves_to_the_first_replica_only_when_valid() -> None:
    got = election.build_change(p([1, 2], 2, [1, 2]), live(1, 2), election=Election.PREFERRED)
    assert shape(got) == (1, [1, 2], [1, 2], 6, 10, [], [])
    # Preferred out of the ISR, or not acceptable: the current leader stays, nothing changes.
    assert election.build_change(p([1, 2], 2, [2]), live(1, 2), election=Election.PREFERRED) is None
    assert election.build_change(p([1, 2], 2, [1, 2]), live(2), election=Election.PREFERRED) is None
    # No valid current leader: the next valid replica.
    got = election.build_change(p([1, 2, 3], NO_LEADER, [1, 3]), live(2, 3), election=Election.PREFERRED)
    assert got is not None and got.leader == 3


def test_unclean_election_only_when_no_isr_member_can_lead() -> None:
    clean = election.build_change(p([1, 2, 3], NO_LEADER, [1, 3]), live(2, 3), election=Election.UNCLEAN)
    assert shape(clean) == (3, [1, 3], [1, 2, 3], 6, 10, [], [])
    dirty = election.build_change(p([1, 2, 3], NO_LEADER, [1]), live(3, 2), election=Election.UNCLEAN)
    assert shape(dirty) == (2, [2], [1, 2, 3], 6, 10, [], [])
    # Nobody alive at all: stays offline, nothing written.
    assert election.build_change(p([1, 2], NO_LEADER, [1]), live(), election=Election.UNCLEAN) is None
    # A non-replica broker never leads.
    assert election.build_change(p([1, 2], NO_LEADER, [1]), live(7), election=Election.UNCLEAN) is None


def test_remove_broker_and_the_last_isr_rule() -> None:
    got = election.remove_broker(p([1, 2, 3], 1, [1, 2, 3]), 1, live(1, 2, 3))
    assert shape(got) == (2, [2, 3], [1, 2, 3], 6, 10, [], [])
    # Not the leader: out of the ISR only, the leader epoch stays.
    got = election.remove_broker(p([1, 2, 3], 1, [1, 2, 3]), 3, live(1, 2, 3))
    assert shape(got) == (1, [1, 2], [1, 2, 3], 5, 10, [], [])
    # The last ISR member stays in the ISR, with no leader (clean election off).
    got = election.remove_broker(p([1, 2], 1, [1]), 1, live(1, 2))
    assert shape(got) == (NO_LEADER, [1], [1, 2], 6, 10, [], [])
    # Unclean: another live replica leads alone.
    got = election.remove_broker(p([1, 2], 1, [1]), 1, live(1, 2), unclean=True)
    assert shape(got) == (2, [2], [1, 2], 6, 10, [], [])
    # Not a member: nothing.
    assert election.remove_broker(p([1, 2], 1, [1, 2]), 4, live(1, 2)) is None
    # Already leaderless with the broker as the last member: nothing to write.
    assert election.remove_broker(p([1, 2], NO_LEADER, [1]), 1, live(2)) is None


def test_reconcile_follows_the_live_brokers() -> None:
    # Dead and shutting-down ISR members leave; the leader moves to the next live member.
    got = election.reconcile(p([1, 2, 3], 1, [1, 2, 3]), live(3))
    assert shape(got) == (3, [3], [1, 2, 3], 6, 10, [], [])
    # The last member back: it leads again.
    got = election.reconcile(p([1, 2], NO_LEADER, [1]), live(1, 2))
    assert shape(got) == (1, [1], [1, 2], 6, 10, [], [])
    # Out-of-sync replica alive, unclean off: still offline; on: it leads.
    assert election.reconcile(p([1, 2], NO_LEADER, [1]), live(2)) is None
    got = election.reconcile(p([1, 2], NO_LEADER, [1]), live(2), unclean=True)
    assert shape(got) == (2, [2], [1, 2], 6, 10, [], [])


# ------------------------------------------------------------------ reassignments

def test_reassignment_completes_once_every_adding_replica_is_in_sync() -> None:
    ongoing = p([2, 3, 4, 1], 1, [1, 2, 3], adding=[4], removing=[1])
    assert election.reconcile(ongoing, live(1, 2, 3, 4)) is None
    joined = p([2, 3, 4, 1], 1, [1, 2, 3, 4], adding=[4], removing=[1])
    got = election.reconcile(joined, live(1, 2, 3, 4))
    assert shape(got) == (2, [2, 3, 4], [2, 3, 4], 6, 10, [], [])
    # The leader is not removed: it stays, but the epoch is bumped since a replica left.
    kept = p([1, 3, 4, 2], 1, [1, 2, 3, 4], adding=[4], removing=[2])
    got = election.reconcile(kept, live(1, 2, 3, 4))
    assert shape(got) == (1, [1, 3, 4], [1, 3, 4], 6, 10, [], [])
    # Only additions: replicas unchanged, no leader epoch bump.
    grow = p([1, 2, 3], 1, [1, 2, 3], adding=[3])
    assert shape(election.reconcile(grow, live(1, 2, 3))) == (1, [1, 2, 3], [1, 2, 3], 5, 10, [], [])


def test_reassign_sets_adding_and_removing() -> None:
    base = p([1, 2, 3], 1, [1, 2, 3])
    got = election.reassign(base, [2, 3, 4], live(1, 2, 3, 4))
    assert shape(got) == (1, [1, 2, 3], [2, 3, 4, 1], 5, 10, [4], [1])
    # A reorder completes at once; the same list changes nothing.
    assert shape(election.reassign(base, [3, 1, 2], live(1, 2, 3))) == (1, [1, 2, 3], [3, 1, 2], 5, 10, [], [])
    assert election.reassign(base, [1, 2, 3], live(1, 2, 3)) is None
    # A pure removal completes at once, moving leadership off a removed leader.
    assert shape(election.reassign(base, [3, 2], live(1, 2, 3))) == (3, [2, 3], [3, 2], 6, 10, [], [])
    # On top of an ongoing one, as Kafka: current = the replicas (adding ones included).
    ongoing = election.reassign(base, [2, 3, 4], live(1, 2, 3, 4))
    assert ongoing is not None
    again = election.reassign(ongoing, [2, 3, 5], live(1, 2, 3, 4, 5))
    assert shape(again) == (1, [1, 2, 3], [2, 3, 5, 4, 1], 5, 11, [5], [4, 1])


def test_cancel_reassignment() -> None:
    ongoing = p([2, 3, 4, 1], 1, [1, 2, 3, 4], adding=[4], removing=[1])
    got = election.cancel_reassignment(ongoing, live(1, 2, 3, 4), unclean=False)
    assert shape(got) == (1, [1, 2, 3], [2, 3, 1], 6, 10, [], [])
    with pytest.raises(PartitionChangeError) as e:
        election.cancel_reassignment(p([1, 2], 1, [1, 2]), live(1, 2), unclean=False)
    assert e.value.code == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    only_new = p([3, 1], 3, [3], adding=[3], removing=[1])
    with pytest.raises(PartitionChangeError) as e:
        election.cancel_reassignment(only_new, live(1, 3), unclean=False)
    assert e.value.code == ErrorCode.INVALID_REPLICA_ASSIGNMENT and "unclean leader election" in e.value.message
    got = election.cancel_reassignment(only_new, live(1, 3), unclean=True)
    assert shape(got) == (1, [1], [1], 6, 10, [], [])


def test_validate_assignment_and_replication_factor() -> None:
    election.validate_assignment([3, 1], {1, 2, 3})
    for target, message in [([], "empty replica list"), ([1, 9], "broker 9, but no such broker is registered"),
                            ([2, 1, 2], "the broker 2 more than once")]:
        with pytest.raises(PartitionChangeError, match=message) as e:
            election.validate_assignment(target, {1, 2, 3})
        assert e.value.code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert election.replication_factor(p([1, 2, 3], 1, [1])) == 3
    assert election.replication_factor(p([2, 3, 4, 1], 1, [1], adding=[4], removing=[1])) == 3


# ------------------------------------------------------------------ ElectLeaders

def test_elect_for_request() -> None:
    ok = live(1, 2, 3)
    assert election.elect_for_request(p([1, 2], 1, [1, 2]), ElectionType.PREFERRED, ok) == (
        ErrorCode.ELECTION_NOT_NEEDED, None)
    code, new = election.elect_for_request(p([1, 2], 2, [1, 2]), ElectionType.PREFERRED, ok)
    assert code == ErrorCode.NONE and new is not None and new.leader == 1
    assert election.elect_for_request(p([1, 2], 2, [2]), ElectionType.PREFERRED, ok) == (
        ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, None)
    assert election.elect_for_request(p([1, 2], 2, [1, 2]), ElectionType.UNCLEAN, ok) == (
        ErrorCode.ELECTION_NOT_NEEDED, None)
    code, new = election.elect_for_request(p([1, 2], NO_LEADER, [1]), ElectionType.UNCLEAN, live(2))
    assert code == ErrorCode.NONE and new is not None and (new.leader, new.isr) == (2, [2])
    assert election.elect_for_request(p([1, 2], NO_LEADER, [1]), ElectionType.UNCLEAN, live(5)) == (
        ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, None)


def test_unclean_allowed_and_imbalance() -> None:
    assert election.unclean_allowed({}, True) and not election.unclean_allowed({}, False)
    assert election.unclean_allowed({"unclean.leader.election.enable": "TRUE"}, False)
    assert not election.unclean_allowed({"unclean.leader.election.enable": "false"}, True)
    assert election.is_imbalanced(p([1, 2], 2, [1, 2])) and not election.is_imbalanced(p([1, 2], 1, [1, 2]))
    assert not election.is_imbalanced(p([], NO_LEADER, []))
