"""One module per API key; this registry maps keys to the handlers implemented end to end.

A handler module defines ``API_KEY``, ``VERSIONS`` (the versions it serves, which
ApiVersions advertises) and ``async def handle(ctx) -> Mapping | None`` returning the
response body (``None`` means no response, as for acks=0 produce).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext

HandlerFn = Callable[[RequestContext], Awaitable[Mapping[str, Any] | None]]

#: Handler modules, one per API; each is imported once at start-up and must exist.
MODULES = [
    "produce",
    "fetch",
    "list_offsets",
    "delete_records",
    "offset_for_leader_epoch",
    "metadata",
    "api_versions",
    "create_topics",
    "delete_topics",
    "create_partitions",
    "describe_cluster",
    "describe_configs",
    "alter_configs",
    "incremental_alter_configs",
    "list_config_resources",
    "find_coordinator",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "describe_groups",
    "list_groups",
    "delete_groups",
    "offset_commit",
    "offset_fetch",
    "offset_delete",
    "init_producer_id",
    "consumer_group_heartbeat",
    "consumer_group_describe",
    "describe_topic_partitions",
    "describe_producers",
    "describe_log_dirs",
    "add_partitions_to_txn",
    "add_offsets_to_txn",
    "end_txn",
    "write_txn_markers",
    "txn_offset_commit",
    "describe_transactions",
    "list_transactions",
    "describe_acls",
    "create_acls",
    "delete_acls",
    "describe_user_scram_credentials",
    "alter_user_scram_credentials",
    "sasl_handshake",
    "sasl_authenticate",
    "describe_client_quotas",
    "alter_client_quotas",
    "elect_leaders",
    "alter_partition_reassignments",
    "list_partition_reassignments",
    "share_group_heartbeat",
    "share_group_describe",
    "share_fetch",
    "share_acknowledge",
    "describe_share_group_offsets",
    "alter_share_group_offsets",
    "delete_share_group_offsets",
]


@dataclass(frozen=True)
class Handler:
    """A registered handler and the versions it serves."""

    api_key: int
    versions: VersionRange
    handle: HandlerFn
    #: The lowest version advertised in ApiVersions; may be below ``versions.low``
    #: (Produce advertises v0 for a librdkafka quirk while serving v3+).
    advertised_min: int


@cache
def registry() -> dict[int, Handler]:
    """Every implemented API by key."""
    out: dict[int, Handler] = {}
    for name in MODULES:
        # A missing module is an error, not an API quietly left out of ApiVersions.
        mod = importlib.import_module(f"kbroker.handlers.{name}")
        if mod.API_KEY in out:
            raise RuntimeError(f"kbroker.handlers.{name}: API key {mod.API_KEY} is already registered")
        versions: VersionRange = mod.VERSIONS
        out[mod.API_KEY] = Handler(mod.API_KEY, versions, mod.handle,
                                   getattr(mod, "ADVERTISED_MIN_VERSION", versions.low))
    return dict(sorted(out.items()))
