"""The data path: produce record batches, fetch and decode them, list offsets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import KafkaError, check
from kbroker.common import TopicPartition
from kbroker.records.batch import BatchError, iter_headers
from kbroker.records.builder import RecordInput, build_batch
from kbroker.records.record import Record, iter_records

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2

EARLIEST = -2
LATEST = -1

#: Compression codec ids by the names Kafka's tools accept.
COMPRESSION = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

#: A record's timestamp type, as Kafka's ``TimestampType`` names it.
CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"


@dataclass(frozen=True, slots=True)
class FetchedRecord(Record):
    """A fetched record with the timestamp type of its batch (the batch attribute's bit)."""

    timestamp_type: str = CREATE_TIME


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as the Java client's default partitioner uses it)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def produce(client: KafkaClient, topic: str, partition: int,
            records: Sequence[RecordInput], *, acks: int = -1,
            compression: int = 0, timeout_ms: int = 30000, leader: int | None = None) -> int | None:
    """Append ``records`` (``(key, value[, headers[, timestamp]])`` tuples) to one partition as one batch.

    Returns the base offset the broker assigned, or None with ``acks=0``.
    """
    if leader is None:
        leader = client.topic(topic).partition(partition).leader
    batch = build_batch(records, compression=compression)
    body = {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": timeout_ms,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}],
    }
    _, resp = client.connection(leader).request(PRODUCE, body, expect_response=acks != 0)
    if resp is None:
        return None
    for t in resp.responses:
        for p in t.partition_responses:
            if p.index == partition:
                check(p.error_code, p.get("error_message"))
                return int(p.base_offset)
    raise KafkaError(-1, "The produce response did not mention the partition.")


@dataclass
class FetchedPartition:
    """What one fetch returned for one partition."""

    error_code: int = 0
    high_watermark: int = -1
    log_start_offset: int = -1
    records: list[FetchedRecord] = field(default_factory=list)
    #: Where the next fetch should start.
    next_offset: int = 0
    #: True if the response held bytes but not one whole batch (fetch more bytes).
    truncated: bool = False
    #: The end of what a read_committed consumer may read (-1 if the broker did not say).
    last_stable_offset: int = -1


def decode_records(data: bytes | None, fetch_offset: int,
                   aborted: Iterable[tuple[int, int]] = ()) -> tuple[list[FetchedRecord], int, bool]:
    """Data records at or after ``fetch_offset`` in fetched bytes, the next offset, and truncation.

    ``aborted`` lists ``(producer_id, first_offset)`` of aborted transactions (a
    read_committed fetch); their records are dropped, as Kafka's consumer does.
    """
    out: list[FetchedRecord] = []
    next_offset = fetch_offset
    if not data:
        return out, next_offset, False
    pending = sorted(aborted, key=lambda a: a[1])
    aborting: set[int] = set()
    whole = False
    for pos, h in iter_headers(data):
        whole = True
        next_offset = max(next_offset, h.next_offset)
        while pending and pending[0][1] <= h.last_offset:
            aborting.add(pending.pop(0)[0])
        if h.is_control:
            aborting.discard(h.producer_id)  # the marker ends the producer's transaction
            continue
        if h.is_transactional and h.producer_id in aborting:
            continue
        batch = memoryview(data)[pos:pos + h.size]
        try:
            ts_type = LOG_APPEND_TIME if h.log_append_time else CREATE_TIME
            out.extend(FetchedRecord(r.offset, r.timestamp, r.key, r.value, r.headers, ts_type)
                       for r in iter_records(batch) if r.offset >= fetch_offset)
        except BatchError as e:
            raise KafkaError(e.error_code, f"Fetched a malformed batch at offset {h.base_offset}: {e}") from None
    return out, next_offset, not whole


