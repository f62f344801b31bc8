"""Partition state changes and leader elections, as pure functions (Kafka's ``PartitionChangeBuilder``).

Every function takes a partition's current :class:`PartitionInfo` and returns its next state
(None when nothing changes), following the rules of Kafka's KRaft controller:

- A new leader comes from the target ISR, in replica order (the first replica is the
  preferred one), and must be *acceptable*: a registered broker that is not shutting down.
  A current leader that is still valid stays (except for a preferred election, which moves
  leadership to the first replica when it is valid).
- An unclean election (topic config ``unclean.leader.election.enable``, else the broker's)
  falls back to any acceptable replica when no ISR member can lead; the ISR becomes that
  leader alone.
- The ISR never becomes empty: removing its last member leaves it as it is and the partition
  without a leader, so that this replica can lead again when its broker comes back.
- A reassignment completes when every adding replica is in the ISR: the replicas become the
  target, the removed replicas leave the ISR, and the leader is re-elected if it was removed.
- Every change bumps ``partition_epoch``; a change of leader bumps ``leader_epoch``, and so does
  a change of replicas that drops one of them (Kafka's reassignment epoch bump).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Mapping, Sequence

from kbroker.codec.error_codes import ErrorCode
from kbroker.metadata.cluster_state import NO_LEADER
from kbroker.metadata.model import PartitionInfo

__all__ = [
    "Election",
    "ElectionType",
    "PartitionChangeError",
    "build_change",
    "cancel_reassignment",
    "elect_for_request",
    "is_imbalanced",
    "reassign",
    "reassignment_in_progress",
    "reconcile",
    "remove_broker",
    "replication_factor",
    "unclean_allowed",
    "validate_assignment",
]

#: Whether a broker may lead now (registered and not shutting down).
Acceptable = Callable[[int], bool]


class Election(enum.Enum):
    """How a leader is chosen (Kafka's ``PartitionChangeBuilder.Election``)."""

    #: Only ISR members; the current leader stays while it is valid.
    ONLINE = "online"
    #: The first replica when it is in the ISR and acceptable, else as ONLINE.
    PREFERRED = "preferred"
    #: As ONLINE, then any acceptable replica (the ISR becomes that leader alone).
    UNCLEAN = "unclean"


class ElectionType(enum.IntEnum):
    """ElectLeaders' ``election_type`` values."""

    PREFERRED = 0
    UNCLEAN = 1


def unclean_allowed(topic_configs: Mapping[str, str], broker_default: bool) -> bool:
    """The effective ``unclean.leader.election.enable`` of a topic."""
    value = topic_configs.get("unclean.leader.election.enable")
    if value is None:
        return broker_default
    return value.strip().lower() == "true"


def _elect(info: PartitionInfo, replicas: Sequence[int], isr: Sequence[int], acceptable: Acceptable,
           election: Election) -> tuple[int, bool]:
    """``(leader, unclean)``: the leader the rules choose (NO_LEADER when none can lead)."""

    def valid(replica: int) -> bool:
        return replica in isr and acceptable(replica)

    if election is Election.PREFERRED and replicas and valid(replicas[0]):
        return replicas[0], False
    if info.leader != NO_LEADER and valid(info.leader):
        return info.leader, False
    for replica in replicas:
        if valid(replica):
            return replica, False
    if election is Election.UNCLEAN:
        for replica in replicas:
            if acceptable(replica):
                return replica, True
    return NO_LEADER, False


def _complete_reassignment(replicas: list[int], isr: list[int], adding: list[int],
                           removing: list[int]) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """``(replicas, isr, adding, removing)`` of a finished reassignment; None while adding
    replicas are still out of the ISR (Kafka's ``PartitionReassignmentReplicas.maybeCompleteReassignment``)."""
    if not adding and not removing:
        return None
    new_isr = [r for r in isr if r not in removing]
    new_replicas = [r for r in replicas if r not in removing]
    if not new_isr or any(r not in new_isr for r in adding):
        return None
    return new_replicas, new_isr, [], []


def build_change(info: PartitionInfo, acceptable: Acceptable, *, election: Election = Election.ONLINE,
                 target_isr: Sequence[int] | None = None, target_replicas: Sequence[int] | None = None,
                 target_adding: Sequence[int] | None = None,
                 target_removing: Sequence[int] | None = None) -> PartitionInfo | None:
    """The partition's next state after the targets are applied, a finished reassignment is
    completed and a leader is (re-)elected; None when nothing changes."""
    replicas = list(info.replicas if target_replicas is None else target_replicas)
    isr = list(info.isr if target_isr is None else target_isr)
    adding = list(info.adding_replicas if target_adding is None else target_adding)
    removing = list(info.removing_replicas if target_removing is None else target_removing)

    completed = _complete_reassignment(replicas, isr, adding, removing)
    if completed is not None:
        replicas, isr, adding, removing = completed

    leader, unclean = _elect(info, replicas, isr, acceptable, election)
    if unclean:
        isr = [leader]
    elif not isr:
        isr = list(info.isr)  # the ISR never empties: its last member may come back as leader
    leader_changed = leader != info.leader
    # Kafka bumps the leader epoch when the replica set loses a member, so that a removed
    # replica's stale fetches are fenced even when the leader stays.
    replicas_shrunk = any(r not in replicas for r in info.replicas)
    if (not leader_changed and isr == info.isr and replicas == info.replicas
            and adding == info.adding_replicas and removing == info.removing_replicas):
        return None
    return dataclasses.replace(
        info, leader=leader, isr=isr, replicas=replicas, adding_replicas=adding, removing_replicas=removing,
        leader_epoch=info.leader_epoch + 1 if leader_changed or replicas_shrunk else info.leader_epoch,
        partition_epoch=info.partition_epoch + 1, offline_replicas=list(info.offline_replicas))


def reconcile(info: PartitionInfo, acceptable: Acceptable, *, unclean: bool = False) -> PartitionInfo | None:
    """What the controller makes of a partition given the live brokers: ISR members that cannot
    lead (gone or shutting down) leave the ISR, a leaderless partition gets an ISR leader (or an
    unclean one when ``unclean``), a finished reassignment completes."""
    return build_change(info, acceptable, election=Election.UNCLEAN if unclean else Election.ONLINE,
                        target_isr=[r for r in info.isr if acceptable(r)])


def remove_broker(info: PartitionInfo, broker: int, acceptable: Acceptable, *,
                  unclean: bool = False) -> PartitionInfo | None:
    """``broker`` fenced: out of the ISR (unless it is the last member) and no longer the leader."""

    def others(replica: int) -> bool:
        return replica != broker and acceptable(replica)

    return build_change(info, others, election=Election.UNCLEAN if unclean else Election.ONLINE,
                        target_isr=[r for r in info.isr if r != broker])


def elect_for_request(info: PartitionInfo, election_type: ElectionType,
                      acceptable: Acceptable) -> tuple[ErrorCode, PartitionInfo | None]:
    """ElectLeaders for one partition (Kafka's ``ReplicationControlManager.electLeader``):
    the error code and, on success, the new state to write (None: nothing to write)."""
    if election_type is ElectionType.PREFERRED:
        if info.replicas and info.leader == info.replicas[0]:
            return ErrorCode.ELECTION_NOT_NEEDED, None
        changed = build_change(info, acceptable, election=Election.PREFERRED)
        if changed is None:
            return ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, None
        return ErrorCode.NONE, changed
    if info.leader != NO_LEADER:
        return ErrorCode.ELECTION_NOT_NEEDED, None
    changed = build_change(info, acceptable, election=Election.UNCLEAN)
    if changed is None or changed.leader == NO_LEADER:
        return ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, None
    return ErrorCode.NONE, changed


class PartitionChangeError(Exception):
    """A requested change Kafka refuses: the error code and message to answer with."""

    def __init__(self, code: ErrorCode, message: str | None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def reassignment_in_progress(info: PartitionInfo) -> bool:
    """Whether the partition has adding or removing replicas."""
    return bool(info.adding_replicas or info.removing_replicas)


def replication_factor(info: PartitionInfo) -> int:
    """The replica count the partition is heading for (during a reassignment: its replicas
    and adding replicas, without the removing ones; Kafka's ``validatePartitionReplicationFactorUnchanged``)."""
    if not reassignment_in_progress(info):
        return len(info.replicas)
    heading = set(info.replicas) | set(info.adding_replicas)
    return len(heading - set(info.removing_replicas))


def validate_assignment(target: Sequence[int], registered: Collection[int]) -> None:
    """Kafka's ``validateManualPartitionAssignment``: not empty, every broker registered, no duplicate."""
    if not target:
        raise PartitionChangeError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                   "The manual partition assignment includes an empty replica list.")
    previous: int | None = None
    for broker in sorted(target):
        if broker not in registered:
            raise PartitionChangeError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                       f"The manual partition assignment includes broker {broker}, "
                                       "but no such broker is registered.")
        if broker == previous:
            raise PartitionChangeError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                       f"The manual partition assignment includes the broker {broker} more than once.")
        previous = broker


