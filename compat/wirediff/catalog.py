"""The requests sent to both brokers: a few valid ones per API with real content behind them,
a few malformed ones per API, and generic malformed frames for every version.

A :class:`Case` is one request at one version, plus ``prep`` steps that build what it needs
(a topic with records, a group with a member ...). Every case runs on each broker with that
broker's own :class:`State`, so ids a broker chose (member ids, topic ids, producer ids) flow
from its own prep answers into its own request. Names are unique per case, so cases never
disturb one another.
"""

from __future__ import annotations

import io
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from compat.wirediff.wire import Outcome, frame
from kbroker.codec import api_table, encode_body
from kbroker.codec.primitives import read_uvarint, uvarint_bytes
from kbroker.codec.structs import default_value, field_construct
from kbroker.records.builder import build_batch

# API keys.
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT = 8, 9, 10, 11, 12
LEAVE_GROUP, SYNC_GROUP, DESCRIBE_GROUPS, LIST_GROUPS, API_VERSIONS = 13, 14, 15, 16, 18
CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, INIT_PRODUCER_ID = 19, 20, 21, 22
DESCRIBE_CONFIGS, ALTER_CONFIGS, CREATE_PARTITIONS, DELETE_GROUPS = 32, 33, 37, 42
INCREMENTAL_ALTER_CONFIGS, OFFSET_DELETE, DESCRIBE_CLUSTER, DESCRIBE_PRODUCERS = 44, 47, 60, 61
CONSUMER_GROUP_HEARTBEAT, DESCRIBE_TOPIC_PARTITIONS, DESCRIBE_LOG_DIRS = 68, 75, 35
SASL_HANDSHAKE, SASL_AUTHENTICATE, DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 17, 36, 29, 30, 31
DESCRIBE_CLIENT_QUOTAS, ALTER_CLIENT_QUOTAS = 48, 49
DESCRIBE_USER_SCRAM_CREDENTIALS, ALTER_USER_SCRAM_CREDENTIALS = 50, 51

#: The topic every run creates first on both brokers, with records of known timestamps.
SHARED_TOPIC = "wd-shared"
SHARED_GROUP = "wd-shared-offsets"
#: Record timestamps: a minute before the run started, so neither retention nor the future-timestamp
#: limit touches them, and the same on both brokers (one process plans both sides).
BASE_TS = (int(time.time()) - 60) * 1000
ZERO_UUID = uuid.UUID(int=0)
UNKNOWN_UUID = uuid.UUID("00000000-0000-0000-0000-0000000000ab")
RANGE_META = bytes.fromhex("0003000000010009") + SHARED_TOPIC.encode()[:9] + b"\0\0\0\0"


class Session(Protocol):
    """What a prep step needs from a broker connection."""

    def call(self, api_key: int, version: int, body: dict[str, Any], wait: float | None = None) -> Outcome: ...

    def wait_topic(self, name: str, partitions: int) -> Any: ...


class State(dict[str, Any]):
    """One broker's answers to the prep steps so far (by the name each step saves under)."""

    def body(self, key: str) -> Any:
        out = self.get(key)
        return out.body if isinstance(out, Outcome) and out.kind == "response" else None


BodyFn = Callable[[State], dict[str, Any]]
Prep = Callable[[Session, State], None]
RawFn = Callable[[int, State], bytes]


@dataclass
class Case:
    """One request to send to both brokers."""

    api: int
    version: int
    name: str
    kind: str = "valid"  # or "malformed"
    body: dict[str, Any] | BodyFn | None = None
    raw: RawFn | None = None
    prep: list[Prep] = field(default_factory=list)
    expect_response: bool = True
    wait: float | None = None

    def resolve(self, state: State) -> dict[str, Any]:
        assert self.body is not None
        return self.body(state) if callable(self.body) else self.body

    @property
    def label(self) -> str:
        return f"{self.name}"


# --- prep steps -----------------------------------------------------------------------------


def step(api: int, version: int, body: dict[str, Any] | BodyFn, save: str | None = None,
         wait: float | None = None) -> Prep:
    """A prep request; its outcome is kept in the state under ``save``."""
    def run(s: Session, st: State) -> None:
        out = s.call(api, version, body(st) if callable(body) else body, wait=wait)
        if save:
            st[save] = out
    return run


def create_topic(name: str, partitions: int = 1, configs: dict[str, str] | None = None, save: str = "ct") -> Prep:
    """Create a topic and wait until it has leaders (Kafka elects them just after answering)."""
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1,
                        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}],
            "timeout_ms": 10000}
    inner = step(CREATE_TOPICS, 7, body, save)

    def run(s: Session, st: State) -> None:
        inner(s, st)
        st[save + ".topic_id"] = s.wait_topic(name, partitions)
    return run


def records(values: list[bytes], ts: int = BASE_TS, key: bytes | None = b"k") -> bytes:
    """A record batch of ``values`` with fixed timestamps ``ts, ts+1 ...`` (so both logs agree)."""
    return build_batch([(key, v, (), ts + i) for i, v in enumerate(values)])


def produce(topic: str, partition: int, values: list[bytes], ts: int = BASE_TS) -> Prep:
    return step(PRODUCE, 9, {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
                             "topic_data": [{"name": topic, "partition_data": [
                                 {"index": partition, "records": records(values, ts)}]}]})


def commit(group: str, topic: str, offsets: dict[int, int]) -> Prep:
    return step(OFFSET_COMMIT, 8, _commit_body(group, topic, offsets))


def _commit_body(group: str, topic: str, offsets: dict[int, int], generation: int = -1,
                 member: str = "") -> dict[str, Any]:
    return {"group_id": group, "generation_id_or_member_epoch": generation, "member_id": member,
            "group_instance_id": None, "retention_time_ms": -1,
            "topics": [{"name": topic, "partitions": [
                {"partition_index": p, "committed_offset": o, "committed_leader_epoch": -1,
                 "commit_timestamp": -1, "committed_metadata": f"m{p}"} for p, o in offsets.items()]}]}


def _big_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with committed metadata past Kafka's default offset.metadata.max.bytes (4096)."""
    for t in body["topics"]:
        for p in t["partitions"]:
            p["committed_metadata"] = "m" * 5000
    return body


def join_body(group: str, member: str = "", session_ms: int = 300000, protocol_type: str = "consumer",
              protocols: list[tuple[str, bytes]] | None = None) -> dict[str, Any]:
    if protocols is None:
        protocols = [("range", RANGE_META)]
    # Both timeouts outlast a full run (~70 s), so no group changes state on a timer mid-run.
    return {"group_id": group, "session_timeout_ms": session_ms, "rebalance_timeout_ms": 300000,
            "member_id": member, "group_instance_id": None, "protocol_type": protocol_type,
            "protocols": [{"name": n, "metadata": m} for n, m in protocols], "reason": None}


def joined(group: str, sync: bool = True) -> list[Prep]:
    """Prep steps that make one member join ``group`` (and sync): ``join`` and ``sync`` are saved."""
    def second(st: State) -> dict[str, Any]:
        first = st.body("join0")
        return join_body(group, first.member_id if first is not None else "")

    steps = [step(JOIN_GROUP, 9, join_body(group), "join0"), step(JOIN_GROUP, 9, second, "join")]
    if sync:
        def sync_body(st: State) -> dict[str, Any]:
            j = st.body("join")
            member = j.member_id if j is not None else ""
            return {"group_id": group, "generation_id": j.generation_id if j is not None else -1,
                    "member_id": member, "group_instance_id": None, "protocol_type": "consumer",
                    "protocol_name": "range", "assignments": [{"member_id": member, "assignment": b"\0\0"}]}
        steps.append(step(SYNC_GROUP, 5, sync_body, "sync"))
    return steps


def member(st: State) -> str:
    j = st.body("join")
    return str(j.member_id) if j is not None else ""


def generation(st: State) -> int:
    j = st.body("join")
    return int(j.generation_id) if j is not None else -1


# --- per-API valid and malformed requests ----------------------------------------------------


def _n(api: int, v: int, what: str) -> str:
    return f"wd-{api}-{v}-{what}{_SUFFIX}"


def produce_body(v: int, topic: str | None, partition: int, rec: bytes | None, acks: int = -1,
                 topic_id: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": topic or "", "topic_id": topic_id or ZERO_UUID,
                             "partition_data": [{"index": partition, "records": rec}]}
    return {"transactional_id": None, "acks": acks, "timeout_ms": 5000, "topic_data": [entry]}


def _produce(v: int) -> list[Case]:
    t = _n(0, v, "t")
    prep = [create_topic(t, 2)]

    def tid(st: State) -> Any:
        return st.get("ct.topic_id")

    def body(values: list[bytes], partition: int = 0, acks: int = -1, topic: str | None = None) -> BodyFn:
        return lambda st: produce_body(v, topic or t, partition, records(values), acks,
                                       tid(st) if topic is None else UNKNOWN_UUID)

    crc = bytearray(records([b"x"]))
    crc[-1] ^= 0xFF  # a flipped byte in the last record: CRC mismatch
    cases = [
        Case(0, v, "two-records", body=body([b"a", b"b"]), prep=prep),
        Case(0, v, "acks1", body=body([b"c"], partition=1, acks=1), prep=prep),
        Case(0, v, "unknown-topic", "malformed", body=body([b"x"], topic="wd-no-such-topic")),
        Case(0, v, "bad-partition", "malformed", body=body([b"x"], partition=7), prep=prep),
        Case(0, v, "acks2", "malformed", body=body([b"x"], acks=2), prep=prep),
        Case(0, v, "null-records", "malformed",
             body=lambda st: produce_body(v, t, 0, None, -1, tid(st)), prep=prep, wait=3.0),
        Case(0, v, "bad-crc", "malformed",
             body=lambda st: produce_body(v, t, 0, bytes(crc), -1, tid(st)), prep=prep),
    ]
    cases.append(Case(0, v, "acks0", body=body([b"z"], acks=0), prep=prep, expect_response=False))

    def idempotent(seq: int) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            pid = st.body("pid")
            rec = build_batch([(b"k", b"i", (), BASE_TS)], producer_id=pid.producer_id if pid else -1,
                              producer_epoch=pid.producer_epoch if pid else -1, base_sequence=seq)
            return produce_body(v, t, 0, rec, -1, tid(st))
        return make

    small = _n(0, v, "small")
    cases += [
        Case(0, v, "internal-topic", "malformed",
             body=lambda st: produce_body(v, "__consumer_offsets", 0, records([b"x"]), -1, UNKNOWN_UUID)),
        Case(0, v, "batch-over-max-message-bytes", "malformed", prep=[create_topic(small, 1, {"max.message.bytes": "200"}, "cs")],
             body=lambda st: produce_body(v, small, 0, records([b"y" * 300]), -1, st.get("cs.topic_id"))),
    ]
    pid_prep = [*prep, step(INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                  "producer_id": -1, "producer_epoch": -1}, "pid")]
    cases += [
        Case(0, v, "idempotent", body=idempotent(0), prep=pid_prep),
        # A new producer may start at any sequence; after sequence 0, sequence 5 is out of order.
        Case(0, v, "idempotent-first-sequence-5", body=idempotent(5), prep=pid_prep),
        Case(0, v, "idempotent-sequence-gap", "malformed", body=idempotent(5),
             prep=[*pid_prep, lambda s, st: s.call(PRODUCE, v, idempotent(0)(st))]),
        Case(0, v, "idempotent-duplicate", body=idempotent(0),
             prep=[*pid_prep, lambda s, st: s.call(PRODUCE, v, idempotent(0)(st))]),
        Case(0, v, "gzip", prep=prep, body=lambda st: produce_body(
            v, t, 1, build_batch([(b"k", b"z" * 100, (), BASE_TS)] * 3, compression=1), -1, tid(st))),
    ]
    txn = _n(0, v, "x")

    unverified = _n(0, v, "u")  # Kafka's transaction version 2 may write there (see accepted.toml)

    def transactional(txn_id: str | None, seq: int = 0, epoch_delta: int = 0, partition: int = 0,
                      topic: str = t, key: str = "ct.topic_id") -> BodyFn:
        return lambda st: txn_produce_body(v, txn_id, topic, partition,
                                           txn_batch(st, [b"tx"], seq, BASE_TS, epoch_delta), st.get(key))

    txn_prep = [*prep, *txn_init(txn)]
    u_prep = [create_topic(unverified, 2, save="cu"), *txn_init(_n(0, v, "y"))]
    cases += [
        Case(0, v, "transactional-verified", prep=[*txn_prep, add_partitions(txn, t, [0])], body=transactional(txn)),
        Case(0, v, "transactional-second-batch", prep=[*txn_prep, *open_txn(txn, t, 0, (b"a",), 0)],
             body=transactional(txn, seq=1)),
        Case(0, v, "transactional-unverified", "malformed", prep=u_prep,
             body=transactional(_n(0, v, "y"), topic=unverified, key="cu.topic_id")),
        Case(0, v, "transactional-other-partition", "malformed",
             prep=[*u_prep, add_partitions(_n(0, v, "y"), unverified, [0])],
             body=transactional(_n(0, v, "y"), partition=1, topic=unverified, key="cu.topic_id")),
        Case(0, v, "transactional-no-id", "malformed", prep=[*txn_prep, add_partitions(txn, t, [0])],
             body=transactional(None)),
        Case(0, v, "transactional-other-id", "malformed", prep=[*txn_prep, add_partitions(txn, t, [0])],
             body=transactional(_n(0, v, "other"))),
        Case(0, v, "transactional-acks1", "malformed", prep=[*txn_prep, add_partitions(txn, t, [0])],
             body=lambda st: dict(transactional(txn)(st), acks=1)),
        Case(0, v, "transactional-wrong-epoch", "malformed", prep=[*txn_prep, add_partitions(txn, t, [0])],
             body=transactional(txn, epoch_delta=1)),
        Case(0, v, "plain-during-transaction", "malformed", prep=[*txn_prep, *open_txn(txn, t, 0, (b"a",), 0)],
             body=lambda st: produce_body(v, t, 0, build_batch(
                 [(b"k", b"np", (), BASE_TS)], producer_id=pid_epoch(st)[0], producer_epoch=pid_epoch(st)[1],
                 base_sequence=1), -1, tid(st))),
        Case(0, v, "after-abort", prep=[*txn_prep, *open_txn(txn, t, 0, (b"a",), 0), *end_txn(txn, False),
                                        add_partitions(txn, t, [0])], body=transactional(txn, seq=1)),
    ]
    return cases


