"""The scenarios with kafka-python (``s_<scenario>(bootstrap)``; see compat.scenarios)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaError

from compat.clients.common import (
    LARGE_SIZE,
    OVERSIZE,
    SEC_ROUNDTRIPS,
    LogCapture,
    Login,
    NotSupported,
    check,
    group_name,
    large_value,
    login,
    payloads,
    sec_check_refused,
    sec_refusals,
    topic_name,
    unsecured_jws,
    wait_until,
)

CLIENT = "kafka-python"
COMMON: dict[str, Any] = {"request_timeout_ms": 15000}


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, **COMMON)


def new_topic(bootstrap: str, scenario: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    name = topic_name(CLIENT, scenario)
    a = admin(bootstrap)
    try:
        a.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        a.close()
    return name


def producer(bootstrap: str, **kw: Any) -> KafkaProducer:
    # kafka-python 3.x turns idempotence on by default (with acks=all); only the
    # idempotence and transaction scenarios exercise it, the others test their own feature.
    if "transactional_id" not in kw:
        kw.setdefault("enable_idempotence", False)
    return KafkaProducer(bootstrap_servers=bootstrap, **COMMON, **kw)


def consumer(bootstrap: str, **kw: Any) -> KafkaConsumer:
    kw.setdefault("auto_offset_reset", "earliest")
    kw.setdefault("enable_auto_commit", False)
    return KafkaConsumer(bootstrap_servers=bootstrap, **COMMON, **kw)


def produce(bootstrap: str, topic: str, values: list[bytes | None], partition: int | None = None,
            keys: list[bytes] | None = None, **kw: Any) -> list[Any]:
    p = producer(bootstrap, **kw)
    try:
        futs = [p.send(topic, value=v, key=keys[i] if keys else None, partition=partition)
                for i, v in enumerate(values)]
        p.flush(30)
        return [f.get(30) for f in futs]
    finally:
        p.close(10)


def read_all(bootstrap: str, topic: str, n: int, partitions: list[int] | None = None,
             timeout: float = 20.0, **kw: Any) -> list[Any]:
    """The first ``n`` records of ``partitions`` (all of the topic's by default) from offset 0."""
    c = consumer(bootstrap, **kw)
    try:
        if partitions is None:
            parts = wait_until(lambda: c.partitions_for_topic(topic), 10, "topic metadata")
            partitions = sorted(parts)
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                out.extend(recs)
        check(len(out) >= n, f"consumed {len(out)} of {n} records")
        return out
    finally:
        c.close()


# ---------------------------------------------------------------- scenarios

def s_metadata(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "metadata", 3)
    c = consumer(bootstrap)
    try:
        parts = wait_until(lambda: c.partitions_for_topic(topic), 10, "topic in metadata")
        check(parts == {0, 1, 2}, f"partitions {sorted(parts)}")
        brokers = c._client.cluster.brokers()
        host, port = bootstrap.rsplit(":", 1)
        check(any(b.host == host and b.port == int(port) for b in brokers), f"brokers {brokers}")
        for p in parts:
            leader = c._client.cluster.leader_for_partition(TopicPartition(topic, p))
            check(leader is not None and leader >= 0, f"partition {p} has no leader")
    finally:
        c.close()


def _acks(bootstrap: str, acks: Any, scenario: str) -> None:
    topic = new_topic(bootstrap, scenario)
    vals = payloads(20)
    produce(bootstrap, topic, list(vals), acks=acks)
    got = read_all(bootstrap, topic, 20)
    check([r.value for r in got] == vals, "records differ from what was produced")


def s_produce_acks0(bootstrap: str) -> None:
    _acks(bootstrap, 0, "produce_acks0")


def s_produce_acks1(bootstrap: str) -> None:
    _acks(bootstrap, 1, "produce_acks1")


def s_produce_acksall(bootstrap: str) -> None:
    _acks(bootstrap, "all", "produce_acksall")


def s_keys_partitioner(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "keys", 6)
    keys = [f"key-{i % 12}".encode() for i in range(60)]
    vals = payloads(60)
    md = produce(bootstrap, topic, list(vals), keys=keys)
    where: dict[bytes, set[int]] = {}
    for k, m in zip(keys, md, strict=True):
        where.setdefault(k, set()).add(m.partition)
    check(all(len(s) == 1 for s in where.values()), "a key went to several partitions")
    check(len({p for s in where.values() for p in s}) > 1, "all keys in one partition")
    got = read_all(bootstrap, topic, 60)
    sent = {(k, v, m.partition) for k, v, m in zip(keys, vals, md, strict=True)}
    check({(r.key, r.value, r.partition) for r in got} == sent, "consumed key/partition differs")


HEADERS = [("h1", b"v1"), ("h2", b""), ("h1", b"dup")]


def s_headers(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "headers")
    p = producer(bootstrap)
    try:
        p.send(topic, value=b"with-headers", headers=HEADERS).get(30)
    finally:
        p.close(10)
    got = read_all(bootstrap, topic, 1)
    check(list(got[0].headers) == HEADERS, f"headers {got[0].headers}")


def s_null_values(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "null")
    produce(bootstrap, topic, [None, b""], keys=[b"k1", b"k2"])
    got = read_all(bootstrap, topic, 2)
    check(got[0].value is None and got[0].key == b"k1", f"tombstone read as {got[0].value!r}")
    check(got[1].value == b"" and got[1].key == b"k2", f"empty value read as {got[1].value!r}")


def _compression(bootstrap: str, codec: str) -> None:
    topic = new_topic(bootstrap, "compression-" + codec)
    vals = [v * 20 for v in payloads(50)]
    produce(bootstrap, topic, list(vals), compression_type=codec, linger_ms=50)
    got = read_all(bootstrap, topic, 50)
    check([r.value for r in got] == vals, "records differ")






def s_consume_assign(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "assign", 3)
    vals = payloads(10)
    produce(bootstrap, topic, list(vals), partition=1)
    c = consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 1)
        c.assign([tp])
        c.seek(tp, 5)
        out: list[Any] = []
        deadline = time.monotonic() + 20
        while len(out) < 5 and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                out.extend(recs)
        check([(r.offset, r.value) for r in out] == list(zip(range(5, 10), vals[5:], strict=True)),
              f"got offsets {[r.offset for r in out]}")
    finally:
        c.close()