def reassign(info: PartitionInfo, target: Sequence[int], acceptable: Acceptable) -> PartitionInfo | None:
    """Start a reassignment to ``target`` (Kafka's ``changePartitionReassignment`` with
    ``PartitionReassignmentReplicas``): replicas = the target then the current replicas leaving
    it, adding = target - current, removing = current - target (an empty list keeps the ongoing
    one's). A reassignment that adds nothing completes at once."""
    current = list(info.replicas)
    removing = [r for r in current if r not in target]
    adding = [r for r in target if r not in current]
    replicas = list(target) + removing
    return build_change(info, acceptable, target_replicas=None if replicas == current else replicas,
                        target_adding=adding or None, target_removing=removing or None)


def cancel_reassignment(info: PartitionInfo, acceptable: Acceptable, *, unclean: bool) -> PartitionInfo | None:
    """Back to the replicas before the ongoing reassignment (Kafka's ``cancelPartitionReassignment``
    with ``PartitionReassignmentRevert``): the adding replicas leave the replicas and the ISR.
    When that would empty the ISR the revert needs an unclean election (``unclean``)."""
    if not reassignment_in_progress(info):
        # Kafka answers its generic message as none (ApiError.fromThrowable).
        raise PartitionChangeError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None)
    replicas = [r for r in info.replicas if r not in info.adding_replicas]
    isr = [r for r in info.isr if r not in info.adding_replicas]
    if not isr and not unclean:
        raise PartitionChangeError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                   f"Unable to revert partition assignment for {info.topic}:{info.index} "
                                   "because it would require an unclean leader election.")
    return build_change(info, acceptable, election=Election.UNCLEAN if unclean else Election.ONLINE,
                        target_isr=isr, target_replicas=replicas, target_adding=[], target_removing=[])


def is_imbalanced(info: PartitionInfo) -> bool:
    """Led by another broker than its preferred (first) replica."""
    return bool(info.replicas) and info.leader != info.replicas[0]
