"""Kafka's StandardAuthorizer: ACL checks, and the durable set of ACLs they read.

The rules are Kafka's (``StandardAuthorizerData``): a super user may do anything; otherwise
the ACLs applying to the resource are those of its literal name, of the literal wildcard
``*`` and of every prefix naming it; among them, those for the principal (or ``User:*``)
and the host (or ``*``) decide. A matching DENY wins over any ALLOW; an ALLOW for READ,
WRITE, DELETE or ALTER implies DESCRIBE, one for ALTER_CONFIGS implies DESCRIBE_CONFIGS,
and ALL covers every operation (DENY ALL denies them all). When no ACL at all names the
resource, ``allow.everyone.if.no.acl.found`` decides.

A check costs a few dictionary look-ups whatever the number of ACLs: bindings are indexed
by (resource type, name) for literal ones and for prefixed ones, and a check looks up the
prefixes of the resource name only at the lengths some prefixed ACL of that type has.
The index is rebuilt on each change and swapped in whole, so checks never see half a change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio

from kbroker.config import BrokerConfig
from kbroker.config.errors import ConfigError
from kbroker.security.acl import (
    SUPPORTED_OPERATIONS,
    WILDCARD_HOST,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclBindingFilter,
    InvalidAcl,
    canonical_host,
)
from kbroker.security.model import (
    WILDCARD,
    AclOperation,
    AclPermissionType,
    Authorizer,
    PatternType,
    ResourceType,
)
from kbroker.security.store import StateStore

log = logging.getLogger(__name__)

#: ``authorizer.class.name`` values that turn this authorizer on (KRaft's and the older ZooKeeper one's).
AUTHORIZER_CLASSES = frozenset({
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
})
#: The state store kind holding the ACLs.
STORE_KIND = "acls"

_IMPLIES_DESCRIBE = frozenset({AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE,
                               AclOperation.DELETE, AclOperation.ALTER})
_IMPLIES_DESCRIBE_CONFIGS = frozenset({AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS})


def _grants(acl: AclBinding, operation: AclOperation) -> bool:
    """Whether ``acl`` (already matching resource, principal and host) speaks to ``operation``."""
    if acl.operation == AclOperation.ALL or acl.operation == operation:
        return True
    # Implied operations come from ALLOW ACLs only: DENY READ does not deny DESCRIBE.
    if acl.permission != AclPermissionType.ALLOW:
        return False
    if operation == AclOperation.DESCRIBE:
        return acl.operation in _IMPLIES_DESCRIBE
    if operation == AclOperation.DESCRIBE_CONFIGS:
        return acl.operation in _IMPLIES_DESCRIBE_CONFIGS
    return False


@dataclass(frozen=True)
class _Index:
    """Every binding, and the look-up tables a check uses; never changed once built."""

    bindings: tuple[AclBinding, ...] = ()
    literal: dict[tuple[ResourceType, str], tuple[AclBinding, ...]] = field(default_factory=dict)
    prefixed: dict[tuple[ResourceType, str], tuple[AclBinding, ...]] = field(default_factory=dict)
    #: The distinct prefix lengths of each type's prefixed ACLs, longest first.
    prefix_lengths: dict[ResourceType, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, bindings: Iterable[AclBinding]) -> _Index:
        ordered = tuple(dict.fromkeys(bindings))
        literal: dict[tuple[ResourceType, str], list[AclBinding]] = defaultdict(list)
        prefixed: dict[tuple[ResourceType, str], list[AclBinding]] = defaultdict(list)
        lengths: dict[ResourceType, set[int]] = defaultdict(set)
        for b in ordered:
            if b.pattern_type == PatternType.PREFIXED:
                prefixed[(b.resource_type, b.name)].append(b)
                lengths[b.resource_type].add(len(b.name))
            else:
                literal[(b.resource_type, b.name)].append(b)
        return cls(ordered, {k: tuple(v) for k, v in literal.items()}, {k: tuple(v) for k, v in prefixed.items()},
                   {t: tuple(sorted(ls, reverse=True)) for t, ls in lengths.items()})

    def applying(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """The bindings whose pattern names the resource: literal, wildcard and prefixed."""
        out = list(self.literal.get((resource_type, name), ()))
        if name != WILDCARD:
            out.extend(self.literal.get((resource_type, WILDCARD), ()))
        for n in self.prefix_lengths.get(resource_type, ()):
            if n <= len(name):
                out.extend(self.prefixed.get((resource_type, name[:n]), ()))
        return out


@runtime_checkable
class AclAdmin(Protocol):
    """An authorizer that keeps ACLs the ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) manage."""

    def acls(self, flt: AclBindingFilter) -> list[AclBinding]:
        """The bindings ``flt`` selects."""
        ...

    async def create_acls(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        """Add bindings; per binding None or the reason it is invalid."""
        ...

    async def delete_acls(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding] | str]:
        """Remove bindings; per filter the bindings removed or the reason it is invalid."""
        ...


class StandardAuthorizer:
    """ACL checks with Kafka's semantics, over ACLs kept in a :class:`StateStore` (kind ``acls``).

    Checks (:meth:`authorize`, :meth:`authorized_operations`, :meth:`acls`) are synchronous
    and cheap; changes (:meth:`create_acls`, :meth:`delete_acls`) are coroutines that save
    the new set from a worker thread and take effect once it is durable.
    """

    def __init__(self, config: BrokerConfig, store: StateStore) -> None:
        raw = config.get("super.users") or ""
        #: Principals allowed everything (``super.users``, semicolon separated).
        self.super_users = frozenset(p.strip() for p in str(raw).split(";") if p.strip())
        for principal in self.super_users:
            # As Kafka, which parses each one: a name without its type (``admin`` for
            # ``User:admin``) would silently make no super user.
            if ":" not in principal:
                raise ConfigError(f"super.users: expected a string in format principalType:principalName "
                                  f"but got {principal}", "super.users")
        #: What a check decides when no ACL names the resource.
        self.allow_if_no_acl = bool(config.get("allow.everyone.if.no.acl.found"))
        self._store = store
        self._index = _Index.build(self._load())
        self._lock: anyio.Lock | None = None

    def _load(self) -> list[AclBinding]:
        doc = self._store.load(STORE_KIND)
        if doc is None:
            return []
        try:
            return [AclBinding.from_json(entry) for entry in doc]
        except (KeyError, ValueError, TypeError) as e:
            # Starting without the ACLs would open (or close) the broker to everyone: refuse.
            raise OSError(f"cannot read the stored ACLs: {e!r}") from e

    def reload(self) -> None:
        """Take the stored ACLs again (another broker of the cluster changed them)."""
        self._index = _Index.build(self._load())

    # -- checks ------------------------------------------------------------------------

    def _relevant(self, principal: str, host: str, resource_type: ResourceType,
                  name: str) -> tuple[list[AclBinding], bool]:
        """The ACLs on the resource for this principal and host, and whether any ACL names the resource."""
        applying = self._index.applying(resource_type, name)
        host = canonical_host(host)
        mine = [a for a in applying
                if (a.principal == principal or a.principal == WILDCARD_PRINCIPAL)
                and (a.host == WILDCARD_HOST or canonical_host(a.host) == host)]
        return mine, bool(applying)

    def _decide(self, acls: Sequence[AclBinding], any_acl: bool, operation: AclOperation) -> bool:
        allowed = False
        for acl in acls:
            if _grants(acl, operation):
                if acl.permission == AclPermissionType.DENY:
                    return False
                allowed = True
        return allowed or (not any_acl and self.allow_if_no_acl)

    def authorize(self, principal: str, host: str, operation: AclOperation,
                  resource_type: ResourceType, name: str) -> bool:
        """True when ``principal`` connected from ``host`` may do ``operation`` on the resource."""
        if principal in self.super_users:
            return True
        acls, any_acl = self._relevant(principal, host, resource_type, name)
        return self._decide(acls, any_acl, operation)

    def authorize_by_resource_type(self, principal: str, host: str, operation: AclOperation,
                                   resource_type: ResourceType) -> bool:
        """Whether the principal may do ``operation`` on at least one resource of the type
        (Kafka's ``Authorizer.authorizeByResourceType``, KIP-679: an idempotent producer
        needs WRITE on some topic): an ALLOW ACL that no DENY ACL covers, literal or prefixed."""
        # Kafka asks about a made-up name first, so super users (and allow.everyone.if.no.acl.found
        # with no ACLs on it) pass whatever the DENY ACLs say.
        if self.authorize(principal, host, operation, resource_type, "hardcode"):
            return True
        allow: dict[PatternType, set[str]] = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        deny: dict[PatternType, set[str]] = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        host = canonical_host(host)
        wildcard_allow = False
        for acl in self._index.bindings:
            if (acl.resource_type != resource_type
                    or (acl.host != WILDCARD_HOST and canonical_host(acl.host) != host)
                    or acl.principal not in (principal, WILDCARD_PRINCIPAL)
                    or acl.operation not in (operation, AclOperation.ALL)):
                continue
            if acl.permission == AclPermissionType.DENY:
                if acl.pattern_type == PatternType.LITERAL and acl.name == WILDCARD:
                    return False
                deny[acl.pattern_type].add(acl.name)
            elif acl.permission == AclPermissionType.ALLOW:
                if acl.pattern_type == PatternType.LITERAL and acl.name == WILDCARD:
                    # Decided only once every DENY is seen: a wildcard DENY wins, in any order.
                    wildcard_allow = True
                    continue
                allow[acl.pattern_type].add(acl.name)
        if wildcard_allow:
            return True
        for pattern_type, names in allow.items():
            for name in names:
                if pattern_type == PatternType.LITERAL and name in deny[PatternType.LITERAL]:
                    continue
                if not any(name[:n] in deny[PatternType.PREFIXED] for n in range(1, len(name) + 1)):
                    return True
        return False

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        """The bit field (bit n = AclOperation n) of the resource type's operations the principal may do."""
        supported = SUPPORTED_OPERATIONS.get(resource_type, ())
        if principal in self.super_users:
            allowed: Iterable[AclOperation] = supported
        else:
            acls, any_acl = self._relevant(principal, host, resource_type, name)
            allowed = [op for op in supported if self._decide(acls, any_acl, op)]
        bits = 0
        for op in allowed:
            bits |= 1 << op
        return bits

    def acls(self, flt: AclBindingFilter) -> list[AclBinding]:
        """The bindings ``flt`` selects, in creation order."""
        return [b for b in self._index.bindings if flt.matches(b)]

    def __len__(self) -> int:
        return len(self._index.bindings)

    # -- changes -----------------------------------------------------------------------

    def _changes(self) -> anyio.Lock:
        # Made on first use, on the event loop that serves the requests.
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    def _save_and_index(self, bindings: tuple[AclBinding, ...]) -> _Index:
        self._store.save(STORE_KIND, [b.to_json() for b in bindings])
        return _Index.build(bindings)

    async def _commit(self, bindings: tuple[AclBinding, ...]) -> None:
        # Writing the file and indexing thousands of ACLs both happen off the event loop;
        # checks keep reading the old index until the new one is durable and swapped in.
        self._index = await anyio.to_thread.run_sync(self._save_and_index, bindings)

    async def create_acls(self, bindings: Sequence[AclBinding]) -> list[str | None]:
        """Add the valid ``bindings`` (one already present is a success); per binding, None or
        Kafka's INVALID_REQUEST message. Raises OSError when the new set cannot be saved."""
        async with self._changes():
            current = self._index.bindings
            # A request may carry hundreds of thousands of bindings: checked in a worker thread.
            results, added = await anyio.to_thread.run_sync(_new_bindings, current, bindings)
            if added:
                await self._commit(current + tuple(added))
                await anyio.to_thread.run_sync(_log_each, "ACL added: %s", added)
            return results

    async def delete_acls(self, filters: Sequence[AclBindingFilter]) -> list[list[AclBinding] | str]:
        """Remove the bindings each filter selects; per filter, the bindings it removed or Kafka's
        INVALID_REQUEST message. As Kafka's AclControlManager, every filter looks at the ACLs as
        they were before the request, so a binding two filters select is reported under both.
        Raises OSError when the new set cannot be saved."""
        async with self._changes():
            current = self._index.bindings
            # Every filter is matched against every binding: thousands of each take seconds,
            # which is done in a worker thread so that other clients are served meanwhile.
            results, gone = await anyio.to_thread.run_sync(_select, current, filters)
            if gone:
                await self._commit(tuple(b for b in current if b not in gone))
                await anyio.to_thread.run_sync(_log_each, "ACL removed: %s", [b for b in current if b in gone])
            return results


