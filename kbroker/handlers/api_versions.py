"""ApiVersions (key 18): the versions of every API this broker serves end to end."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kbroker.codec import encode_body
from kbroker.codec.apis import api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import EncodedBody, RequestContext

API_KEY = 18
VERSIONS = VersionRange(0, 4)
FINALIZED_FEATURES_EPOCH = -1
#: What Kafka accepts as a client software name or version (v3+); anything else is INVALID_REQUEST.
SOFTWARE_NAME_VERSION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")
_valid_software = SOFTWARE_NAME_VERSION.fullmatch


def api_keys() -> list[dict[str, int]]:
    """The advertised (key, min, max) list."""
    from kbroker.handlers import registry

    return [{"api_key": h.api_key, "min_version": h.advertised_min, "max_version": h.versions.high}
            for h in registry().values()]


def unsupported_version_response() -> dict[str, Any]:
    """The v0 answer to an ApiVersions request at a version we do not know (KIP-511): as Kafka,
    it lists only ApiVersions' own range, all the client needs to retry."""
    return {"error_code": 35, "api_keys": [k for k in api_keys() if k["api_key"] == API_KEY]}


def _answer() -> dict[str, Any]:
    return {
        "error_code": 0,
        "api_keys": api_keys(),
        "throttle_time_ms": 0,
        "supported_features": [],
        "finalized_features_epoch": FINALIZED_FEATURES_EPOCH,
        "finalized_features": [],
        "zk_migration_ready": False,
    }


#: The answer per version, encoded once: what it lists (the handlers registered at start-up,
#: no features) does not change while the registry stays the same.
_TEMPLATES: dict[int, EncodedBody] = {}
_TEMPLATES_OF: list[object] = [None]


def template(version: int) -> EncodedBody:
    """The successful answer at ``version``, with its encoded body."""
    from kbroker.handlers import registry

    handlers = registry()
    if _TEMPLATES_OF[0] is not handlers:  # a registry built anew (tests do): answers anew
        _TEMPLATES.clear()
        _TEMPLATES_OF[0] = handlers
    answer = _TEMPLATES.get(version)
    if answer is None:
        body = _answer()
        answer = _TEMPLATES[version] = EncodedBody(body, encode_body(api_table()[API_KEY], "response", version, body))
    return answer


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    version = ctx.request.api_version
    if version >= 3:
        body = ctx.request.body
        name, software_version = body["client_software_name"], body["client_software_version"]
        valid = _valid_software(name or "")
        if not (valid and _valid_software(software_version or "")):
            # Kafka answers INVALID_REQUEST with no API list (ApiVersionsRequest.isValid).
            return {"error_code": ErrorCode.INVALID_REQUEST, "api_keys": [], "throttle_time_ms": 0}
        session = ctx.session
        session.client_software_name = name
        session.client_software_version = software_version
    return template(version)
