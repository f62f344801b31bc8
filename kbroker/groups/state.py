"""Group states and the one table of legal transitions between them (as Kafka's GroupState)."""

from __future__ import annotations

from enum import Enum


class GroupState(Enum):
    """A classic group's state; the value is the name clients see in Describe/ListGroups."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


#: For each state, the states a group may enter it from.
VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    # Members join (from scratch or by rejoining after a change) ...
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}),
    # ... the join barrier completes with members: waiting for the leader's assignment ...
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    # ... the leader's SyncGroup delivered the assignment.
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    # The join barrier completed with nobody left.
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    # Deleted or expired; any state may be torn down.
    GroupState.DEAD: frozenset(GroupState),
}

#: States from which a join or a member change starts a rebalance.
CAN_REBALANCE = frozenset({GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY})


class IllegalStateTransition(RuntimeError):
    """A transition the table does not allow; a coordinator bug, never a client error."""


def check_transition(current: GroupState, target: GroupState) -> None:
    """Raise :class:`IllegalStateTransition` unless ``current -> target`` is legal."""
    if current not in VALID_PREVIOUS[target]:
        raise IllegalStateTransition(f"cannot go from {current.value} to {target.value}")


def parse_state(name: str) -> GroupState | None:
    """The state named ``name`` (case-insensitive), or None."""
    lowered = name.lower()
    for s in GroupState:
        if s.value.lower() == lowered:
            return s
    return None