def s_consume_timestamp(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "timestamp")
    t0 = int(time.time() * 1000) - 60_000
    p = producer(bootstrap)
    try:
        for i in range(5):
            p.send(topic, value=f"t{i}".encode(), timestamp_ms=t0 + i * 1000).get(30)
    finally:
        p.close(10)
    c = consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        found = c.offsets_for_times({tp: t0 + 1500})[tp]
        check(found is not None and found.offset == 2, f"offsets_for_times gave {found}")
        check(found.timestamp == t0 + 2000, f"timestamp {found.timestamp}")
        c.assign([tp])
        c.seek(tp, found.offset)
        out: list[Any] = []
        deadline = time.monotonic() + 20
        while not out and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                out.extend(recs)
        check(out and out[0].value == b"t2" and out[0].timestamp == t0 + 2000, "wrong first record")
    finally:
        c.close()


def _group(bootstrap: str, scenario: str, assignor: Any) -> str:
    topic = new_topic(bootstrap, scenario, 4)
    vals = payloads(40)
    produce(bootstrap, topic, list(vals), keys=[str(i).encode() for i in range(40)])
    group = group_name(CLIENT, scenario)
    seen: list[set[bytes]] = [set(), set()]
    assigned: list[set[int]] = [set(), set()]
    consumers = [consumer(bootstrap, group_id=group, partition_assignment_strategy=[assignor],
                          session_timeout_ms=10000, heartbeat_interval_ms=500) for _ in range(2)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop(i: int) -> None:
        c = consumers[i]
        try:
            c.subscribe([topic])
            while not stop.is_set():
                for recs in c.poll(200).values():
                    seen[i].update(r.value for r in recs)
                assigned[i] = {tp.partition for tp in c.assignment()}
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(2)]
    try:
        for t in threads:
            t.start()
            time.sleep(0.5)

        def done() -> bool:
            if errors:
                raise errors[0]
            both = assigned[0] and assigned[1] and not (assigned[0] & assigned[1])
            return bool(both and assigned[0] | assigned[1] == {0, 1, 2, 3}
                        and len(seen[0] | seen[1]) == 40)

        wait_until(done, 45, f"a balanced 2-member group (assigned {assigned}, "
                             f"consumed {len(seen[0] | seen[1])}/40)")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for c in consumers:
            c.close()
    return f"assignment {sorted(assigned[0])} / {sorted(assigned[1])}"