def _produce_old(v: int) -> list[Case]:
    """Produce v0-2: the v3 body without its transactional id (the codec knows v3+ only)."""
    t = SHARED_TOPIC

    def raw(cid: int, st: State) -> bytes:
        full = frame(PRODUCE, 3, cid, produce_body(3, t, 2, records([b"old"])))
        head = 4 + 8 + 2 + len("wirediff")
        payload = bytearray(full[4:head]) + full[head + 2:]  # drop the null transactional id (int16 -1)
        struct.pack_into(">h", payload, 2, v)
        return struct.pack(">i", len(payload)) + bytes(payload)

    return [Case(0, v, "v3-body-without-txn-id", raw=raw)]


def after_delete_records(topic: str, offset: int = 2, partitions: int = 1) -> list[Prep]:
    """A topic whose partitions each hold five records in one batch (timestamps ``BASE_TS`` ...
    ``BASE_TS+4``), their log start offsets moved to ``offset`` by DeleteRecords."""
    return [create_topic(topic, partitions),
            *(produce(topic, p, [b"r0", b"r1", b"r2", b"r3", b"r4"]) for p in range(partitions)),
            step(DELETE_RECORDS, 2, {"topics": [{"name": topic, "partitions": [
                {"partition_index": p, "offset": offset} for p in range(partitions)]}], "timeout_ms": 5000})]


def _fetch(v: int) -> list[Case]:
    def body(parts: dict[int, int], topic: str = SHARED_TOPIC, max_wait: int = 0, topic_id: Any = None,
             isolation: int = 0, epoch: int = -1, part_max: int = 1 << 20) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            tid = topic_id if topic_id is not None else st.get(
                "shared.topic_id" if topic == SHARED_TOPIC else "ct.topic_id", ZERO_UUID)
            return {"replica_id": -1, "max_wait_ms": max_wait, "min_bytes": 1, "max_bytes": 1 << 20,
                    "isolation_level": isolation, "session_id": 0, "session_epoch": -1,
                    "topics": [{"topic": topic, "topic_id": tid, "partitions": [
                        {"partition": p, "current_leader_epoch": epoch, "fetch_offset": o, "last_fetched_epoch": -1,
                         "log_start_offset": -1, "partition_max_bytes": part_max} for p, o in parts.items()]}],
                    "forgotten_topics_data": [], "rack_id": ""}
        return make

    def session(session_id: int, epoch: int) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            return dict(body({0: 0})(st), session_id=session_id, session_epoch=epoch)
        return make

    cases = [
        Case(1, v, "new-session", body=session(0, 0)),
        Case(1, v, "unknown-session", "malformed", body=session(123456, 1)),
        Case(1, v, "bad-session-epoch", "malformed", body=session(0, 5)),
    ] if v >= 7 else []
    return cases + [
        Case(1, v, "from-start", body=body({0: 0, 1: 0})),
        Case(1, v, "mid-batch", body=body({0: 1})),
        Case(1, v, "at-end-no-wait", body=body({2: 0})),
        Case(1, v, "read-committed", body=body({0: 0}, isolation=1)),
        Case(1, v, "offset-out-of-range", "malformed", body=body({0: 100})),
        Case(1, v, "negative-offset", "malformed", body=body({0: -5})),
        Case(1, v, "bad-partition", "malformed", body=body({9: 0})),
        Case(1, v, "tiny-partition-max-bytes", body=body({0: 0, 1: 0}, part_max=1)),
        *([Case(1, v, "future-leader-epoch", "malformed", body=body({0: 0}, epoch=5)),
           Case(1, v, "current-leader-epoch", body=body({0: 0}, epoch=0))] if v >= 9 else []),
        Case(1, v, "unknown-topic", "malformed", body=body({0: 0}, topic="wd-no-such-topic", topic_id=UNKNOWN_UUID)),
        Case(1, v, "from-deleted-log-start", prep=after_delete_records(_n(1, v, "dr")),
             body=body({0: 2}, topic=_n(1, v, "dr"))),
        Case(1, v, "below-deleted-log-start", "malformed", prep=after_delete_records(_n(1, v, "db")),
             body=body({0: 1}, topic=_n(1, v, "db"))),
        Case(1, v, "after-delete-all-records", prep=after_delete_records(_n(1, v, "da"), -1),
             body=body({0: 5}, topic=_n(1, v, "da"))),
        # An aborted transaction then an open one (see aborted_then_open): read_committed stops at the
        # last stable offset and lists the aborted transaction; read_uncommitted gets everything.
        Case(1, v, "read-committed-aborted", prep=aborted_then_open(_n(1, v, "tx"), _n(1, v, "x")),
             body=body({0: 0}, topic=_n(1, v, "tx"), isolation=1)),
        Case(1, v, "read-committed-from-marker", prep=aborted_then_open(_n(1, v, "tm"), _n(1, v, "x")),
             body=body({0: 4}, topic=_n(1, v, "tm"), isolation=1)),
        Case(1, v, "read-uncommitted-aborted", prep=aborted_then_open(_n(1, v, "tu"), _n(1, v, "x")),
             body=body({0: 0}, topic=_n(1, v, "tu"))),
        Case(1, v, "read-committed-at-lso", prep=aborted_then_open(_n(1, v, "tl"), _n(1, v, "x")),
             body=body({0: 6}, topic=_n(1, v, "tl"), isolation=1)),
        Case(1, v, "read-committed-first-batch-only", prep=aborted_then_open(_n(1, v, "tb"), _n(1, v, "x")),
             body=body({0: 0}, topic=_n(1, v, "tb"), isolation=1, part_max=1)),
        Case(1, v, "read-committed-after-aborted", prep=aborted_then_open(_n(1, v, "ta"), _n(1, v, "x")),
             body=body({0: 5}, topic=_n(1, v, "ta"), isolation=1)),
        Case(1, v, "read-committed-inside-aborted", prep=aborted_then_open(_n(1, v, "ti"), _n(1, v, "x")),
             body=body({0: 3}, topic=_n(1, v, "ti"), isolation=1)),
        Case(1, v, "read-committed-after-commit", prep=[
            *aborted_then_open(_n(1, v, "tc"), _n(1, v, "x")), *end_txn(_n(1, v, "x"), True)],
             body=body({0: 0}, topic=_n(1, v, "tc"), isolation=1)),
    ]


def _list_offsets(v: int) -> list[Case]:
    def body(parts: dict[int, int], topic: str = SHARED_TOPIC, isolation: int = 0, epoch: int = -1) -> dict[str, Any]:
        return {"replica_id": -1, "isolation_level": isolation, "timeout_ms": 1000,
                "topics": [{"name": topic, "partitions": [
                    {"partition_index": p, "current_leader_epoch": epoch, "timestamp": ts, "max_num_offsets": 1}
                    for p, ts in parts.items()]}]}

    cases = [
        Case(2, v, "earliest-latest", body=body({0: -2, 1: -1, 2: -1})),
        Case(2, v, "by-timestamp", body=body({0: BASE_TS + 1, 1: BASE_TS + 50, 2: BASE_TS})),
        Case(2, v, "max-timestamp", body=body({0: -3})),
        Case(2, v, "earliest-local", body=body({0: -4})),
        Case(2, v, "latest-tiered", body=body({0: -5})),
        Case(2, v, "earliest-pending-upload", body=body({0: -6})),
        Case(2, v, "read-committed", body=body({0: -1}, isolation=1)),
        Case(2, v, "unknown-topic", "malformed", body=body({0: -1}, topic="wd-no-such-topic")),
        Case(2, v, "bad-partition", "malformed", body=body({5: -1})),
        Case(2, v, "bad-timestamp", "malformed", body=body({0: -7})),
        Case(2, v, "duplicate-partition", "malformed",
             body={"replica_id": -1, "isolation_level": 0, "timeout_ms": 1000, "topics": [
                 {"name": SHARED_TOPIC, "partitions": [{"partition_index": 0, "timestamp": -1, "current_leader_epoch": -1,
                                                        "max_num_offsets": 1}] * 2}]}),
    ]
    # Earliest, a timestamp of a deleted record, the latest and the max timestamp (a deleted record's
    # while its segment is still there) after DeleteRecords; v1 answers -3 as a plain timestamp.
    cases.append(Case(2, v, "after-delete-records", prep=after_delete_records(_n(2, v, "dr"), 2, 4),
                      body=body({0: -2, 1: BASE_TS + 1, 2: -1, 3: -3}, topic=_n(2, v, "dr"))))
    cases.append(Case(2, v, "after-delete-all-records", prep=after_delete_records(_n(2, v, "da"), -1, 4),
                      body=body({0: -2, 1: BASE_TS + 1, 2: -1, 3: -3}, topic=_n(2, v, "da"))))
    if v >= 2:
        cases += [Case(2, v, "read-committed-open-transaction", prep=aborted_then_open(_n(2, v, "tx"), _n(2, v, "x")),
                       body=body({0: -1}, topic=_n(2, v, "tx"), isolation=1)),
                  Case(2, v, "read-uncommitted-open-transaction", prep=aborted_then_open(_n(2, v, "tu"), _n(2, v, "x")),
                       body=body({0: -1}, topic=_n(2, v, "tu"), isolation=0))]
        # Timestamps of records before, inside and past the open transaction (offsets 5, 6), the
        # earliest and the max timestamp, read_committed.
        lookups = {"before": BASE_TS + 5, "open": BASE_TS + 6, "aborted": BASE_TS + 2, "earliest": -2}
        if v >= 7:
            lookups["max"] = -3
        for what, ts in lookups.items():
            cases.append(Case(2, v, f"read-committed-{what}-timestamp-open-transaction",
                              prep=aborted_then_open(_n(2, v, "t" + what[:2]), _n(2, v, "x")),
                              body=body({0: ts}, topic=_n(2, v, "t" + what[:2]), isolation=1)))
    if v >= 4:
        cases += [Case(2, v, "future-leader-epoch", "malformed", body=body({0: -1}, epoch=5)),
                  Case(2, v, "current-leader-epoch", body=body({0: -1}, epoch=0))]
    return cases


