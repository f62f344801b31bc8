"""SaslAuthenticate (key 36): one SASL token each way (after SaslHandshake v1).

Success sets the session's principal to ``User:<authorization id>``; v1+ tells the client
the session's lifetime (KIP-368). A failure answers SASL_AUTHENTICATION_FAILED with
Kafka's message; the connection sends it after connection.failed.authentication.delay.ms
and closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext

API_KEY = 36
VERSIONS = VersionRange(0, 2)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    session = ctx.session
    sasl = session.sasl
    if sasl is None:
        return {"error_code": ErrorCode.ILLEGAL_SASL_STATE,
                "error_message": "SaslAuthenticate request received after successful authentication",
                "auth_bytes": b"", "session_lifetime_ms": 0}
    result = sasl.authenticate(bytes(ctx.request.body.auth_bytes), ctx.version)
    if result.error_code == ErrorCode.NONE and sasl.principal is not None and not sasl.authenticating:
        session.principal = sasl.principal
        session.authenticated = True
    return {"error_code": result.error_code, "error_message": result.error_message,
            "auth_bytes": result.auth_bytes, "session_lifetime_ms": result.session_lifetime_ms}