def s_group_range(bootstrap: str) -> str:
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    return _group(bootstrap, "group_range", RangePartitionAssignor)


def s_group_roundrobin(bootstrap: str) -> str:
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    return _group(bootstrap, "group_roundrobin", RoundRobinPartitionAssignor)


def s_group_sticky(bootstrap: str) -> str:
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    return _group(bootstrap, "group_sticky", StickyPartitionAssignor)


def s_group_cooperative_sticky(bootstrap: str) -> str:
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    return _group(bootstrap, "group_cooperative_sticky", CooperativeStickyAssignor)


def s_commit_resume(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "commit")
    vals = payloads(10)
    produce(bootstrap, topic, list(vals))
    group = group_name(CLIENT, "commit")
    tp = TopicPartition(topic, 0)
    c = consumer(bootstrap, group_id=group)
    try:
        c.subscribe([topic])
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 4 and time.monotonic() < deadline:
            for recs in c.poll(500, max_records=4 - len(got)).values():
                got.extend(recs)
        check(len(got) == 4, f"first consumer read {len(got)} records")
        from kafka.structs import OffsetAndMetadata
        c.commit({tp: OffsetAndMetadata(4, "", -1)})
        check(c.committed(tp) == 4, f"committed() = {c.committed(tp)}")
    finally:
        c.close()
    c = consumer(bootstrap, group_id=group)
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                got.extend(recs)
        check(got and got[0].offset == 4 and got[0].value == vals[4],
              f"resumed at offset {got[0].offset if got else None}")
    finally:
        c.close()


def s_idempotent_producer(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "idempotent")
    vals = payloads(10)
    produce(bootstrap, topic, list(vals), enable_idempotence=True, acks="all")
    got = read_all(bootstrap, topic, 10)
    check([r.value for r in got] == vals, "records differ")


def s_transactions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "txn")
    p = producer(bootstrap, transactional_id=topic + "-tx")
    try:
        p.init_transactions()
        p.begin_transaction()
        for v in (b"c1", b"c2", b"c3"):
            p.send(topic, v)
        p.commit_transaction()
        p.begin_transaction()
        for v in (b"a1", b"a2"):
            p.send(topic, v)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        p.send(topic, b"c4")
        p.commit_transaction()
    finally:
        p.close(10)
    got = read_all(bootstrap, topic, 4, isolation_level="read_committed")
    check([r.value for r in got] == [b"c1", b"c2", b"c3", b"c4"], f"read {[r.value for r in got]}")


def txn_producer(bootstrap: str, transactional_id: str) -> KafkaProducer:
    """A transactional producer with its producer id initialised."""
    p = producer(bootstrap, transactional_id=transactional_id, transaction_timeout_ms=30000)
    p.init_transactions()
    return p


