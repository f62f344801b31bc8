"""CreateTopics (key 19): create topics, or only validate them (``validate_only``)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.config import describe_topic_configs
from kbroker.handlers.api import RequestContext

API_KEY = 19
VERSIONS = VersionRange(0, 7)
_ZERO_UUID = uuid.UUID(int=0)


def _result(name: str, code: int, message: str | None) -> dict[str, Any]:
    return {"name": name, "topic_id": _ZERO_UUID, "error_code": code, "error_message": message,
            "num_partitions": -1, "replication_factor": -1, "configs": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    validate_only = bool(body.get("validate_only", False))
    counts = Counter(t.name for t in body.topics)
    results: list[dict[str, Any]] = []
    reported: set[str] = set()
    for req in body.topics:
        name = req.name
        if name in reported:
            continue
        reported.add(name)
        if counts[name] > 1:
            results.append(_result(name, ErrorCode.INVALID_REQUEST, f"Found multiple entries for topic {name}."))
            continue
        results.append(await _create_one(ctx, req, validate_only))
    if ctx.version < 1:
        for r in results:
            r["error_message"] = None  # v0 has no error messages
    return {"throttle_time_ms": 0, "topics": results}


async def _create_one(ctx: RequestContext, req: Any, validate_only: bool) -> dict[str, Any]:
    md = ctx.broker.metadata
    name = req.name
    assignments = {a.partition_index: list(a.broker_ids) for a in req.assignments}
    if len(assignments) != len(req.assignments):
        return _result(name, ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Duplicate partition index in the replica assignment.")
    configs = {c.name: c.value for c in req.configs}
    # Many partitions are prepared off the event loop; other connections keep being served.
    code, message = await md.create_topic_async(name, req.num_partitions, req.replication_factor, configs,
                                                assignments or None, validate_only=validate_only)
    if code != ErrorCode.NONE:
        return _result(name, code, message)
    result = _result(name, ErrorCode.NONE, None)
    if validate_only:
        n, rf = md.resolve_shape(req.num_partitions, req.replication_factor, assignments or None)
        overrides: Mapping[str, str | None] = configs
    else:
        topic = md.topic(name)
        assert topic is not None
        n, rf = len(topic.partitions), len(topic.partitions[0].replicas)
        overrides = topic.configs
        result["topic_id"] = topic.topic_id
    result["num_partitions"], result["replication_factor"] = n, rf
    result["configs"] = [
        {"name": e.name, "value": None if e.sensitive else e.value, "read_only": e.read_only,
         "config_source": int(e.source), "is_sensitive": e.sensitive}
        for e in describe_topic_configs(ctx.broker.config, overrides)
    ]
    return result
