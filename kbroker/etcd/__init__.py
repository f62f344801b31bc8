"""etcd, the cluster's coordination service: an asyncio client of its v3 API and a launcher
for a local etcd server (tests and ``kbroker cluster``).

The client's names are loaded on first use: importing the launcher (as the CLI does) must not
pull in httpx for a broker that runs alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbroker.etcd.client import (
        Compare,
        Delete,
        EtcdClient,
        EtcdCompacted,
        EtcdError,
        EtcdUnavailable,
        KeyValue,
        Put,
        Range,
        TxnResult,
        WatchEvent,
    )

__all__ = ["Compare", "Delete", "EtcdClient", "EtcdCompacted", "EtcdError", "EtcdUnavailable", "KeyValue", "Put",
           "Range", "TxnResult", "WatchEvent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kbroker.etcd import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
