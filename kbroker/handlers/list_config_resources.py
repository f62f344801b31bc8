"""ListConfigResources (key 74, KIP-1142; ListClientMetricsResources before Kafka 4.1): the
config resources of the given types (all supported types when none are given).

As Kafka: version 0 knows only client-metrics subscriptions (kbroker has none); version 1 adds
topics, brokers, broker loggers and groups (the groups that have configs). A type the version
does not support is UNSUPPORTED_VERSION; the caller needs DESCRIBE_CONFIGS on the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.groups.group_configs import GROUP
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import BROKER, BROKER_LOGGER, TOPIC
from kbroker.security.model import AclOperation

API_KEY = 74
VERSIONS = VersionRange(0, 1)

CLIENT_METRICS = 16


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    if not authz.cluster(ctx, AclOperation.DESCRIBE_CONFIGS):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "config_resources": []}
    supported = {CLIENT_METRICS} if ctx.version == 0 else {TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP}
    wanted = set(ctx.request.body.get("resource_types") or supported)
    if not wanted <= supported:
        return {"throttle_time_ms": 0, "error_code": ErrorCode.UNSUPPORTED_VERSION, "config_resources": []}
    resources: list[dict[str, Any]] = []
    if GROUP in wanted:
        resources += [{"resource_name": g, "resource_type": GROUP} for g in ctx.broker.group_configs.group_ids()]
    if BROKER_LOGGER in wanted:
        resources.append({"resource_name": str(ctx.broker.node_id), "resource_type": BROKER_LOGGER})
    if BROKER in wanted:
        resources += [{"resource_name": str(b), "resource_type": BROKER}
                      for b in sorted(ctx.broker.metadata.live_broker_ids())]
    if TOPIC in wanted:
        resources += [{"resource_name": t, "resource_type": TOPIC} for t in sorted(ctx.broker.metadata.topics)]
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "config_resources": resources}
