"""A rule-set Authorizer for the authorization tests, and a fixture installing it in a broker.

Rules are ``(principal, operation, resource type, name)``; ``"*"`` as the name matches
every resource of the type. In allow mode only the listed rules are allowed; in deny mode
everything is allowed but the listed rules. Every question asked is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest

from kbroker.handlers.api import ALL_OPERATIONS
from kbroker.security.model import ANONYMOUS, CLUSTER_NAME, WILDCARD, AclOperation, ResourceType
from kbroker.testing import BrokerThread

Rule = tuple[str, AclOperation, ResourceType, str]
Op = AclOperation
Res = ResourceType


def rule(operation: AclOperation, resource_type: ResourceType, name: str = WILDCARD,
         principal: str = ANONYMOUS) -> Rule:
    """A rule for ``principal`` (the PLAINTEXT clients' User:ANONYMOUS by default)."""
    return principal, operation, resource_type, name


def cluster(operation: AclOperation) -> Rule:
    """A rule on the cluster resource."""
    return rule(operation, Res.CLUSTER, CLUSTER_NAME)


@dataclass
class RuleAuthorizer:
    """Allows what its rules say; implements kbroker.security.model.Authorizer."""

    rules: set[Rule] = field(default_factory=set)
    #: True: everything is allowed except ``rules``; False: only ``rules`` are allowed.
    deny_mode: bool = True
    calls: list[tuple[str, str, AclOperation, ResourceType, str]] = field(default_factory=list)

    def _listed(self, principal: str, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        return ((principal, operation, resource_type, name) in self.rules
                or (principal, operation, resource_type, WILDCARD) in self.rules)

    def authorize(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                  name: str) -> bool:
        """True when the rules allow the operation."""
        self.calls.append((principal, host, operation, resource_type, name))
        return self._listed(principal, operation, resource_type, name) != self.deny_mode

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        """The allowed operations' bits."""
        bits = ALL_OPERATIONS.get(resource_type, 0)
        return sum(1 << op for op in AclOperation if bits & (1 << op)
                   and self._listed(principal, op, resource_type, name) != self.deny_mode)

    def authorize_by_resource_type(self, principal: str, host: str, operation: AclOperation,
                                   resource_type: ResourceType) -> bool:
        """Whether some resource of the type allows the operation."""
        self.calls.append((principal, host, operation, resource_type, "<any>"))
        if self.deny_mode:
            return (principal, operation, resource_type, WILDCARD) not in self.rules
        return any(r[:3] == (principal, operation, resource_type) for r in self.rules)

    def deny(self, *rules: Rule) -> RuleAuthorizer:
        """Deny mode with these rules refused."""
        self.deny_mode, self.rules = True, set(rules)
        return self

    def allow(self, *rules: Rule) -> RuleAuthorizer:
        """Allow mode with only these rules allowed."""
        self.deny_mode, self.rules = False, set(rules)
        return self

    def asked(self, operation: AclOperation, resource_type: ResourceType) -> list[str]:
        """The names asked about for one operation on one resource type, in order."""
        return [c[4] for c in self.calls if c[2] == operation and c[3] == resource_type]


def install(broker: BrokerThread, authorizer: RuleAuthorizer) -> None:
    """Make ``authorizer`` the broker's."""
    broker.broker.authorizer = authorizer


@pytest.fixture
def authorizer(kafka_broker: BrokerThread) -> Iterator[RuleAuthorizer]:
    """A deny-nothing RuleAuthorizer installed in the test's broker before any client connects."""
    auth = RuleAuthorizer()
    install(kafka_broker, auth)
    yield auth
    kafka_broker.broker.authorizer = None


def names(items: Iterable[object], attr: str = "name") -> list[object]:
    """``item.<attr>`` of each item."""
    return [getattr(i, attr) for i in items]
