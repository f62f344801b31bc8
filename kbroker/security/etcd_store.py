"""The security state of a cluster (ACLs, SCRAM credentials, client quotas) kept in etcd.

One key per kind under the cluster's ``state/`` prefix, holding the same JSON document a
single broker keeps in its file. Every broker reads the documents from a cache that the
cluster's watch keeps current (:meth:`EtcdStateStore.remember`), so a check never waits on
etcd; a change is a compare-and-swap against the revision this broker last saw, made from a
worker thread as the file store's writes are, so two brokers changing ACLs at the same
moment cannot silently drop one another's change: the second is refused and retried by its
client.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kbroker.etcd.client import Compare, EtcdError, EtcdSyncClient, KeyValue, Put, Range

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1

#: Called with a kind whose document another broker changed (the component reloads it).
Reload = Callable[[str], None]


class EtcdStateStore:
    """A :class:`~kbroker.security.store.StateStore` over etcd keys ``<prefix><kind>``."""

    def __init__(self, client: EtcdSyncClient, prefix: str) -> None:
        """``prefix`` is the cluster's state prefix (``ClusterKeys.state``)."""
        self._client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        #: kind -> (document, mod revision of its key; 0 when absent)
        self._cache: dict[str, tuple[Any, int]] = {}
        self._listeners: dict[str, Reload] = {}

    def close(self) -> None:
        """Close the connection to etcd."""
        self._client.close()

    def path(self, kind: str) -> str:
        """Where ``kind`` is kept (for messages)."""
        return f"etcd key {self.prefix}{kind}"

    def load(self, kind: str) -> Any:
        with self._lock:
            cached = self._cache.get(kind)
        if cached is None:
            try:
                kv = self._client.get(self.prefix + kind)
            except EtcdError as e:
                raise OSError(f"cannot read {self.path(kind)}: {e}") from e
            cached = self._remember(kind, kv)
        return cached[0]

    def save(self, kind: str, document: Any) -> None:
        key = self.prefix + kind
        with self._lock:
            revision = self._cache.get(kind, (None, 0))[1]
        value = json.dumps({"version": _FORMAT_VERSION, "data": document}, sort_keys=True).encode()
        try:
            result = self._client.txn([Compare.mod_revision(key, revision)], [Put(key, value)], [Range(key)])
        except EtcdError as e:
            raise OSError(f"cannot save {self.path(kind)}: {e}") from e
        if not result.succeeded:
            # Another broker changed it since this one read it: take theirs, refuse ours.
            self._remember(kind, result.ranges[0][0] if result.ranges and result.ranges[0] else None)
            self._notify(kind)
            raise OSError(f"{self.path(kind)} was changed by another broker meanwhile; retry")
        with self._lock:
            self._cache[kind] = (document, result.revision)

    # -- the cluster's watch feeds these ------------------------------------------------
    def on_reload(self, kind: str, reload: Reload) -> None:
        """Call ``reload(kind)`` whenever another broker changed ``kind``."""
        self._listeners[kind] = reload

    def remember(self, kind: str, kv: KeyValue | None) -> None:
        """A watched change of ``kind`` (None: deleted): cache it; tell the component if it is news."""
        with self._lock:
            known = self._cache.get(kind)
        if known is not None and kv is not None and known[1] >= kv.mod_revision:
            return  # this broker's own save, or older than what it has
        try:
            self._remember(kind, kv)
        except OSError:
            log.exception("ignoring a change of %s that cannot be read", self.path(kind))
            return
        self._notify(kind)

    def _remember(self, kind: str, kv: KeyValue | None) -> tuple[Any, int]:
        entry: tuple[Any, int] = (None, 0)
        if kv is not None:
            try:
                raw = json.loads(kv.value)
            except ValueError as e:
                raise OSError(f"cannot read {self.path(kind)}: {e}") from e
            if not isinstance(raw, dict) or raw.get("version") != _FORMAT_VERSION or "data" not in raw:
                raise OSError(f"cannot read {self.path(kind)}: unsupported format")
            entry = (raw["data"], kv.mod_revision)
        with self._lock:
            self._cache[kind] = entry
        return entry

    def _notify(self, kind: str) -> None:
        reload = self._listeners.get(kind)
        if reload is None:
            return
        try:
            reload(kind)
        except Exception:  # a bad document must not stop the watch; the old state stays
            log.exception("reloading %s after another broker changed it failed", self.path(kind))
