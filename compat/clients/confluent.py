"""The scenarios with confluent-kafka (librdkafka) (``s_<scenario>(bootstrap)``)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from compat.clients.common import (
    LARGE_SIZE,
    OVERSIZE,
    SEC_ROUNDTRIPS,
    Login,
    NotSupported,
    check,
    group_name,
    large_value,
    login,
    payloads,
    sec_refusals,
    topic_name,
    unsecured_jws,
    wait_until,
)

CLIENT = "confluent-kafka"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_futures(futs: dict[Any, Any], timeout: float = 30) -> dict[Any, Any]:
    return {k: f.result(timeout) for k, f in futs.items()}


def new_topic(bootstrap: str, scenario: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    name = topic_name(CLIENT, scenario)
    a = admin(bootstrap)  # keep a reference: the futures fail if the client is destroyed first
    wait_futures(a.create_topics([NewTopic(name, partitions, 1, config=configs or {})], operation_timeout=20))
    return name


class Delivery:
    def __init__(self) -> None:
        self.reports: list[Any] = []
        self.errors: list[Any] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.reports.append(msg)


def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes] | None = None,
            partition: int | None = None, conf: dict[str, Any] | None = None,
            headers: Any = None, timestamps: list[int] | None = None) -> list[Any]:
    cfg: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 20000}
    cfg.update(conf or {})
    p = Producer(cfg)
    dr = Delivery()
    for i, v in enumerate(values):
        kw: dict[str, Any] = {"value": v, "on_delivery": dr}
        if keys:
            kw["key"] = keys[i]
        if partition is not None:
            kw["partition"] = partition
        if headers is not None:
            kw["headers"] = headers
        if timestamps:
            kw["timestamp"] = timestamps[i]
        p.produce(topic, **kw)
        p.poll(0)
    left = p.flush(30)
    check(left == 0, f"{left} messages not delivered")
    if dr.errors:
        raise KafkaException(dr.errors[0])
    return dr.reports


def consumer(bootstrap: str, **conf: Any) -> Consumer:
    cfg: dict[str, Any] = {"bootstrap.servers": bootstrap, "group.id": group_name(CLIENT, "c"),
                           "auto.offset.reset": "earliest", "enable.auto.commit": False}
    cfg.update(conf)
    return Consumer(cfg)


def poll_n(c: Consumer, n: int, timeout: float = 20.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(n - len(out), 0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            out.append(m)
    return out


def read_all(bootstrap: str, topic: str, n: int, partitions: list[int] | None = None,
             timeout: float = 20.0, **conf: Any) -> list[Any]:
    c = consumer(bootstrap, **conf)
    try:
        if partitions is None:
            md = c.list_topics(topic, timeout=10)
            partitions = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out = poll_n(c, n, timeout)
        check(len(out) >= n, f"consumed {len(out)} of {n} records")
        return out
    finally:
        c.close()


# ---------------------------------------------------------------- scenarios

def s_metadata(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "metadata", 3)
    a = admin(bootstrap)
    md = a.list_topics(timeout=10)
    host, port = bootstrap.rsplit(":", 1)
    check(any(b.host == host and b.port == int(port) for b in md.brokers.values()), f"brokers {md.brokers}")
    t = md.topics.get(topic)
    check(t is not None and t.error is None, f"topic missing or in error: {t and t.error}")
    check(sorted(t.partitions) == [0, 1, 2], f"partitions {sorted(t.partitions)}")
    check(all(p.leader in md.brokers for p in t.partitions.values()), "partition without a known leader")


def _acks(bootstrap: str, acks: str, scenario: str) -> None:
    topic = new_topic(bootstrap, scenario)
    vals = payloads(20)
    produce(bootstrap, topic, list(vals), conf={"acks": acks})
    got = read_all(bootstrap, topic, 20)
    check([m.value() for m in got] == vals, "records differ from what was produced")


def s_produce_acks0(bootstrap: str) -> None:
    _acks(bootstrap, "0", "produce_acks0")


def s_produce_acks1(bootstrap: str) -> None:
    _acks(bootstrap, "1", "produce_acks1")


def s_produce_acksall(bootstrap: str) -> None:
    _acks(bootstrap, "all", "produce_acksall")


def s_keys_partitioner(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "keys", 6)
    keys = [f"key-{i % 12}".encode() for i in range(60)]
    vals = payloads(60)
    reports = produce(bootstrap, topic, list(vals), keys=keys)
    where: dict[bytes, set[int]] = {}
    for m in reports:
        where.setdefault(m.key(), set()).add(m.partition())
    check(len(where) == 12 and all(len(s) == 1 for s in where.values()), "a key went to several partitions")
    check(len({p for s in where.values() for p in s}) > 1, "all keys in one partition")
    got = read_all(bootstrap, topic, 60)
    check({(m.key(), m.value(), m.partition()) for m in got} ==
          {(m.key(), m.value(), m.partition()) for m in reports}, "consumed key/partition differs")


HEADERS = [("h1", b"v1"), ("h2", b""), ("h1", b"dup")]


def s_headers(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "headers")
    produce(bootstrap, topic, [b"with-headers"], headers=HEADERS)
    got = read_all(bootstrap, topic, 1)
    check(list(got[0].headers() or []) == HEADERS, f"headers {got[0].headers()}")


def s_null_values(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "null")
    produce(bootstrap, topic, [None, b""], keys=[b"k1", b"k2"])
    got = read_all(bootstrap, topic, 2)
    check(got[0].value() is None and got[0].key() == b"k1", f"tombstone read as {got[0].value()!r}")
    check(got[1].value() == b"" and got[1].key() == b"k2", f"empty value read as {got[1].value()!r}")


def _compression(bootstrap: str, codec: str) -> None:
    topic = new_topic(bootstrap, "compression-" + codec)
    vals = [v * 20 for v in payloads(50)]
    produce(bootstrap, topic, list(vals), conf={"compression.type": codec, "linger.ms": 50})
    got = read_all(bootstrap, topic, 50)
    check([m.value() for m in got] == vals, "records differ")






def s_consume_assign(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "assign", 3)
    vals = payloads(10)
    produce(bootstrap, topic, list(vals), partition=1)
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 1, 5)])
        out = poll_n(c, 5)
        check([(m.offset(), m.value()) for m in out] == list(zip(range(5, 10), vals[5:], strict=True)),
              f"got offsets {[m.offset() for m in out]}")
    finally:
        c.close()


def s_consume_timestamp(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "timestamp")
    t0 = int(time.time() * 1000) - 60_000
    produce(bootstrap, topic, [f"t{i}".encode() for i in range(5)],
            timestamps=[t0 + i * 1000 for i in range(5)])
    c = consumer(bootstrap)
    try:
        found = c.offsets_for_times([TopicPartition(topic, 0, t0 + 1500)], timeout=10)[0]
        check(found.error is None and found.offset == 2, f"offsets_for_times gave {found}")
        c.assign([found])
        out = poll_n(c, 1)
        check(out and out[0].value() == b"t2" and out[0].timestamp()[1] == t0 + 2000, "wrong first record")
    finally:
        c.close()


def _group(bootstrap: str, scenario: str, strategy: str) -> str:
    topic = new_topic(bootstrap, scenario, 4)
    vals = payloads(40)
    produce(bootstrap, topic, list(vals), keys=[str(i).encode() for i in range(40)])
    group = group_name(CLIENT, scenario)
    conf = {"group.id": group, "partition.assignment.strategy": strategy, "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500}
    cs = [consumer(bootstrap, **conf) for _ in range(2)]
    seen: set[bytes] = set()
    try:
        for c in cs:
            c.subscribe([topic])

        def done() -> bool:
            for c in cs:
                for m in c.consume(50, 0.1):
                    if m.error() is None:
                        seen.add(m.value())
            a0 = {tp.partition for tp in cs[0].assignment()}
            a1 = {tp.partition for tp in cs[1].assignment()}
            return bool(a0 and a1 and not a0 & a1 and a0 | a1 == {0, 1, 2, 3} and len(seen) == 40)

        wait_until(done, 45, "a balanced 2-member group that consumed all 40 records", interval=0)
        return (f"assignment {sorted(tp.partition for tp in cs[0].assignment())} / "
                f"{sorted(tp.partition for tp in cs[1].assignment())}")
    finally:
        for c in cs:
            c.close()


def s_group_range(bootstrap: str) -> str:
    return _group(bootstrap, "group_range", "range")


def s_group_roundrobin(bootstrap: str) -> str:
    return _group(bootstrap, "group_roundrobin", "roundrobin")


def s_group_sticky(bootstrap: str) -> str:
    raise NotSupported("librdkafka ships range, roundrobin and cooperative-sticky (no eager sticky)")


def s_group_cooperative_sticky(bootstrap: str) -> str:
    return _group(bootstrap, "group_cooperative_sticky", "cooperative-sticky")


def s_commit_resume(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "commit")
    vals = payloads(10)
    produce(bootstrap, topic, list(vals))
    group = group_name(CLIENT, "commit")
    c = consumer(bootstrap, **{"group.id": group})
    try:
        c.subscribe([topic])
        got = poll_n(c, 4, 30)
        check(len(got) >= 4, f"first consumer read {len(got)} records")
        c.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        check(committed == 4, f"committed() = {committed}")
    finally:
        c.close()
    c = consumer(bootstrap, **{"group.id": group})
    try:
        c.subscribe([topic])
        got = poll_n(c, 1, 30)
        check(got and got[0].offset() == 4 and got[0].value() == vals[4],
              f"resumed at offset {got[0].offset() if got else None}")
    finally:
        c.close()


def s_idempotent_producer(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "idempotent")
    vals = payloads(10)
    produce(bootstrap, topic, list(vals), conf={"enable.idempotence": True, "message.timeout.ms": 15000})
    got = read_all(bootstrap, topic, 10)
    check([m.value() for m in got] == vals, "records differ")


def s_transactions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "txn")
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic + "-tx",
                  "transaction.timeout.ms": 30000, "message.timeout.ms": 20000})
    p.init_transactions(15)
    p.begin_transaction()
    for v in (b"c1", b"c2", b"c3"):
        p.produce(topic, v)
    p.commit_transaction(15)
    p.begin_transaction()
    for v in (b"a1", b"a2"):
        p.produce(topic, v)
    p.flush(15)
    p.abort_transaction(15)
    p.begin_transaction()
    p.produce(topic, b"c4")
    p.commit_transaction(15)
    got = read_all(bootstrap, topic, 4, **{"isolation.level": "read_committed"})
    check([m.value() for m in got] == [b"c1", b"c2", b"c3", b"c4"], f"read {[m.value() for m in got]}")


def txn_producer(bootstrap: str, transactional_id: str) -> Producer:
    """A transactional producer with its producer id initialised."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                  "transaction.timeout.ms": 30000, "message.timeout.ms": 20000, "linger.ms": 5})
    p.init_transactions(15)
    return p


