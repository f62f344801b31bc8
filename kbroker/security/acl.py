"""ACL bindings and binding filters, with Kafka's validation and matching rules.

A binding says that a principal connecting from a host is allowed (or denied) an operation
on the resources a pattern names: one name (LITERAL, where ``*`` names every resource of
the type) or every name starting with a prefix (PREFIXED). A filter selects bindings for
DescribeAcls and DeleteAcls: ANY fields match everything, a null name/principal/host
matches every value, and the MATCH pattern type selects the bindings that would apply to
the named resource (literal, wildcard and prefixed ones).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kbroker.security.model import (
    CLUSTER_NAME,
    WILDCARD,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

_O = AclOperation
#: The operations each concrete resource type supports (Kafka's ``AclEntry.supportedOperations``);
#: ALL is accepted on every type besides these.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (_O.READ, _O.WRITE, _O.CREATE, _O.DESCRIBE, _O.DELETE, _O.ALTER, _O.DESCRIBE_CONFIGS,
                         _O.ALTER_CONFIGS),
    ResourceType.GROUP: (_O.READ, _O.DESCRIBE, _O.DELETE),
    ResourceType.CLUSTER: (_O.CREATE, _O.CLUSTER_ACTION, _O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS,
                           _O.IDEMPOTENT_WRITE, _O.ALTER, _O.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (_O.DESCRIBE, _O.WRITE),
    ResourceType.DELEGATION_TOKEN: (_O.DESCRIBE,),
    ResourceType.USER: (_O.CREATE_TOKENS, _O.DESCRIBE_TOKENS),
}
#: ``User:*``: an ACL for it applies to every principal.
WILDCARD_PRINCIPAL = "User:*"
#: The host of an ACL applying from every host.
WILDCARD_HOST = "*"


@lru_cache(maxsize=4096)
def canonical_host(host: str) -> str:
    """``host`` as ACL checks compare it: an IP address in one spelling, anything else as given.

    Kafka compares the ACL's host with Java's spelling of the client's address, where an
    IPv4-mapped IPv6 address (an IPv4 client of a dual-stack socket) is the IPv4 address and
    IPv6 is uncompressed (``0:0:0:0:0:0:0:1``). Comparing addresses, not strings, keeps
    ``127.0.0.1`` matching ``::ffff:127.0.0.1`` and ``::1`` matching ``0:0:0:0:0:0:0:1``.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class InvalidAcl(ValueError):
    """A binding or filter Kafka refuses (INVALID_REQUEST); the message is Kafka's."""


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def _coerce(enum: Any, code: int) -> Any:
    """The enum member of ``code``; UNKNOWN for a code this broker does not know (as Kafka reads them)."""
    try:
        return enum(code)
    except ValueError:
        return enum.UNKNOWN


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: a resource pattern and an access control entry."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermissionType

    @classmethod
    def of(cls, resource_type: int, name: str, pattern_type: int, principal: str, host: str,
           operation: int, permission: int) -> AclBinding:
        """A binding from wire codes (unknown codes become UNKNOWN, which :meth:`validate` refuses)."""
        return cls(_coerce(ResourceType, resource_type), name, _coerce(PatternType, pattern_type), principal,
                   host, _coerce(AclOperation, operation), _coerce(AclPermissionType, permission))

    def validate(self) -> None:
        """Raise :class:`InvalidAcl` unless this binding may be created (Kafka's checks and messages)."""
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidAcl(f"Invalid patternType {_enum_name(self.pattern_type)}")
        if self.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
            raise InvalidAcl(f"Invalid resourceType {_enum_name(self.resource_type)}")
        if self.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
            raise InvalidAcl(f"Invalid operation {_enum_name(self.operation)}")
        if self.permission not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
            raise InvalidAcl(f"Invalid permissionType {_enum_name(self.permission)}")
        if not self.name:
            raise InvalidAcl("Resource name should not be empty")
        if self.resource_type == ResourceType.CLUSTER and self.name != CLUSTER_NAME:
            raise InvalidAcl(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}")
        kind, colon, who = self.principal.partition(":")
        if not colon:
            raise InvalidAcl(f"Could not parse principal from `{self.principal}` (no colon is present "
                             "separating the principal type from the principal name)")
        if not kind or not who:
            raise InvalidAcl(f"Invalid principal `{self.principal}`: it must be TYPE:name")

    def operation_error(self) -> str | None:
        """Why the binding's operation does not apply to its resource type, or None.

        kafka-acls.sh refuses such a binding before sending it; the broker, as Kafka's, stores
        it (it can never match a check), so only the command line calls this.
        """
        if self.operation == AclOperation.ALL or self.operation in SUPPORTED_OPERATIONS.get(self.resource_type, ()):
            return None
        supported = ", ".join(_enum_name(o) for o in SUPPORTED_OPERATIONS.get(self.resource_type, ()))
        return f"ResourceType {_enum_name(self.resource_type)} only supports operations ALL, {supported}"

    def to_json(self) -> dict[str, Any]:
        """The stored form (names, not codes: readable and independent of numbering)."""
        return {"resource_type": self.resource_type.name, "name": self.name,
                "pattern_type": self.pattern_type.name, "principal": self.principal, "host": self.host,
                "operation": self.operation.name, "permission": self.permission.name}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AclBinding:
        """The binding :meth:`to_json` stored; ValueError/KeyError on a malformed entry."""
        return cls(ResourceType[doc["resource_type"]], str(doc["name"]), PatternType[doc["pattern_type"]],
                   str(doc["principal"]), str(doc["host"]), AclOperation[doc["operation"]],
                   AclPermissionType[doc["permission"]])

    def __str__(self) -> str:
        return (f"(principal={self.principal}, host={self.host}, operation={self.operation.name}, "
                f"permissionType={self.permission.name}) on {self.resource_type.name}:"
                f"{self.pattern_type.name}:{self.name}")


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Selects bindings (DescribeAcls, DeleteAcls); None in name/principal/host matches any value."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermissionType = AclPermissionType.ANY

    @classmethod
    def of(cls, resource_type: int, name: str | None, pattern_type: int, principal: str | None,
           host: str | None, operation: int, permission: int) -> AclBindingFilter:
        """A filter from wire codes (unknown codes become UNKNOWN, which :meth:`validate` refuses)."""
        return cls(_coerce(ResourceType, resource_type), name, _coerce(PatternType, pattern_type), principal,
                   host, _coerce(AclOperation, operation), _coerce(AclPermissionType, permission))

    def validate(self) -> None:
        """Raise :class:`InvalidAcl` when the filter holds UNKNOWN elements (Kafka's messages)."""
        if self.resource_type == ResourceType.UNKNOWN or self.pattern_type == PatternType.UNKNOWN:
            raise InvalidAcl("Unknown patternFilter.")
        if self.operation == AclOperation.UNKNOWN or self.permission == AclPermissionType.UNKNOWN:
            raise InvalidAcl("Unknown entryFilter.")

    def matches(self, b: AclBinding) -> bool:
        """Whether ``b`` is selected (Kafka's ResourcePatternFilter and AccessControlEntryFilter)."""
        return self.matches_pattern(b) and self.matches_entry(b)

    def matches_pattern(self, b: AclBinding) -> bool:
        """Whether ``b``'s resource pattern is selected."""
        if self.resource_type != ResourceType.ANY and self.resource_type != b.resource_type:
            return False
        pt = self.pattern_type
        if pt not in (PatternType.ANY, PatternType.MATCH) and pt != b.pattern_type:
            return False
        if self.name is None:
            return True
        if pt == PatternType.ANY or pt == b.pattern_type:
            return self.name == b.name
        # MATCH: the bindings that apply to the resource so named.
        if b.pattern_type == PatternType.LITERAL:
            return self.name == b.name or b.name == WILDCARD
        return self.name.startswith(b.name)

    def matches_entry(self, b: AclBinding) -> bool:
        """Whether ``b``'s principal, host, operation and permission are selected."""
        return ((self.principal is None or self.principal == b.principal)
                and (self.host is None or self.host == b.host)
                and (self.operation == AclOperation.ANY or self.operation == b.operation)
                and (self.permission == AclPermissionType.ANY or self.permission == b.permission))


#: The filter selecting every binding.
ANY_BINDING = AclBindingFilter()