def fetch(client: KafkaClient, node_id: int, positions: Mapping[TopicPartition, int], *,
          max_wait_ms: int = 500, min_bytes: int = 1, max_bytes: int = 50 * 1024 * 1024,
          partition_max_bytes: int = 1024 * 1024,
          isolation_level: int = 0) -> dict[TopicPartition, FetchedPartition]:
    """One Fetch from broker ``node_id`` for ``positions`` (partition -> fetch offset)."""
    by_topic: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), offset in positions.items():
        by_topic.setdefault(topic, []).append({
            "partition": partition, "current_leader_epoch": -1, "fetch_offset": offset,
            "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": partition_max_bytes,
        })
    body = {
        "replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": max_bytes,
        "isolation_level": isolation_level, "session_id": 0, "session_epoch": -1,
        "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        "forgotten_topics_data": [], "rack_id": "",
    }
    resp = client.request(FETCH, body, node_id)
    check(resp.get("error_code", 0))
    out: dict[TopicPartition, FetchedPartition] = {}
    for t in resp.responses:
        for p in t.partitions:
            tp = TopicPartition(t.topic, p.partition_index)
            if tp not in positions:
                continue
            fp = FetchedPartition(p.error_code, p.high_watermark, p.get("log_start_offset", -1))
            fp.last_stable_offset = p.get("last_stable_offset", -1)
            fp.next_offset = positions[tp]
            if not p.error_code:
                aborted = [(a.producer_id, a.first_offset) for a in p.get("aborted_transactions") or ()]
                fp.records, fp.next_offset, fp.truncated = decode_records(p.records, positions[tp], aborted)
            out[tp] = fp
    return out


def list_offsets(client: KafkaClient, topic: str, timestamps: Mapping[int, int], *,
                 isolation_level: int = 0) -> dict[int, int]:
    """Offsets of partitions of ``topic`` by timestamp (EARLIEST, LATEST or ms since the epoch).

    Each partition's request goes to its leader. An offset of -1 means no record at
    or after that timestamp.
    """
    info = client.topic(topic)
    by_leader: dict[int, list[int]] = {}
    for partition in timestamps:
        by_leader.setdefault(info.partition(partition).leader, []).append(partition)
    out: dict[int, int] = {}
    for leader, partitions in by_leader.items():
        body = {
            "replica_id": -1, "isolation_level": isolation_level, "timeout_ms": 30000,
            "topics": [{"name": topic, "partitions": [
                {"partition_index": p, "current_leader_epoch": -1, "timestamp": timestamps[p]}
                for p in partitions]}],
        }
        resp = client.request(LIST_OFFSETS, body, leader)
        for t in resp.topics:
            for p in t.partitions:
                if p.partition_index in timestamps:
                    check(p.error_code)
                    out[p.partition_index] = int(p.offset)
    return out


def offsets_for(client: KafkaClient, topic: str, partitions: Iterable[int], timestamp: int) -> dict[int, int]:
    """``list_offsets`` with one timestamp for several partitions."""
    return list_offsets(client, topic, {p: timestamp for p in partitions})


def list_offsets_body(partitions: Iterable[TopicPartition], timestamp: int) -> dict[str, Any]:
    """A consumer's ListOffsets request body: every partition at ``timestamp`` (EARLIEST,
    LATEST or ms), read uncommitted."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return {"replica_id": -1, "isolation_level": 0, "timeout_ms": 30000, "topics": [
        {"name": t, "partitions": [{"partition_index": p, "current_leader_epoch": -1, "timestamp": timestamp}
                                   for p in ps]} for t, ps in by_topic.items()]}


def offsets_at(client: KafkaClient, by_leader: Mapping[int, Iterable[TopicPartition]],
               timestamp: int) -> dict[TopicPartition, int | KafkaError]:
    """One ListOffsets per leader for the partitions it leads (``by_leader``), every partition
    at ``timestamp`` (EARLIEST, LATEST or ms); each partition's offset, or its error."""
    out: dict[TopicPartition, int | KafkaError] = {}
    for leader, tps in by_leader.items():
        resp = client.request(LIST_OFFSETS, list_offsets_body(tps, timestamp), leader)
        for t in resp.topics:
            for p in t.partitions:
                out[TopicPartition(t.name, p.partition_index)] = (
                    KafkaError(p.error_code) if p.error_code else int(p.offset))
    return out
