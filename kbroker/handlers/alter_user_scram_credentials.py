"""AlterUserScramCredentials (key 51): add, replace and remove users' SCRAM credentials (KIP-554).

An upsertion carries the salt, the iteration count and the salted password (the password
itself never travels); the broker keeps the stored and server keys derived from it. The
validation and its messages are Kafka's ScramControlManager's: a user named twice in one
request (deletion or upsertion, whatever the mechanism) fails with DUPLICATE_RESOURCE, an
empty name with UNACCEPTABLE_CREDENTIAL, a mechanism other than SCRAM-SHA-256/512 with
UNSUPPORTED_SASL_MECHANISM, iterations outside 4096..16384 with UNACCEPTABLE_CREDENTIAL, and
deleting a credential that does not exist with RESOURCE_NOT_FOUND. The accepted changes are
saved together, in a worker thread, before the response. The principal needs ALTER on the
cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext, response
from kbroker.handlers.authz import MESSAGES
from kbroker.security.model import CLUSTER_NAME, AclOperation, ResourceType
from kbroker.security.scram import MECHANISMS_BY_TYPE, CredentialStore, ScramCredential

API_KEY = 51
VERSIONS = VersionRange(0, 0)
log = logging.getLogger(__name__)

CLUSTER_AUTHORIZATION_FAILED = MESSAGES[ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
DUPLICATE = "A user credential cannot be altered twice in the same request"
EMPTY_NAME = "Username must not be empty"
UNKNOWN_MECHANISM = "Unknown SCRAM mechanism"
TOO_FEW_ITERATIONS = "Too few iterations"
TOO_MANY_ITERATIONS = "Too many iterations"
NOT_FOUND = "Attempt to delete a user credential that does not exist"

Error = tuple[int, str | None]


@dataclass(frozen=True)
class _Upsertion:
    name: str
    mechanism: int
    iterations: int
    salt: bytes
    salted_password: bytes


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    deletions = [(d.name, d.mechanism) for d in body.deletions]
    upsertions = [_Upsertion(u.name, u.mechanism, u.iterations, bytes(u.salt), bytes(u.salted_password))
                  for u in body.upsertions]
    if not ctx.authorize(AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        return _everyone(deletions, upsertions, (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED))
    try:
        # Validation reads the credentials the change replaces: both happen under the store's lock.
        results = await anyio.to_thread.run_sync(alter, ctx.broker.credentials, deletions, upsertions)
    except OSError:
        log.exception("cannot save the SCRAM credentials")
        return _everyone(deletions, upsertions, (ErrorCode.UNKNOWN_SERVER_ERROR, None))
    return response(len(results), throttle_time_ms=0, results=results)


def _everyone(deletions: list[tuple[str, int]], upsertions: list[_Upsertion], error: Error) -> dict[str, Any]:
    """Every user named answered with one error (Kafka's getErrorResponse: sorted, once each)."""
    users = sorted({name for name, _ in deletions} | {u.name for u in upsertions})
    return response(len(users), throttle_time_ms=0, results=[
        {"user": user, "error_code": error[0], "error_message": error[1]} for user in users])


def _check_name_and_mechanism(name: str, mechanism: int) -> Error | None:
    if not name:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, EMPTY_NAME
    if mechanism not in MECHANISMS_BY_TYPE:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, UNKNOWN_MECHANISM
    return None


def alter(store: CredentialStore, deletions: list[tuple[str, int]],
          upsertions: list[_Upsertion]) -> list[dict[str, Any]]:
    """Validate and apply one request's changes (blocking: it saves); the per-user results."""
    with store.transaction() as draft:
        errors: dict[str, Error] = {}
        to_delete: dict[str, int] = {}
        to_upsert: dict[str, _Upsertion] = {}
        for name, mechanism in deletions:
            if name in errors:
                continue
            if to_delete.pop(name, None) is not None:
                errors[name] = ErrorCode.DUPLICATE_RESOURCE, DUPLICATE
                continue
            error = _check_name_and_mechanism(name, mechanism)
            if error is None and MECHANISMS_BY_TYPE[mechanism].name not in draft.get(name, {}):
                error = ErrorCode.RESOURCE_NOT_FOUND, NOT_FOUND
            if error is None:
                to_delete[name] = mechanism
            else:
                errors[name] = error
        for up in upsertions:
            if up.name in errors:
                continue
            if to_delete.pop(up.name, None) is not None or to_upsert.pop(up.name, None) is not None:
                errors[up.name] = ErrorCode.DUPLICATE_RESOURCE, DUPLICATE
                continue
            error = _check_name_and_mechanism(up.name, up.mechanism)
            if error is None:
                mech = MECHANISMS_BY_TYPE[up.mechanism]
                if up.iterations < mech.min_iterations:
                    error = ErrorCode.UNACCEPTABLE_CREDENTIAL, TOO_FEW_ITERATIONS
                elif up.iterations > mech.max_iterations:
                    error = ErrorCode.UNACCEPTABLE_CREDENTIAL, TOO_MANY_ITERATIONS
            if error is None:
                to_upsert[up.name] = up
            else:
                errors[up.name] = error
        results: list[dict[str, Any]] = []
        for name, mechanism in to_delete.items():
            creds = draft[name]
            del creds[MECHANISMS_BY_TYPE[mechanism].name]
            results.append({"user": name, "error_code": ErrorCode.NONE, "error_message": None})
        for name, up in to_upsert.items():
            mech = MECHANISMS_BY_TYPE[up.mechanism]
            try:
                credential = ScramCredential.from_salted(mech, up.salt, up.salted_password, up.iterations)
            except ValueError:
                # Kafka's formatter fails the same way on an empty key: an unknown server error.
                errors[name] = ErrorCode.UNKNOWN_SERVER_ERROR, None
                continue
            draft.setdefault(name, {})[mech.name] = credential
            results.append({"user": name, "error_code": ErrorCode.NONE, "error_message": None})
    for name, (code, message) in errors.items():
        results.append({"user": name, "error_code": code, "error_message": message})
    if to_delete or to_upsert:
        log.info("SCRAM credentials altered: %s", ", ".join(
            [f"deleted {MECHANISMS_BY_TYPE[m].name} of {n!r}" for n, m in to_delete.items()]
            + [f"set {MECHANISMS_BY_TYPE[u.mechanism].name} of {n!r}" for n, u in to_upsert.items()
               if n not in errors]))
    return results