def end_offsets(bootstrap: str, tps: list[TopicPartition], isolation_level: str) -> dict[int, int]:
    """ListOffsets(latest) per partition: the LSO for read_committed, the high watermark otherwise."""
    c = consumer(bootstrap, isolation_level=isolation_level)
    try:
        return {tp.partition: off for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


def drain(bootstrap: str, tps: list[TopicPartition], isolation_level: str, settle: float = 0.0,
          timeout: float = 20.0) -> tuple[list[Any], dict[TopicPartition, int]]:
    """Every record of ``tps`` from the start until the consumer's position reaches the end offset
    of its isolation level (a trailing control batch must be skipped too), then ``settle`` seconds
    more in which nothing else may arrive. Returns the records and the end offsets."""
    c = consumer(bootstrap, isolation_level=isolation_level)
    try:
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            check(time.monotonic() < deadline,
                  f"positions {[c.position(tp) for tp in tps]} never reached the end offsets "
                  f"{[ends[tp] for tp in tps]} ({isolation_level}, {len(out)} records read)")
            for recs in c.poll(300).values():
                out.extend(recs)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            for recs in c.poll(100).values():
                out.extend(recs)
        return out, ends
    finally:
        c.close()


def by_partition(recs: list[Any]) -> dict[tuple[str, int], list[bytes]]:
    out: dict[tuple[str, int], list[bytes]] = {}
    for r in recs:
        out.setdefault((r.topic, r.partition), []).append(r.value)
    return out


def s_txn_abort_multi(bootstrap: str) -> None:
    a = new_topic(bootstrap, "txn_abort_multi-a", 3)
    b = new_topic(bootstrap, "txn_abort_multi-b", 2)
    tps = [TopicPartition(a, q) for q in range(3)] + [TopicPartition(b, q) for q in range(2)]
    p = txn_producer(bootstrap, a + "-tx")
    try:
        p.begin_transaction()
        for tp in tps:
            for i in range(3):
                p.send(tp.topic, value=f"a-{tp.partition}-{i}".encode(), partition=tp.partition)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        for tp in tps:
            for i in range(2):
                p.send(tp.topic, value=f"c-{tp.partition}-{i}".encode(), partition=tp.partition)
        p.commit_transaction()
    finally:
        p.close(10)
    got, _ = drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(tp.topic, tp.partition): [f"c-{tp.partition}-{i}".encode() for i in range(2)] for tp in tps}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}")


def s_txn_read_committed(bootstrap: str) -> str:
    topic = new_topic(bootstrap, "txn_read_committed", 2)
    tps = [TopicPartition(topic, q) for q in range(2)]
    p1 = txn_producer(bootstrap, topic + "-tx1")
    p2 = txn_producer(bootstrap, topic + "-tx2")

    def send(p: KafkaProducer, tag: str) -> dict[int, int]:
        # One record per partition, acknowledged before the next step: the log order is known.
        return {tp.partition: p.send(topic, value=f"{tag}-{tp.partition}".encode(),
                                     partition=tp.partition).get(30).offset for tp in tps}

    def ends(level: str) -> dict[int, int]:
        return end_offsets(bootstrap, tps, level)

    try:
        p1.begin_transaction()
        first1 = send(p1, "p1-t1-0")
        p2.begin_transaction()
        first2 = send(p2, "p2-t1-0")
        send(p1, "p1-t1-1")
        last = send(p2, "p2-t1-1")
        hw = {q: o + 1 for q, o in last.items()}
        check(ends("read_committed") == first1, f"LSO {ends('read_committed')} with both open, want {first1}")
        check(ends("read_uncommitted") == hw, f"high watermark {ends('read_uncommitted')}, want {hw}")
        p1.commit_transaction()
        lso_open = ends("read_committed")
        check(lso_open == first2, f"LSO {lso_open} after the first commit, want {first2}")
        check(all(v > hw[q] for q, v in ends("read_uncommitted").items()), "high watermark did not cover the marker")
        got, _ = drain(bootstrap, tps, "read_committed", settle=0.5)
        want = {(topic, q): [f"p1-t1-0-{q}".encode()] for q in range(2)}
        check(by_partition(got) == want, f"below the LSO read {by_partition(got)}, want {want}")
        p2.abort_transaction()
        p2.begin_transaction()
        send(p2, "p2-t2-0")
        p1.begin_transaction()
        send(p1, "p1-t2-0")
        p2.commit_transaction()
        p1.abort_transaction()
    finally:
        p1.close(10)
        p2.close(10)
    got, end = drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(topic, q): [f"{t}-{q}".encode() for t in ("p1-t1-0", "p1-t1-1", "p2-t2-0")] for q in range(2)}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}, want {want}")
    hw = ends("read_uncommitted")
    check({tp.partition: o for tp, o in end.items()} == hw, f"final LSO {end} != high watermark {hw}")
    return f"LSO {lso_open} while a transaction was open, {hw} at the end"