def _new_bindings(current: tuple[AclBinding, ...], bindings: Sequence[AclBinding]
                  ) -> tuple[list[str | None], list[AclBinding]]:
    """Per binding of a CreateAcls, None or its INVALID_REQUEST message; and the valid ones not
    already present, once each."""
    present = set(current)
    added: list[AclBinding] = []
    results: list[str | None] = []
    for b in bindings:
        try:
            b.validate()
        except InvalidAcl as e:
            results.append(str(e))
            continue
        results.append(None)
        if b not in present:
            present.add(b)
            added.append(b)
    return results, added


def _log_each(message: str, bindings: Sequence[AclBinding]) -> None:
    for b in bindings:
        log.info(message, b)


def _select(current: tuple[AclBinding, ...], filters: Sequence[AclBindingFilter]
            ) -> tuple[list[list[AclBinding] | str], set[AclBinding]]:
    """What each filter of a DeleteAcls selects (or its INVALID_REQUEST message), and all of it;
    as Kafka, every filter sees the ACLs as they were before the request."""
    gone: set[AclBinding] = set()
    results: list[list[AclBinding] | str] = []
    for flt in filters:
        try:
            flt.validate()
        except InvalidAcl as e:
            results.append(str(e))
            continue
        matched = [b for b in current if flt.matches(b)]
        gone.update(matched)
        results.append(matched)
    return results, gone


def build_authorizer(config: BrokerConfig, store: StateStore) -> Authorizer | None:
    """The authorizer ``authorizer.class.name`` names: None when unset; ConfigError for a class this
    broker does not have; OSError when the stored ACLs cannot be read."""
    name = str(config.get("authorizer.class.name") or "").strip()
    if not name:
        return None
    if name not in AUTHORIZER_CLASSES:
        raise ConfigError(f"authorizer.class.name: unsupported authorizer {name!r}; supported: "
                          + ", ".join(sorted(AUTHORIZER_CLASSES)))
    return StandardAuthorizer(config, store)