def _metadata(v: int) -> list[Case]:
    def body(names: list[str] | None, auto: bool = False, ids: list[Any] | None = None, ops: bool = False) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            topics = None if names is None else [{"name": n, "topic_id": ZERO_UUID} for n in names]
            if ids is not None:
                topics = [{"name": None, "topic_id": st.get(i, i) if isinstance(i, str) else i} for i in ids]
            return {"topics": topics, "allow_auto_topic_creation": auto,
                    "include_cluster_authorized_operations": ops, "include_topic_authorized_operations": ops}
        return make

    cases = [
        Case(3, v, "shared-topic", body=body([SHARED_TOPIC])),
        Case(3, v, "no-topics", body=body([])),
        # Before v4 a Metadata request always may auto-create: a name of its own, not the shared unknown one.
        Case(3, v, "unknown-no-create" if v >= 4 else "unknown-implicit-create", "malformed",
             body=body(["wd-no-such-topic" if v >= 4 else _n(3, v, "implicit")], auto=False)),
        Case(3, v, "bad-name", "malformed", body=body(["bad/name"], auto=True)),
    ]
    if v >= 4:
        cases.append(Case(3, v, "auto-create", body=body([_n(3, v, "auto")], auto=True)))
    if v >= 8:
        cases.append(Case(3, v, "authorized-operations", body=body([SHARED_TOPIC], ops=True)))
    cases.append(Case(3, v, "internal-topic", body=body(["__consumer_offsets"])))
    if v >= 12:
        cases.append(Case(3, v, "by-topic-id", body=body(None, ids=["shared.topic_id"])))
        cases.append(Case(3, v, "unknown-topic-id", "malformed", body=body(None, ids=[UNKNOWN_UUID])))
    return cases


def _offset_commit(v: int) -> list[Case]:
    g = _n(8, v, "g")
    return [
        Case(8, v, "simple-commit", body=_commit_body(g, SHARED_TOPIC, {0: 1, 1: 0})),
        Case(8, v, "member-commit", prep=joined(_n(8, v, "m")),
             body=lambda st: _commit_body(_n(8, v, "m"), SHARED_TOPIC, {0: 2}, generation(st), member(st))),
        Case(8, v, "unknown-member", "malformed", prep=joined(_n(8, v, "u")),
             body=lambda st: _commit_body(_n(8, v, "u"), SHARED_TOPIC, {0: 2}, generation(st), "nobody")),
        Case(8, v, "unknown-topic", "malformed", body=_commit_body(g + "x", "wd-no-such-topic", {0: 1})),
        Case(8, v, "bad-partition", "malformed", body=_commit_body(g + "y", SHARED_TOPIC, {9: 1})),
        Case(8, v, "empty-group-id", "malformed", body=_commit_body("", SHARED_TOPIC, {0: 1})),
        Case(8, v, "metadata-too-large", "malformed", body=_big_metadata(_commit_body(g + "big", SHARED_TOPIC, {0: 1}))),
    ]


def _offset_fetch(v: int) -> list[Case]:
    def body(group: str, topics: dict[str, list[int]] | None) -> dict[str, Any]:
        ts = None if topics is None else [{"name": t, "partition_indexes": ps} for t, ps in topics.items()]
        if v >= 8:
            return {"groups": [{"group_id": group, "member_id": None, "member_epoch": -1, "topics": ts}],
                    "require_stable": True}
        return {"group_id": group, "topics": ts if ts is not None or v >= 2 else [], "require_stable": True}

    cases = [
        Case(9, v, "committed", body=body(SHARED_GROUP, {SHARED_TOPIC: [0, 1, 2]})),
        Case(9, v, "unknown-group", "malformed", body=body("wd-no-such-group", {SHARED_TOPIC: [0]})),
        Case(9, v, "unknown-topic", "malformed", body=body(SHARED_GROUP, {"wd-no-such-topic": [0]})),
        Case(9, v, "bad-partition", "malformed", body=body(SHARED_GROUP, {SHARED_TOPIC: [7]})),
    ]
    if v >= 2:
        cases.append(Case(9, v, "all-topics", body=body(SHARED_GROUP, None)))
    # Transactional offsets: pending until the commit marker (UNSTABLE_OFFSET_COMMIT with
    # require_stable, v7+), then visible; aborted ones never are.
    txn, g = _n(9, v, "x"), _n(9, v, "g")

    def txn_commit(st: State) -> dict[str, Any]:
        p, e = pid_epoch(st)
        return {"transactional_id": txn, "group_id": g, "producer_id": p, "producer_epoch": e, "generation_id": -1,
                "member_id": "", "group_instance_id": None, "topics": [{"name": SHARED_TOPIC, "partitions": [
                    {"partition_index": 0, "committed_offset": 2, "committed_leader_epoch": -1,
                     "committed_metadata": "tx"}]}]}

    def add_offsets(st: State) -> dict[str, Any]:
        p, e = pid_epoch(st)
        return {"transactional_id": txn, "producer_id": p, "producer_epoch": e, "group_id": g}

    pending = [*txn_init(txn), settled(FIND_COORDINATOR, 4, {"key_type": 0, "coordinator_keys": [g]}),
               commit(g, SHARED_TOPIC, {0: 1, 1: 1}), settled(ADD_OFFSETS_TO_TXN, 3, add_offsets),
               settled(TXN_OFFSET_COMMIT, 3, txn_commit)]
    if v >= 7:
        cases.append(Case(9, v, "transactional-pending-not-stable", prep=pending,
                          body=dict(body(g, {SHARED_TOPIC: [0, 1]}), require_stable=False)))
    cases += [Case(9, v, "transactional-pending", prep=pending, body=body(g, {SHARED_TOPIC: [0, 1]})),
              Case(9, v, "transactional-committed", prep=[*pending, *end_txn(txn, True)],
                   body=body(g, {SHARED_TOPIC: [0, 1]})),
              Case(9, v, "transactional-aborted", prep=[*pending, *end_txn(txn, False)],
                   body=body(g, {SHARED_TOPIC: [0, 1]}))]
    if v >= 8:
        cases.append(Case(9, v, "two-groups", body={"groups": [
            {"group_id": SHARED_GROUP, "member_id": None, "member_epoch": -1,
             "topics": [{"name": SHARED_TOPIC, "partition_indexes": [0, 1]}]},
            {"group_id": "wd-no-such-group", "member_id": None, "member_epoch": -1, "topics": None}],
            "require_stable": False}))
    return cases


def _find_coordinator(v: int) -> list[Case]:
    def body(key: str, key_type: int = 0) -> dict[str, Any]:
        return {"key": key, "key_type": key_type, "coordinator_keys": [key]}

    cases = [Case(10, v, "group", body=body(SHARED_GROUP)),
             Case(10, v, "empty-key", "malformed", body=body(""))]
    if v >= 1:
        cases += [Case(10, v, "transaction", body=body("wd-txn", 1)),
                  Case(10, v, "bad-key-type", "malformed", body=body("x", 5))]
    if v >= 4:
        cases.append(Case(10, v, "two-keys", body={"key_type": 0, "coordinator_keys": [SHARED_GROUP, "wd-other"]}))
        cases.append(Case(10, v, "two-transaction-keys", body={"key_type": 1, "coordinator_keys": ["wd-txn", "wd-txn2"]}))
    return cases


def _join_group(v: int) -> list[Case]:
    g = _n(11, v, "g")
    cases = [
        Case(11, v, "new-member", body=join_body(g)),
        Case(11, v, "bad-session-timeout", "malformed", body=join_body(g + "s", session_ms=1)),
        Case(11, v, "no-protocols", "malformed", body=join_body(g + "p", protocols=[])),
        Case(11, v, "empty-group-id", "malformed", body=join_body("")),
        Case(11, v, "unknown-member", "malformed", body=join_body(g + "u", member="nobody")),
    ]
    if v >= 4:
        cases.append(Case(11, v, "rejoin-with-id", prep=[step(11, v, join_body(g + "r"), "join0")],
                          body=lambda st: join_body(g + "r", st.body("join0").member_id
                                                    if st.body("join0") is not None else "")))
    cases.append(Case(11, v, "protocol-type-mismatch", "malformed", prep=joined(g + "t"),
                      body=join_body(g + "t", protocol_type="other")))
    return cases


def _heartbeat(v: int) -> list[Case]:
    def body(group: str, gen: Callable[[State], int] = generation, mem: Callable[[State], str] = member) -> BodyFn:
        return lambda st: {"group_id": group, "generation_id": gen(st), "member_id": mem(st),
                           "group_instance_id": None}
    g = _n(12, v, "g")
    return [
        Case(12, v, "stable", prep=joined(g), body=body(g)),
        Case(12, v, "unknown-member", "malformed", prep=joined(g + "u"), body=body(g + "u", mem=lambda st: "nobody")),
        Case(12, v, "bad-generation", "malformed", prep=joined(g + "b"),
             body=body(g + "b", gen=lambda st: generation(st) + 5)),
        Case(12, v, "unknown-group", "malformed", body=body("wd-no-such-group")),
        Case(12, v, "before-sync", prep=joined(g + "c", sync=False), body=body(g + "c")),
    ]


def _leave_group(v: int) -> list[Case]:
    def body(group: str, mem: Callable[[State], str] = member) -> BodyFn:
        return lambda st: {"group_id": group, "member_id": mem(st),
                           "members": [{"member_id": mem(st), "group_instance_id": None, "reason": "wd"}]}
    g = _n(13, v, "g")
    return [
        Case(13, v, "leave", prep=joined(g), body=body(g)),
        Case(13, v, "unknown-member", "malformed", prep=joined(g + "u"), body=body(g + "u", lambda st: "nobody")),
        Case(13, v, "unknown-group", "malformed", body=body("wd-no-such-group", lambda st: "nobody")),
        *([Case(13, v, "member-and-stranger", "malformed", prep=joined(g + "s"), body=lambda st: {
            "group_id": g + "s", "members": [{"member_id": member(st), "group_instance_id": None, "reason": None},
                                             {"member_id": "nobody", "group_instance_id": None, "reason": None}]})]
          if v >= 3 else []),
    ]


def _sync_group(v: int) -> list[Case]:
    def body(group: str, gen: Callable[[State], int] = generation, ptype: str | None = "consumer") -> BodyFn:
        return lambda st: {"group_id": group, "generation_id": gen(st), "member_id": member(st),
                           "group_instance_id": None, "protocol_type": ptype, "protocol_name": "range",
                           "assignments": [{"member_id": member(st), "assignment": b"\0\1"}]}
    g = _n(14, v, "g")
    cases = [
        Case(14, v, "leader-sync", prep=joined(g, sync=False), body=body(g)),
        Case(14, v, "bad-generation", "malformed", prep=joined(g + "b", sync=False),
             body=body(g + "b", gen=lambda st: generation(st) + 3)),
        Case(14, v, "unknown-group", "malformed", body=body("wd-no-such-group")),
    ]
    if v >= 5:
        cases.append(Case(14, v, "wrong-protocol-type", "malformed", prep=joined(g + "p", sync=False),
                          body=body(g + "p", ptype="other")))
    return cases


def _describe_groups(v: int) -> list[Case]:
    g = _n(15, v, "g")
    return [
        Case(15, v, "stable-and-unknown", prep=joined(g),
             body={"groups": [g, "wd-no-such-group"], "include_authorized_operations": False}),
        Case(15, v, "offsets-only-group", body={"groups": [SHARED_GROUP], "include_authorized_operations": False}),
        Case(15, v, "empty-name", "malformed", body={"groups": [""], "include_authorized_operations": False}),
        # Not sent: a group still completing its first rebalance. Kafka's coordinator may answer
        # from its last committed state, where such a group does not exist yet (Dead), or not:
        # it depends on timing, so the comparison would flap.
    ]


def _list_groups(v: int) -> list[Case]:
    g = _n(16, v, "g")
    cases = [Case(16, v, "all", prep=joined(g), body={"states_filter": [], "types_filter": []})]
    if v >= 4:
        cases.append(Case(16, v, "stable-only", prep=joined(g + "s"),
                          body={"states_filter": ["Stable"], "types_filter": []}))
        cases.append(Case(16, v, "bad-state", "malformed", body={"states_filter": ["Nope"], "types_filter": []}))
    if v >= 5:
        cases.append(Case(16, v, "classic-only", body={"states_filter": [], "types_filter": ["classic"]}))
        cases.append(Case(16, v, "bad-type", "malformed", body={"states_filter": [], "types_filter": ["nope"]}))
    return cases


def _api_versions(v: int) -> list[Case]:
    cases = [Case(18, v, "plain", body={"client_software_name": "wirediff", "client_software_version": "1.0"})]
    if v >= 3:
        cases.append(Case(18, v, "bad-software-name", "malformed",
                          body={"client_software_name": "bad name!", "client_software_version": "1.0"}))
    return cases


