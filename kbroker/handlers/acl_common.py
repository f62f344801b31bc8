"""What the three ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) share: finding the ACL
store behind the authorizer, and the cluster permission each needs."""

from __future__ import annotations

from kbroker.handlers.api import RequestContext
from kbroker.security.authorizer import AclAdmin
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType

#: Kafka's messages when no authorizer (or one keeping no ACLs) is configured.
NO_AUTHORIZER = "No Authorizer is configured."
CLUSTER_DENIED = "Cluster authorization failed."


def acl_admin(ctx: RequestContext) -> AclAdmin | None:
    """The broker's ACL store; None when ``authorizer.class.name`` configures none."""
    authorizer = ctx.broker.authorizer
    return authorizer if isinstance(authorizer, AclAdmin) else None


def cluster_allowed(ctx: RequestContext, operation: AclOperation) -> bool:
    """Whether the principal may do ``operation`` on the cluster (DESCRIBE to list ACLs, ALTER to change them)."""
    return ctx.authorize(operation, ResourceType.CLUSTER, CLUSTER_NAME)
