"""SaslHandshake (key 17): pick the SASL mechanism of a connection on a SASL listener.

v0 means the tokens that follow are raw frames; v1 that they come in SaslAuthenticate
requests. On a connection that needs no (further) authentication it answers
ILLEGAL_SASL_STATE, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext

API_KEY = 17
VERSIONS = VersionRange(0, 1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    sasl = ctx.session.sasl
    if sasl is None:
        return {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "mechanisms": []}
    result = sasl.handshake(ctx.request.body.mechanism, ctx.version)
    return {"error_code": result.error_code, "mechanisms": result.mechanisms}
