"""Hot-API requests over a raw socket, encoded and decoded with :mod:`kbroker.codec`.

Used by the CPU-per-request and connection-count steps of the worker and by the stage
breakdown tool: one connection, sequential round trips, every response's error codes
checked. A broker that answers with an error is reported with that error, never timed.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.codec import decode_response, encode_request
from kbroker.records.builder import NewRecord, build_batch

#: The hot APIs, in the order they are measured: name -> (api key, version).
HOT_APIS: dict[str, tuple[int, int]] = {
    "apiversions": (18, 3),
    "metadata": (3, 12),
    "produce": (0, 9),
    "fetch": (1, 12),
    "heartbeat": (12, 4),
    "offsetcommit": (8, 8),
}
#: Human labels of :data:`HOT_APIS` for the report.
API_LABELS = {
    "apiversions": "ApiVersions v3",
    "metadata": "Metadata v12 (1 topic)",
    "produce": "Produce v9 (1 batch, 1 record of 100 B, acks=-1)",
    "fetch": "Fetch v12 (1 partition, 1 record, max_wait 0)",
    "heartbeat": "Heartbeat v4 (a joined member)",
    "offsetcommit": "OffsetCommit v8 (1 partition)",
}
GROUP_APIS = frozenset({"heartbeat", "offsetcommit"})
CREATE_TOPICS = (19, 4)
JOIN_GROUP = (11, 7)
SYNC_GROUP = (14, 5)
MEMBER_ID_REQUIRED = 79
CLIENT_ID = "kbroker-bench"
#: The session timeout of the measured member: Kafka's minimum (group.min.session.timeout.ms).
#: Tansu holds a first JoinGroup for half of it.
SESSION_TIMEOUT_MS = 6000


#: At most this long of OffsetCommit requests (after their warm-up): within one session.
COMMIT_SECONDS = SESSION_TIMEOUT_MS / 1000 * 2 / 3


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def consumer_subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0: one topic, no user data."""
    return struct.pack(">hi", 0, 1) + _string(topic) + struct.pack(">i", -1)


def consumer_assignment(topic: str, partition: int = 0) -> bytes:
    """ConsumerProtocolAssignment v0: one partition, no user data. (Tansu takes an empty
    assignment for none given and answers SyncGroup with REBALANCE_IN_PROGRESS.)"""
    return struct.pack(">hi", 0, 1) + _string(topic) + struct.pack(">ii", 1, partition) + struct.pack(">i", -1)


class BrokerError(RuntimeError):
    """A response carried a non-zero error code (the step fails with it)."""


