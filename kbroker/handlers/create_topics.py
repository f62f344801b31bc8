"""CreateTopics (key 19): create topics, or only validate them (``validate_only``)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.config import describe_topic_configs
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.manager import NewTopicRequest
from kbroker.security.model import AclOperation, ResourceType
from kbroker.security.quotas import THROTTLING_MESSAGE

API_KEY = 19
VERSIONS = VersionRange(0, 7)
_ZERO_UUID = uuid.UUID(int=0)


def _result(name: str, code: int, message: str | None) -> dict[str, Any]:
    return {"name": name, "topic_id": _ZERO_UUID, "error_code": code, "error_message": message,
            "num_partitions": -1, "replication_factor": -1, "configs": []}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    md = ctx.broker.metadata
    validate_only = bool(body.get("validate_only", False))
    counts = Counter(t.name for t in body.topics)
    # As Kafka: CREATE on the cluster allows every topic, else CREATE on each; the created
    # topic's configs are answered only with DESCRIBE_CONFIGS on it.
    not_creatable: frozenset[str] = frozenset()
    no_configs: frozenset[str] = frozenset()
    if ctx.broker.authorizer is not None:
        if not authz.cluster(ctx, AclOperation.CREATE):
            not_creatable = authz.denied(ctx, AclOperation.CREATE, ResourceType.TOPIC, counts)
        no_configs = authz.denied(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, counts)
    results: dict[str, dict[str, Any]] = {}
    batch: list[tuple[Any, NewTopicRequest]] = []
    quota = ctx.broker.client_quotas.mutation_quota(ctx.session.principal, ctx.client_id, strict=ctx.version >= 6)
    for req in body.topics:
        name = req.name
        if name in results or any(name == r.name for r, _ in batch):
            continue
        if counts[name] > 1:
            results[name] = _result(name, ErrorCode.INVALID_REQUEST, f"Found multiple entries for topic {name}.")
            continue
        if name in not_creatable:
            results[name] = _result(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            continue
        assignments = {a.partition_index: list(a.broker_ids) for a in req.assignments}
        if len(assignments) != len(req.assignments):
            results[name] = _result(name, ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                    "Duplicate partition index in the replica assignment.")
            continue
        new = NewTopicRequest(name, req.num_partitions, req.replication_factor,
                              {c.name: c.value for c in req.configs}, assignments or None)
        # controller_mutation_rate: a topic that would be created takes its partitions from the quota.
        if (quota is not None and md.check_create(name, new.num_partitions, new.replication_factor, new.configs,
                                                  new.assignments)[0] == ErrorCode.NONE
                and not quota.accept(md.resolve_shape(new.num_partitions, new.replication_factor,
                                                      new.assignments)[0])):
            results[name] = _result(name, ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLING_MESSAGE)
            continue
        batch.append((req, new))
    # One operation for the whole request: bounded in partitions, its file work off the event loop.
    outcomes = await md.create_topics_async([new for _, new in batch], validate_only=validate_only)
    for (req, new), (code, message) in zip(batch, outcomes, strict=True):
        results[new.name] = (_result(new.name, code, message) if code != ErrorCode.NONE
                             else _success(ctx, req, new, validate_only, new.name not in no_configs))
    ordered = [results[name] for name in dict.fromkeys(t.name for t in body.topics)]
    if ctx.version < 1:
        for r in ordered:
            r["error_message"] = None  # v0 has no error messages
    return {"throttle_time_ms": quota.throttle_time_ms if quota is not None else 0, "topics": ordered}


def _success(ctx: RequestContext, req: Any, new: NewTopicRequest, validate_only: bool,
             describable: bool) -> dict[str, Any]:
    md = ctx.broker.metadata
    name = new.name
    result = _result(name, ErrorCode.NONE, None)
    if not describable:
        # As Kafka: the topic is created (or validated) with its id, but its shape and configs
        # are withheld.
        topic = None if validate_only else md.topic(name)
        result["topic_id"] = topic.topic_id if topic is not None else uuid.uuid4()
        result["topic_config_error_code"] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        return result
    if validate_only:
        n, rf = md.resolve_shape(req.num_partitions, req.replication_factor, new.assignments)
        overrides: Mapping[str, str | None] = new.configs
        # Kafka's controller draws the topic id before it checks validate_only and answers with it.
        result["topic_id"] = uuid.uuid4()
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
