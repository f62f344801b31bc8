"""The values the group coordinator takes and gives: its settings, JoinGroup calls, group summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kbroker.groups.member import Protocols


@dataclass(frozen=True)
class GroupConfig:
    """The broker settings the coordinator uses."""

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3000
    offsets_retention_ms: int = 7 * 24 * 60 * 60 * 1000
    #: Kafka's ``offsets.retention.check.interval.ms`` default.
    retention_check_interval_ms: int = 600_000
    #: Kafka's ``offset.metadata.max.bytes`` default.
    offset_metadata_max_bytes: int = 4096

    @classmethod
    def from_broker_config(cls, config: Any) -> GroupConfig:
        """Read the group settings from a BrokerConfig."""
        def optional(key: str, default: int) -> int:
            try:
                return int(config.get(key))
            except (KeyError, TypeError, ValueError):
                return default

        return cls(
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            offsets_retention_ms=config.offsets_retention_ms,
            retention_check_interval_ms=optional("offsets.retention.check.interval.ms", 600_000),
            offset_metadata_max_bytes=optional("offset.metadata.max.bytes", 4096),
        )


@dataclass
class JoinRequest:
    """A JoinGroup call, version differences already resolved."""

    group_id: str
    member_id: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    group_instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    #: v4+: a first join must come back with the member id it is handed (KIP-394).
    require_known_member_id: bool = True
    #: v9+: the client understands ``skip_assignment`` (KIP-814).
    supports_skip_assignment: bool = False
    reason: str | None = None


@dataclass
class MemberSummary:
    """One member as DescribeGroups shows it."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass
class GroupSummary:
    """A group as DescribeGroups shows it."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[MemberSummary] = field(default_factory=list)


@dataclass(frozen=True)
class GroupListing:
    """A group as ListGroups shows it."""

    group_id: str
    protocol_type: str
    state: str
    #: ``classic``, ``consumer`` (KIP-848) or ``share`` (KIP-932), as ListGroups v5 reports it.
    group_type: str = "classic"
