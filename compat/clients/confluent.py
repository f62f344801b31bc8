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
    NotSupported,
    check,
    group_name,
    large_value,
    payloads,
    topic_name,
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