def send_sync(p: Producer, topic: str, partition: int, value: bytes) -> int:
    """Produce one record and wait for its acknowledgement; its offset."""
    dr = Delivery()
    p.produce(topic, value, partition=partition, on_delivery=dr)
    left = p.flush(20)
    check(left == 0 and not dr.errors and dr.reports, f"not delivered: {dr.errors or left}")
    return int(dr.reports[0].offset())


def end_offsets(bootstrap: str, tps: list[TopicPartition], isolation_level: str) -> dict[int, int]:
    """ListOffsets(latest) per partition: the LSO for read_committed, the high watermark otherwise."""
    c = consumer(bootstrap, **{"isolation.level": isolation_level})
    try:
        return {tp.partition: c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps}
    finally:
        c.close()


def drain(bootstrap: str, tps: list[TopicPartition], isolation_level: str, settle: float = 0.0,
          timeout: float = 20.0) -> tuple[list[Any], dict[int, int]]:
    """Every record of ``tps`` from the start until the consumer's position reaches the end offset
    of its isolation level (a trailing control batch must be skipped too), then ``settle`` seconds
    more in which nothing else may arrive. Returns the records and the end offsets."""
    c = consumer(bootstrap, **{"isolation.level": isolation_level})
    try:
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps}
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in tps])
        out: list[Any] = []
        deadline = time.monotonic() + timeout

        def positions() -> list[int]:
            return [tp.offset for tp in c.position([TopicPartition(t.topic, t.partition) for t in tps])]

        while any(pos < ends[tp.partition] for pos, tp in zip(positions(), tps, strict=True)):
            check(time.monotonic() < deadline,
                  f"positions {positions()} never reached the end offsets {ends} ({isolation_level}, "
                  f"{len(out)} records read)")
            out.extend(poll_n(c, 1000, 0.3))
        out.extend(poll_n(c, 1000, settle) if settle else [])
        return out, ends
    finally:
        c.close()


