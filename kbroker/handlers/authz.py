"""Authorization helpers the handlers share, after Kafka's AuthHelper.

Every helper returns at once when the broker has no authorizer (``authorizer.class.name``
unset), so the produce and fetch paths pay one attribute check. With an authorizer, a
name is checked once per request however many partitions name it, as Kafka's
``filterByAuthorized`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from kbroker.codec.error_codes import ErrorCode
from kbroker.groups.group_configs import GROUP
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import BROKER, BROKER_LOGGER, TOPIC, check_broker_name
from kbroker.metadata.errors import OK
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType

T = TypeVar("T")
_NONE: frozenset[str] = frozenset()

#: Kafka's default messages of the authorization errors (``Errors.X.message``), which some
#: responses carry.
MESSAGES = {
    ErrorCode.TOPIC_AUTHORIZATION_FAILED: "Topic authorization failed.",
    ErrorCode.GROUP_AUTHORIZATION_FAILED: "Group authorization failed.",
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: "Cluster authorization failed.",
    ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "Transactional Id authorization failed.",
}


def denied(ctx: RequestContext, operation: AclOperation, resource_type: ResourceType,
           names: Iterable[str | None]) -> frozenset[str]:
    """The distinct names in ``names`` the principal may not do ``operation`` on (empty
    without an authorizer; ``names`` is then not even iterated). None entries are skipped."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return _NONE
    principal, host = ctx.session.principal, ctx.session.client_host
    out: set[str] = set()
    checked: set[str] = set()
    for name in names:
        if name is None or name in checked:
            continue
        checked.add(name)
        if not authorizer.authorize(principal, host, operation, resource_type, name):
            out.add(name)
    return frozenset(out)


def partition(ctx: RequestContext, operation: AclOperation, resource_type: ResourceType,
              items: Sequence[T], key: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """``(allowed, refused)`` items, in their order, by the name ``key`` gives each."""
    refused_names = denied(ctx, operation, resource_type, (key(i) for i in items))
    if not refused_names:
        return list(items), []
    allowed: list[T] = []
    refused: list[T] = []
    for item in items:
        (refused if key(item) in refused_names else allowed).append(item)
    return allowed, refused


def cluster(ctx: RequestContext, operation: AclOperation) -> bool:
    """Whether the principal may do ``operation`` on the cluster."""
    return ctx.authorize(operation, ResourceType.CLUSTER, CLUSTER_NAME)


def authorize_by_resource_type(ctx: RequestContext, operation: AclOperation,
                               resource_type: ResourceType) -> bool:
    """Whether the principal may do ``operation`` on at least one resource of the type
    (Kafka's ``authorizeByResourceType``, KIP-679: an idempotent producer needs WRITE on
    some topic)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    return authorizer.authorize_by_resource_type(ctx.session.principal, ctx.session.client_host, operation,
                                                 resource_type)


def config_resource_error(ctx: RequestContext, operation: AclOperation, config_type: int,
                          name: str) -> ErrorCode | None:
    """The error for a config resource (Describe/AlterConfigs) the principal may not
    ``operation``: a broker or broker logger is the cluster's, a topic or group its own. None when
    allowed, or when the resource type is one the config code answers itself."""
    if ctx.broker.authorizer is None:
        return None
    if config_type in (BROKER, BROKER_LOGGER):
        return None if cluster(ctx, operation) else ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    if config_type == TOPIC:
        return None if ctx.authorize(operation, ResourceType.TOPIC, name) else ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if config_type == GROUP:
        return None if ctx.authorize(operation, ResourceType.GROUP, name) else ErrorCode.GROUP_AUTHORIZATION_FAILED
    return None


def alter_config_error(ctx: RequestContext, config_type: int, name: str, keys: Sequence[str]) -> ErrorCode | None:
    """The authorization error for an (Incremental)AlterConfigs resource, None when allowed.

    As Kafka, the request's own faults are answered first, whoever asks: config keys named
    twice, and a broker resource naming another broker (Kafka checks those before it asks
    the authorizer); they are left to the config code.
    """
    if ctx.broker.authorizer is None or len(set(keys)) != len(keys):
        return None
    if config_type == BROKER and check_broker_name(ctx.config_scope, name, allow_default=True) != OK:
        return None
    return config_resource_error(ctx, AclOperation.ALTER_CONFIGS, config_type, name)