def _create_topics(v: int) -> list[Case]:
    def body(name: str, parts: int = 2, rf: int = 1, configs: dict[str, str | None] | None = None,
             validate: bool = False, assignments: list[tuple[int, list[int]]] | None = None) -> dict[str, Any]:
        return {"topics": [{"name": name, "num_partitions": parts, "replication_factor": rf,
                            "assignments": [{"partition_index": p, "broker_ids": b} for p, b in assignments or []],
                            "configs": [{"name": k, "value": x} for k, x in (configs or {}).items()]}],
                "timeout_ms": 10000, "validate_only": validate}

    cases = [
        Case(19, v, "create", body=body(_n(19, v, "t"), configs={"retention.ms": "3600000"})),
        Case(19, v, "already-exists", "malformed", body=body(SHARED_TOPIC)),
        Case(19, v, "zero-partitions", "malformed", body=body(_n(19, v, "z"), parts=0)),
        Case(19, v, "replication-3", "malformed", body=body(_n(19, v, "r"), rf=3)),
        Case(19, v, "bad-config", "malformed", body=body(_n(19, v, "c"), configs={"no.such.config": "1"})),
        Case(19, v, "bad-config-value", "malformed", body=body(_n(19, v, "cv"), configs={"retention.ms": "soon"})),
        Case(19, v, "bad-name", "malformed", body=body("bad/name")),
        Case(19, v, "bad-cleanup-policy", "malformed", body=body(_n(19, v, "cp"), configs={"cleanup.policy": "bogus"})),
        Case(19, v, "bad-compression", "malformed", body=body(_n(19, v, "co"), configs={"compression.type": "zip"})),
        Case(19, v, "null-config-value", "malformed", body=body(_n(19, v, "nv"), configs={"retention.ms": None})),
        Case(19, v, "compact-topic", body=body(_n(19, v, "cc"), configs={"cleanup.policy": "compact",
                                                                          "min.compaction.lag.ms": "100"})),
        Case(19, v, "assignment", body=body(_n(19, v, "a"), parts=-1, rf=-1, assignments=[(0, [1]), (1, [1])])),
        Case(19, v, "bad-assignment", "malformed", body=body(_n(19, v, "ba"), parts=-1, rf=-1,
                                                            assignments=[(0, [9])])),
    ]
    if v >= 1:
        cases.append(Case(19, v, "validate-only", body=body(_n(19, v, "vo"), validate=True)))
    if v >= 4:
        cases.append(Case(19, v, "defaults", body=body(_n(19, v, "d"), parts=-1, rf=-1)))
    return cases


def _delete_topics(v: int) -> list[Case]:
    t = _n(20, v, "t")

    def body(names: list[str | None], ids: list[Any] | None = None) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            ids_ = [st.get(i, i) if isinstance(i, str) else i for i in ids or []]
            return {"topic_names": [n for n in names if n is not None],
                    "topics": [{"name": n, "topic_id": ZERO_UUID} for n in names]
                    + [{"name": None, "topic_id": i} for i in ids_], "timeout_ms": 10000}
        return make

    cases = [
        Case(20, v, "delete", prep=[create_topic(t)], body=body([t])),
        Case(20, v, "unknown-topic", "malformed", body=body(["wd-no-such-topic"])),
    ]
    if v >= 6:
        cases.append(Case(20, v, "by-id", prep=[create_topic(t + "i")], body=body([], ["ct.topic_id"])))
        cases.append(Case(20, v, "unknown-id", "malformed", body=body([], [UNKNOWN_UUID])))
    return cases


def _init_producer_id(v: int) -> list[Case]:
    def body(txn: str | None, pid: int = -1, epoch: int = -1, timeout: int = 60000) -> dict[str, Any]:
        return {"transactional_id": txn, "transaction_timeout_ms": timeout, "producer_id": pid,
                "producer_epoch": epoch}
    cases = [
        Case(22, v, "idempotent", body=body(None)),
        Case(22, v, "transactional", body=body(_n(22, v, "txn"))),
        Case(22, v, "bad-txn-timeout", "malformed", body=body(_n(22, v, "tt"), timeout=0)),
    ]
    txn, t = _n(22, v, "x"), _n(22, v, "t")

    def again(epoch_delta: int = 0, save: str = "tpid") -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            pid, epoch = pid_epoch(st, save)
            return body(txn, pid, epoch + epoch_delta) if v >= 3 else body(txn)
        return make

    cases += [
        Case(22, v, "transactional-reinit", prep=txn_init(txn), body=body(txn)),
        Case(22, v, "transactional-timeout-over-max", "malformed", body=body(txn, timeout=MAX_TXN_TIMEOUT_MS + 1)),
        Case(22, v, "transactional-timeout-max", body=body(txn, timeout=MAX_TXN_TIMEOUT_MS)),
        Case(22, v, "empty-transactional-id", "malformed", body=body("")),
        Case(22, v, "transactional-ongoing", prep=[create_topic(t, 1), *txn_init(txn), *open_txn(txn, t)],
             body=body(txn)),
    ]
    if v >= 3:
        cases += [
            Case(22, v, "unknown-producer-epoch", "malformed", body=body(None, pid=12345, epoch=3)),
            Case(22, v, "transactional-bump", prep=txn_init(txn), body=again()),
            Case(22, v, "transactional-fenced", "malformed", prep=[*txn_init(txn), *txn_init(txn, "tpid2")],
                 body=again()),
            Case(22, v, "transactional-future-epoch", "malformed", prep=txn_init(txn), body=again(5)),
        ]
    return cases


BROKER, TOPIC = 4, 2
DESCRIBE_CONFIGS_MAX = 4


def _describe_configs(v: int) -> list[Case]:
    def body(rtype: int, name: str, keys: list[str] | None) -> dict[str, Any]:
        return {"resources": [{"resource_type": rtype, "resource_name": name, "configuration_keys": keys}],
                "include_synonyms": True, "include_documentation": False}
    broker_keys = ["num.partitions", "auto.create.topics.enable", "message.max.bytes", "log.retention.hours",
                   "default.replication.factor"]
    t = _n(32, v, "t")
    return [
        Case(32, v, "topic-all", prep=[create_topic(t, configs={"retention.ms": "7200000"})],
             body=body(TOPIC, t, None)),
        Case(32, v, "topic-keys", body=body(TOPIC, SHARED_TOPIC, ["cleanup.policy", "retention.ms", "segment.bytes"])),
        Case(32, v, "broker-keys", body=body(BROKER, "1", broker_keys)),
        Case(32, v, "unknown-topic", "malformed", body=body(TOPIC, "wd-no-such-topic", None)),
        Case(32, v, "other-broker", "malformed", body=body(BROKER, "7", ["num.partitions"])),
        Case(32, v, "bad-broker-name", "malformed", body=body(BROKER, "one", ["num.partitions"])),
        Case(32, v, "bad-resource-type", "malformed", body=body(99, "x", None)),
        Case(32, v, "unknown-key", body=body(TOPIC, SHARED_TOPIC, ["no.such.config"])),
        # Every broker config, at the highest version only: the list of what kbroker lacks is long
        # and the same at every version.
        *([Case(32, v, "broker-all", body=dict(body(BROKER, "1", None), include_synonyms=False))]
          if v == DESCRIBE_CONFIGS_MAX else []),
    ]


def _alter_configs(v: int) -> list[Case]:
    def body(rtype: int, name: str, configs: dict[str, str | None], validate: bool = False) -> dict[str, Any]:
        return {"resources": [{"resource_type": rtype, "resource_name": name,
                               "configs": [{"name": k, "value": x} for k, x in configs.items()]}],
                "validate_only": validate}
    t = _n(33, v, "t")
    return [
        Case(33, v, "set-topic", prep=[create_topic(t)], body=body(TOPIC, t, {"retention.ms": "1000000"})),
        Case(33, v, "validate-only", prep=[create_topic(t + "v")],
             body=body(TOPIC, t + "v", {"retention.ms": "1000000"}, validate=True)),
        Case(33, v, "unknown-config", "malformed", prep=[create_topic(t + "u")],
             body=body(TOPIC, t + "u", {"no.such.config": "1"})),
        Case(33, v, "bad-value", "malformed", prep=[create_topic(t + "b")],
             body=body(TOPIC, t + "b", {"retention.ms": "soon"})),
        Case(33, v, "unknown-topic", "malformed", body=body(TOPIC, "wd-no-such-topic", {"retention.ms": "1"})),
        Case(33, v, "broker-dynamic", body=body(BROKER, "1", {"log.cleaner.threads": "1"}, validate=True)),
    ]


def _incremental_alter_configs(v: int) -> list[Case]:
    def body(name: str, ops: list[tuple[str, int, str | None]], rtype: int = TOPIC) -> dict[str, Any]:
        return {"resources": [{"resource_type": rtype, "resource_name": name,
                               "configs": [{"name": k, "config_operation": o, "value": x} for k, o, x in ops]}],
                "validate_only": False}
    t = _n(44, v, "t")
    return [
        Case(44, v, "set-delete", prep=[create_topic(t, configs={"segment.ms": "7200000"})],
             body=body(t, [("retention.ms", 0, "1000000"), ("segment.ms", 1, None)])),
        Case(44, v, "append", prep=[create_topic(t + "a")], body=body(t + "a", [("cleanup.policy", 2, "compact")])),
        Case(44, v, "unknown-config", "malformed", prep=[create_topic(t + "u")],
             body=body(t + "u", [("no.such.config", 0, "1")])),
        Case(44, v, "bad-op", "malformed", prep=[create_topic(t + "o")], body=body(t + "o", [("retention.ms", 9, "1")])),
        Case(44, v, "append-non-list", "malformed", prep=[create_topic(t + "n")],
             body=body(t + "n", [("retention.ms", 2, "1")])),
        Case(44, v, "unknown-topic", "malformed", body=body("wd-no-such-topic", [("retention.ms", 0, "1")])),
        Case(44, v, "broker-validate-only", body=dict(body("1", [("log.retention.ms", 0, "1000000")], rtype=BROKER),
                                                       validate_only=True)),
    ]


def _create_partitions(v: int) -> list[Case]:
    def body(name: str, count: int, validate: bool = False) -> dict[str, Any]:
        return {"topics": [{"name": name, "count": count, "assignments": None}], "timeout_ms": 10000,
                "validate_only": validate}
    t = _n(37, v, "t")
    return [
        Case(37, v, "grow", prep=[create_topic(t)], body=body(t, 3)),
        Case(37, v, "validate-only", prep=[create_topic(t + "v")], body=body(t + "v", 4, validate=True)),
        Case(37, v, "shrink", "malformed", prep=[create_topic(t + "s", 2)], body=body(t + "s", 1)),
        Case(37, v, "same-count", "malformed", prep=[create_topic(t + "c", 2)], body=body(t + "c", 2)),
        Case(37, v, "unknown-topic", "malformed", body=body("wd-no-such-topic", 3)),
        Case(37, v, "with-assignment", prep=[create_topic(t + "a")], body={
            "topics": [{"name": t + "a", "count": 2, "assignments": [{"broker_ids": [1]}]}], "timeout_ms": 10000}),
        Case(37, v, "assignment-count-mismatch", "malformed", prep=[create_topic(t + "m")], body={
            "topics": [{"name": t + "m", "count": 3, "assignments": [{"broker_ids": [1]}]}], "timeout_ms": 10000}),
        Case(37, v, "assignment-unknown-broker", "malformed", prep=[create_topic(t + "b")], body={
            "topics": [{"name": t + "b", "count": 2, "assignments": [{"broker_ids": [9]}]}], "timeout_ms": 10000}),
    ]


def _delete_groups(v: int) -> list[Case]:
    g = _n(42, v, "g")
    return [
        Case(42, v, "empty-group", prep=[commit(g, SHARED_TOPIC, {0: 1})], body={"groups_names": [g]}),
        Case(42, v, "unknown-group", "malformed", body={"groups_names": ["wd-no-such-group"]}),
        Case(42, v, "non-empty", "malformed", prep=joined(g + "n"), body={"groups_names": [g + "n"]}),
    ]


def _offset_delete(v: int) -> list[Case]:
    def body(group: str, topic: str = SHARED_TOPIC, parts: list[int] | None = None) -> dict[str, Any]:
        return {"group_id": group, "topics": [{"name": topic, "partitions": [
            {"partition_index": p} for p in (parts or [0])]}]}
    g = _n(47, v, "g")
    return [
        Case(47, v, "delete", prep=[commit(g, SHARED_TOPIC, {0: 1, 1: 2})], body=body(g, parts=[0, 2])),
        Case(47, v, "unknown-group", "malformed", body=body("wd-no-such-group")),
        Case(47, v, "unknown-topic", "malformed", prep=[commit(g + "t", SHARED_TOPIC, {0: 1})],
             body=body(g + "t", topic="wd-no-such-topic")),
        Case(47, v, "subscribed", "malformed", prep=[*joined(g + "s"), step(OFFSET_COMMIT, 8, lambda st: _commit_body(
            g + "s", SHARED_TOPIC, {0: 1}, generation(st), member(st)))], body=body(g + "s")),
    ]