def by_partition(msgs: list[Any]) -> dict[tuple[str, int], list[bytes]]:
    out: dict[tuple[str, int], list[bytes]] = {}
    for m in msgs:
        out.setdefault((m.topic(), m.partition()), []).append(m.value())
    return out


def s_txn_abort_multi(bootstrap: str) -> None:
    a = new_topic(bootstrap, "txn_abort_multi-a", 3)
    b = new_topic(bootstrap, "txn_abort_multi-b", 2)
    tps = [TopicPartition(a, q) for q in range(3)] + [TopicPartition(b, q) for q in range(2)]
    p = txn_producer(bootstrap, a + "-tx")
    p.begin_transaction()
    for tp in tps:
        for i in range(3):
            p.produce(tp.topic, f"a-{tp.partition}-{i}".encode(), partition=tp.partition)
    check(p.flush(20) == 0, "aborted records not delivered")
    p.abort_transaction(15)
    p.begin_transaction()
    for tp in tps:
        for i in range(2):
            p.produce(tp.topic, f"c-{tp.partition}-{i}".encode(), partition=tp.partition)
    p.commit_transaction(15)
    got, _ = drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(tp.topic, tp.partition): [f"c-{tp.partition}-{i}".encode() for i in range(2)] for tp in tps}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}")


