"""Checks of topic creation and growth against the registry and the broker config.

Kafka's controller validates a CreateTopics or CreatePartitions request before it
changes anything; :class:`TopicValidator` is that step. It only reads: the config in
force, which names are taken, which brokers are live, and the topics that exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import BrokerConfig, ConfigError, ConfigHolder, validate_topic_configs
from kbroker.metadata import errors as E
from kbroker.metadata.log_config import log_config_for
from kbroker.metadata.model import Assignments, TopicInfo
from kbroker.metadata.topic_names import (
    CONSUMER_OFFSETS,
    SHARE_GROUP_STATE,
    TRANSACTION_STATE,
    invalid_reason,
    is_internal,
)

log = logging.getLogger(__name__)

TOO_LARGE: E.Result = ErrorCode.POLICY_VIOLATION, "Unable to perform excessively large batch operation."


class TopicValidator:
    """Kafka's CreateTopics and CreatePartitions validation, without changing anything."""

    def __init__(self, config: ConfigHolder, *, topic: Callable[[str], TopicInfo | None],
                 reserved: Callable[[str], bool], collides_with: Callable[[str], str | None],
                 live_broker_ids: Callable[[], list[int]]) -> None:
        """``reserved`` tells whether a name is taken (by a topic, or one being created);
        ``collides_with`` names the topic whose name differs from one only by '.' and '_'."""
        self._config = config
        self._topic = topic
        self._reserved = reserved
        self._collides_with = collides_with
        self._live_broker_ids = live_broker_ids

    @property
    def max_partitions_per_request(self) -> int:
        """``max.partitions.per.request``: new partitions one request may create in all."""
        return int(self._config.current.get("max.partitions.per.request"))

    def resolve_shape(self, num_partitions: int, replication_factor: int,
                      assignments: Assignments | None = None) -> tuple[int, int]:
        """(partitions, replication factor) after applying -1 defaults and assignments."""
        if assignments:
            first = next(iter(assignments.values()))
            return len(assignments), len(first)
        cfg = self._config.current
        n = cfg.num_partitions if num_partitions == -1 else num_partitions
        rf = cfg.default_replication_factor if replication_factor == -1 else replication_factor
        return n, rf

    def check_create(self, name: str, num_partitions: int, replication_factor: int,
                     configs: Mapping[str, str | None], assignments: Assignments | None = None,
                     *, internal: bool = False) -> E.Result:
        """Kafka's CreateTopics validation, without creating anything.

        Only the broker itself (``internal``) creates internal topics: a client-made
        ``__consumer_offsets`` with another partition count would move every group.
        """
        reason = invalid_reason(name)
        if reason is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
        if is_internal(name) and not internal:
            return ErrorCode.INVALID_REQUEST, f"Creation of internal topic {name} is prohibited."
        if self._reserved(name):
            return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
        other = self._collides_with(name)
        if other is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{name}' collides with existing topic: {other}"
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                return (ErrorCode.INVALID_REQUEST, "Both numPartitions or replicationFactor and replicasAssignments "
                        "were set. Both cannot be used at the same time.")
            if sorted(assignments) != list(range(len(assignments))):
                return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        "Partitions should be a consecutive 0-based integer sequence")
            sizes = {len(b) for b in assignments.values()}
            if len(sizes) != 1:
                return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "All partitions should have the same number of replicas"
            for index, brokers in assignments.items():
                result = self.check_replicas(index, brokers)
                if result != E.OK:
                    return result
        else:
            n, rf = self.resolve_shape(num_partitions, replication_factor)
            if n <= 0:
                return ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value."
            if rf <= 0:
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        "Replication factor must be larger than 0, or -1 to use the default value.")
            live = len(self._live_broker_ids())
            if rf > live:
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        f"Unable to replicate the partition {rf} time(s): The target replication factor of "
                        f"{rf} cannot be reached because only {live} broker(s) are registered.")
        n, _ = self.resolve_shape(num_partitions, replication_factor, assignments)
        if n > self.max_partitions_per_request:
            return TOO_LARGE
        return self.check_configs(configs)

    def check_replicas(self, index: int, brokers: Sequence[int]) -> E.Result:
        """A manual assignment of partition ``index``: distinct, live brokers."""
        if not brokers:
            return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"The manual partition assignment for partition {index} is empty."
        if len(set(brokers)) != len(brokers):
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment for partition {index} includes a duplicate broker id.")
        unknown = [b for b in brokers if b not in self._live_broker_ids()]
        if unknown:
            return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"The manual partition assignment includes broker {unknown[0]}, but no such broker is registered.")
        return E.OK

    def check_configs(self, configs: Mapping[str, str | None]) -> E.Result:
        """Topic config overrides: known keys with valid values under the broker defaults."""
        try:
            validate_topic_configs(configs)
            log_config_for(self._config.current, configs)
        except (ConfigError, ValueError) as e:
            return ErrorCode.INVALID_CONFIG, str(e)
        return E.OK

    def check_grow(self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None
                   ) -> tuple[E.Result, dict[int, Sequence[int]] | None]:
        """CreatePartitions validation; with the new partitions' assignments when given."""
        topic = self._topic(name)
        if topic is None:
            return (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist."), None
        if topic.internal:
            # Coordinators hash keys over the partition count: growing it would move them.
            return (ErrorCode.INVALID_REQUEST, f"Adding partitions to internal topic {name} is prohibited."), None
        current = len(topic.partitions)
        if new_total < current:
            return (ErrorCode.INVALID_PARTITIONS,
                    f"The topic {name} currently has {current} partition(s); {new_total} would not be an increase."), None
        if new_total == current:
            return (ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."), None
        if new_total - current > self.max_partitions_per_request:
            return TOO_LARGE, None
        new_assign: dict[int, Sequence[int]] | None = None
        if assignments is not None:
            if len(assignments) != new_total - current:
                return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {new_total - current} additional partition(s), but only "
                        f"{len(assignments)} assignment(s) were specified."), None
            new_assign = {}
            for offset, brokers in enumerate(assignments):
                result = self.check_replicas(current + offset, brokers)
                if result != E.OK:
                    return result, None
                new_assign[current + offset] = brokers
        return E.OK, new_assign


def internal_topic_shape(cfg: BrokerConfig, name: str) -> tuple[int, dict[str, str]]:
    """Partition count and config overrides an internal topic is created with."""
    # What Kafka's GroupCoordinator and TransactionStateManager create them with.
    if name == CONSUMER_OFFSETS:
        return cfg.offsets_topic_num_partitions, {
            "cleanup.policy": "compact", "compression.type": "producer",
            "segment.bytes": str(cfg.get("offsets.topic.segment.bytes"))}
    if name == TRANSACTION_STATE:
        return int(cfg.get("transaction.state.log.num.partitions")), {
            "cleanup.policy": "compact", "compression.type": "uncompressed",
            "segment.bytes": str(cfg.get("transaction.state.log.segment.bytes")),
            "unclean.leader.election.enable": "false",
            "min.insync.replicas": str(cfg.get("transaction.state.log.min.isr"))}
    if name == SHARE_GROUP_STATE:  # as Kafka's ShareCoordinatorService
        return int(cfg.get("share.coordinator.state.topic.num.partitions")), {
            "cleanup.policy": "compact", "compression.type": "producer",
            "segment.bytes": str(cfg.get("share.coordinator.state.topic.segment.bytes"))}
    return cfg.num_partitions, {}


def check_internal_topics(cfg: BrokerConfig, topic: Callable[[str], TopicInfo | None]) -> None:
    """Warn when an internal topic's partition count differs from its setting.

    The topic's own count is the one used (coordinators hash over the partitions
    that exist), so records written before the setting changed stay findable.
    """
    for name, key in ((CONSUMER_OFFSETS, "offsets.topic.num.partitions"),
                      (TRANSACTION_STATE, "transaction.state.log.num.partitions")):
        info = topic(name)
        if info is not None and len(info.partitions) != int(cfg.get(key)):
            log.warning("%s has %d partitions but %s is %s; using the %d partitions that exist",
                        name, len(info.partitions), key, cfg.get(key), len(info.partitions))