def s_txn_read_uncommitted(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "txn_read_uncommitted", 1)
    tp = TopicPartition(topic, 0)
    p = txn_producer(bootstrap, topic + "-tx")
    sent: list[tuple[int, bytes]] = []

    def send(v: bytes) -> None:
        sent.append((p.send(topic, value=v, partition=0).get(30).offset, v))

    try:
        p.begin_transaction()
        send(b"u-c1")
        send(b"u-c2")
        p.commit_transaction()
        p.begin_transaction()
        send(b"u-a1")
        send(b"u-a2")
        p.abort_transaction()
        p.begin_transaction()
        send(b"u-o1")
        got, end = drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
        check([(r.offset, r.value) for r in got] == sent, f"read {[(r.offset, r.value) for r in got]}, sent {sent}")
        check(end[tp] == sent[-1][0] + 1, f"high watermark {end[tp]} with a transaction open, want {sent[-1][0] + 1}")
        p.commit_transaction()
    finally:
        p.close(10)
    got, end = drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
    check([(r.offset, r.value) for r in got] == sent, f"read {[(r.offset, r.value) for r in got]}, sent {sent}")
    check(end[tp] == sent[-1][0] + 2, f"high watermark {end[tp]} after the commit, want {sent[-1][0] + 2}")


def s_txn_send_offsets(bootstrap: str) -> None:
    from kafka.structs import OffsetAndMetadata
    src = new_topic(bootstrap, "txn_send_offsets-in", 1)
    dst = new_topic(bootstrap, "txn_send_offsets-out", 1)
    vals = payloads(10, "in")
    produce(bootstrap, src, list(vals))
    group = group_name(CLIENT, "txn_send_offsets")
    tp = TopicPartition(src, 0)

    def committed() -> int | None:
        # A consumer that is not a member: OffsetFetch without require_stable, so a pending
        # transactional offset is not visible (the last committed one is).
        q = consumer(bootstrap, group_id=group)
        try:
            return q.committed(tp)
        finally:
            q.close()

    c = consumer(bootstrap, group_id=group, isolation_level="read_committed")
    p = txn_producer(bootstrap, dst + "-tx")
    try:
        c.subscribe([src])
        recs: list[Any] = []
        deadline = time.monotonic() + 30
        while len(recs) < 10 and time.monotonic() < deadline:
            for rs in c.poll(300).values():
                recs.extend(rs)
        check([r.value for r in recs] == vals, f"consumed {len(recs)} of 10 input records")

        def txn(lo: int, hi: int, commit: bool) -> int | None:
            p.begin_transaction()
            for r in recs[lo:hi]:
                p.send(dst, value=b"out-" + r.value, partition=0)
            p.send_offsets_to_transaction({tp: OffsetAndMetadata(hi, "", -1)}, c.group_metadata())
            p.flush()
            before = committed()
            if commit:
                p.commit_transaction()
            else:
                p.abort_transaction()
            return before

        before = txn(0, 4, True)
        check(before is None, f"offset {before} visible before the first transaction committed")
        check(committed() == 4, f"committed offset {committed()} after the commit, want 4")
        before = txn(4, 7, False)
        check(before == 4, f"committed offset {before} during the second transaction, want 4")
        check(committed() == 4, f"committed offset {committed()} after the abort, want 4")
        before = txn(4, 10, True)
        check(before == 4, f"committed offset {before} during the third transaction, want 4")
        check(committed() == 10, f"committed offset {committed()} after the commit, want 10")
    finally:
        p.close(10)
        c.close()
    got, _ = drain(bootstrap, [TopicPartition(dst, 0)], "read_committed", settle=0.5)
    check([r.value for r in got] == [b"out-" + v for v in vals], f"output {[r.value for r in got]}")