def error_codes(body: Any, path: str = "") -> list[tuple[str, int]]:
    """Every non-zero ``error_code`` anywhere in a decoded response, with where it was.

    Walks mappings and lists, so it works on whatever mapping type the codec returns.
    """
    found: list[tuple[str, int]] = []
    if isinstance(body, Mapping):
        for k, v in body.items():
            if k == "error_code" and isinstance(v, int) and v != 0:
                found.append((path or "response", v))
            elif isinstance(v, Mapping | list | tuple):
                found.extend(error_codes(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(body, list | tuple):
        for i, item in enumerate(body):
            found.extend(error_codes(item, f"{path}[{i}]"))
    return found


def check(api: str, body: Any) -> None:
    """Raise :class:`BrokerError` if ``body`` holds a non-zero error code."""
    bad = error_codes(body)
    if bad:
        where, code = bad[0]
        message = body.get("error_message") if isinstance(body, Mapping) else None
        raise BrokerError(f"{api}: error_code {code} at {where}" + (f" ({message})" if message else ""))


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` (every thread of it) from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class RawClient:
    """One blocking connection; sequential round trips."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def frame(self, key: int, version: int, body: Any) -> bytes:
        self.correlation_id += 1
        return encode_request(key, version, self.correlation_id, body, client_id=CLIENT_ID)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            buf += chunk
        return bytes(buf)

    def receive(self) -> bytes:
        """The next response frame, without its size prefix."""
        (size,) = struct.unpack(">i", self.recv_exact(4))
        return self.recv_exact(size)

    def call(self, key: int, version: int, body: Any) -> Any:
        """One round trip; the decoded response body (not checked)."""
        self.sock.sendall(self.frame(key, version, body))
        return decode_response(key, version, self.receive())[1]


def create_topic(client: RawClient, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """CreateTopics, then Metadata until every partition has a leader (bounded by ``timeout``)."""
    body = client.call(*CREATE_TOPICS, {"topics": [{"name": topic, "num_partitions": partitions,
                                                    "replication_factor": 1, "assignments": [], "configs": []}],
                                        "timeout_ms": int(timeout * 1000), "validate_only": False})
    check("CreateTopics", body)
    deadline = time.monotonic() + timeout
    while True:
        md = client.call(3, 12, metadata_body(topic))
        topics = md["topics"]
        if (topics and topics[0]["error_code"] == 0 and len(topics[0]["partitions"]) == partitions
                and all(p["leader_id"] >= 0 for p in topics[0]["partitions"])):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: {partitions} partitions not all led after {timeout:.0f}s")
        time.sleep(0.02)


def metadata_body(topic: str) -> dict[str, Any]:
    return {"topics": [{"name": topic, "topic_id": None}], "allow_auto_topic_creation": False,
            "include_topic_authorized_operations": False}


def produce_body(topic: str, partition: int = 0, size: int = 100) -> dict[str, Any]:
    batch = build_batch([NewRecord(key=None, value=os.urandom(size))])
    return {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]}


def fetch_body(topic: str, partition: int = 0, max_wait_ms: int = 0, offset: int = 0) -> dict[str, Any]:
    return {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{"partition": partition, "fetch_offset": offset,
                                                        "partition_max_bytes": 1 << 20, "log_start_offset": -1,
                                                        "current_leader_epoch": -1, "last_fetched_epoch": -1}]}],
            "forgotten_topics_data": [], "rack_id": ""}


@dataclass
class Member:
    """A group member that joined and synced: what Heartbeat and OffsetCommit need."""

    group: str
    member_id: str
    generation: int


def join_group(client: RawClient, group: str, topic: str) -> Member:
    """JoinGroup v7 (again with the member id the broker asks for), then SyncGroup v5
    assigning partition 0 of ``topic`` to itself, as a one-member consumer group does."""
    join: dict[str, Any] = {"group_id": group, "session_timeout_ms": SESSION_TIMEOUT_MS,
                            "rebalance_timeout_ms": SESSION_TIMEOUT_MS, "member_id": "", "group_instance_id": None,
                            "protocol_type": "consumer",
                            "protocols": [{"name": "range", "metadata": consumer_subscription(topic)}], "reason": None}
    j = client.call(*JOIN_GROUP, join)
    if j["error_code"] == MEMBER_ID_REQUIRED:
        j = client.call(*JOIN_GROUP, dict(join, member_id=j["member_id"]))
    check("JoinGroup", j)
    s = client.call(*SYNC_GROUP, {"group_id": group, "generation_id": j["generation_id"], "member_id": j["member_id"],
                                  "group_instance_id": None, "protocol_type": "consumer", "protocol_name": "range",
                                  "assignments": [{"member_id": j["member_id"],
                                                   "assignment": consumer_assignment(topic)}]})
    check("SyncGroup", s)
    return Member(group, j["member_id"], j["generation_id"])


def request_for(api: str, topic: str, member: Member | None = None) -> tuple[int, int, dict[str, Any]]:
    """(api key, version, body) of one measured request of ``api``."""
    key, version = HOT_APIS[api]
    if api == "apiversions":
        return key, version, {"client_software_name": "kbroker-bench", "client_software_version": "1"}
    if api == "metadata":
        return key, version, metadata_body(topic)
    if api == "produce":
        return key, version, produce_body(produce_topic(topic))
    if api == "fetch":
        return key, version, fetch_body(topic)
    if member is None:
        raise ValueError(f"{api} needs a group member")
    if api == "heartbeat":
        return key, version, {"group_id": member.group, "generation_id": member.generation,
                              "member_id": member.member_id, "group_instance_id": None}
    if api == "offsetcommit":
        return key, version, {"group_id": member.group, "generation_id_or_member_epoch": member.generation,
                              "member_id": member.member_id, "group_instance_id": None,
                              "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                                         "committed_leader_epoch": -1,
                                                                         "committed_metadata": ""}]}]}
    raise ValueError(f"unknown API {api!r}")


def prepare(client: RawClient, tag: str) -> str:
    """A one-partition topic holding one record (what Fetch reads), and its twin the
    measured Produce requests go to (so the Fetch still finds one record); its name."""
    topic = f"bench-cpu-{tag}"
    create_topic(client, topic, 1)
    create_topic(client, produce_topic(topic), 1)
    check("Produce", client.call(0, 9, produce_body(topic)))
    return topic


def produce_topic(topic: str) -> str:
    """Where the measured Produce requests of :func:`prepare`'s ``topic`` go."""
    return topic + "-produce"


def timed_round_trips(client: RawClient, api: str, key: int, version: int, body: dict[str, Any], n: int,
                      warmup: int, seconds: float, pid: int | None, min_seconds: float = 0.0) -> dict[str, Any]:
    """``warmup`` then up to ``n`` sequential round trips of one request (at most ``seconds``;
    with ``min_seconds``, more than ``n`` until that long has passed, at most ``20 * n``).

    Every response is decoded and checked after its round trip is timed (the check is the
    client's time, not the broker's). With ``pid``, the broker's CPU over the measured trips.
    """
    frame = client.frame(key, version, body)
    for _ in range(warmup):
        client.sock.sendall(frame)
        check(api, decode_response(key, version, client.receive())[1])
    times: list[float] = []
    cpu0 = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    deadline = started + seconds
    floor = started + min(min_seconds, seconds)
    for i in range(20 * n if min_seconds > 0 else n):
        t0 = time.perf_counter()
        client.sock.sendall(frame)
        data = client.receive()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1000)
        check(api, decode_response(key, version, data)[1])
        if i + 1 >= n and t1 >= floor:
            break
        if (i & 63) == 63 and t1 > deadline:
            break
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu0 if pid else None
    count = len(times)
    times.sort()
    return {"api": api, "count": count, "requested": n, "wall_s": wall,
            "broker_cpu_s": cpu, "cpu_us_per_req": None if cpu is None else cpu * 1e6 / count,
            "wall_us_per_req": wall * 1e6 / count,
            "p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99),
            "p999_ms": percentile(times, 0.999), "max_ms": times[-1]}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of already sorted values; None for none."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 300 else text[:297] + "..."


def cpu_per_request(host: str, port: int, pid: int | None, apis: list[str], n: int, warmup: int,
                    seconds: float, tag: str) -> dict[str, Any]:
    """Broker CPU µs and round-trip percentiles per request of each API in ``apis``.

    Each API is measured on one connection, sequential round trips. A set-up that fails
    (a broker refusing JoinGroup, say) fails the APIs that need it, each with the error;
    an API answered with an error fails alone.
    """
    out: dict[str, Any] = {"apis": {}}
    try:
        client = RawClient(host, port)
    except OSError as e:
        out["error"] = short_error(e)
        return out
    with client:
        started = time.perf_counter()
        try:
            topic = prepare(client, tag)
        except Exception as e:  # noqa: BLE001 - whatever it was, the step failed with it
            out["error"] = "set-up: " + short_error(e)
            return out
        out["setup_s"] = time.perf_counter() - started
        group_error: str | None = None
        member: Member | None = None
        for api in apis:
            if api in GROUP_APIS and member is None and group_error is None:
                # Joined just before the group APIs, so the session cannot lapse meanwhile.
                started = time.perf_counter()
                try:
                    member = join_group(client, f"bench-cpu-{tag}", topic)
                except Exception as e:  # noqa: BLE001
                    group_error = "JoinGroup/SyncGroup: " + short_error(e)
                out["group_setup_s"] = time.perf_counter() - started
            if api in GROUP_APIS and group_error:
                out["apis"][api] = {"api": api, "error": group_error}
                continue
            key, version, body = request_for(api, topic, member)
            # A commit need not renew the member's session (a heartbeat does, and the
            # heartbeats come just before): the commits stay well inside one session.
            limit = min(seconds, COMMIT_SECONDS) if api == "offsetcommit" else seconds
            try:
                out["apis"][api] = timed_round_trips(client, api, key, version, body, n, warmup, limit, pid)
            except Exception as e:  # noqa: BLE001
                out["apis"][api] = {"api": api, "error": short_error(e)}
                if isinstance(e, OSError):  # the connection is gone: reconnect for the next API
                    client.close()
                    try:
                        client.sock = RawClient(host, port).sock
                    except OSError as e2:
                        out["error"] = short_error(e2)
                        break
    failed = [a for a, r in out["apis"].items() if r.get("error")]
    if failed and not out.get("error"):
        out["failed"] = failed
    return out
