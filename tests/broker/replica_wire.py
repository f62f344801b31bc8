"""Raw-wire helpers for the Produce/Fetch/ListOffsets tests (kbroker's own codec on a socket)."""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kbroker.codec import decode_response, encode_request
from kbroker.records.batch import iter_headers
from kbroker.records.builder import build_batch
from kbroker.records.record import Record, iter_records
from kbroker.testing import BrokerThread

PRODUCE, FETCH, LIST_OFFSETS = 0, 1, 2


class WireClient:
    """One blocking connection speaking raw Kafka requests."""

    def __init__(self, bootstrap: str, timeout: float = 10.0, client_id: str = "replica-test") -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.cid = 0
        self.client_id = client_id

    def send(self, api_key: int, version: int, body: Mapping[str, Any]) -> int:
        self.cid += 1
        self.sock.sendall(encode_request(api_key, version, self.cid, body, client_id=self.client_id))
        return self.cid

    def receive(self, api_key: int, version: int, cid: int) -> Any:
        (size,) = struct.unpack(">i", self._read(4))
        got, resp = decode_response(api_key, version, self._read(size))
        assert got == cid
        return resp

    def call(self, api_key: int, version: int, body: Mapping[str, Any]) -> Any:
        return self.receive(api_key, version, self.send(api_key, version, body))

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()


def create_topic(broker: BrokerThread, name: str, partitions: int = 1,
                 configs: Mapping[str, str] | None = None) -> uuid.UUID:
    """Create a topic straight through the broker's metadata; returns its topic id."""
    md = broker.broker.metadata
    code, msg = broker.call(md.create_topic, name, partitions, 1, dict(configs or {}))
    assert code == 0, msg
    return md.topic(name).topic_id


def batch(values: Sequence[bytes | None], *, keys: Sequence[bytes | None] | None = None,
          compression: int = 0, timestamp: int | None = None) -> bytes:
    keys = keys or [None] * len(values)
    return build_batch([(k, v, (), timestamp) for k, v in zip(keys, values, strict=True)],
                       compression=compression)


def produce(wire: WireClient, topic: str | uuid.UUID, partitions: Mapping[int, bytes | None], *,
            version: int = 9, acks: int = 1) -> Any:
    """One produce request to one topic; returns the decoded response (None for acks=0)."""
    topic_entry: dict[str, Any] = {"partition_data": [{"index": i, "records": r} for i, r in partitions.items()]}
    topic_entry["topic_id" if version >= 13 else "name"] = topic
    body = {"transactional_id": None, "acks": acks, "timeout_ms": 5000, "topic_data": [topic_entry]}
    if acks == 0:
        wire.send(PRODUCE, version, body)
        return None
    return wire.call(PRODUCE, version, body)


def produce_one(wire: WireClient, topic: str, partition: int, records: bytes, **kw: Any) -> Any:
    """The single partition response of a one-partition produce."""
    resp = produce(wire, topic, {partition: records}, **kw)
    return resp.responses[0].partition_responses[0]


def fetch_body(topics: Mapping[Any, Mapping[int, int]], *, version: int = 11, max_wait_ms: int = 0,
               min_bytes: int = 1, max_bytes: int = 50 * 1024 * 1024, partition_max_bytes: int = 1024 * 1024,
               isolation_level: int = 0, session_id: int = 0, session_epoch: int = -1,
               forgotten: Mapping[Any, Sequence[int]] | None = None) -> dict[str, Any]:
    key = "topic_id" if version >= 13 else "topic"
    return {
        "replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": max_bytes,
        "isolation_level": isolation_level, "session_id": session_id, "session_epoch": session_epoch,
        "topics": [{key: t, "partitions": [{"partition": p, "fetch_offset": off,
                                            "partition_max_bytes": partition_max_bytes}
                                           for p, off in parts.items()]}
                   for t, parts in topics.items()],
        "forgotten_topics_data": [{key: t, "partitions": list(ps)} for t, ps in (forgotten or {}).items()],
        "rack_id": "",
    }


def fetch(wire: WireClient, topics: Mapping[Any, Mapping[int, int]], version: int = 11, **kw: Any) -> Any:
    return wire.call(FETCH, version, fetch_body(topics, version=version, **kw))


def partitions_of(resp: Any) -> dict[tuple[Any, int], Any]:
    """``{(topic or id, partition): partition data}`` of a fetch response."""
    out = {}
    for t in resp.responses:
        name = t.get("topic", t.get("topic_id"))
        for p in t.partitions:
            out[(name, p.partition_index)] = p
    return out


def records_of(data: bytes | None) -> list[Record]:
    """Every record in a fetched records blob."""
    out: list[Record] = []
    mv = memoryview(data or b"")
    for pos, h in iter_headers(mv):
        out.extend(iter_records(mv[pos:pos + h.size]))
    return out


def list_offsets(wire: WireClient, topic: str, partitions: Mapping[int, int], *, version: int = 7,
                 isolation_level: int = 0) -> dict[int, Any]:
    body = {"replica_id": -1, "isolation_level": isolation_level, "timeout_ms": 1000,
            "topics": [{"name": topic, "partitions": [{"partition_index": p, "timestamp": ts,
                                                       "current_leader_epoch": -1, "max_num_offsets": 1}
                                                      for p, ts in partitions.items()]}]}
    resp = wire.call(LIST_OFFSETS, version, body)
    return {p.partition_index: p for p in resp.topics[0].partitions}
