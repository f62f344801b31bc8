"""The group coordinator: classic consumer groups and committed offsets.

:class:`GroupCoordinator` runs the JoinGroup/SyncGroup rebalance protocol over
:class:`GroupMetadata` (whose states follow the table in :mod:`kbroker.groups.state`),
:class:`OffsetsCoordinator` serves committed offsets, and both keep groups and offsets
durable in ``__consumer_offsets`` through :class:`GroupMetadataManager`.
"""

from kbroker.groups.coordinator import GroupCoordinator
from kbroker.groups.errors import Errors, GroupError
from kbroker.groups.group import GroupMetadata
from kbroker.groups.manager import GroupMetadataManager
from kbroker.groups.member import JoinGroupResult, MemberMetadata, SyncGroupResult
from kbroker.groups.model import GroupConfig, JoinRequest
from kbroker.groups.offsets import OffsetsCoordinator
from kbroker.groups.records import OffsetAndMetadata
from kbroker.groups.state import GroupState

__all__ = [
    "Errors", "GroupConfig", "GroupCoordinator", "GroupError", "GroupMetadata", "GroupMetadataManager",
    "GroupState", "JoinGroupResult", "JoinRequest", "MemberMetadata", "OffsetAndMetadata", "OffsetsCoordinator",
    "SyncGroupResult",
    "client_host",
]


def client_host(host: str) -> str:
    """A client address as Kafka shows it in DescribeGroups (``InetAddress.toString``)."""
    return "/" + host