def _describe_cluster(v: int) -> list[Case]:
    cases = [Case(60, v, "plain", body={"include_cluster_authorized_operations": False, "endpoint_type": 1,
                                        "include_fenced_brokers": False}),
             Case(60, v, "authorized-operations", body={"include_cluster_authorized_operations": True,
                                                        "endpoint_type": 1})]
    if v >= 1:
        cases.append(Case(60, v, "controllers-endpoint", "malformed",
                          body={"include_cluster_authorized_operations": False, "endpoint_type": 2}))
        cases.append(Case(60, v, "bad-endpoint-type", "malformed",
                          body={"include_cluster_authorized_operations": False, "endpoint_type": 9}))
    if v >= 2:
        cases.append(Case(60, v, "include-fenced", body={"endpoint_type": 1, "include_fenced_brokers": True}))
    return cases


def _consumer_group_heartbeat(v: int) -> list[Case]:
    def body(group: str, epoch: int = 0) -> dict[str, Any]:
        return {"group_id": group, "member_id": str(uuid.UUID(int=v + 1)).replace("-", "")[:22], "member_epoch": epoch,
                "instance_id": None, "rack_id": None, "rebalance_timeout_ms": 60000,
                "subscribed_topic_names": [SHARED_TOPIC], "subscribed_topic_regex": None,
                "server_assignor": None, "topic_partitions": []}
    return [Case(68, v, "join", body=body(_n(68, v, "g"))),
            Case(68, v, "bad-epoch", "malformed", body=body(_n(68, v, "e"), epoch=7))]


def _delete_records(v: int) -> list[Case]:
    """DeleteRecords moves a log start offset for good: every case deletes from a topic of its own
    (partition 0 holds five records in one batch, partition 1 three)."""
    def body(topic: str, offsets: dict[int, int]) -> dict[str, Any]:
        return {"topics": [{"name": topic, "partitions": [{"partition_index": p, "offset": o}
                                                         for p, o in offsets.items()]}], "timeout_ms": 5000}

    def filled(topic: str, configs: dict[str, str] | None = None) -> list[Prep]:
        return [create_topic(topic, 2, configs), produce(topic, 0, [b"r0", b"r1", b"r2", b"r3", b"r4"]),
                produce(topic, 1, [b"s0", b"s1", b"s2"])]

    t = _n(21, v, "t")
    return [
        Case(21, v, "mid-batch", prep=filled(t), body=body(t, {0: 2})),
        Case(21, v, "high-watermark", prep=filled(t + "h"), body=body(t + "h", {0: -1, 1: -1})),
        Case(21, v, "at-high-watermark", prep=filled(t + "e"), body=body(t + "e", {1: 3})),
        Case(21, v, "zero", prep=filled(t + "z"), body=body(t + "z", {0: 0})),
        # A second delete below the first leaves the log start offset where the first put it.
        Case(21, v, "lower-than-before", prep=[*filled(t + "l"), step(DELETE_RECORDS, v, body(t + "l", {0: 4}))],
             body=body(t + "l", {0: 1})),
        Case(21, v, "unknown-topic", "malformed", body=body("wd-no-such-topic", {0: 0})),
        Case(21, v, "bad-partition", "malformed", prep=filled(t + "p"), body=body(t + "p", {0: 1, 7: 0})),
        Case(21, v, "above-high-watermark", "malformed", prep=filled(t + "a"), body=body(t + "a", {0: 6})),
        Case(21, v, "negative-offset", "malformed", prep=filled(t + "n"), body=body(t + "n", {0: -5})),
        Case(21, v, "internal-topic", "malformed", body=body("__consumer_offsets", {0: 0})),
        Case(21, v, "compact-topic", "malformed", prep=filled(t + "c", {"cleanup.policy": "compact"}),
             body=body(t + "c", {0: 1})),
        Case(21, v, "compact-delete-topic", prep=filled(t + "d", {"cleanup.policy": "compact,delete"}),
             body=body(t + "d", {0: 1})),
        Case(21, v, "bad-name", "malformed", body=body("bad/name", {0: 0})),
        Case(21, v, "duplicate-partition", "malformed", prep=filled(t + "u"), body={
            "topics": [{"name": t + "u", "partitions": [{"partition_index": 0, "offset": 1},
                                                        {"partition_index": 0, "offset": 3}]}], "timeout_ms": 5000}),
    ]


def _describe_log_dirs(v: int) -> list[Case]:
    """Partition 0 of the case's topic holds one batch of five records, partition 1 nothing; the
    log dir's path and volume space are masked (compare.py), the partition sizes compared."""
    def body(topics: dict[str, list[int]] | None) -> dict[str, Any]:
        return {"topics": None if topics is None else [{"topic": t, "partitions": ps} for t, ps in topics.items()]}

    def filled(topic: str) -> list[Prep]:
        return [create_topic(topic, 2), produce(topic, 0, [b"r0", b"r1", b"r2", b"r3", b"r4"])]

    t = _n(35, v, "t")
    return [
        Case(35, v, "named-partitions", prep=filled(t), body=body({t: [0, 1]})),
        # Partitions and topics the broker does not host are left out, not errors.
        Case(35, v, "unknown-partition", prep=filled(t + "u"), body=body({t + "u": [1, 7], "wd-no-such-topic": [0]})),
        Case(35, v, "no-topics", body=body({})),
        # Every hosted partition; compare.py keeps this API's own topics (a shared Kafka hosts others').
        Case(35, v, "all-topics", prep=filled(t + "a"), body=body(None)),
        # Deleting records below the active segment frees no file: the size stays.
        Case(35, v, "after-delete-records", body=body({t + "d": [0]}), prep=[
            *filled(t + "d"), step(DELETE_RECORDS, 2, {"topics": [{"name": t + "d", "partitions": [
                {"partition_index": 0, "offset": -1}]}], "timeout_ms": 5000})]),
        Case(35, v, "duplicate-partition", "malformed", prep=filled(t + "p"), body=body({t + "p": [0, 0]})),
        Case(35, v, "negative-partition", "malformed", prep=filled(t + "n"), body=body({t + "n": [-1]})),
    ]


def _describe_producers(v: int) -> list[Case]:
    """Partition 0 of the case's topic gets two batches from one idempotent producer (sequences
    0-2 and 3), partition 1 nothing."""
    def body(topic: str, parts: list[int]) -> dict[str, Any]:
        return {"topics": [{"name": topic, "partition_indexes": parts}]}

    def idempotent_batch(topic: str, seq: int, count: int, ts: int) -> Prep:
        def make(st: State) -> dict[str, Any]:
            pid = st.body("pid")
            rec = build_batch([(b"k", b"p%d" % i, (), ts + i) for i in range(count)],
                              producer_id=pid.producer_id if pid else -1,
                              producer_epoch=pid.producer_epoch if pid else -1, base_sequence=seq)
            return produce_body(9, topic, 0, rec)
        return step(PRODUCE, 9, make)

    t = _n(61, v, "t")
    pid = step(INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                     "producer_id": -1, "producer_epoch": -1}, "pid")
    prep = [create_topic(t, 2), pid, idempotent_batch(t, 0, 3, BASE_TS), idempotent_batch(t, 3, 1, BASE_TS + 20)]
    return [
        Case(61, v, "idempotent-producer", prep=prep, body=body(t, [0, 1])),
        Case(61, v, "open-transaction", body=body(t + "x", [0]), prep=[
            create_topic(t + "x"), produce(t + "x", 0, [b"p0"]), *txn_init(_n(61, v, "x")),
            *open_txn(_n(61, v, "x"), t + "x", 0, (b"t0", b"t1"))]),
        Case(61, v, "aborted-transaction", body=body(t + "a", [0]), prep=[
            create_topic(t + "a"), *txn_init(_n(61, v, "z")), *open_txn(_n(61, v, "z"), t + "a", 0, (b"t0",)),
            *end_txn(_n(61, v, "z"), False)]),
        Case(61, v, "committed-transaction", body=body(t + "c", [0]), prep=[
            create_topic(t + "c"), *txn_init(_n(61, v, "y")), *open_txn(_n(61, v, "y"), t + "c", 0, (b"t0",)),
            *end_txn(_n(61, v, "y"), True)]),
        Case(61, v, "no-producers", body=body(SHARED_TOPIC, [0, 1, 2])),
        # __transaction_state, not __consumer_offsets: transactional offset commits of other cases
        # leave producers in the latter, in an order and with timestamps of their own per broker.
        Case(61, v, "internal-topic", body=body("__transaction_state", [0])),
        Case(61, v, "unknown-topic", "malformed", body=body("wd-no-such-topic", [0])),
        Case(61, v, "bad-partition", "malformed", body=body(SHARED_TOPIC, [0, 7])),
        Case(61, v, "negative-partition", "malformed", body=body(SHARED_TOPIC, [-1])),
        Case(61, v, "duplicate-partition", "malformed", body=body(SHARED_TOPIC, [1, 1])),
        Case(61, v, "duplicate-topic", "malformed", body={"topics": [
            {"name": SHARED_TOPIC, "partition_indexes": [0]}, {"name": SHARED_TOPIC, "partition_indexes": [1]}]}),
        # DeleteRecords past a producer's batches leaves the producer known while its segment lives.
        Case(61, v, "after-delete-records", body=body(t + "d", [0]), prep=[
            create_topic(t + "d"), pid, idempotent_batch(t + "d", 0, 3, BASE_TS),
            step(DELETE_RECORDS, 2, {"topics": [{"name": t + "d", "partitions": [{"partition_index": 0, "offset": -1}]}],
                                     "timeout_ms": 5000})]),
    ]


def _describe_topic_partitions(v: int) -> list[Case]:
    """The shared topic (3 partitions) and one of the case's own (2 partitions, named so it sorts
    first), whole and page by page."""
    def body(names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None) -> dict[str, Any]:
        return {"topics": [{"name": n} for n in names], "response_partition_limit": limit,
                "cursor": None if cursor is None else {"topic_name": cursor[0], "partition_index": cursor[1]}}

    t = _n(75, v, "t")
    both = [SHARED_TOPIC, t]
    prep = [create_topic(t, 2)]
    return [
        Case(75, v, "two-topics", prep=prep, body=body(both)),
        # Every topic: compare.py keeps the catalog's own and the internal ones (a shared Kafka has more).
        Case(75, v, "all-topics", prep=prep, body=body([])),
        Case(75, v, "internal-topic", body=body(["__consumer_offsets"])),
        Case(75, v, "limit-at-topic-end", prep=prep, body=body(both, limit=2)),
        Case(75, v, "limit-mid-topic", prep=prep, body=body(both, limit=1)),
        Case(75, v, "cursor", prep=prep, body=body(both, limit=1, cursor=(SHARED_TOPIC, 1))),
        Case(75, v, "cursor-last-page", prep=prep, body=body(both, limit=5, cursor=(SHARED_TOPIC, 2))),
        Case(75, v, "cursor-past-partitions", prep=prep, body=body(both, cursor=(t, 5))),
        # Every topic from a cursor: the next topic after the case's own is the shared one.
        Case(75, v, "all-topics-cursor", prep=prep, body=body([], limit=2, cursor=(t, 1))),
        Case(75, v, "all-topics-cursor-unknown-topic", prep=prep, body=body([], limit=1, cursor=(t[:-1] + "s", 0))),
        Case(75, v, "unknown-topic", "malformed", body=body([SHARED_TOPIC, "wd-no-such-topic"])),
        Case(75, v, "bad-name", "malformed", body=body(["bad/name"])),
        Case(75, v, "zero-limit", "malformed", body=body([SHARED_TOPIC], limit=0)),
        Case(75, v, "negative-limit", "malformed", body=body([SHARED_TOPIC], limit=-3)),
        Case(75, v, "cursor-not-requested", "malformed", body=body([SHARED_TOPIC], cursor=("wd-other", 0))),
        Case(75, v, "negative-cursor-partition", "malformed", body=body([SHARED_TOPIC], cursor=(SHARED_TOPIC, -1))),
        Case(75, v, "duplicate-topic", "malformed", body=body([SHARED_TOPIC, SHARED_TOPIC])),
    ]


# --- transactions ------------------------------------------------------------------------------

ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, WRITE_TXN_MARKERS, TXN_OFFSET_COMMIT = 24, 25, 26, 27, 28
DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 65, 66
#: Kafka's transaction.max.timeout.ms default (both brokers keep it).
MAX_TXN_TIMEOUT_MS = 900000
#: COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS: a prep step retries them.
TXN_RETRIABLE = frozenset({3, 5, 6, 14, 15, 16, 51})


