"""An asyncio client of etcd's v3 API through its JSON gateway (``/v3/...``).

etcd serves its gRPC API as JSON over HTTP on the client port (the grpc-gateway, stable
since etcd 3.4). This client speaks that, through httpx: no gRPC stack, no generated
code, nothing compiled. Keys are ``str`` (UTF-8) and values ``bytes``; the gateway's
base64 and its int64-as-string numbers stay in here.

Every call goes to the first endpoint that answers; a connection failure moves on to the
next one (a cluster of etcd members). :class:`EtcdUnavailable` means none answered.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

__all__ = [
    "Compare", "Delete", "EtcdClient", "EtcdCompacted", "EtcdError", "EtcdSyncClient", "EtcdUnavailable", "KeyValue", "Op",
    "Put", "Range", "TxnResult", "WatchEvent", "prefix_end",
]


class EtcdError(Exception):
    """etcd refused a request (the message is etcd's)."""


class EtcdUnavailable(EtcdError):
    """No etcd endpoint could be reached."""


class EtcdCompacted(EtcdError):
    """A watch asked for a revision etcd has compacted away; read again and watch from there."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted up to {compact_revision}")
        self.compact_revision = compact_revision


def _httpx() -> Any:
    """httpx, imported when a client is made: the key and request types here are plain data, which
    handlers and the controller import on every broker, clustered or not."""
    import httpx

    return httpx


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"  # every key


def _key_range(key: str, prefix: bool) -> dict[str, Any]:
    """The gateway's ``key`` (and ``range_end`` for every key under ``key``)."""
    body: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return body


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd stores it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(_unb64(kv.get("key")).decode(), _unb64(kv.get("value")), int(kv.get("create_revision", 0)),
                   int(kv.get("mod_revision", 0)), int(kv.get("version", 0)), int(kv.get("lease", 0)))

    def json(self) -> Any:
        """The value decoded as JSON."""
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class Compare:
    """A condition of a transaction on one key."""

    key: str
    target: Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
    value: int | bytes
    result: Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"] = "EQUAL"

    @classmethod
    def absent(cls, key: str) -> Compare:
        """``key`` does not exist."""
        return cls(key, "CREATE", 0)

    @classmethod
    def mod_revision(cls, key: str, revision: int) -> Compare:
        """``key`` was last written at ``revision`` (0: it does not exist)."""
        return cls(key, "MOD", revision)

    @classmethod
    def equals(cls, key: str, value: bytes) -> Compare:
        """``key`` holds exactly ``value``."""
        return cls(key, "VALUE", value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": _b64(self.key), "target": self.target, "result": self.result}
        field_name = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
                      "VALUE": "value", "LEASE": "lease"}[self.target]
        out[field_name] = _b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return out


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``value`` at ``key`` (attached to ``lease`` when not 0)."""

    key: str
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key`` (every key under it with ``prefix``)."""

    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": _key_range(self.key, self.prefix)}


@dataclass(frozen=True, slots=True)
class Range:
    """Read ``key`` (every key under it with ``prefix``) inside a transaction."""

    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_range": _key_range(self.key, self.prefix)}


Op = Put | Delete | Range


@dataclass(frozen=True, slots=True)
class TxnResult:
    """What a transaction did: which branch ran, at which revision, and what its ranges read."""

    succeeded: bool
    revision: int
    #: For each Range op of the branch that ran, in order: the keys it read.
    ranges: list[list[KeyValue]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change seen by a watch: a PUT (``kv`` is the new value) or a DELETE (``kv.value`` empty)."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue


def _txn_body(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> dict[str, Any]:
    return {"compare": [c.to_json() for c in compare], "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure]}


def _txn_result(data: dict[str, Any]) -> TxnResult:
    ranges = [[KeyValue.from_json(kv) for kv in r["response_range"].get("kvs") or []]
              for r in data.get("responses") or [] if "response_range" in r]
    return TxnResult(bool(data.get("succeeded", False)), int(data["header"]["revision"]), ranges)


class EtcdClient:
    """A connection pool to one etcd cluster; use from one event loop."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0) -> None:
        """``endpoints``: ``http://host:port`` of etcd members (tried in order)."""
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._timeout = timeout
        httpx = _httpx()
        self._transport_error = httpx.TransportError
        self._stream_timeout = httpx.Timeout(None, connect=2.0)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))
        self._current = 0

    async def aclose(self) -> None:
        """Close every connection."""
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(len(self.endpoints)):
            index = (self._current + attempt) % len(self.endpoints)
            try:
                response = await self._http.post(self.endpoints[index] + path, json=body)
            except (self._transport_error, OSError) as e:
                last = e
                continue
            self._current = index
            data = response.json() if response.content else {}
            if response.status_code != 200 or "error" in data and "header" not in data:
                raise EtcdError(f"etcd {path}: {data.get('message') or data.get('error') or response.status_code}")
            return data  # type: ignore[no-any-return]
        raise EtcdUnavailable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    # -- keys ---------------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        """The key, or None."""
        data = await self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return KeyValue.from_json(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` (sorted by key) and the store's revision they were read at."""
        data = await self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return [KeyValue.from_json(kv) for kv in data.get("kvs") or []], int(data["header"]["revision"])

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; the revision of the write."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        data = await self._post("/v3/kv/put", body)
        return int(data["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Remove ``key`` (or every key under it); how many were removed."""
        data = await self._post("/v3/kv/deleterange", _key_range(key, prefix))
        return int(data.get("deleted", 0))

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        """If every comparison holds, apply ``success``, else ``failure``: atomically."""
        return _txn_result(await self._post("/v3/kv/txn", _txn_body(compare, success, failure)))

    # -- leases -------------------------------------------------------------------------------
    async def grant_lease(self, ttl_seconds: int) -> int:
        """A new lease of ``ttl_seconds`` (etcd may round it up); its id."""
        data = await self._post("/v3/lease/grant", {"TTL": str(max(1, ttl_seconds))})
        if data.get("error"):
            raise EtcdError(f"etcd lease grant: {data['error']}")
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL in seconds (0: it had expired and is gone)."""
        data = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        result = data.get("result", data)
        return int(result.get("TTL", 0) or 0)

    async def revoke_lease(self, lease: int) -> None:
        """End ``lease`` now: every key attached to it is deleted."""
        try:
            await self._post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    # -- watch --------------------------------------------------------------------------------
    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Every change under ``prefix`` from ``start_revision`` on, one list per etcd revision batch.

        Raises :class:`EtcdCompacted` when ``start_revision`` is no longer kept, and
        :class:`EtcdUnavailable` when the stream breaks (the caller reads again and resumes).
        """
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision), "progress_notify": True}}
        last: Exception | None = None
        yielded = False
        for attempt in range(len(self.endpoints)):
            url = self.endpoints[(self._current + attempt) % len(self.endpoints)] + "/v3/watch"
            try:
                async with self._http.stream("POST", url, json=body,
                                             timeout=self._stream_timeout) as response:
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        if "error" in message:
                            raise EtcdUnavailable(f"etcd watch: {message['error'].get('message')}")
                        result = message.get("result", {})
                        if int(result.get("compact_revision", 0) or 0):
                            raise EtcdCompacted(int(result["compact_revision"]))
                        if result.get("canceled"):
                            raise EtcdUnavailable(f"etcd watch canceled: {result.get('cancel_reason')}")
                        events = result.get("events")
                        if events:
                            yielded = True
                            yield [WatchEvent("DELETE" if e.get("type") == "DELETE" else "PUT",
                                              KeyValue.from_json(e["kv"])) for e in events]
                raise EtcdUnavailable("etcd watch stream ended")
            except (self._transport_error, OSError) as e:
                if yielded:  # the caller resumes after what it has seen, not from the start
                    raise EtcdUnavailable(f"etcd watch stream broke: {e}") from e
                last = e
        raise EtcdUnavailable(f"no etcd endpoint answered a watch ({', '.join(self.endpoints)}): {last}")


class EtcdSyncClient:
    """The few blocking calls of the v3 API that code on a worker thread needs (state documents).

    Same endpoints and failover as :class:`EtcdClient`; never call it on the event loop.
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        httpx = _httpx()
        self._transport_error = httpx.TransportError
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))
        self._current = 0

    def close(self) -> None:
        """Close every connection."""
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(len(self.endpoints)):
            index = (self._current + attempt) % len(self.endpoints)
            try:
                response = self._http.post(self.endpoints[index] + path, json=body)
            except (self._transport_error, OSError) as e:
                last = e
                continue
            self._current = index
            data = response.json() if response.content else {}
            if response.status_code != 200:
                raise EtcdError(f"etcd {path}: {data.get('message') or data.get('error') or response.status_code}")
            return data  # type: ignore[no-any-return]
        raise EtcdUnavailable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    def get(self, key: str) -> KeyValue | None:
        """The key, or None."""
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return KeyValue.from_json(kvs[0]) if kvs else None

    def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        """As :meth:`EtcdClient.txn`."""
        return _txn_result(self._post("/v3/kv/txn", _txn_body(compare, success, failure)))
