"""Committed offsets: OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete and retention.

Kafka keeps offsets apart from the membership protocol (its OffsetMetadataManager).
:class:`OffsetsCoordinator` gets only what it uses: the :class:`GroupMetadataManager`
that stores groups and offsets, the settings, the timer scheduler, and callables for
what belongs to the membership side (whether the coordinator serves, keeping a
committing member's session alive, running a background step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from kbroker.groups.errors import Errors, GroupError
from kbroker.groups.group import GroupMetadata, TopicPartition
from kbroker.groups.manager import GroupMetadataManager
from kbroker.groups.member import MemberMetadata
from kbroker.groups.model import GroupConfig
from kbroker.groups.records import OffsetAndMetadata
from kbroker.groups.state import GroupState
from kbroker.groups.timers import Scheduler

log = logging.getLogger(__name__)

S = GroupState


def validate_commit(group: GroupMetadata, generation_id: int, member_id: str, instance_id: str | None,
                    transactional: bool = False) -> None:
    """Raise the error an offset commit by this caller gets (Kafka's ClassicGroup.validateOffsetCommit).

    A ``transactional`` commit (TxnOffsetCommit) without member and generation (v0-2) is
    accepted whatever the group's state, and one from a valid member is accepted during a
    rebalance too: Kafka does not enforce the group state on those.
    """
    if group.is_in(S.DEAD):
        raise GroupError(Errors.COORDINATOR_NOT_AVAILABLE)
    if generation_id < 0 and group.is_in(S.EMPTY):
        return  # admin client or a consumer without group management
    if generation_id >= 0 or member_id or instance_id is not None:
        # Kafka's ClassicGroup.validateMember: an instance id must be a known static member's.
        if instance_id is not None and group.static_member_id(instance_id) is None:
            raise GroupError(Errors.UNKNOWN_MEMBER_ID)
        if group.is_static_member_fenced(instance_id, member_id):
            raise GroupError(Errors.FENCED_INSTANCE_ID)
        if not group.has(member_id):
            raise GroupError(Errors.UNKNOWN_MEMBER_ID)
        if generation_id != group.generation_id:
            raise GroupError(Errors.ILLEGAL_GENERATION)
    elif not transactional and not group.is_in(S.EMPTY):
        raise GroupError(Errors.UNKNOWN_MEMBER_ID)
    if not transactional and group.is_in(S.COMPLETING_REBALANCE):
        # A valid member that has not synced yet: let it retry after the rebalance.
        raise GroupError(Errors.REBALANCE_IN_PROGRESS)


class OffsetsCoordinator:
    """Commits, fetches, deletes and expires the committed offsets of every group."""

    def __init__(self, manager: GroupMetadataManager, config: GroupConfig, timers: Scheduler, *,
                 check_active: Callable[[str], None],
                 touch_member: Callable[[GroupMetadata, MemberMetadata], None],
                 spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None]) -> None:
        """``check_active`` raises the error a request for a group gets while it is not served here;
        ``touch_member`` restarts a committing member's session timer (a commit counts as
        a heartbeat); ``spawn`` runs a background step whose failure is only logged."""
        self.manager = manager
        self.config = config
        self.timers = timers
        self._check_active = check_active
        self._touch_member = touch_member
        self._spawn = spawn
        self._stopped = False

    def start(self) -> None:
        """Start the periodic expiry of offsets past their retention."""
        self._schedule_retention_check()

    def stop(self) -> None:
        """No further expiry runs."""
        self._stopped = True

    # ------------------------------------------------------------------ offsets

    async def commit_offsets(self, group_id: str, generation_id: int, member_id: str,
                             group_instance_id: str | None,
                             offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, Errors]:
        """Commit offsets for a member of the current generation, or for a group without members."""
        try:
            self._check_active(group_id)
            group = self.manager.get(group_id)
            if group is None:
                if generation_id >= 0:
                    raise GroupError(Errors.ILLEGAL_GENERATION)
                # Simple commits (no group management) create an Empty group.
                group = self.manager.get_or_create(group_id)
            validate_commit(group, generation_id, member_id, group_instance_id)
        except GroupError as e:
            return dict.fromkeys(offsets, e.code)
        if member_id in group.members:
            self._touch_member(group, group.get(member_id))
        valid, out = self._metadata_within_limit(offsets)
        error = await self.manager.store_offsets(group, valid) if valid else Errors.NONE
        for tp in valid:
            out[tp] = error
        return out

    def _metadata_within_limit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]
                               ) -> tuple[dict[TopicPartition, OffsetAndMetadata], dict[TopicPartition, Errors]]:
        """The offsets whose metadata fits ``offset.metadata.max.bytes``, and OFFSET_METADATA_TOO_LARGE for the rest."""
        valid: dict[TopicPartition, OffsetAndMetadata] = {}
        out: dict[TopicPartition, Errors] = {}
        limit = self.config.offset_metadata_max_bytes
        for tp, om in offsets.items():
            if len(om.metadata.encode()) > limit:
                out[tp] = Errors.OFFSET_METADATA_TOO_LARGE
            else:
                valid[tp] = om
        return valid, out

    async def txn_commit_offsets(self, transactional_id: str, group_id: str, producer_id: int, producer_epoch: int,
                                 generation_id: int, member_id: str, group_instance_id: str | None,
                                 offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, Errors]:
        """TxnOffsetCommit: write offsets in the producer's transaction (Kafka's commitTransactionalOffset).

        The offsets stay pending until the transaction's marker reaches the group's
        partition (:meth:`GroupMetadataManager.complete_transaction`).
        """
        try:
            self._check_active(group_id)
            if not group_id:
                raise GroupError(Errors.INVALID_GROUP_ID)
            group = self.manager.get(group_id)
            if group is None:
                if generation_id >= 0:
                    raise GroupError(Errors.ILLEGAL_GENERATION)
                # As for plain commits, a producer outside group management creates an Empty group.
                group = self.manager.get_or_create(group_id)
            validate_commit(group, generation_id, member_id, group_instance_id, transactional=True)
        except GroupError as e:
            return dict.fromkeys(offsets, e.code)
        valid, out = self._metadata_within_limit(offsets)
        if valid:
            log.debug("group %s: transactional offsets of %s (producer %d epoch %d)", group_id, transactional_id,
                      producer_id, producer_epoch)
        error = (await self.manager.store_txn_offsets(group, producer_id, producer_epoch, valid)
                 if valid else Errors.NONE)
        for tp in valid:
            out[tp] = error
        return out

    def fetch_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None, require_stable: bool = False,
                      ) -> dict[TopicPartition, OffsetAndMetadata | Errors | None]:
        """Committed offsets of ``partitions`` (all of the group's when None); None where unknown.

        With ``require_stable`` (OffsetFetch v7+), a partition with a transactional offset
        still pending gets UNSTABLE_OFFSET_COMMIT instead: the client retries until the
        transaction ends. Listing all partitions lists those with a committed offset only.
        """
        self._check_active(group_id)
        group = self.manager.get(group_id)
        committed = group.offsets if group is not None and not group.is_in(S.DEAD) else {}
        pending = self.manager.pending_partitions(group_id) if require_stable else set()
        out: dict[TopicPartition, OffsetAndMetadata | Errors | None]
        if partitions is None:
            out = dict(sorted(committed.items()))
        else:
            out = {tp: committed.get(tp) for tp in partitions}
        for tp in pending & out.keys():
            out[tp] = Errors.UNSTABLE_OFFSET_COMMIT
        return out

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]
                             ) -> tuple[Errors, dict[TopicPartition, Errors]]:
        """OffsetDelete: drop committed offsets of topics the group no longer consumes."""
        self._check_active(group_id)
        group = self.manager.get(group_id)
        if group is None or group.is_in(S.DEAD):
            return Errors.GROUP_ID_NOT_FOUND, {}
        out: dict[TopicPartition, Errors] = {}
        if group.is_in(S.EMPTY):
            deletable = list(partitions)
        elif group.is_consumer_group:
            deletable = []
            for tp in partitions:
                if group.is_subscribed_to(tp[0]):
                    out[tp] = Errors.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    deletable.append(tp)
        else:
            return Errors.NON_EMPTY_GROUP, {}
        error = await self.manager.delete_offsets(group, deletable) if deletable else Errors.NONE
        for tp in deletable:
            out[tp] = error
        return Errors.NONE, out

    # ------------------------------------------------------------------ retention

    def _schedule_retention_check(self) -> None:
        self.timers.call_later(self.config.retention_check_interval_ms, self._on_retention_check)

    def _on_retention_check(self) -> None:
        if self._stopped:
            return
        self._spawn(self.expire_offsets)
        self._schedule_retention_check()

    async def expire_offsets(self) -> int:
        """Remove offsets past ``offsets.retention.minutes`` now; returns how many."""
        removed = await self.manager.expire_offsets(self.config.offsets_retention_ms)
        if removed:
            log.info("removed %d expired offsets", removed)
        return removed