def settled(api: int, version: int, body: dict[str, Any] | BodyFn, save: str | None = None,
            timeout: float = 20.0) -> Prep:
    """A prep request repeated while its answer carries a retriable error; the last answer is saved."""
    def run(s: Session, st: State) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = s.call(api, version, body(st) if callable(body) else body)
            if save:
                st[save] = out
            if out.kind != "response" or not TXN_RETRIABLE.intersection(error_codes(plain_body(out))):
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
    return run


def pid_epoch(st: State, save: str = "tpid") -> tuple[int, int]:
    """The producer id and epoch a transactional InitProducerId prep step got (-1, -1 without one)."""
    b = st.body(save)
    return (int(b.producer_id), int(b.producer_epoch)) if b is not None else (-1, -1)


def txn_init(txn: str, save: str = "tpid", timeout_ms: int = 60000) -> list[Prep]:
    """Find the transaction coordinator for ``txn`` (Kafka makes ``__transaction_state`` then) and
    initialise its producer id; the InitProducerId answer is saved under ``save``."""
    return [settled(FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": [txn]}),
            settled(INIT_PRODUCER_ID, 4, {"transactional_id": txn, "transaction_timeout_ms": timeout_ms,
                                          "producer_id": -1, "producer_epoch": -1}, save)]


def add_partitions(txn: str, topic: str, parts: list[int], save: str | None = None) -> Prep:
    """AddPartitionsToTxn v3 for the producer of ``txn`` (saved as ``tpid``)."""
    def body(st: State) -> dict[str, Any]:
        pid, epoch = pid_epoch(st)
        return {"v3_and_below_transactional_id": txn, "v3_and_below_producer_id": pid,
                "v3_and_below_producer_epoch": epoch,
                "v3_and_below_topics": [{"name": topic, "partitions": parts}]}
    return settled(ADD_PARTITIONS_TO_TXN, 3, body, save)


def txn_batch(st: State, values: list[bytes], seq: int, ts: int = BASE_TS, epoch_delta: int = 0) -> bytes:
    pid, epoch = pid_epoch(st)
    return build_batch([(b"k", v, (), ts + i) for i, v in enumerate(values)], producer_id=pid,
                       producer_epoch=epoch + epoch_delta, base_sequence=seq, transactional=True)


def txn_produce_body(v: int, txn: str | None, topic: str, partition: int, rec: bytes,
                     topic_id: Any = None) -> dict[str, Any]:
    return dict(produce_body(v, topic, partition, rec, -1, topic_id), transactional_id=txn)


def txn_produce(txn: str, topic: str, partition: int, values: list[bytes], seq: int = 0,
                ts: int = BASE_TS) -> Prep:
    """A transactional batch of ``values`` from the producer of ``txn`` (Produce v9)."""
    return step(PRODUCE, 9, lambda st: txn_produce_body(9, txn, topic, partition, txn_batch(st, values, seq, ts)))


def end_txn(txn: str, commit: bool) -> list[Prep]:
    """EndTxn v3, then wait until the coordinator has written the markers (it answers before)."""
    def body(st: State) -> dict[str, Any]:
        pid, epoch = pid_epoch(st)
        return {"transactional_id": txn, "producer_id": pid, "producer_epoch": epoch, "committed": commit}
    return [settled(END_TXN, 3, body, "end"), txn_completed(txn)]


def txn_completed(txn: str, timeout: float = 10.0) -> Prep:
    """Poll DescribeTransactions until ``txn`` is in no Prepare* state."""
    def run(s: Session, st: State) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = s.call(DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [txn]})
            body = plain_body(out)
            states = [t.get("transaction_state") for t in (body or {}).get("transaction_states", [])]
            if body is not None and not any(str(x).startswith("Prepare") for x in states) \
                    and not RETRIABLE.intersection(error_codes(body)):
                return
            time.sleep(0.05)
    return run


def open_txn(txn: str, topic: str, partition: int = 0, values: tuple[bytes, ...] = (b"t0", b"t1"),
             seq: int = 0, ts: int = BASE_TS + 30) -> list[Prep]:
    """AddPartitionsToTxn and a transactional batch: the transaction stays open."""
    return [add_partitions(txn, topic, [partition]), txn_produce(txn, topic, partition, list(values), seq, ts)]


def aborted_then_open(topic: str, txn: str) -> list[Prep]:
    """Partition 0 of ``topic``: two plain records (offsets 0-1), an aborted transaction (2-3, its
    marker 4), a plain record (5) and an open transaction (6): the last stable offset is 6."""
    return [create_topic(topic, 1), produce(topic, 0, [b"p0", b"p1"]), *txn_init(txn),
            *open_txn(txn, topic, 0, (b"a0", b"a1"), 0, BASE_TS + 2), *end_txn(txn, False),
            produce(topic, 0, [b"p2"], BASE_TS + 5), *open_txn(txn, topic, 0, (b"o0",), 2, BASE_TS + 6)]


def _add_partitions_to_txn(v: int) -> list[Case]:
    t = _n(24, v, "t")
    txn = _n(24, v, "x")

    def body(topics: dict[str, list[int]], txn_id: str = txn, epoch_delta: int = 0,
             verify_only: bool = False, pid: int | None = None) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            p, e = pid_epoch(st)
            p = p if pid is None else pid
            tl = [{"name": n, "partitions": ps} for n, ps in topics.items()]
            if v <= 3:
                return {"v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": p,
                        "v3_and_below_producer_epoch": e + epoch_delta, "v3_and_below_topics": tl}
            return {"transactions": [{"transactional_id": txn_id, "producer_id": p, "producer_epoch": e + epoch_delta,
                                      "verify_only": verify_only, "topics": tl}]}
        return make

    prep = [create_topic(t, 2), *txn_init(txn)]
    cases = [
        Case(24, v, "add", prep=prep, body=body({t: [0, 1]})),
        Case(24, v, "add-again", prep=[*prep, add_partitions(txn, t, [0])], body=body({t: [0]})),
        Case(24, v, "unknown-topic", "malformed", prep=prep, body=body({t: [0], "wd-no-such-topic": [0]})),
        Case(24, v, "bad-partition", "malformed", prep=prep, body=body({t: [5]})),
        Case(24, v, "wrong-epoch", "malformed", prep=prep, body=body({t: [0]}, epoch_delta=1)),
        Case(24, v, "old-epoch", "malformed", prep=[*prep, *txn_init(txn, "tpid2")], body=body({t: [0]})),
        Case(24, v, "unknown-id", "malformed", prep=[create_topic(t, 2)],
             body=body({t: [0]}, txn_id=_n(24, v, "none"), pid=4242)),
        Case(24, v, "internal-topic", "malformed", prep=prep, body=body({"__consumer_offsets": [0]})),
    ]
    if v >= 4:
        txn2 = _n(24, v, "y")
        prep2 = [*prep, *txn_init(txn2, "tpid2")]

        def batched(st: State) -> dict[str, Any]:
            a = body({t: [0]})(st)
            p2, e2 = pid_epoch(st, "tpid2")
            a["transactions"].append({"transactional_id": txn2, "producer_id": p2, "producer_epoch": e2,
                                      "verify_only": False, "topics": [{"name": t, "partitions": [1]}]})
            return a
        cases += [
            Case(24, v, "batched", prep=prep2, body=batched),
            Case(24, v, "verify-only-added", prep=[*prep, add_partitions(txn, t, [0])],
                 body=body({t: [0]}, verify_only=True)),
            Case(24, v, "verify-only-not-added", prep=[*prep, add_partitions(txn, t, [0])],
                 body=body({t: [0, 1]}, verify_only=True)),
        ]
    return cases


def _add_offsets_to_txn(v: int) -> list[Case]:
    txn, g = _n(25, v, "x"), _n(25, v, "g")

    def body(txn_id: str = txn, epoch_delta: int = 0, pid: int | None = None) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            p, e = pid_epoch(st)
            return {"transactional_id": txn_id, "producer_id": p if pid is None else pid,
                    "producer_epoch": e + epoch_delta, "group_id": g}
        return make

    prep = txn_init(txn)
    return [
        Case(25, v, "add", prep=prep, body=body()),
        Case(25, v, "wrong-epoch", "malformed", prep=prep, body=body(epoch_delta=1)),
        Case(25, v, "unknown-id", "malformed", body=body(_n(25, v, "none"), pid=4242)),
        Case(25, v, "empty-group", "malformed", prep=prep,
             body=lambda st: dict(body()(st), group_id="")),
    ]


def _end_txn(v: int) -> list[Case]:
    t, txn = _n(26, v, "t"), _n(26, v, "x")

    def body(commit: bool, txn_id: str = txn, epoch_delta: int = 0, pid: int | None = None,
             save: str = "tpid") -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            p, e = pid_epoch(st, save)
            return {"transactional_id": txn_id, "producer_id": p if pid is None else pid,
                    "producer_epoch": e + epoch_delta, "committed": commit}
        return make

    prep = [create_topic(t, 1), *txn_init(txn)]
    ongoing = [*prep, *open_txn(txn, t)]
    return [
        Case(26, v, "commit", prep=ongoing, body=body(True)),
        Case(26, v, "abort", prep=ongoing, body=body(False)),
        Case(26, v, "commit-empty", "malformed", prep=prep, body=body(True)),
        Case(26, v, "abort-empty", "malformed", prep=prep, body=body(False)),
        Case(26, v, "commit-after-commit", prep=[*ongoing, *end_txn(txn, True)], body=body(True)),
        Case(26, v, "abort-after-commit", "malformed", prep=[*ongoing, *end_txn(txn, True)], body=body(False)),
        Case(26, v, "wrong-epoch", "malformed", prep=ongoing, body=body(True, epoch_delta=1)),
        Case(26, v, "fenced", "malformed", prep=[*ongoing, *txn_init(txn, "tpid2")], body=body(True)),
        Case(26, v, "unknown-id", "malformed", body=body(True, _n(26, v, "none"), pid=4242)),
        Case(26, v, "empty-id", "malformed", body=body(True, "", pid=4242)),
    ]


def _txn_offset_commit(v: int) -> list[Case]:
    txn, g = _n(28, v, "x"), _n(28, v, "g")

    def body(group: str = g, epoch_delta: int = 0, generation_id: int = -1, member_id: str = "",
             partition: int = 0) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            p, e = pid_epoch(st)
            return {"transactional_id": txn, "group_id": group, "producer_id": p, "producer_epoch": e + epoch_delta,
                    "generation_id": generation_id, "member_id": member_id, "group_instance_id": None,
                    "topics": [{"name": SHARED_TOPIC, "partitions": [
                        {"partition_index": partition, "committed_offset": 1, "committed_leader_epoch": -1,
                         "committed_metadata": "tm"}]}]}
        return make

    def add_offsets(st: State) -> dict[str, Any]:
        p, e = pid_epoch(st)
        return {"transactional_id": txn, "producer_id": p, "producer_epoch": e, "group_id": g}

    prep = [*txn_init(txn), settled(ADD_OFFSETS_TO_TXN, 3, add_offsets), settled(FIND_COORDINATOR, 4, {
        "key_type": 0, "coordinator_keys": [g]})]
    cases = [
        Case(28, v, "commit", prep=prep, body=body()),
        Case(28, v, "without-add-offsets", "malformed", prep=[*txn_init(txn), settled(FIND_COORDINATOR, 4, {
            "key_type": 0, "coordinator_keys": [g]})], body=body()),
        Case(28, v, "wrong-epoch", "malformed", prep=prep, body=body(epoch_delta=1)),
        Case(28, v, "unknown-partition", "malformed", prep=prep, body=body(partition=9)),
    ]
    if v >= 3:
        cases.append(Case(28, v, "unknown-member", "malformed", prep=prep,
                          body=body(generation_id=3, member_id="wd-nobody")))
        cases.append(Case(28, v, "group-member", prep=[*prep, *joined(g)],
                          body=lambda st: body(generation_id=generation(st), member_id=member(st))(st)))
        cases.append(Case(28, v, "stale-generation", "malformed", prep=[*prep, *joined(g)],
                          body=lambda st: body(generation_id=generation(st) + 1, member_id=member(st))(st)))
    else:
        cases.append(Case(28, v, "group-with-members", prep=[*prep, *joined(g)], body=body()))
    return cases


def _coordinator_epoch(body: dict[str, Any], epoch: int) -> dict[str, Any]:
    for m in body["markers"]:
        m["coordinator_epoch"] = epoch
    return body