def s_txn_read_committed(bootstrap: str) -> str:
    topic = new_topic(bootstrap, "txn_read_committed", 2)
    tps = [TopicPartition(topic, q) for q in range(2)]
    p1 = txn_producer(bootstrap, topic + "-tx1")
    p2 = txn_producer(bootstrap, topic + "-tx2")

    def send(p: Producer, tag: str) -> dict[int, int]:
        # One record per partition, acknowledged before the next step: the log order is known.
        return {tp.partition: send_sync(p, topic, tp.partition, f"{tag}-{tp.partition}".encode()) for tp in tps}

    def ends(level: str) -> dict[int, int]:
        return end_offsets(bootstrap, tps, level)

    p1.begin_transaction()
    first1 = send(p1, "p1-t1-0")
    p2.begin_transaction()
    first2 = send(p2, "p2-t1-0")
    send(p1, "p1-t1-1")
    last = send(p2, "p2-t1-1")
    hw = {q: o + 1 for q, o in last.items()}
    check(ends("read_committed") == first1, f"LSO {ends('read_committed')} with both open, want {first1}")
    check(ends("read_uncommitted") == hw, f"high watermark {ends('read_uncommitted')}, want {hw}")
    p1.commit_transaction(15)
    lso_open = ends("read_committed")
    check(lso_open == first2, f"LSO {lso_open} after the first commit, want {first2}")
    check(all(v > hw[q] for q, v in ends("read_uncommitted").items()), "high watermark did not cover the marker")
    got, _ = drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(topic, q): [f"p1-t1-0-{q}".encode()] for q in range(2)}
    check(by_partition(got) == want, f"below the LSO read {by_partition(got)}, want {want}")
    p2.abort_transaction(15)
    p2.begin_transaction()
    send(p2, "p2-t2-0")
    p1.begin_transaction()
    send(p1, "p1-t2-0")
    p2.commit_transaction(15)
    p1.abort_transaction(15)
    got, end = drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(topic, q): [f"{t}-{q}".encode() for t in ("p1-t1-0", "p1-t1-1", "p2-t2-0")] for q in range(2)}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}, want {want}")
    hw = ends("read_uncommitted")
    check(end == hw, f"final LSO {end} != high watermark {hw}")
    return f"LSO {lso_open} while a transaction was open, {hw} at the end"


