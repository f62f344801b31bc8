"""DescribeConfigs (key 32): topic, broker, broker-logger and group configs with sources.

Every config is reported, defaults included: clients (and tools like the Kafka UI)
rely on seeing the full set, not just the overrides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.config import ConfigEntry, ConfigSource, ConfigType, describe_topic_configs
from kbroker.groups.group_configs import GROUP
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import BROKER, BROKER_LOGGER, TOPIC, check_broker_name
from kbroker.metadata.topic_names import invalid_reason
from kbroker.security.model import AclOperation

API_KEY = 32
VERSIONS = VersionRange(0, 4)



async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    synonyms = bool(body.get("include_synonyms", False))
    docs = bool(body.get("include_documentation", False))
    results = []
    for res in body.resources:
        code, message, entries = _describe(ctx, res.resource_type, res.resource_name)
        keys = res.configuration_keys
        if keys is not None:
            wanted = set(keys)
            entries = [e for e in entries if e.name in wanted]
        results.append({
            "error_code": code,
            "error_message": message,
            "resource_type": res.resource_type,
            "resource_name": res.resource_name,
            "configs": [_render(e, ctx.version, synonyms, docs) for e in entries],
        })
    return {"throttle_time_ms": 0, "results": results}


def _describe(ctx: RequestContext, rtype: int, name: str) -> tuple[int, str | None, Sequence[ConfigEntry]]:
    # As Kafka: DESCRIBE_CONFIGS on the cluster for a broker or its loggers, on the topic for a topic.
    refused = authz.config_resource_error(ctx, AclOperation.DESCRIBE_CONFIGS, rtype, name)
    if refused is not None:
        return refused, authz.MESSAGES[refused], []
    broker = ctx.config_scope
    if rtype == TOPIC:
        reason = invalid_reason(name)
        if reason is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, reason, []
        topic = broker.metadata.topic(name)
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {name} does not exist.", []
        return ErrorCode.NONE, None, describe_topic_configs(broker.config, topic.configs)
    if rtype in (BROKER, BROKER_LOGGER):
        if name == "" and rtype == BROKER:
            # The cluster-wide dynamic defaults; kbroker has none set.
            return ErrorCode.NONE, None, []
        code, message = check_broker_name(broker, name, allow_default=False)
        if code != ErrorCode.NONE:
            return code, message, []
        if rtype == BROKER_LOGGER:
            return ErrorCode.NONE, None, _loggers()
        return ErrorCode.NONE, None, broker.config.describe()
    if rtype == GROUP:
        # As Kafka: any group name but the empty one, whether or not the group exists.
        if name == "":
            return ErrorCode.INVALID_REQUEST, "Group name must not be empty", []
        return ErrorCode.NONE, None, ctx.broker.group_configs.describe(name)
    return ErrorCode.INVALID_REQUEST, f"Unsupported resource type {rtype}", []


def _loggers() -> list[ConfigEntry]:
    """Python's loggers as Kafka's log4j loggers: name and effective level."""
    names = ["root"] + sorted(n for n in logging.root.manager.loggerDict if n.startswith("kbroker"))
    out = []
    for n in names:
        level = logging.getLevelName((logging.root if n == "root" else logging.getLogger(n)).getEffectiveLevel())
        out.append(ConfigEntry(n, str(level), ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG, False, False,
                               ConfigType.STRING, ""))
    return out


def _render(e: ConfigEntry, version: int, synonyms: bool, docs: bool) -> dict[str, Any]:
    return {
        "name": e.name,
        "value": None if e.sensitive else e.value,
        "read_only": e.read_only,
        "config_source": int(e.source),
        "is_default": e.source == ConfigSource.DEFAULT_CONFIG,
        "is_sensitive": e.sensitive,
        "synonyms": [{"name": s.name, "value": None if e.sensitive else s.value, "source": int(s.source)}
                     for s in e.synonyms] if synonyms and version >= 1 else [],
        "config_type": int(e.type),
        "documentation": (e.doc or None) if docs else None,
    }
