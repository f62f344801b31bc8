"""GroupMetadataManager: the group cache and its persistence in ``__consumer_offsets``.

Every change to a group's stored metadata or committed offsets is appended to the
group's partition before it is applied in memory, so a restart replays exactly what
clients were told succeeded.

Transactional offset commits (TxnOffsetCommit) are written in the producer's
transaction and stay pending, apart from the committed offsets, until the transaction's
marker reaches the group's partition: a COMMIT makes them the committed offsets unless
a plain commit of the same partition was written after them (Kafka compares the
records' log offsets), an ABORT drops them. Loading replays the markers the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kbroker.clock import Clock
from kbroker.groups.errors import Errors
from kbroker.groups.group import GroupMetadata, TopicPartition
from kbroker.groups.member import MemberMetadata
from kbroker.groups.records import (
    GROUP_KEY_VERSION,
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
    key_version,
    offset_key,
    offset_value,
)
from kbroker.groups.state import GroupState
from kbroker.groups.storage import Appended, KeyValue, OffsetsLog, StoredMarker, StoredRecord, partition_for

log = logging.getLogger(__name__)
#: Most group ids whose offsets partition is remembered (see GroupMetadataManager.partition_for).
_PARTITION_CACHE_SIZE = 10_000

Offsets = dict[TopicPartition, OffsetAndMetadata]
#: producer id -> group id -> the producer's pending transactional offsets in that group.
PendingOffsets = dict[int, dict[str, Offsets]]


def _materialize(committed: Offsets, pending: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
    """Make committed transactional offsets the group's, unless a later plain commit exists.

    As Kafka (OffsetMetadataManager.replayEndTransactionMarker): the offset whose record
    is later in the log wins, so compaction of the topic cannot change which one counts.
    """
    for tp, om in pending.items():
        existing = committed.get(tp)
        if existing is None or om.record_offset > existing.record_offset:
            committed[tp] = om
        else:
            log.info("transactional offset %d of %s-%d is older than the plain commit at %d; not applied",
                     om.offset, tp[0], tp[1], existing.record_offset)


@dataclass
class PartitionContents:
    """What replaying one ``__consumer_offsets`` partition found (built off the event loop)."""

    partition: int
    metas: dict[str, GroupRecord]
    offsets: dict[str, Offsets]
    #: Transactional offsets whose transaction had not ended where the log ends.
    pending: PendingOffsets
    #: Records of other group types (key version above 2), in log order, for their replayers.
    extra: list[StoredRecord] = dataclasses.field(default_factory=list)


class RecordReplayer(Protocol):
    """Another group type keeping its records in ``__consumer_offsets`` (KIP-848 consumer
    groups, share groups): it is handed its records when a partition is loaded, in log order,
    and told when one is unloaded. Both run on the event loop."""

    #: The record key versions it owns.
    key_versions: frozenset[int]

    def install(self, partition: int, records: Sequence[StoredRecord]) -> None: ...

    def unload(self, partition: int) -> None: ...


@dataclass
class _TxnWrite:
    """A transactional offset write under way; a marker arriving meanwhile resolves it."""

    partition: int
    #: None until a marker of the producer reaches ``partition``; then whether it committed.
    committed: bool | None = None


class GroupMetadataManager:
    """Every group this coordinator owns, and the records that make them durable."""

    def __init__(self, offsets_log: OffsetsLog, clock: Clock) -> None:
        self.log = offsets_log
        self.clock = clock
        self.groups: dict[str, GroupMetadata] = {}
        #: Transactional offsets written but not yet committed or aborted by a marker.
        self.pending: PendingOffsets = {}
        #: group id -> producers with an open transaction holding offsets of the group.
        self.open_transactions: dict[str, set[int]] = {}
        self._txn_writes: dict[int, list[_TxnWrite]] = {}
        #: group id -> (partition count, its partition): the Java string hash is costly in Python.
        self._partition_of: dict[str, tuple[int, int]] = {}
        #: partition -> how many times it was unloaded: a write under way across an unload is not applied.
        self._unloads: dict[int, int] = {}
        #: Other group types' record owners (:meth:`add_replayer`).
        self._replayers: list[RecordReplayer] = []
        #: group id -> topics whose offsets never expire: those a KIP-848 consumer group subscribes to.
        self.subscribed_elsewhere: Callable[[str], Collection[str]] = lambda group_id: ()

    def add_replayer(self, replayer: RecordReplayer) -> None:
        """Hand ``replayer`` its records at every partition load (register before the start)."""
        self._replayers.append(replayer)

    def partition_for(self, group_id: str) -> int:
        """The ``__consumer_offsets`` partition holding ``group_id``."""
        n = self.log.num_partitions
        cached = self._partition_of.get(group_id)
        if cached is not None and cached[0] == n:
            return cached[1]
        if len(self._partition_of) >= _PARTITION_CACHE_SIZE:
            self._partition_of.clear()  # bounded: ids come from clients
        p = self._partition_of[group_id] = n, partition_for(group_id, n)
        return p[1]

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

    async def _append(self, group_id: str, records: list[KeyValue], *, producer_id: int = -1,
                      producer_epoch: int = -1, transactional: bool = False) -> Appended:
        if not records:
            return Appended(Errors.NONE)
        try:
            return await self.log.append(self.partition_for(group_id), records, producer_id=producer_id,
                                         producer_epoch=producer_epoch, transactional=transactional)
        except OSError:
            # A storage failure: as Kafka's KAFKA_STORAGE_ERROR, the client looks for the coordinator again.
            log.exception("writing records of group %s failed", group_id)
            return Appended(Errors.NOT_COORDINATOR)
        except Exception:
            log.exception("writing records of group %s failed", group_id)
            return Appended(Errors.UNKNOWN_SERVER_ERROR)

    async def append(self, group_id: str, records: list[KeyValue]) -> Errors:
        """Write records of ``group_id`` (any group type) to its partition, as one batch."""
        return (await self._append(group_id, records)).error

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
        return (await self._append(group.group_id, [(group_key(group.group_id), value)])).error

    @staticmethod
    def _offset_records(group_id: str, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> list[KeyValue]:
        return [(offset_key(group_id, t, p), offset_value(om)) for (t, p), om in offsets.items()]

    @staticmethod
    def _stamped(offsets: Mapping[TopicPartition, OffsetAndMetadata], base_offset: int) -> Offsets:
        """``offsets`` with the log offsets their records got (one record each, in order)."""
        # The constructor, not dataclasses.replace: this runs for every committed partition.
        return {tp: OffsetAndMetadata(om.offset, om.leader_epoch, om.metadata, om.commit_timestamp,
                                      om.expire_timestamp, base_offset + i if base_offset >= 0 else -1)
                for i, (tp, om) in enumerate(offsets.items())}

    async def store_offsets(self, group: GroupMetadata, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> Errors:
        """Persist committed offsets, then apply them to the group."""
        appended = await self._append(group.group_id, self._offset_records(group.group_id, offsets))
        if appended.error == Errors.NONE:
            for tp, om in self._stamped(offsets, appended.base_offset).items():
                existing = group.offsets.get(tp)
                # A transactional commit materialised meanwhile from a later record keeps its place.
                if existing is None or om.record_offset < 0 or om.record_offset > existing.record_offset:
                    group.offsets[tp] = om
        return appended.error

    async def store_txn_offsets(self, group: GroupMetadata, producer_id: int, producer_epoch: int,
                                offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> Errors:
        """Write offsets in ``producer_id``'s transaction; they stay pending until its marker."""
        write = _TxnWrite(self.partition_for(group.group_id))
        unloads = self._unloads.get(write.partition, 0)
        writes = self._txn_writes.setdefault(producer_id, [])
        writes.append(write)
        try:
            appended = await self._append(group.group_id, self._offset_records(group.group_id, offsets),
                                          producer_id=producer_id, producer_epoch=producer_epoch, transactional=True)
        finally:
            writes.remove(write)
            if not writes:
                del self._txn_writes[producer_id]
        if appended.error != Errors.NONE:
            return appended.error
        if self._unloads.get(write.partition, 0) != unloads:
            # The partition moved to another coordinator meanwhile; it reads these records from the log.
            return Errors.NOT_COORDINATOR
        stamped = self._stamped(offsets, appended.base_offset)
        if write.committed is None:
            self.pending.setdefault(producer_id, {}).setdefault(group.group_id, {}).update(stamped)
            self.open_transactions.setdefault(group.group_id, set()).add(producer_id)
        elif write.committed:
            # The marker followed the records in the log while the write completed.
            _materialize(self.get_or_create(group.group_id).offsets, stamped)
        return Errors.NONE

    def complete_transaction(self, producer_id: int, partitions: Collection[int], commit: bool) -> None:
        """A marker of ``producer_id`` was written to these ``__consumer_offsets`` partitions:
        commit (materialise) or abort (drop) its pending offsets of the groups there."""
        for write in self._txn_writes.get(producer_id, ()):
            if write.partition in partitions and write.committed is None:
                write.committed = commit
        by_group = self.pending.get(producer_id)
        if by_group is None:
            return
        for group_id in [g for g in by_group if self.partition_for(g) in partitions]:
            offsets = by_group.pop(group_id)
            self._close_transaction(group_id, producer_id)
            if commit and offsets:
                _materialize(self.get_or_create(group_id).offsets, offsets)
        if not by_group:
            del self.pending[producer_id]

    def _close_transaction(self, group_id: str, producer_id: int) -> None:
        open_txns = self.open_transactions.get(group_id)
        if open_txns is not None:
            open_txns.discard(producer_id)
            if not open_txns:
                del self.open_transactions[group_id]

    def has_open_transactions(self, group_id: str) -> bool:
        """Whether a transaction that committed offsets of the group has not ended yet."""
        return group_id in self.open_transactions

    def pending_partitions(self, group_id: str) -> set[TopicPartition]:
        """Every partition with a pending transactional offset in the group (where Kafka's
        hasPendingTransactionalOffsets is true)."""
        out: set[TopicPartition] = set()
        for producer_id in self.open_transactions.get(group_id, ()):
            out.update(self.pending.get(producer_id, {}).get(group_id, {}))
        return out

    def _drop_pending(self, group_id: str, partitions: Iterable[TopicPartition]) -> None:
        """A tombstone of these partitions also clears them from open transactions (as Kafka's
        replay of a tombstone); the transactions themselves stay open."""
        gone = set(partitions)
        for producer_id in self.open_transactions.get(group_id, ()):
            offsets = self.pending.get(producer_id, {}).get(group_id)
            if offsets:
                for tp in gone & offsets.keys():
                    del offsets[tp]

    async def delete_offsets(self, group: GroupMetadata, partitions: Iterable[TopicPartition]) -> Errors:
        """Write tombstones for ``partitions``' offsets (committed or pending) and drop them."""
        pending = self.pending_partitions(group.group_id)
        gone = [tp for tp in partitions if tp in group.offsets or tp in pending]
        appended = await self._append(group.group_id, [(offset_key(group.group_id, t, p), None) for t, p in gone])
        if appended.error == Errors.NONE:
            for tp in gone:
                group.offsets.pop(tp, None)
            self._drop_pending(group.group_id, gone)
        return appended.error

    async def delete_group(self, group: GroupMetadata) -> Errors:
        """Tombstone a Dead group's offsets (pending transactional ones too) and metadata,
        and drop it from the cache."""
        gone = list(group.offsets) + sorted(self.pending_partitions(group.group_id) - group.offsets.keys())
        records: list[KeyValue] = [(offset_key(group.group_id, t, p), None) for t, p in gone]
        records.append((group_key(group.group_id), None))
        self.discard(group)
        group.offsets.clear()
        self._drop_pending(group.group_id, gone)
        return (await self._append(group.group_id, records)).error

    # --- retention

    def expired_offsets(self, group: GroupMetadata, now_ms: int, retention_ms: int) -> list[TopicPartition]:
        """Offsets past retention, as Kafka's ``removeExpiredOffsets`` picks them (KIP-211)."""
        pending = self.pending_partitions(group.group_id)

        def expired(base: int | None, skip: set[str]) -> list[TopicPartition]:
            out = []
            for tp, om in group.offsets.items():
                # An offset with a transactional commit pending is kept until that resolves.
                if tp[0] in skip or tp in pending:
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
            # As Kafka's ConsumerGroup, the topics a consumer group (whose offsets sit here) subscribes to are kept.
            return expired(None, set(self.subscribed_elsewhere(group.group_id)))
        return []

    async def expire_offsets(self, retention_ms: int) -> int:
        """Drop expired offsets and the Empty groups left with none; returns offsets removed."""
        now = self.clock.time_ms()
        removed = 0
        for group in list(self.groups.values()):
            gone = self.expired_offsets(group, now, retention_ms)
            if gone and await self.delete_offsets(group, gone) == Errors.NONE:
                removed += len(gone)
            # A group whose offsets are part of an open transaction is kept (as Kafka).
            if (group.is_in(GroupState.EMPTY) and not group.offsets and not group.members
                    and not self.has_open_transactions(group.group_id)):
                group.transition_to(GroupState.DEAD, now)
                await self.delete_group(group)
                log.info("group %s has no offsets left and is removed", group.group_id)
        return removed

    # --- loading

    def load(self) -> int:
        """Rebuild every group from the topic; returns how many groups were loaded.

        Transactional offsets are applied when their COMMIT marker is replayed, dropped at
        an ABORT, and left pending when the log ends inside their transaction.
        """
        self.pending = {}
        self.open_transactions = {}
        if not self.log.exists():
            return 0
        for partition in range(self.log.num_partitions):
            self.install(self.read_partition(partition))
        return len(self.groups)

    def read_partition(self, partition: int) -> PartitionContents:
        """Replay one partition (touches no coordinator state: may run in a worker thread)."""
        metas: dict[str, GroupRecord] = {}
        offsets: dict[str, Offsets] = {}
        pending: PendingOffsets = {}
        extra: list[StoredRecord] = []
        if not self.log.exists():
            return PartitionContents(partition, metas, offsets, pending)
        for stored in self.log.replay(partition):
            if isinstance(stored, StoredMarker):
                by_group = pending.pop(stored.producer_id, {})
                if stored.commit:
                    for group_id, txn_offsets in by_group.items():
                        _materialize(offsets.setdefault(group_id, {}), txn_offsets)
                continue
            try:
                if key_version(stored.key) > GROUP_KEY_VERSION:
                    if not stored.transactional:
                        extra.append(stored)
                    continue
                key = decode_key(stored.key)
                if isinstance(key, OffsetKey):
                    tp = TopicPartition(key.topic, key.partition)
                    if stored.value is None:
                        offsets.get(key.group, {}).pop(tp, None)
                        for by_group in pending.values():
                            by_group.get(key.group, {}).pop(tp, None)
                    else:
                        om = dataclasses.replace(decode_offset_value(stored.value), record_offset=stored.offset)
                        if stored.transactional and stored.producer_id >= 0:
                            pending.setdefault(stored.producer_id, {}).setdefault(key.group, {})[tp] = om
                        else:
                            offsets.setdefault(key.group, {})[tp] = om
                elif isinstance(key, GroupKey):
                    if stored.value is None:
                        metas.pop(key.group, None)
                    else:
                        metas[key.group] = decode_group_value(stored.value)
            except RecordFormatError as e:
                log.warning("skipping unreadable record in __consumer_offsets-%d: %s", partition, e)
        return PartitionContents(partition, metas, offsets, pending, extra)

    def install(self, contents: PartitionContents) -> list[GroupMetadata]:
        """Make the groups read from one partition this coordinator's; returns them."""
        for producer_id, by_group in contents.pending.items():
            for group_id, txn_offsets in by_group.items():
                self.pending.setdefault(producer_id, {})[group_id] = txn_offsets
                self.open_transactions.setdefault(group_id, set()).add(producer_id)
        pending_groups = {g for by_group in contents.pending.values() for g, o in by_group.items() if o}
        loaded = []
        for group_id in contents.metas.keys() | {g for g, o in contents.offsets.items() if o} | pending_groups:
            group = self._loaded_group(group_id, contents.metas.get(group_id))
            group.offsets = contents.offsets.get(group_id, {})
            self.groups[group_id] = group
            loaded.append(group)
        for replayer in self._replayers:
            replayer.install(contents.partition,
                             [r for r in contents.extra if key_version(r.key) in replayer.key_versions])
        return loaded

    def unload_partition(self, partition: int) -> list[GroupMetadata]:
        """Forget every group of ``partition`` with its pending transactional offsets
        (another broker coordinates them now); returns the groups dropped."""
        self._unloads[partition] = self._unloads.get(partition, 0) + 1
        for replayer in self._replayers:
            replayer.unload(partition)
        gone = [g for gid, g in self.groups.items() if self.partition_for(gid) == partition]
        for group in gone:
            del self.groups[group.group_id]
        gone_ids = {g.group_id for g in gone}
        for group_id in [g for g in self.open_transactions if self.partition_for(g) == partition]:
            gone_ids.add(group_id)
            del self.open_transactions[group_id]
        for producer_id in list(self.pending):
            by_group = self.pending[producer_id]
            for group_id in [g for g in by_group if g in gone_ids or self.partition_for(g) == partition]:
                del by_group[group_id]
            if not by_group:
                del self.pending[producer_id]
        return gone

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
