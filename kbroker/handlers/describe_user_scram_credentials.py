"""DescribeUserScramCredentials (key 50): which SCRAM mechanisms each user has a credential
for, and with how many iterations (KIP-554). Salts and keys never leave the broker.

As Kafka's ScramImage.describe: no user named (a null or empty list) means every user with a
credential; a user named twice is answered once with DUPLICATE_RESOURCE; a user without any
credential gets RESOURCE_NOT_FOUND. The principal needs DESCRIBE on the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext, response
from kbroker.handlers.authz import MESSAGES
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType
from kbroker.security.scram import MECHANISMS

API_KEY = 50
VERSIONS = VersionRange(0, 0)

#: Kafka's messages (ScramImage's, and Errors.CLUSTER_AUTHORIZATION_FAILED's).
DUPLICATE_USER = "Cannot describe SCRAM credentials for the same user twice in a single request: "
UNKNOWN_USER = "Attempt to describe a user credential that does not exist: "
CLUSTER_AUTHORIZATION_FAILED = MESSAGES[ErrorCode.CLUSTER_AUTHORIZATION_FAILED]


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    requested = ctx.request.body.users
    if not ctx.authorize(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        # As Kafka's getErrorResponse: one result per user named, without the user's name.
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return {"throttle_time_ms": 0, "error_code": code, "error_message": CLUSTER_AUTHORIZATION_FAILED,
                "results": [{"user": "", "error_code": code, "error_message": CLUSTER_AUTHORIZATION_FAILED,
                             "credential_infos": []} for _ in requested or ()]}
    store = ctx.broker.credentials
    duplicated: dict[str, bool] = {}
    if not requested:
        duplicated = dict.fromkeys(store.users(), False)
    else:
        for u in requested:
            duplicated[u.name] = u.name in duplicated
    results = []
    for user, twice in duplicated.items():
        if twice:
            results.append({"user": user, "error_code": ErrorCode.DUPLICATE_RESOURCE,
                            "error_message": DUPLICATE_USER + user, "credential_infos": []})
            continue
        found = store.describe(user)
        if not found:
            results.append({"user": user, "error_code": ErrorCode.RESOURCE_NOT_FOUND,
                            "error_message": UNKNOWN_USER + user, "credential_infos": []})
            continue
        results.append({"user": user, "error_code": ErrorCode.NONE, "error_message": None,
                        "credential_infos": [{"mechanism": MECHANISMS[name].type, "iterations": iterations}
                                             for name, iterations in sorted(found.items())]})
    return response(len(results), throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    results=results)