def s_txn_read_uncommitted(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "txn_read_uncommitted", 1)
    tp = TopicPartition(topic, 0)
    p = txn_producer(bootstrap, topic + "-tx")
    sent: list[tuple[int, bytes]] = []

    def send(v: bytes) -> None:
        sent.append((send_sync(p, topic, 0, v), v))

    p.begin_transaction()
    send(b"u-c1")
    send(b"u-c2")
    p.commit_transaction(15)
    p.begin_transaction()
    send(b"u-a1")
    send(b"u-a2")
    p.abort_transaction(15)
    p.begin_transaction()
    send(b"u-o1")
    got, end = drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
    check([(m.offset(), m.value()) for m in got] == sent, f"read {[(m.offset(), m.value()) for m in got]}, sent {sent}")
    check(end[0] == sent[-1][0] + 1, f"high watermark {end[0]} with a transaction open, want {sent[-1][0] + 1}")
    p.commit_transaction(15)
    got, end = drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
    check([(m.offset(), m.value()) for m in got] == sent, f"read {[(m.offset(), m.value()) for m in got]}, sent {sent}")
    check(end[0] == sent[-1][0] + 2, f"high watermark {end[0]} after the commit, want {sent[-1][0] + 2}")


def s_txn_send_offsets(bootstrap: str) -> None:
    src = new_topic(bootstrap, "txn_send_offsets-in", 1)
    dst = new_topic(bootstrap, "txn_send_offsets-out", 1)
    vals = payloads(10, "in")
    produce(bootstrap, src, list(vals))
    group = group_name(CLIENT, "txn_send_offsets")

    def committed() -> int:
        # read_uncommitted: OffsetFetch without require_stable, so a pending transactional
        # offset is not visible (the last committed one is); -1001 when there is none.
        q = consumer(bootstrap, **{"group.id": group, "isolation.level": "read_uncommitted"})
        try:
            return int(q.committed([TopicPartition(src, 0)], timeout=10)[0].offset)
        finally:
            q.close()

    c = consumer(bootstrap, **{"group.id": group, "isolation.level": "read_committed"})
    p = txn_producer(bootstrap, dst + "-tx")
    try:
        c.subscribe([src])
        recs = poll_n(c, 10, 30)
        check([m.value() for m in recs] == vals, f"consumed {len(recs)} of 10 input records")

        def txn(lo: int, hi: int, commit: bool) -> int:
            p.begin_transaction()
            for m in recs[lo:hi]:
                p.produce(dst, b"out-" + m.value(), partition=0)
            p.send_offsets_to_transaction([TopicPartition(src, 0, hi)], c.consumer_group_metadata(), 15)
            check(p.flush(20) == 0, "output not delivered")
            before = committed()
            if commit:
                p.commit_transaction(15)
            else:
                p.abort_transaction(15)
            return before

        before = txn(0, 4, True)
        check(before < 0, f"offset {before} visible before the first transaction committed")
        check(committed() == 4, f"committed offset {committed()} after the commit, want 4")
        before = txn(4, 7, False)
        check(before == 4, f"committed offset {before} during the second transaction, want 4")
        check(committed() == 4, f"committed offset {committed()} after the abort, want 4")
        before = txn(4, 10, True)
        check(before == 4, f"committed offset {before} during the third transaction, want 4")
        check(committed() == 10, f"committed offset {committed()} after the commit, want 10")
    finally:
        c.close()
    got, _ = drain(bootstrap, [TopicPartition(dst, 0)], "read_committed", settle=0.5)
    check([m.value() for m in got] == [b"out-" + v for v in vals], f"output {[m.value() for m in got]}")