def s_admin_topics(bootstrap: str) -> None:
    a = admin(bootstrap)
    try:
        name = topic_name(CLIENT, "admin-topics")
        a.create_topics([NewTopic(name, 2, 1)])
        check(name in a.list_topics(), "created topic not listed")
        a.delete_topics([name])
        wait_until(lambda: name not in a.list_topics(), 10, "deleted topic to disappear")
    finally:
        a.close()


def s_admin_partitions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-partitions", 1)
    a = admin(bootstrap)
    try:
        a.create_partitions({topic: NewPartitions(3)})
    finally:
        a.close()
    def three() -> bool:
        a = admin(bootstrap)
        try:
            return len(a.describe_topics([topic])[0]["partitions"]) == 3
        finally:
            a.close()
    wait_until(three, 10, "3 partitions in metadata")
    produce(bootstrap, topic, [b"p2"], partition=2)


def _config_value(a: KafkaAdminClient, res: ConfigResource, key: str) -> str | None:
    resp = a.describe_configs([res], config_filter="all")
    entries = next(iter(next(iter(resp.values())).values()))
    check(key in entries, f"{key} not in describe_configs response")
    return str(entries[key]["value"])


def s_admin_configs(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-configs", configs={"retention.ms": "3600000"})
    a = admin(bootstrap)
    try:
        res = ConfigResource(ConfigResourceType.TOPIC, topic)
        got = _config_value(a, res, "retention.ms")
        check(got == "3600000", f"retention.ms = {got}")
        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "12345"})])
        got = _config_value(a, res, "retention.ms")
        check(got == "12345", f"after alter retention.ms = {got}")
        got = _config_value(a, ConfigResource(ConfigResourceType.BROKER, "1"), "num.partitions")
        check(got is not None, "broker config not described")
    finally:
        a.close()


def _group_ids(a: KafkaAdminClient) -> list[str]:
    return [g["group_id"] if isinstance(g, dict) else g[0] for g in a.list_groups()]


def s_admin_groups(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-groups")
    produce(bootstrap, topic, [b"x"])
    group = group_name(CLIENT, "admin-groups")
    c = consumer(bootstrap, group_id=group)
    try:
        c.subscribe([topic])
        wait_until(lambda: c.poll(300), 20, "a record in the group consumer")
        c.commit()
    finally:
        c.close()
    a = admin(bootstrap)
    try:
        ids = _group_ids(a)
        check(group in ids, f"group not listed among {len(ids)}")
        desc = a.describe_groups([group])[group]
        check(desc["group_state"] == "Empty", f"described state {desc['group_state']}")
        a.delete_groups([group])
        wait_until(lambda: group not in _group_ids(a), 10, "deleted group to disappear")
    finally:
        a.close()


def s_large_messages(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "large")
    big = large_value(LARGE_SIZE)
    produce(bootstrap, topic, [big], max_request_size=4 * 1024 * 1024)
    got = read_all(bootstrap, topic, 1, fetch_max_bytes=4 * 1024 * 1024,
                   max_partition_fetch_bytes=4 * 1024 * 1024)
    check(got[0].value == big, "large value differs")
    try:
        produce(bootstrap, topic, [large_value(OVERSIZE)], max_request_size=4 * 1024 * 1024, retries=0)
    except KafkaError as e:
        check("TooLarge" in type(e).__name__ or "TOO_LARGE" in str(e).upper(), f"rejected with {e!r}")
    else:
        raise AssertionError("broker accepted a record over max.message.bytes")


def s_many_partitions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "many", 64)
    p = producer(bootstrap, linger_ms=20)
    try:
        futs = [p.send(topic, value=f"p{i}".encode(), partition=i) for i in range(64)]
        p.flush(30)
        for f in futs:
            f.get(30)
    finally:
        p.close(10)
    got = read_all(bootstrap, topic, 64, partitions=list(range(64)), timeout=30)
    check(sorted((r.partition, r.value) for r in got) == [(i, f"p{i}".encode()) for i in range(64)],
          "records differ")


_ = NotSupported  # every kafka-python scenario is implemented


# ---------------------------------------------------------------- security

