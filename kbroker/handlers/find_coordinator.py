"""FindCoordinator (key 10): which broker coordinates a group or transactional id.

A single broker coordinates every group and transactional id. In a cluster the
coordinator of a key is the leader of the key's partition of the internal topic
(``__consumer_offsets`` for groups, ``__transaction_state`` for transactional ids),
answered with its endpoint on the listener the request came in on. As Kafka, the first
lookup creates the internal topic; while it cannot be created, or the partition has no
leader (or the leader no endpoint on that listener), the answer is the retriable
COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, cast

from kbroker.codec.versions import VersionRange
from kbroker.groups.errors import Errors
from kbroker.handlers.api import RequestContext
from kbroker.handlers.authz import MESSAGES
from kbroker.metadata.model import PartitionInfo
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 10
VERSIONS = VersionRange(0, 6)
GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
CONSUMER_OFFSETS = "__consumer_offsets"
TRANSACTION_STATE = "__transaction_state"


class ClusterView(Protocol):
    """What the cluster path reads from the metadata: partition leaders and broker endpoints."""

    def partition(self, topic: str, partition: int) -> PartitionInfo | None: ...
    def broker_endpoint(self, node_id: int, listener: str) -> tuple[str, int] | None: ...


class Coordinator(NamedTuple):
    """A lookup's answer: NONE and the coordinator's node and endpoint, or the error."""

    error: Errors
    node_id: int = -1
    host: str = ""
    port: int = -1


def _endpoint(ctx: RequestContext) -> tuple[str, int]:
    endpoints = ctx.broker.endpoints
    return endpoints.get(ctx.session.listener) or next(iter(endpoints.values()))


def leader_of(view: ClusterView, topic: str, partition: int, listener: str) -> Coordinator:
    """The leader of ``topic``-``partition`` as a coordinator reachable on ``listener``."""
    info = view.partition(topic, partition)
    if info is None or info.leader < 0:
        return Coordinator(Errors.COORDINATOR_NOT_AVAILABLE)
    endpoint = view.broker_endpoint(info.leader, listener)
    if endpoint is None:
        return Coordinator(Errors.COORDINATOR_NOT_AVAILABLE)
    return Coordinator(Errors.NONE, info.leader, endpoint[0], endpoint[1])


def _lookup(ctx: RequestContext, key_type: int, key: str) -> Coordinator:
    if key_type == GROUP_KEY_TYPE:
        # Kafka creates __consumer_offsets when a client first looks for a group coordinator.
        groups = ctx.broker.groups
        if not groups.ensure_offsets_topic():
            return Coordinator(Errors.COORDINATOR_NOT_AVAILABLE)
        if groups.clustered:
            return leader_of(cast(ClusterView, ctx.broker.metadata), CONSUMER_OFFSETS, groups.partition_for(key),
                             ctx.session.listener)
    elif key_type == TRANSACTION_KEY_TYPE:
        transactions = ctx.broker.transactions
        if not transactions.ensure_state_topic():
            return Coordinator(Errors.COORDINATOR_NOT_AVAILABLE)
        if transactions.clustered:
            return leader_of(cast(ClusterView, ctx.broker.metadata), TRANSACTION_STATE,
                             transactions.partition_for(key), ctx.session.listener)
    else:
        return Coordinator(Errors.INVALID_REQUEST)
    host, port = _endpoint(ctx)
    return Coordinator(Errors.NONE, ctx.broker.node_id, host, port)


def _refused(ctx: RequestContext, key_type: int, key: str) -> Errors | None:
    """As Kafka: looking up a coordinator needs DESCRIBE on the group or transactional id."""
    if key_type == GROUP_KEY_TYPE and not ctx.authorize(AclOperation.DESCRIBE, ResourceType.GROUP, key):
        return Errors.GROUP_AUTHORIZATION_FAILED
    if key_type == TRANSACTION_KEY_TYPE and not ctx.authorize(AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                                                              key):
        return Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return None


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    key_type = body.get("key_type", GROUP_KEY_TYPE)

    def answer(found: Coordinator) -> dict[str, Any]:
        error = found.error
        if error != Errors.NONE:
            return {"error_code": error, "error_message": error.name, "node_id": -1, "host": "", "port": -1}
        return {"error_code": 0, "error_message": None, "node_id": found.node_id, "host": found.host,
                "port": found.port}

    if ctx.version < 4:
        refused = _refused(ctx, key_type, body.key)
        if refused is not None:
            return {"throttle_time_ms": 0, **answer(Coordinator(refused)), "error_message": MESSAGES[refused]}
        return {"throttle_time_ms": 0, **answer(_lookup(ctx, key_type, body.key))}
    # Kafka 4.1.1 leaves a refused key's message at its default from v4: the empty string.
    refusals = [(key, _refused(ctx, key_type, key)) for key in body.coordinator_keys]
    return {"throttle_time_ms": 0,
            "coordinators": [{"key": key, **answer(_lookup(ctx, key_type, key))} if refused is None
                             else {"key": key, **answer(Coordinator(refused)), "error_message": ""}
                             for key, refused in refusals]}
