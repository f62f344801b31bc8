"""DescribeCluster (key 60): cluster id, controller and brokers (KIP-700)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.handlers.metadata import AUTHORIZED_OPERATIONS_OMITTED, cluster_operations

API_KEY = 60
VERSIONS = VersionRange(0, 2)
ENDPOINT_BROKER = 1
#: Endpoint types a request may name (KIP-919): BROKER and CONTROLLER; others are unknown.
ENDPOINT_NAMES = {1: "BROKER", 2: "CONTROLLER"}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    md = ctx.broker.metadata
    endpoint_type = int(body.get("endpoint_type", ENDPOINT_BROKER))
    if endpoint_type != ENDPOINT_BROKER:
        # Brokers describe broker endpoints only; controller endpoints come from controllers. As Kafka,
        # a known other type is a mismatch, any other number unsupported, and the answer otherwise holds
        # the schema's defaults (endpoint_type BROKER: this endpoint's own type).
        if endpoint_type in ENDPOINT_NAMES:
            code = ErrorCode.MISMATCHED_ENDPOINT_TYPE
            message = ("The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type "
                       + ENDPOINT_NAMES[endpoint_type])
        else:
            code, message = ErrorCode.UNSUPPORTED_ENDPOINT_TYPE, f"Unsupported endpoint type {endpoint_type}"
        return {"throttle_time_ms": 0, "error_code": code, "error_message": message,
                "endpoint_type": ENDPOINT_BROKER, "cluster_id": "", "controller_id": -1, "brokers": []}
    include_ops = bool(body.include_cluster_authorized_operations)
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "error_message": None,
        "endpoint_type": ENDPOINT_BROKER,
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "brokers": [{"broker_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack, "is_fenced": False}
                    for b in md.brokers(ctx.session.listener)],
        "cluster_authorized_operations": cluster_operations(ctx) if include_ops else AUTHORIZED_OPERATIONS_OMITTED,
    }
