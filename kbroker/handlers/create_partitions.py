"""CreatePartitions (key 37): grow topics; every requested topic gets a result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType
from kbroker.security.quotas import THROTTLING_MESSAGE

API_KEY = 37
VERSIONS = VersionRange(0, 3)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    md = ctx.broker.metadata
    counts = Counter(t.name for t in body.topics)
    # As Kafka: ALTER on each topic; a refused topic is left out of the request's bound too.
    refused = authz.denied(ctx, AclOperation.ALTER, ResourceType.TOPIC, (n for n, c in counts.items() if c == 1))
    results: list[dict[str, Any]] = []
    reported: set[str] = set()
    # As for CreateTopics, the bound on new partitions covers the whole request.
    growth = 0
    for req in body.topics:
        topic = md.topic(req.name) if counts[req.name] == 1 and req.name not in refused else None
        if topic is not None:
            growth += max(req.count - len(topic.partitions), 0)
    too_large = growth > md.max_partitions_per_request
    quota = ctx.broker.client_quotas.mutation_quota(ctx.session.principal, ctx.client_id, strict=ctx.version >= 3)
    for req in body.topics:
        name = req.name
        if name in reported:
            continue
        reported.add(name)
        code: int
        message: str | None
        if counts[name] > 1:
            code, message = ErrorCode.INVALID_REQUEST, "Duplicate topic in request."
        elif name in refused:
            code, message = ErrorCode.TOPIC_AUTHORIZATION_FAILED, None
        elif too_large:
            code, message = ErrorCode.POLICY_VIOLATION, "Unable to perform excessively large batch operation."
        elif (quota is not None and (topic := md.topic(name)) is not None and req.count > len(topic.partitions)
              and not quota.accept(req.count - len(topic.partitions))):
            # controller_mutation_rate: the partitions added count against the quota.
            code, message = ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLING_MESSAGE
        else:
            assignments = None if req.assignments is None else [list(a.broker_ids) for a in req.assignments]
            code, message = await md.create_partitions_async(name, req.count, assignments, bool(body.validate_only))
        results.append({"name": name, "error_code": code, "error_message": message})
    return {"throttle_time_ms": quota.throttle_time_ms if quota is not None else 0, "results": results}