def _login_kw(lg: Login) -> dict[str, Any]:
    """kafka-python's settings for a Login."""
    kw: dict[str, Any] = {"security_protocol": lg.protocol}
    if lg.mechanism == "OAUTHBEARER":
        from kafka.net.sasl.oauth import AbstractTokenProvider

        class Token(AbstractTokenProvider):  # type: ignore[misc]
            def token(self) -> str:
                return unsecured_jws(lg.user or "", lg.token_lifetime)

        kw.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Token())
    elif lg.sasl:
        kw.update(sasl_mechanism=lg.mechanism, sasl_plain_username=lg.user, sasl_plain_password=lg.password)
    if lg.tls:
        kw.update(ssl_cafile=lg.ca, ssl_check_hostname=True)
        if lg.cert:
            kw.update(ssl_certfile=lg.cert, ssl_keyfile=lg.key)
    return kw


def _sec_roundtrip(bootstrap: str, scenario: str, lg: Login) -> str:
    """Create a topic over PLAINTEXT; produce and read back over ``lg``'s listener."""
    topic = new_topic(bootstrap, scenario, 2)
    kw = _login_kw(lg)
    values: list[bytes | None] = list(payloads(10, "sec"))
    metas = produce(lg.bootstrap, topic, values, **kw)
    check(len(metas) == 10, f"{len(metas)} acknowledged")
    got = read_all(lg.bootstrap, topic, 10, **kw)
    check(sorted(r.value for r in got) == values, "records read back differ")
    return f"10 records over {lg.protocol}" + (f"/{lg.mechanism}" if lg.mechanism else "")


def _refused_login(lg: Login, topic: str) -> tuple[BaseException | None, list[str]]:
    """Try to produce as ``lg``; the error (None if it worked) and what kafka-python logged."""
    capture = LogCapture()
    logging.getLogger("kafka").addHandler(capture)
    try:
        produce(lg.bootstrap, topic, [b"refused"], bootstrap_timeout_ms=8000, max_block_ms=8000, **_login_kw(lg))
    except Exception as e:  # the error the client reports is what the check is about
        return e, capture.lines
    finally:
        logging.getLogger("kafka").removeHandler(capture)
    return None, capture.lines


def _sec_refused(bootstrap: str, scenario: str) -> str:
    from kafka.errors import SaslAuthenticationFailedError
    bad, good = sec_refusals(scenario)
    topic = new_topic(bootstrap, scenario)
    notes = []
    for label, lg in bad:
        # kafka-python sometimes sees the broker close the connection before it has read the
        # SASL answer (with Kafka too): up to 3 logins, one of which must report the SASL failure.
        for _ in range(3 if lg.sasl else 1):
            outcome, lines = _refused_login(lg, topic)
            reason = next((ln for ln in lines if "SaslAuthenticationFailedError" in ln
                           or "Authentication failed" in ln), None)
            if outcome is None or not lg.sasl or reason or isinstance(outcome, SaslAuthenticationFailedError):
                break
        if lg.sasl:
            check(outcome is not None, f"{label}: the broker accepted it")
            check(isinstance(outcome, SaslAuthenticationFailedError) or reason is not None,
                  f"{label}: failed without an authentication error: {outcome}; log: {lines[-3:]}")
            text = reason or str(outcome)
            notes.append(f"{label}: {text[text.find('[Error'):][:80] if '[Error' in text else text[:80]}")
        else:
            reason = next((ln for ln in lines if "Bootstrap connection" in ln), None)
            notes.append(sec_check_refused(label, outcome, words=("bootstrap",))
                         + (f" ({reason[:100]})" if reason else ""))
    return _sec_roundtrip(bootstrap, scenario, good) + "; refused: " + "; ".join(notes)


def _security(scenario: str) -> Any:
    if scenario in SEC_ROUNDTRIPS:
        listener, mechanism = SEC_ROUNDTRIPS[scenario]
        return lambda bootstrap: _sec_roundtrip(bootstrap, scenario, login(listener, mechanism))
    return lambda bootstrap: _sec_refused(bootstrap, scenario)
