"""AlterClientQuotas (key 49): set or remove quota configs of user, client-id and ip entities.

As Kafka 4.1's ClientQuotaControlManager: an entity is a map of type to name (a type given
twice keeps its last name); an entity named by two entries, or given one key twice, is
answered "Ignoring duplicate entity" (its first entry, if valid, still applies); each entity
is validated on its own, its removals unchecked (removing an unknown key does nothing); the
valid ones are applied together, durably, unless ``validate_only``. Results come in the
order Kafka's HashMap of entities iterates, each entity's parts in its map's order.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import MANY, RequestContext, response
from kbroker.handlers.authz import MESSAGES
from kbroker.security.java_order import java_hash_order
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType
from kbroker.security.quotas import (
    IP,
    Entity,
    QuotaError,
    entity_map,
    entity_string,
    is_ip_literal,
    java_entity_order,
    validate_entity,
    validate_value,
)

log = logging.getLogger(__name__)
API_KEY = 49
VERSIONS = VersionRange(0, 1)

Key = tuple[tuple[str, str | None], ...]


def _resolves(host: str) -> bool:
    """Whether ``host`` resolves (Java's InetAddress.getByName, which Kafka calls)."""
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    authorized = ctx.authorize(AclOperation.ALTER_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME)
    entries = [(entity_map((e.entity_type, e.entity_name) for e in entry.entity), entry.ops)
               for entry in body.entries]
    if not authorized:
        # Kafka's getErrorResponse: every entry in request order, its entity as sent.
        return response(len(entries), throttle_time_ms=0, entries=[
            {"error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
             "error_message": MESSAGES[ErrorCode.CLUSTER_AUTHORIZATION_FAILED],
             "entity": [{"entity_type": e.entity_type, "entity_name": e.entity_name} for e in entry.entity]}
            for entry in body.entries])
    # Host names of ip entities are looked up off the event loop, before validation.
    hosts = {name for parts, _ in entries if (name := parts.get(IP)) and not is_ip_literal(name)}
    resolved = {h: await anyio.to_thread.run_sync(_resolves, h) for h in hosts}
    outcome: dict[Key, tuple[int, str | None]] = {}
    valid: dict[Key, tuple[Entity, dict[str, float | None]]] = {}
    for i, (parts, ops) in enumerate(entries, 1):
        if i % MANY == 0:
            await anyio.sleep(0)  # a request may hold hundreds of thousands of entries: let others in
        key = _key(parts)
        alterations: dict[str, float | None] = {}
        for op in ops:
            if op.key in alterations:
                outcome[key] = (ErrorCode.INVALID_REQUEST, f"Duplicate quota key {op.key} not updating quota "
                                                           f"for this entity {entity_string(parts)}")
            else:
                alterations[op.key] = None if op.remove else float(op.value)
        if key in outcome:
            outcome[key] = (ErrorCode.INVALID_REQUEST, f"Ignoring duplicate entity {entity_string(parts)}")
            continue
        try:
            entity = validate_entity(parts, lambda h: resolved.get(h, False) or is_ip_literal(h))
            for k in java_hash_order(alterations, len(alterations)):
                value = alterations[k]
                if value is not None:
                    validate_value(entity, k, value)
        except QuotaError as e:
            outcome[key] = (ErrorCode.INVALID_REQUEST, str(e))
            continue
        outcome[key] = (ErrorCode.NONE, None)
        valid[key] = (entity, alterations)
    try:
        await ctx.broker.client_quotas.alter(list(valid.values()), validate_only=bool(body.validate_only))
    except OSError as e:  # not saved, so not applied either
        log.error("cannot save client quotas: %s", e)
        for key in valid:
            outcome[key] = (ErrorCode.UNKNOWN_SERVER_ERROR, str(e))
    return _response(entries, outcome)


def _key(parts: dict[str, str | None]) -> Key:
    return tuple(sorted(parts.items(), key=lambda kv: kv[0]))


def _response(entries: list[tuple[dict[str, str | None], Any]],
              outcome: dict[Key, tuple[int, str | None]]) -> dict[str, Any]:
    results = []
    for key in java_entity_order(parts for parts, _ in entries):
        parts = dict(key)
        code, message = outcome[key]
        results.append({"error_code": code, "error_message": message,
                        "entity": [{"entity_type": t, "entity_name": parts[t]}
                                   for t in java_hash_order(parts, len(parts))]})
    return response(len(results), throttle_time_ms=0, entries=results)
