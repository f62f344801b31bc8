"""ConsumerGroupHeartbeat (key 68): the consumer group protocol of KIP-848 is not supported yet.

Kafka answers UNSUPPORTED_VERSION when that protocol is not enabled, and that is the answer
here. The API is advertised so that a consumer configured with ``group.protocol=consumer``
asks at all: told it is absent from ApiVersions, librdkafka only re-queries the coordinator,
silently, for ever; answered UNSUPPORTED_VERSION, it fails at once with a fatal error (and the
Java consumer says to use ``group.protocol=classic``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext

API_KEY = 68
#: librdkafka uses the protocol only with v1 (Kafka 4.0) available.
VERSIONS = VersionRange(0, 1)
MESSAGE = "the consumer group protocol (KIP-848) is not supported by this broker yet; use group.protocol=classic"

log = logging.getLogger(__name__)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    log.warning("refusing ConsumerGroupHeartbeat for group %r of client %r at %s:%d: %s", body.group_id,
                ctx.client_id, ctx.session.client_host, ctx.session.client_port, MESSAGE)
    return {"throttle_time_ms": 0, "error_code": ErrorCode.UNSUPPORTED_VERSION, "error_message": MESSAGE,
            "member_id": None, "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}
