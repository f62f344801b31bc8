"""Console pages: transactions and ACLs.

Both are read through Kafka requests served in-process as the console user
(ListTransactions + DescribeTransactions, DescribeAcls): what a user sees is what the same
principal would see from an admin client (transactional ids it may DESCRIBE; ACLs only with
DESCRIBE on the cluster), and Kafka's error comes back otherwise.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kbroker.codec.error_codes import ErrorCode
from kbroker.console.auth import principal_of
from kbroker.console.context import Console
from kbroker.security.model import AclOperation, AclPermissionType, PatternType, ResourceType

DESCRIBE_ACLS, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 29, 65, 66
#: Most transactions described on one page.
MAX_TRANSACTIONS = 1000
#: Most ACL bindings shown.
MAX_ACLS = 5000


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)


def _error(code: int, message: str | None) -> str:
    return f"{_name(ErrorCode, code)}" + (f": {message}" if message else "")


def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    backend = console.backend

    async def transactions_page(request: Request) -> Response:
        principal = principal_of(request)
        state = request.query_params.get("state", "").strip()
        listed = await backend.request(LIST_TRANSACTIONS, {
            "state_filters": [state] if state else [], "producer_id_filters": [], "duration_filter": -1,
            "transactional_id_pattern": None}, principal=principal)
        error = _error(listed.error_code, None) if listed.error_code else None
        ids = sorted(t.transactional_id for t in listed.transaction_states)
        hidden = max(0, len(ids) - MAX_TRANSACTIONS)
        rows: list[dict[str, Any]] = []
        if ids[:MAX_TRANSACTIONS]:
            described = await backend.request(DESCRIBE_TRANSACTIONS, {"transactional_ids": ids[:MAX_TRANSACTIONS]},
                                              principal=principal)
            for t in described.transaction_states:
                rows.append({
                    "id": t.transactional_id, "state": t.transaction_state, "producer_id": t.producer_id,
                    "producer_epoch": t.producer_epoch, "timeout_ms": t.transaction_timeout_ms,
                    "start_ms": t.transaction_start_time_ms,
                    "partitions": [f"{tp.topic}-{p}" for tp in t.topics for p in tp.partitions],
                    "error": _error(t.error_code, None) if t.error_code else None})
        return console.render(request, "transactions.html", transactions=rows, error=error, hidden=hidden,
                              state=state, unknown_states=list(listed.unknown_state_filters))

    async def acls_page(request: Request) -> Response:
        described = await backend.request(DESCRIBE_ACLS, {
            "resource_type_filter": int(ResourceType.ANY), "resource_name_filter": None,
            "pattern_type_filter": int(PatternType.ANY), "principal_filter": None, "host_filter": None,
            "operation": int(AclOperation.ANY), "permission_type": int(AclPermissionType.ANY)},
            principal=principal_of(request))
        error = None
        if described.error_code == ErrorCode.SECURITY_DISABLED:
            error = "No authorizer is configured (authorizer.class.name is unset): every operation is allowed."
        elif described.error_code:
            error = _error(described.error_code, described.error_message)
        rows = []
        for res in described.resources:
            for acl in res.acls:
                rows.append({"resource_type": _name(ResourceType, res.resource_type), "name": res.resource_name,
                             "pattern": _name(PatternType, res.pattern_type), "principal": acl.principal,
                             "host": acl.host, "operation": _name(AclOperation, acl.operation),
                             "permission": _name(AclPermissionType, acl.permission_type)})
        rows.sort(key=lambda r: (r["resource_type"], r["name"], r["principal"], r["operation"]))
        return console.render(request, "acls.html", acls=rows[:MAX_ACLS], hidden=max(0, len(rows) - MAX_ACLS),
                              error=error)

    return [Route("/transactions", transactions_page, methods=["GET"]),
            Route("/acls", acls_page, methods=["GET"])]