def s_admin_topics(bootstrap: str) -> None:
    a = admin(bootstrap)
    name = topic_name(CLIENT, "admin-topics")
    wait_futures(a.create_topics([NewTopic(name, 2, 1)], operation_timeout=20))
    check(name in a.list_topics(timeout=10).topics, "created topic not listed")
    wait_futures(a.delete_topics([name], operation_timeout=20))
    wait_until(lambda: name not in a.list_topics(timeout=10).topics, 10, "deleted topic to disappear")


def s_admin_partitions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-partitions", 1)
    a = admin(bootstrap)
    wait_futures(a.create_partitions([NewPartitions(topic, 3)], operation_timeout=20))
    wait_until(lambda: len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 3, 10,
               "3 partitions in metadata")
    produce(bootstrap, topic, [b"p2"], partition=2)


def _config(a: AdminClient, res: ConfigResource, key: str) -> str:
    entries = a.describe_configs([res])[res].result(15)
    check(key in entries, f"{key} not in describe_configs response")
    return str(entries[key].value)


def s_admin_configs(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-configs", configs={"retention.ms": "3600000"})
    a = admin(bootstrap)
    res = ConfigResource("TOPIC", topic)
    got = _config(a, res, "retention.ms")
    check(got == "3600000", f"retention.ms = {got}")
    inc = ConfigResource("TOPIC", topic, incremental_configs=[
        ConfigEntry("retention.ms", "12345", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([inc])[inc].result(15)
    got = _config(a, res, "retention.ms")
    check(got == "12345", f"after alter retention.ms = {got}")
    got = _config(a, ConfigResource("BROKER", "1"), "num.partitions")
    check(got is not None, "broker config not described")


def s_admin_groups(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "admin-groups")
    produce(bootstrap, topic, [b"x"])
    group = group_name(CLIENT, "admin-groups")
    c = consumer(bootstrap, **{"group.id": group})
    try:
        c.subscribe([topic])
        check(poll_n(c, 1, 20), "no record in the group consumer")
        c.commit(asynchronous=False)
    finally:
        c.close()
    a = admin(bootstrap)

    def ids() -> list[str]:
        return [g.group_id for g in a.list_consumer_groups(request_timeout=10).result(15).valid]

    check(group in ids(), "group not listed")
    desc = a.describe_consumer_groups([group])[group].result(15)
    check(desc.state == ConsumerGroupState.EMPTY, f"described state {desc.state}")
    a.delete_consumer_groups([group])[group].result(15)
    wait_until(lambda: group not in ids(), 10, "deleted group to disappear")


def s_large_messages(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "large")
    big = large_value(LARGE_SIZE)
    conf = {"message.max.bytes": 4 * 1024 * 1024, "linger.ms": 0}
    produce(bootstrap, topic, [big], conf=conf)
    got = read_all(bootstrap, topic, 1, **{"fetch.max.bytes": 4 * 1024 * 1024,
                                           "max.partition.fetch.bytes": 4 * 1024 * 1024})
    check(got[0].value() == big, "large value differs")
    try:
        produce(bootstrap, topic, [large_value(OVERSIZE)], conf={**conf, "retries": 0})
    except KafkaException as e:
        check(e.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, f"rejected with {e.args[0]}")
    else:
        raise AssertionError("broker accepted a record over max.message.bytes")


def s_many_partitions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "many", 64)
    cfg = {"bootstrap.servers": bootstrap, "linger.ms": 20}
    p = Producer(cfg)
    dr = Delivery()
    for i in range(64):
        p.produce(topic, value=f"p{i}".encode(), partition=i, on_delivery=dr)
    check(p.flush(30) == 0 and not dr.errors, f"delivery failed: {dr.errors[:1]}")
    got = read_all(bootstrap, topic, 64, partitions=list(range(64)), timeout=30)
    check(sorted((m.partition(), m.value()) for m in got) == [(i, f"p{i}".encode()) for i in range(64)],
          "records differ")


# ---------------------------------------------------------------- security

def _login_conf(lg: Login) -> dict[str, Any]:
    """librdkafka's settings for a Login."""
    conf: dict[str, Any] = {"security.protocol": lg.protocol}
    if lg.mechanism == "OAUTHBEARER" and lg.token_lifetime < 0:
        # A token of our own through oauth_cb: its exp claim is past, while librdkafka is told it
        # lives on (it never reads the token), so the broker is the one to refuse it.
        conf.update({"sasl.mechanisms": "OAUTHBEARER",
                     "oauth_cb": lambda _config: (unsecured_jws(lg.user or "", lg.token_lifetime), time.time() + 3600)})
    elif lg.mechanism == "OAUTHBEARER":
        # librdkafka's built-in unsecured JWS token (principal = the sub claim).
        conf.update({"sasl.mechanisms": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
                     "sasl.oauthbearer.config": f"principal={lg.user}"})
    elif lg.sasl:
        conf.update({"sasl.mechanisms": lg.mechanism, "sasl.username": lg.user, "sasl.password": lg.password})
    if lg.tls:
        conf["ssl.ca.location"] = lg.ca
        if lg.cert:
            conf.update({"ssl.certificate.location": lg.cert, "ssl.key.location": lg.key})
    return conf


def _sec_roundtrip(bootstrap: str, scenario: str, lg: Login) -> str:
    """Create a topic over PLAINTEXT; produce and read back over ``lg``'s listener."""
    topic = new_topic(bootstrap, scenario, 2)
    conf = _login_conf(lg)
    values: list[bytes | None] = list(payloads(10, "sec"))
    reports = produce(lg.bootstrap, topic, values, conf=conf)
    check(len(reports) == 10, f"{len(reports)} acknowledged")
    got = read_all(lg.bootstrap, topic, 10, **conf)
    check(sorted(m.value() for m in got) == values, "records read back differ")
    return f"10 records over {lg.protocol}" + (f"/{lg.mechanism}" if lg.mechanism else "")


def _refused_login(lg: Login, topic: str, want: tuple[int, ...], timeout: float = 15.0) -> list[Any]:
    """Produce one record as ``lg``; the errors librdkafka reported (error_cb and delivery) until
    one with a code in ``want``, or it gives up, or ``timeout``."""
    errors: list[Any] = []
    conf = {"bootstrap.servers": lg.bootstrap, "message.timeout.ms": int(timeout * 1000) - 2000,
            "error_cb": errors.append, **_login_conf(lg)}
    p = Producer(conf)
    dr = Delivery()
    p.produce(topic, value=b"refused", on_delivery=dr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not dr.reports and not dr.errors:
        p.poll(0.2)
        if any(e.code() in want for e in errors):
            break
    check(not dr.reports, "the record was delivered")
    p.purge()
    p.flush(1)
    return errors + dr.errors


def _sec_refused(bootstrap: str, scenario: str) -> str:
    bad, good = sec_refusals(scenario)
    topic = new_topic(bootstrap, scenario)
    notes = []
    for label, lg in bad:
        # SASL: librdkafka names the broker's answer (_AUTHENTICATION); TLS: the handshake fails
        # (_SSL) or, when the broker's alert arrives after the handshake (TLS 1.3), the connection
        # breaks (_TRANSPORT) until every broker is down.
        want = ((KafkaError._AUTHENTICATION,) if lg.sasl
                else (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN))
        errors = _refused_login(lg, topic, want)
        hit = next((e for e in errors if e.code() in want), None)
        check(errors, f"{label}: no error reported")
        check(hit is not None, f"{label}: failed, but not as expected: {[str(e) for e in errors[:3]]}")
        assert hit is not None
        notes.append(f"{label}: {hit.name()} {hit.str()[:80]}")
    return _sec_roundtrip(bootstrap, scenario, good) + "; refused: " + "; ".join(notes)


def _security(scenario: str) -> Any:
    if scenario in SEC_ROUNDTRIPS:
        listener, mechanism = SEC_ROUNDTRIPS[scenario]
        return lambda bootstrap: _sec_roundtrip(bootstrap, scenario, login(listener, mechanism))
    return lambda bootstrap: _sec_refused(bootstrap, scenario)
