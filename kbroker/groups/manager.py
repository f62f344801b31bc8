"""GroupMetadataManager: the group cache and its persistence in ``__consumer_offsets``.

Every change to a group's stored metadata or committed offsets is appended to the
group's partition before it is applied in memory, so a restart replays exactly what
clients were told succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kbroker.clock import Clock
from kbroker.groups.errors import Errors
from kbroker.groups.group import GroupMetadata, TopicPartition
from kbroker.groups.member import MemberMetadata
from kbroker.groups.records import (
    GroupKey,
    GroupRecord,
    MemberRecord,
    OffsetAndMetadata,
    OffsetKey,
    RecordFormatError,
    decode_group_value,
    decode_key,
    decode_offset_value,
    group_key,
    group_value,
    offset_key,
    offset_value,
)
from kbroker.groups.state import GroupState
from kbroker.groups.storage import KeyValue, OffsetsLog, partition_for

log = logging.getLogger(__name__)


class GroupMetadataManager:
    """Every group this coordinator owns, and the records that make them durable."""

    def __init__(self, offsets_log: OffsetsLog, clock: Clock) -> None:
        self.log = offsets_log
        self.clock = clock
        self.groups: dict[str, GroupMetadata] = {}

    def partition_for(self, group_id: str) -> int:
        """The ``__consumer_offsets`` partition holding ``group_id``."""
        return partition_for(group_id, self.log.num_partitions)

    def get(self, group_id: str) -> GroupMetadata | None:
        return self.groups.get(group_id)

    def get_or_create(self, group_id: str) -> GroupMetadata:
        group = self.groups.get(group_id)
        if group is None:
            group = GroupMetadata(group_id, GroupState.EMPTY, self.clock.time_ms())
            self.groups[group_id] = group
        return group

    def discard(self, group: GroupMetadata) -> None:
        """Forget ``group`` if it is still the cached one."""
        if self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]

    # --- writes

    async def _append(self, group_id: str, records: list[KeyValue]) -> Errors:
        if not records:
            return Errors.NONE
        try:
            return await self.log.append(self.partition_for(group_id), records)
        except OSError:
            # A storage failure: as Kafka's KAFKA_STORAGE_ERROR, the client looks for the coordinator again.
            log.exception("writing records of group %s failed", group_id)
            return Errors.NOT_COORDINATOR
        except Exception:
            log.exception("writing records of group %s failed", group_id)
            return Errors.UNKNOWN_SERVER_ERROR

    async def store_group(self, group: GroupMetadata, assignment: Mapping[str, bytes]) -> Errors:
        """Persist the group's generation, members and their assignments."""
        protocol = group.protocol_name
        members = tuple(
            MemberRecord(m.member_id, m.group_instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms,
                         m.session_timeout_ms, m.metadata(protocol) if protocol else b"",
                         assignment.get(m.member_id, b""))
            for m in group.members.values())
        state_ts = group.state_timestamp_ms if group.state_timestamp_ms >= 0 else self.clock.time_ms()
        value = group_value(GroupRecord(group.protocol_type or "", group.generation_id, protocol,
                                        group.leader_id, state_ts, members))
        return await self._append(group.group_id, [(group_key(group.group_id), value)])

    async def store_offsets(self, group: GroupMetadata, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> Errors:
        """Persist committed offsets, then apply them to the group."""
        records: list[KeyValue] = [(offset_key(group.group_id, t, p), offset_value(om))
                                   for (t, p), om in offsets.items()]
        error = await self._append(group.group_id, records)
        if error == Errors.NONE:
            group.offsets.update(offsets)
        return error

    async def delete_offsets(self, group: GroupMetadata, partitions: Iterable[TopicPartition]) -> Errors:
        """Write tombstones for ``partitions``' offsets and drop them."""
        gone = [tp for tp in partitions if tp in group.offsets]
        error = await self._append(group.group_id, [(offset_key(group.group_id, t, p), None) for t, p in gone])
        if error == Errors.NONE:
            for tp in gone:
                group.offsets.pop(tp, None)
        return error

    async def delete_group(self, group: GroupMetadata) -> Errors:
        """Tombstone a Dead group's offsets and metadata and drop it from the cache."""
        records: list[KeyValue] = [(offset_key(group.group_id, t, p), None) for t, p in group.offsets]
        records.append((group_key(group.group_id), None))
        self.discard(group)
        group.offsets.clear()
        return await self._append(group.group_id, records)

    # --- retention

    def expired_offsets(self, group: GroupMetadata, now_ms: int, retention_ms: int) -> list[TopicPartition]:
        """Offsets past retention, as Kafka's ``removeExpiredOffsets`` picks them (KIP-211)."""
        def expired(base: int | None, skip: set[str]) -> list[TopicPartition]:
            out = []
            for tp, om in group.offsets.items():
                if tp[0] in skip:
                    continue
                if om.expire_timestamp >= 0:
                    if now_ms >= om.expire_timestamp:
                        out.append(tp)
                elif now_ms - (base if base is not None else om.commit_timestamp) >= retention_ms:
                    out.append(tp)
            return out

        if group.protocol_type is not None and group.is_in(GroupState.EMPTY):
            # Counted from when the group emptied: consumers that left keep their offsets that long.
            return expired(group.state_timestamp_ms if group.state_timestamp_ms >= 0 else None, set())
        if group.is_consumer_group and group.subscribed_topics is not None and group.is_in(GroupState.STABLE):
            return expired(None, group.subscribed_topics)
        if group.protocol_type is None:
            return expired(None, set())
        return []

    async def expire_offsets(self, retention_ms: int) -> int:
        """Drop expired offsets and the Empty groups left with none; returns offsets removed."""
        now = self.clock.time_ms()
        removed = 0
        for group in list(self.groups.values()):
            gone = self.expired_offsets(group, now, retention_ms)
            if gone and await self.delete_offsets(group, gone) == Errors.NONE:
                removed += len(gone)
            if group.is_in(GroupState.EMPTY) and not group.offsets and not group.members:
                group.transition_to(GroupState.DEAD, now)
                await self.delete_group(group)
                log.info("group %s has no offsets left and is removed", group.group_id)
        return removed

    # --- loading

    def load(self) -> int:
        """Rebuild every group from the topic; returns how many groups were loaded."""
        metas: dict[str, GroupRecord] = {}
        offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        if not self.log.exists():
            return 0
        for partition in range(self.log.num_partitions):
            for key_bytes, value in self.log.replay(partition):
                try:
                    key = decode_key(key_bytes)
                    if isinstance(key, OffsetKey):
                        tp = TopicPartition(key.topic, key.partition)
                        if value is None:
                            offsets.get(key.group, {}).pop(tp, None)
                        else:
                            offsets.setdefault(key.group, {})[tp] = decode_offset_value(value)
                    elif isinstance(key, GroupKey):
                        if value is None:
                            metas.pop(key.group, None)
                        else:
                            metas[key.group] = decode_group_value(value)
                except RecordFormatError as e:
                    log.warning("skipping unreadable record in __consumer_offsets-%d: %s", partition, e)
        for group_id in metas.keys() | {g for g, o in offsets.items() if o}:
            group = self._loaded_group(group_id, metas.get(group_id))
            group.offsets = offsets.get(group_id, {})
            self.groups[group_id] = group
        return len(self.groups)

    def _loaded_group(self, group_id: str, rec: GroupRecord | None) -> GroupMetadata:
        if rec is None:
            return GroupMetadata(group_id, GroupState.EMPTY, -1)
        state = GroupState.STABLE if rec.members else GroupState.EMPTY
        group = GroupMetadata(group_id, state, rec.current_state_timestamp)
        group.protocol_type = rec.protocol_type or None
        group.generation_id = rec.generation
        group.protocol_name = rec.protocol if rec.members else None
        for m in rec.members:
            protocols = [(rec.protocol, m.subscription)] if rec.protocol else []
            member = MemberMetadata(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                    m.rebalance_timeout_ms, m.session_timeout_ms, group.protocol_type or "",
                                    protocols, assignment=m.assignment)
            group.add(member)
        group.leader_id = rec.leader if rec.leader in group.members else next(iter(group.members), None)
        group.protocol_type = rec.protocol_type or None
        group.subscribed_topics = group.compute_subscribed_topics()
        return group