def _write_txn_markers(v: int) -> list[Case]:
    t, txn = _n(27, v, "t"), _n(27, v, "x")

    def body(topic: str = t, commit: bool = False, epoch_delta: int = 0) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            p, e = pid_epoch(st)
            return {"markers": [{"producer_id": p, "producer_epoch": e + epoch_delta, "transaction_result": commit,
                                 "topics": [{"name": topic, "partition_indexes": [0]}], "coordinator_epoch": 0}]}
        return make

    ongoing = [create_topic(t, 1), *txn_init(txn), *open_txn(txn, t)]
    return [
        Case(27, v, "abort-open", prep=ongoing, body=body()),
        Case(27, v, "commit-open", prep=ongoing, body=body(commit=True)),
        Case(27, v, "no-transaction", prep=[create_topic(t, 1), *txn_init(txn)], body=body()),
        Case(27, v, "unknown-topic", "malformed", prep=ongoing, body=body(topic="wd-no-such-topic")),
        Case(27, v, "old-epoch", "malformed", prep=[*ongoing, *txn_init(txn), *open_txn(txn, t, seq=0)],
             body=body(epoch_delta=-1)),
        # Own ids and topics: a marker from a newer coordinator epoch fences this broker's own
        # coordinator on that partition, and its transaction could never complete.
        Case(27, v, "old-coordinator-epoch", "malformed", prep=[
            create_topic(t + "c", 1), *txn_init(txn + "c"), *open_txn(txn + "c", t + "c"),
            step(WRITE_TXN_MARKERS, v, lambda st: _coordinator_epoch(body(t + "c", commit=True)(st), 5)),
            *open_txn(txn + "c", t + "c", seq=2)], body=body(t + "c")),
        Case(27, v, "no-topics", prep=[*txn_init(txn + "n")],
             body=lambda st: dict(markers=[dict(body()(st)["markers"][0], topics=[])])),
        Case(27, v, "two-markers-one-producer", prep=[
            create_topic(t + "m", 2), *txn_init(txn + "m"), *open_txn(txn + "m", t + "m"),
            *open_txn(txn + "m", t + "m", partition=1)],
             body=lambda st: dict(markers=[
                 body(t + "m")(st)["markers"][0],
                 dict(body(t + "m")(st)["markers"][0], topics=[{"name": t + "m", "partition_indexes": [1]}])])),
    ]


def _describe_transactions(v: int) -> list[Case]:
    t, txn = _n(65, v, "t"), _n(65, v, "x")

    def body(*ids: str) -> dict[str, Any]:
        return {"transactional_ids": list(ids)}

    ongoing = [create_topic(t, 2), *txn_init(txn), *open_txn(txn, t), add_partitions(txn, t, [1])]
    return [
        Case(65, v, "empty", prep=txn_init(txn), body=body(txn)),
        Case(65, v, "ongoing", prep=ongoing, body=body(txn)),
        Case(65, v, "complete-commit", prep=[*ongoing, *end_txn(txn, True)], body=body(txn)),
        Case(65, v, "complete-abort", prep=[*ongoing, *end_txn(txn, False)], body=body(txn)),
        Case(65, v, "reinit-aborts-ongoing", prep=[*ongoing, *txn_init(txn), txn_completed(txn)], body=body(txn)),
        Case(65, v, "unknown-id", "malformed", body=body(_n(65, v, "none"))),
        Case(65, v, "known-and-unknown", prep=txn_init(txn), body=body(txn, _n(65, v, "none"))),
        Case(65, v, "no-ids", body=body()),
        Case(65, v, "empty-id", "malformed", body=body("")),
    ]


def _list_transactions(v: int) -> list[Case]:
    """Filtered by the case's own producer id (or id pattern), so other cases' transactions stay out."""
    t, txn = _n(66, v, "t"), _n(66, v, "x")

    def body(states: list[str] | None = None, duration: int = -1, pattern: str | None = None,
             by_pid: bool = True) -> BodyFn:
        def make(st: State) -> dict[str, Any]:
            return {"state_filters": states or [], "producer_id_filters": [pid_epoch(st)[0]] if by_pid else [],
                    "duration_filter": duration, "transactional_id_pattern": pattern}
        return make

    ongoing = [create_topic(t, 1), *txn_init(txn), *open_txn(txn, t)]
    cases = [
        Case(66, v, "by-producer-id", prep=ongoing, body=body()),
        Case(66, v, "state-ongoing", prep=ongoing, body=body(["Ongoing"])),
        Case(66, v, "state-complete", prep=ongoing, body=body(["CompleteCommit", "Empty"])),
        Case(66, v, "state-empty", prep=txn_init(txn), body=body(["Empty"])),
        Case(66, v, "unknown-state", "malformed", prep=ongoing, body=body(["Ongoing", "NoSuchState"])),
    ]
    if v >= 1:
        # Kafka lists transactions older than the filter (strictly): wait a little past 0 ms.
        cases += [Case(66, v, "duration-long", prep=ongoing, body=body(duration=3600000)),
                  Case(66, v, "duration-zero", prep=[*ongoing, lambda s, st: time.sleep(0.02)],
                       body=body(duration=0))]
    if v >= 2:
        cases += [Case(66, v, "id-pattern", prep=ongoing, body=body(pattern=txn.replace("-", ".") + "$", by_pid=False)),
                  Case(66, v, "id-pattern-no-match", prep=ongoing, body=body(pattern="^wd-nothing-here$", by_pid=False)),
                  Case(66, v, "bad-pattern", "malformed", prep=ongoing, body=body(pattern="wd-(", by_pid=False))]
    return cases


# --- security APIs, on the PLAINTEXT listener of a broker without an authorizer -----------------


def _sasl_handshake(v: int) -> list[Case]:
    """On a PLAINTEXT listener Kafka's request handler answers ILLEGAL_SASL_STATE."""
    return [Case(17, v, "plain", body={"mechanism": "PLAIN"}),
            Case(17, v, "unknown-mechanism", "malformed", body={"mechanism": "NOPE"})]


def _sasl_authenticate(v: int) -> list[Case]:
    return [Case(36, v, "no-sasl-listener", body={"auth_bytes": b"\0user\0password"}),
            Case(36, v, "empty-token", "malformed", body={"auth_bytes": b""})]


