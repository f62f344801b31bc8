"""etcd, the cluster's coordination service: an asyncio client of its v3 API and a launcher
for a local etcd server (tests and ``kbroker cluster``)."""

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
