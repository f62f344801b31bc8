"""Names and codes shared by authentication, authorization and quotas, as Kafka numbers them."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

#: The principal of a connection that has not authenticated (PLAINTEXT, or SSL without a
#: client certificate).
ANONYMOUS = "User:ANONYMOUS"
#: The one CLUSTER resource's name.
CLUSTER_NAME = "kafka-cluster"
#: The resource name matching every name (in a LITERAL pattern).
WILDCARD = "*"


class ResourceType(IntEnum):
    """Kafka's ``ResourceType`` codes (CreateAcls, DescribeAcls, DeleteAcls)."""

    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class AclOperation(IntEnum):
    """Kafka's ``AclOperation`` codes; also the bit positions of authorized-operations fields."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class PatternType(IntEnum):
    """Kafka's ``PatternType`` codes: how a binding's resource name matches."""

    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclPermissionType(IntEnum):
    """Kafka's ``AclPermissionType`` codes."""

    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


class Authorizer(Protocol):
    """Decides whether a principal connected from a host may do an operation on a resource."""

    def authorize(self, principal: str, host: str, operation: AclOperation,
                  resource_type: ResourceType, name: str) -> bool:
        """True when the operation is allowed (deny ACLs win over allow ACLs)."""
        ...

    def authorize_by_resource_type(self, principal: str, host: str, operation: AclOperation,
                                   resource_type: ResourceType) -> bool:
        """True when the operation is allowed on at least one resource of the type (KIP-679)."""
        ...

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType,
                              name: str) -> int:
        """The bit field of the operations allowed on the resource (bit n = AclOperation n),
        as Metadata, DescribeCluster and DescribeGroups report them."""
        ...