def _acl_filter(**kw: Any) -> dict[str, Any]:
    f = {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
         "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1}
    f.update(kw)
    return f


def _acl_creation(**kw: Any) -> dict[str, Any]:
    c = {"resource_type": 2, "resource_name": "t", "resource_pattern_type": 3, "principal": "User:wd",
         "host": "*", "operation": 3, "permission_type": 3}
    c.update(kw)
    return c


def _describe_acls(v: int) -> list[Case]:
    """Without an authorizer both answer SECURITY_DISABLED; a filter holding the code UNKNOWN (0)
    is refused as Kafka's DescribeAclsRequest refuses to parse it."""
    return [Case(29, v, "any", body=_acl_filter()),
            Case(29, v, "topic-match", body=_acl_filter(resource_type_filter=2, resource_name_filter="t",
                                                        pattern_type_filter=2)),
            Case(29, v, "unknown-operation", "malformed", body=_acl_filter(operation=0)),
            Case(29, v, "unknown-resource-type", "malformed", body=_acl_filter(resource_type_filter=0)),
            Case(29, v, "unrecognised-operation", "malformed", body=_acl_filter(operation=99))]


def _create_acls(v: int) -> list[Case]:
    return [Case(30, v, "one", body={"creations": [_acl_creation()]}),
            Case(30, v, "several", body={"creations": [_acl_creation(), _acl_creation(resource_name=""),
                                                       _acl_creation(operation=1)]}),
            Case(30, v, "empty", body={"creations": []}),
            Case(30, v, "unknown-permission", "malformed", body={"creations": [_acl_creation(permission_type=0)]})]


def _delete_acls(v: int) -> list[Case]:
    return [Case(31, v, "any", body={"filters": [_acl_filter()]}),
            Case(31, v, "two", body={"filters": [_acl_filter(), _acl_filter(resource_type_filter=99)]}),
            Case(31, v, "unknown-pattern", "malformed", body={"filters": [_acl_filter(pattern_type_filter=0)]})]


def _scram_upsert(name: str, mechanism: int = 1, iterations: int = 4096) -> dict[str, Any]:
    return {"name": name, "mechanism": mechanism, "iterations": iterations, "salt": b"wd-salt",
            "salted_password": bytes(range(32))}


def _alter_user_scram_credentials(v: int) -> list[Case]:
    """Kafka answers successes, then failures, each in a Java HashMap's order of the names."""
    def n(what: str) -> str:
        return _n(51, v, what)
    mixed = {"deletions": [{"name": n("absent"), "mechanism": 1}, {"name": n("dup"), "mechanism": 1},
                           {"name": n("mech0"), "mechanism": 0}],
             "upsertions": [_scram_upsert(n("a")), _scram_upsert(n("b"), 2), _scram_upsert(n("dup")),
                            _scram_upsert(n("few"), iterations=100), _scram_upsert(n("many"), iterations=16385),
                            _scram_upsert(n("max"), iterations=16384), _scram_upsert(""),
                            _scram_upsert(n("twice")), _scram_upsert(n("twice"), 2),
                            _scram_upsert(n("mech9"), 9)]}
    return [Case(51, v, "upsert", body={"deletions": [], "upsertions": [_scram_upsert(n("one"))]}),
            Case(51, v, "mixed", body=mixed),
            Case(51, v, "delete-existing", prep=[step(51, v, {"deletions": [], "upsertions": [
                _scram_upsert(n("gone")), _scram_upsert(n("stays"), 2)]})],
                 body={"deletions": [{"name": n("gone"), "mechanism": 1}, {"name": n("stays"), "mechanism": 1}],
                       "upsertions": []}),
            Case(51, v, "empty", body={"deletions": [], "upsertions": []})]


def _describe_user_scram_credentials(v: int) -> list[Case]:
    def n(what: str) -> str:
        return _n(50, v, what)
    prep = [step(51, 0, {"deletions": [], "upsertions": [_scram_upsert(n("x")), _scram_upsert(n("x"), 2),
                                                          _scram_upsert(n("y"), 2, 8192)]})]
    return [Case(50, v, "named", prep=prep, body={"users": [{"name": n("x")}, {"name": n("y")},
                                                            {"name": n("ghost")}, {"name": n("y")},
                                                            {"name": ""}]}),
            Case(50, v, "unknown", body={"users": [{"name": n("nobody")}]})]


def _quota_entity(*parts: tuple[str, str | None]) -> list[dict[str, Any]]:
    return [{"entity_type": t, "entity_name": name} for t, name in parts]


def _quota_op(key: str, value: float = 0.0, remove: bool = False) -> dict[str, Any]:
    return {"key": key, "value": value, "remove": remove}


def _alter_client_quotas(v: int) -> list[Case]:
    """Named entities only, with limits nobody reaches: a default entity (or one for the check's
    own client) would throttle the rest of the run. Kafka answers in its HashMap's order."""
    def n(what: str) -> str:
        return _n(49, v, what)
    e, op = _quota_entity, _quota_op
    mixed = [(e(("user", n("u1"))), [op("producer_byte_rate", 1048576.0), op("consumer_byte_rate", 2048.5)]),
             (e(("client-id", n("c1"))), [op("producer_byte_rate", 1e10)]),
             (e(("user", n("u1")), ("client-id", n("c1"))), [op("controller_mutation_rate", 1000.5)]),
             (e(("ip", "192.0.2.7")), [op("connection_creation_rate", 1000.0)]),
             (e(("ip", "192.0.2.8")), [op("connection_creation_rate", 2.5)]),
             (e(("user", n("u3"))), [op("connection_creation_rate", 5.0)]),
             (e(("user", n("u3"))), [op("bogus_key", 5.0)]),
             (e(("user", n("u4"))), [op("producer_byte_rate", 1e6), op("producer_byte_rate", 2e6)]),
             (e(("bogus", "x")), [op("producer_byte_rate", 1.0)]),
             (e(("user", n("a")), ("user", n("b"))), [op("request_percentage", 1000.0)]),
             (e(("user", n("u5")), ("ip", "192.0.2.9")), [op("producer_byte_rate", 1.0)]),
             ([], [op("producer_byte_rate", 1.0)]),
             (e(("user", n("u6"))), [op("producer_byte_rate", remove=True), op("nonsense", remove=True)]),
             (e(("user", "")), [op("producer_byte_rate", 1.0)]),
             (e(("user", n("u7"))), []),
             (e(("user", n("u8"))), [op("producer_byte_rate", 1e300)]),
             (e(("user", n("u9"))), [op("producer_byte_rate", 0.0)]),
             (e(("user", n("u10"))), [op("request_percentage", -5.0)])]
    return [Case(49, v, "one", body={"validate_only": False, "entries": [
                {"entity": e(("user", n("one"))), "ops": [op("producer_byte_rate", 1e9)]}]}),
            Case(49, v, "mixed", body={"validate_only": False,
                                       "entries": [{"entity": ent, "ops": ops} for ent, ops in mixed]}),
            Case(49, v, "validate-only", body={"validate_only": True, "entries": [
                {"entity": e(("user", n("vo"))), "ops": [op("producer_byte_rate", 1.5)]},
                {"entity": e(("client-id", n("vo"))), "ops": [op("request_percentage", 200.0)]}]})]


def _describe_client_quotas(v: int) -> list[Case]:
    def n(what: str) -> str:
        return _n(48, v, what)

    def comp(etype: str, match_type: int, match: str | None = None) -> dict[str, Any]:
        return {"entity_type": etype, "match_type": match_type, "match": match}
    def settle(s: Session, st: State) -> None:
        time.sleep(0.5)  # Kafka's broker sees the controller's quota records a moment after the answer

    prep = [step(49, 1, {"validate_only": False, "entries": [
        {"entity": _quota_entity(("user", n("u"))), "ops": [_quota_op("producer_byte_rate", 1e9),
                                                            _quota_op("consumer_byte_rate", 2e9),
                                                            _quota_op("request_percentage", 500.0)]},
        {"entity": _quota_entity(("user", n("u")), ("client-id", n("c"))),
         "ops": [_quota_op("controller_mutation_rate", 1000.0)]}]}), settle]
    # Answers of one entity each: Kafka lists several in the order of a HashMap whose size
    # depends on the history of its metadata image (see compat/DIFFERENCES.md).
    return [Case(48, v, "exact-strict", prep=prep, body={"components": [comp("user", 0, n("u"))], "strict": True}),
            Case(48, v, "exact-two", prep=prep, body={"components": [comp("user", 0, n("u")),
                                                                    comp("client-id", 0, n("c"))],
                                                     "strict": True}),
            Case(48, v, "nothing", body={"components": [comp("user", 0, n("nobody"))], "strict": False}),
            Case(48, v, "unknown-type", "malformed", body={"components": [comp("group", 2)], "strict": False}),
            Case(48, v, "bad-match-type", "malformed", body={"components": [comp("user", 7)], "strict": False}),
            Case(48, v, "exact-null", "malformed", body={"components": [comp("user", 0)], "strict": False}),
            Case(48, v, "default-with-match", "malformed", body={"components": [comp("user", 1, "x")],
                                                                 "strict": False}),
            Case(48, v, "specified-with-match", "malformed", body={"components": [comp("user", 2, "x")],
                                                                   "strict": False}),
            Case(48, v, "type-twice", "malformed", body={"components": [comp("user", 2), comp("user", 2)],
                                                         "strict": False}),
            Case(48, v, "ip-and-user", "malformed", body={"components": [comp("ip", 2), comp("user", 2)],
                                                          "strict": False})]


CATALOG: dict[int, Callable[[int], list[Case]]] = {
    PRODUCE: _produce, FETCH: _fetch, LIST_OFFSETS: _list_offsets, METADATA: _metadata,
    OFFSET_COMMIT: _offset_commit, OFFSET_FETCH: _offset_fetch, FIND_COORDINATOR: _find_coordinator,
    JOIN_GROUP: _join_group, HEARTBEAT: _heartbeat, LEAVE_GROUP: _leave_group, SYNC_GROUP: _sync_group,
    DESCRIBE_GROUPS: _describe_groups, LIST_GROUPS: _list_groups, API_VERSIONS: _api_versions,
    CREATE_TOPICS: _create_topics, DELETE_TOPICS: _delete_topics, INIT_PRODUCER_ID: _init_producer_id,
    DESCRIBE_CONFIGS: _describe_configs, ALTER_CONFIGS: _alter_configs,
    INCREMENTAL_ALTER_CONFIGS: _incremental_alter_configs, CREATE_PARTITIONS: _create_partitions,
    DELETE_GROUPS: _delete_groups, OFFSET_DELETE: _offset_delete, DESCRIBE_CLUSTER: _describe_cluster,
    CONSUMER_GROUP_HEARTBEAT: _consumer_group_heartbeat, DELETE_RECORDS: _delete_records,
    DESCRIBE_PRODUCERS: _describe_producers, DESCRIBE_TOPIC_PARTITIONS: _describe_topic_partitions,
    DESCRIBE_LOG_DIRS: _describe_log_dirs,
    ADD_PARTITIONS_TO_TXN: _add_partitions_to_txn, ADD_OFFSETS_TO_TXN: _add_offsets_to_txn, END_TXN: _end_txn,
    WRITE_TXN_MARKERS: _write_txn_markers, TXN_OFFSET_COMMIT: _txn_offset_commit,
    DESCRIBE_TRANSACTIONS: _describe_transactions, LIST_TRANSACTIONS: _list_transactions,
    SASL_HANDSHAKE: _sasl_handshake, SASL_AUTHENTICATE: _sasl_authenticate, DESCRIBE_ACLS: _describe_acls,
    CREATE_ACLS: _create_acls, DELETE_ACLS: _delete_acls,
    DESCRIBE_CLIENT_QUOTAS: _describe_client_quotas, ALTER_CLIENT_QUOTAS: _alter_client_quotas,
    DESCRIBE_USER_SCRAM_CREDENTIALS: _describe_user_scram_credentials,
    ALTER_USER_SCRAM_CREDENTIALS: _alter_user_scram_credentials,
}


#: Error codes a broker answers while a new topic's leader or a coordinator is still starting.
RETRIABLE = frozenset({3, 5, 6, 14, 15, 16})


def error_codes(value: Any) -> list[int]:
    """Every ``error_code`` anywhere in a decoded body."""
    out: list[int] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "error_code" and isinstance(v, int):
                out.append(v)
            else:
                out.extend(error_codes(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(error_codes(v))
    return out


def plain_body(out: Outcome) -> Any:
    """An outcome's body as plain data (None unless answered)."""
    from compat.wirediff.compare import plain

    return plain(out.body) if out.kind == "response" else None


def until_settled(api: int, version: int, body: dict[str, Any], timeout: float = 20.0) -> Prep:
    """Repeat a request while its answer carries a retriable error (a coordinator still loading)."""
    def run(s: Session, st: State) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = s.call(api, version, body)
            if out.kind != "response" or not RETRIABLE.intersection(error_codes(plain_body(out))):
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
    return run


def shared_setup() -> list[Prep]:
    """What every run does first on each broker: a 3-partition topic with records, a group's offsets,
    and the group and producer-id machinery warmed up (Kafka creates ``__consumer_offsets`` lazily)."""
    def keep_id(s: Session, st: State) -> None:
        st["shared.topic_id"] = st.get("ct.topic_id")

    def produce_body_(p: int, values: list[bytes], ts: int) -> dict[str, Any]:
        return {"transactional_id": None, "acks": -1, "timeout_ms": 5000, "topic_data": [
            {"name": SHARED_TOPIC, "partition_data": [{"index": p, "records": records(values, ts)}]}]}

    return [create_topic(SHARED_TOPIC, 3), keep_id,
            until_settled(PRODUCE, 9, produce_body_(0, [b"a0", b"a1", b"a2"], BASE_TS)),
            until_settled(PRODUCE, 9, produce_body_(1, [b"b0", b"b1"], BASE_TS + 10)),
            until_settled(FIND_COORDINATOR, 4, {"key_type": 0, "coordinator_keys": [SHARED_GROUP]}),
            until_settled(OFFSET_COMMIT, 8, _commit_body(SHARED_GROUP, SHARED_TOPIC, {0: 2, 1: 1})),
            until_settled(FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": ["wd-warm"]}),
            until_settled(INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                "producer_id": -1, "producer_epoch": -1})]


def cases_for(api: int, version: int) -> list[Case]:
    """The catalog's cases for one version plus the generic malformed frames."""
    if api == PRODUCE and version < 3:
        return _produce_old(version)
    make = CATALOG.get(api)
    if make is None:
        return [default_case(api, version)]
    return make(version) + generic_malformed(api, version, make)


def default_case(api: int, version: int) -> Case:
    """For an API outside the catalog (kbroker does not serve it): the schema's default request."""
    return Case(api, version, "default-body", body={})


# --- generic malformed frames ------------------------------------------------------------------


#: Appended to every per-case name while the catalog builds the variants a generic mutation is
#: derived from, so a derived case runs on groups and topics of its own.
_SUFFIX = ""


def generic_malformed(api: int, version: int, make: Callable[[int], list[Case]]) -> list[Case]:
    """Truncated, padded and over-long-length variants of the first valid request of ``make(version)``."""
    global _SUFFIX
    mutations: list[tuple[str, Callable[[bytes, int, int, Any], bytes | None]]] = [
        ("truncated-body", truncate), ("trailing-bytes", pad)]
    if first_length_field(api, version) is not None:
        mutations.append(("oversized-length", oversize_first_length))
    out = []
    for i, (name, mutate) in enumerate(mutations):
        _SUFFIX = f"-m{i}"
        try:
            base = next((c for c in make(version)
                         if c.kind == "valid" and c.expect_response and c.body is not None), None)
        finally:
            _SUFFIX = ""
        if base is None:
            continue
        out.append(_derive(base, name, mutate))
    return out


def _derive(base: Case, name: str, mutate: Callable[[bytes, int, int, Any], bytes | None]) -> Case:
    def raw(cid: int, st: State) -> bytes:
        body = base.resolve(st)
        data = frame(base.api, base.version, cid, body)
        out = mutate(data, base.api, base.version, body)
        return data if out is None else out
    return Case(base.api, base.version, name, "malformed", raw=raw, prep=list(base.prep))


def pad(data: bytes, api: int, version: int, body: Any) -> bytes:
    """Nine bytes after the body (Kafka reads a request's fields and ignores what follows)."""
    return _reprefix(data[4:] + b"\x00\x07garbage")


def _reprefix(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def header_len(api: int, version: int, data: bytes, body: Any) -> int:
    """Bytes of size prefix plus request header in ``data``."""
    return len(data) - len(encode_body(api_table()[api], "request", version, body))


def truncate(data: bytes, api: int, version: int, body: Any) -> bytes | None:
    """Cut the body in half (at least one byte off)."""
    head = header_len(api, version, data, body)
    blen = len(data) - head
    if blen == 0:
        return None
    return _reprefix(data[4:head + blen // 2])


def first_length_field(api: int, version: int) -> Any:
    """The first top-level non-tagged string, bytes or array field of a request at ``version``."""
    spec = api_table()[api].request
    flexible = version in spec.flexible
    for f in spec.fields:
        if version not in f.versions or (flexible and version in f.tagged and f.tag is not None):
            continue
        if f.is_array or f.type in ("string", "bytes", "records"):
            return f
    return None


def oversize_first_length(data: bytes, api: int, version: int, body: Any) -> bytes | None:
    """Claim 2**31-1 elements/bytes (or 32767 chars for a classic string) in the first length field."""
    spec = api_table()[api].request
    flexible = version in spec.flexible
    target = first_length_field(api, version)
    if target is None:
        return None
    pos = header_len(api, version, data, body)
    for f in spec.fields:
        if version not in f.versions or (flexible and version in f.tagged and f.tag is not None):
            continue
        if f is target:
            break
        buf = io.BytesIO()
        field_construct(f, version, flexible)._build(body.get(f.attr, default_value(f, version)), buf, None, "")
        pos += len(buf.getvalue())
    compact = flexible if target.flexible is None else version in target.flexible
    b = bytearray(data)
    if compact:
        stream = io.BytesIO(data[pos:])
        read_uvarint(stream, "")
        b[pos:pos + stream.tell()] = uvarint_bytes(0x7FFFFFFF)
    elif target.is_array or target.type in ("bytes", "records"):
        b[pos:pos + 4] = struct.pack(">i", 0x7FFFFFFF)
    else:
        b[pos:pos + 2] = struct.pack(">h", 0x7FFF)
    return _reprefix(bytes(b[4:]))


def bad_version_case(api: int, served: int, version: int) -> Case:
    """A request at ``version``, which the broker does not serve: the schema's default body at
    ``served`` (a version it does serve) with the header's version changed."""
    def raw(cid: int, st: State) -> bytes:
        b = bytearray(frame(api, served, cid, {}))
        struct.pack_into(">h", b, 6, version)
        return bytes(b)
    return Case(api, version, f"unsupported-version-{version}", "malformed", raw=raw)
