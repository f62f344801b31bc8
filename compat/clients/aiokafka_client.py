"""The scenarios with aiokafka (``s_<scenario>(bootstrap)`` wrap coroutines)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

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
    sec_refusals,
    topic_name,
    unsecured_jws,
)

CLIENT = "aiokafka"


def sync(fn: Callable[[str], Awaitable[Any]]) -> Callable[[str], Any]:
    def run(bootstrap: str) -> Any:
        return asyncio.run(fn(bootstrap))
    run.__name__ = fn.__name__
    return run


async def admin(bootstrap: str) -> AIOKafkaAdminClient:
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await a.start()
    return a


async def new_topic(bootstrap: str, scenario: str, partitions: int = 1,
                    configs: dict[str, str] | None = None) -> str:
    name = topic_name(CLIENT, scenario)
    a = await admin(bootstrap)
    try:
        resp = await a.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        for t in getattr(resp, "topic_errors", []) or getattr(resp, "topics", []):
            code = t[1]
            check(code == 0, f"CreateTopics error {code} for {t[0]}")
    finally:
        await a.close()
    return name


async def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes] | None = None,
                  partition: int | None = None, headers: Any = None,
                  timestamps: list[int] | None = None, **kw: Any) -> list[Any]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15000, **kw)
    await p.start()
    try:
        futs = [await p.send(topic, value=v, key=keys[i] if keys else None, partition=partition,
                             headers=headers, timestamp_ms=timestamps[i] if timestamps else None)
                for i, v in enumerate(values)]
        return [await asyncio.wait_for(f, 30) for f in futs]
    finally:
        await p.stop()


def consumer(bootstrap: str, *topics: str, **kw: Any) -> AIOKafkaConsumer:
    kw.setdefault("auto_offset_reset", "earliest")
    kw.setdefault("enable_auto_commit", False)
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, request_timeout_ms=15000, **kw)


async def poll_n(c: AIOKafkaConsumer, n: int, timeout: float = 20.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in (await c.getmany(timeout_ms=500, max_records=n - len(out))).values():
            out.extend(recs)
    return out


async def read_all(bootstrap: str, topic: str, n: int, partitions: list[int] | None = None,
                   timeout: float = 20.0, **kw: Any) -> list[Any]:
    c = consumer(bootstrap, **kw)
    await c.start()
    try:
        if partitions is None:
            parts = await c.partitions_for_topic(topic) if asyncio.iscoroutinefunction(
                c.partitions_for_topic) else c.partitions_for_topic(topic)
            if not parts:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(topic)
            partitions = sorted(parts or [0])
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out = await poll_n(c, n, timeout)
        check(len(out) >= n, f"consumed {len(out)} of {n} records")
        return out
    finally:
        await c.stop()


# ---------------------------------------------------------------- scenarios

@sync
async def s_metadata(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "metadata", 3)
    c = consumer(bootstrap)
    await c.start()
    try:
        await c._client.force_metadata_update()
        parts = c.partitions_for_topic(topic)
        check(parts == {0, 1, 2}, f"partitions {parts}")
        host, port = bootstrap.rsplit(":", 1)
        brokers = c._client.cluster.brokers()
        check(any(b.host == host and b.port == int(port) for b in brokers), f"brokers {brokers}")
        for p in parts:
            check(c._client.cluster.leader_for_partition(TopicPartition(topic, p)) is not None,
                  f"partition {p} has no leader")
    finally:
        await c.stop()


async def _acks(bootstrap: str, acks: Any, scenario: str) -> None:
    topic = await new_topic(bootstrap, scenario)
    vals = payloads(20)
    await produce(bootstrap, topic, list(vals), acks=acks)
    got = await read_all(bootstrap, topic, 20)
    check([r.value for r in got] == vals, "records differ from what was produced")


@sync
async def s_produce_acks0(bootstrap: str) -> None:
    await _acks(bootstrap, 0, "produce_acks0")


@sync
async def s_produce_acks1(bootstrap: str) -> None:
    await _acks(bootstrap, 1, "produce_acks1")


@sync
async def s_produce_acksall(bootstrap: str) -> None:
    await _acks(bootstrap, "all", "produce_acksall")


@sync
async def s_keys_partitioner(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "keys", 6)
    keys = [f"key-{i % 12}".encode() for i in range(60)]
    vals = payloads(60)
    md = await produce(bootstrap, topic, list(vals), keys=keys)
    where: dict[bytes, set[int]] = {}
    for k, m in zip(keys, md, strict=True):
        where.setdefault(k, set()).add(m.partition)
    check(all(len(s) == 1 for s in where.values()), "a key went to several partitions")
    check(len({p for s in where.values() for p in s}) > 1, "all keys in one partition")
    got = await read_all(bootstrap, topic, 60)
    sent = {(k, v, m.partition) for k, v, m in zip(keys, vals, md, strict=True)}
    check({(r.key, r.value, r.partition) for r in got} == sent, "consumed key/partition differs")


HEADERS = [("h1", b"v1"), ("h2", b""), ("h1", b"dup")]


@sync
async def s_headers(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "headers")
    await produce(bootstrap, topic, [b"with-headers"], headers=HEADERS)
    got = await read_all(bootstrap, topic, 1)
    check(list(got[0].headers) == HEADERS, f"headers {got[0].headers}")


@sync
async def s_null_values(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "null")
    await produce(bootstrap, topic, [None, b""], keys=[b"k1", b"k2"])
    got = await read_all(bootstrap, topic, 2)
    check(got[0].value is None and got[0].key == b"k1", f"tombstone read as {got[0].value!r}")
    check(got[1].value == b"" and got[1].key == b"k2", f"empty value read as {got[1].value!r}")


def _compression(bootstrap: str, codec: str) -> None:
    asyncio.run(_compression_async(bootstrap, codec))


async def _compression_async(bootstrap: str, codec: str) -> None:
    topic = await new_topic(bootstrap, "compression-" + codec)
    vals = [v * 20 for v in payloads(50)]
    await produce(bootstrap, topic, list(vals), compression_type=codec, linger_ms=50)
    got = await read_all(bootstrap, topic, 50)
    check([r.value for r in got] == vals, "records differ")






@sync
async def s_consume_assign(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "assign", 3)
    vals = payloads(10)
    await produce(bootstrap, topic, list(vals), partition=1)
    c = consumer(bootstrap)
    await c.start()
    try:
        tp = TopicPartition(topic, 1)
        c.assign([tp])
        c.seek(tp, 5)
        out = await poll_n(c, 5)
        check([(r.offset, r.value) for r in out] == list(zip(range(5, 10), vals[5:], strict=True)),
              f"got offsets {[r.offset for r in out]}")
    finally:
        await c.stop()


@sync
async def s_consume_timestamp(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "timestamp")
    t0 = int(time.time() * 1000) - 60_000
    await produce(bootstrap, topic, [f"t{i}".encode() for i in range(5)],
                  timestamps=[t0 + i * 1000 for i in range(5)])
    c = consumer(bootstrap)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        found = (await c.offsets_for_times({tp: t0 + 1500}))[tp]
        check(found is not None and found.offset == 2, f"offsets_for_times gave {found}")
        c.assign([tp])
        c.seek(tp, found.offset)
        out = await poll_n(c, 1)
        check(out and out[0].value == b"t2" and out[0].timestamp == t0 + 2000, "wrong first record")
    finally:
        await c.stop()


async def _group(bootstrap: str, scenario: str, assignor: Any) -> str:
    topic = await new_topic(bootstrap, scenario, 4)
    vals = payloads(40)
    await produce(bootstrap, topic, list(vals), keys=[str(i).encode() for i in range(40)])
    group = group_name(CLIENT, scenario)
    cs = [consumer(bootstrap, topic, group_id=group, partition_assignment_strategy=[assignor],
                   session_timeout_ms=10000, heartbeat_interval_ms=500) for _ in range(2)]
    seen: set[bytes] = set()
    try:
        for c in cs:
            await c.start()
        deadline = time.monotonic() + 45
        while True:
            for c in cs:
                for recs in (await c.getmany(timeout_ms=100)).values():
                    seen.update(r.value for r in recs)
            a = [{tp.partition for tp in c.assignment()} for c in cs]
            if a[0] and a[1] and not a[0] & a[1] and a[0] | a[1] == {0, 1, 2, 3} and len(seen) == 40:
                return f"assignment {sorted(a[0])} / {sorted(a[1])}"
            check(time.monotonic() < deadline,
                  f"timed out waiting for a balanced 2-member group (assigned {a}, consumed {len(seen)}/40)")
    finally:
        for c in cs:
            await c.stop()


@sync
async def s_group_range(bootstrap: str) -> str:
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    return await _group(bootstrap, "group_range", RangePartitionAssignor)


@sync
async def s_group_roundrobin(bootstrap: str) -> str:
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    return await _group(bootstrap, "group_roundrobin", RoundRobinPartitionAssignor)


@sync
async def s_group_sticky(bootstrap: str) -> str:
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    return await _group(bootstrap, "group_sticky", StickyPartitionAssignor)


def s_group_cooperative_sticky(bootstrap: str) -> None:
    raise NotSupported("aiokafka has no cooperative (incremental) rebalancing")


@sync
async def s_commit_resume(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "commit")
    vals = payloads(10)
    await produce(bootstrap, topic, list(vals))
    group = group_name(CLIENT, "commit")
    tp = TopicPartition(topic, 0)
    c = consumer(bootstrap, topic, group_id=group)
    await c.start()
    try:
        got = await poll_n(c, 4, 30)
        check(len(got) == 4, f"first consumer read {len(got)} records")
        await c.commit({tp: 4})
        committed = await c.committed(tp)
        check(committed == 4, f"committed() = {committed}")
    finally:
        await c.stop()
    c = consumer(bootstrap, topic, group_id=group)
    await c.start()
    try:
        got = await poll_n(c, 1, 30)
        check(got and got[0].offset == 4 and got[0].value == vals[4],
              f"resumed at offset {got[0].offset if got else None}")
    finally:
        await c.stop()


@sync
async def s_idempotent_producer(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "idempotent")
    vals = payloads(10)
    await produce(bootstrap, topic, list(vals), enable_idempotence=True)
    got = await read_all(bootstrap, topic, 10)
    check([r.value for r in got] == vals, "records differ")


@sync
async def s_transactions(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "txn")
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic + "-tx", request_timeout_ms=15000)
    await p.start()
    try:
        async with p.transaction():
            for v in (b"c1", b"c2", b"c3"):
                await p.send(topic, v)
        await p.begin_transaction()
        for v in (b"a1", b"a2"):
            await p.send_and_wait(topic, v)
        await p.abort_transaction()
        async with p.transaction():
            await p.send(topic, b"c4")
    finally:
        await p.stop()
    got = await read_all(bootstrap, topic, 4, isolation_level="read_committed")
    check([r.value for r in got] == [b"c1", b"c2", b"c3", b"c4"], f"read {[r.value for r in got]}")


async def txn_producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    """A started transactional producer (start() initialises its producer id)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                         transaction_timeout_ms=30000, request_timeout_ms=15000)
    await p.start()
    return p


async def end_offsets(bootstrap: str, tps: list[TopicPartition], isolation_level: str) -> dict[int, int]:
    """ListOffsets(latest) per partition: the LSO for read_committed, the high watermark otherwise."""
    c = consumer(bootstrap, isolation_level=isolation_level)
    await c.start()
    try:
        return dict(sorted((tp.partition, off) for tp, off in (await c.end_offsets(tps)).items()))
    finally:
        await c.stop()


async def drain(bootstrap: str, tps: list[TopicPartition], isolation_level: str, settle: float = 0.0,
                timeout: float = 20.0) -> tuple[list[Any], dict[int, int]]:
    """Every record of ``tps`` from the start until the consumer's position reaches the end offset
    of its isolation level (a trailing control batch must be skipped too), then ``settle`` seconds
    more in which nothing else may arrive. Returns the records and the end offsets."""
    c = consumer(bootstrap, isolation_level=isolation_level)
    await c.start()
    try:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout

        async def behind() -> bool:
            return any([await c.position(tp) < ends[tp] for tp in tps])

        while await behind():
            check(time.monotonic() < deadline,
                  f"positions {[await c.position(tp) for tp in tps]} never reached the end offsets "
                  f"{[ends[tp] for tp in tps]} ({isolation_level}, {len(out)} records read)")
            for recs in (await c.getmany(timeout_ms=300)).values():
                out.extend(recs)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            for recs in (await c.getmany(timeout_ms=100)).values():
                out.extend(recs)
        return out, dict(sorted((tp.partition, off) for tp, off in ends.items()))
    finally:
        await c.stop()


def by_partition(recs: list[Any]) -> dict[tuple[str, int], list[bytes]]:
    out: dict[tuple[str, int], list[bytes]] = {}
    for r in recs:
        out.setdefault((r.topic, r.partition), []).append(r.value)
    return out


@sync
async def s_txn_abort_multi(bootstrap: str) -> None:
    a = await new_topic(bootstrap, "txn_abort_multi-a", 3)
    b = await new_topic(bootstrap, "txn_abort_multi-b", 2)
    tps = [TopicPartition(a, q) for q in range(3)] + [TopicPartition(b, q) for q in range(2)]
    p = await txn_producer(bootstrap, a + "-tx")
    try:
        await p.begin_transaction()
        futs = [await p.send(tp.topic, f"a-{tp.partition}-{i}".encode(), partition=tp.partition)
                for tp in tps for i in range(3)]
        await asyncio.gather(*futs)
        await p.abort_transaction()
        async with p.transaction():
            for tp in tps:
                for i in range(2):
                    await p.send(tp.topic, f"c-{tp.partition}-{i}".encode(), partition=tp.partition)
    finally:
        await p.stop()
    got, _ = await drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(tp.topic, tp.partition): [f"c-{tp.partition}-{i}".encode() for i in range(2)] for tp in tps}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}")


@sync
async def s_txn_read_committed(bootstrap: str) -> str:
    topic = await new_topic(bootstrap, "txn_read_committed", 2)
    tps = [TopicPartition(topic, q) for q in range(2)]
    p1 = await txn_producer(bootstrap, topic + "-tx1")
    p2 = await txn_producer(bootstrap, topic + "-tx2")

    async def send(p: AIOKafkaProducer, tag: str) -> dict[int, int]:
        # One record per partition, acknowledged before the next step: the log order is known.
        return {tp.partition: (await p.send_and_wait(topic, f"{tag}-{tp.partition}".encode(),
                                                     partition=tp.partition)).offset for tp in tps}

    async def ends(level: str) -> dict[int, int]:
        return await end_offsets(bootstrap, tps, level)

    try:
        await p1.begin_transaction()
        first1 = await send(p1, "p1-t1-0")
        await p2.begin_transaction()
        first2 = await send(p2, "p2-t1-0")
        await send(p1, "p1-t1-1")
        last = await send(p2, "p2-t1-1")
        hw = {q: o + 1 for q, o in last.items()}
        lso = await ends("read_committed")
        check(lso == first1, f"LSO {lso} with both open, want {first1}")
        got_hw = await ends("read_uncommitted")
        check(got_hw == hw, f"high watermark {got_hw}, want {hw}")
        await p1.commit_transaction()
        lso_open = await ends("read_committed")
        check(lso_open == first2, f"LSO {lso_open} after the first commit, want {first2}")
        got_hw = await ends("read_uncommitted")
        check(all(v > hw[q] for q, v in got_hw.items()), "high watermark did not cover the marker")
        got, _ = await drain(bootstrap, tps, "read_committed", settle=0.5)
        want = {(topic, q): [f"p1-t1-0-{q}".encode()] for q in range(2)}
        check(by_partition(got) == want, f"below the LSO read {by_partition(got)}, want {want}")
        await p2.abort_transaction()
        await p2.begin_transaction()
        await send(p2, "p2-t2-0")
        await p1.begin_transaction()
        await send(p1, "p1-t2-0")
        await p2.commit_transaction()
        await p1.abort_transaction()
    finally:
        await p1.stop()
        await p2.stop()
    got, end = await drain(bootstrap, tps, "read_committed", settle=0.5)
    want = {(topic, q): [f"{t}-{q}".encode() for t in ("p1-t1-0", "p1-t1-1", "p2-t2-0")] for q in range(2)}
    check(by_partition(got) == want, f"read_committed read {by_partition(got)}, want {want}")
    hw = await ends("read_uncommitted")
    check(end == hw, f"final LSO {end} != high watermark {hw}")
    return f"LSO {lso_open} while a transaction was open, {hw} at the end"


@sync
async def s_txn_read_uncommitted(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "txn_read_uncommitted", 1)
    tp = TopicPartition(topic, 0)
    p = await txn_producer(bootstrap, topic + "-tx")
    sent: list[tuple[int, bytes]] = []

    async def send(v: bytes) -> None:
        sent.append(((await p.send_and_wait(topic, v, partition=0)).offset, v))

    try:
        await p.begin_transaction()
        await send(b"u-c1")
        await send(b"u-c2")
        await p.commit_transaction()
        await p.begin_transaction()
        await send(b"u-a1")
        await send(b"u-a2")
        await p.abort_transaction()
        await p.begin_transaction()
        await send(b"u-o1")
        got, end = await drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
        check([(r.offset, r.value) for r in got] == sent, f"read {[(r.offset, r.value) for r in got]}, sent {sent}")
        check(end[0] == sent[-1][0] + 1, f"high watermark {end[0]} with a transaction open, want {sent[-1][0] + 1}")
        await p.commit_transaction()
    finally:
        await p.stop()
    got, end = await drain(bootstrap, [tp], "read_uncommitted", settle=0.5)
    check([(r.offset, r.value) for r in got] == sent, f"read {[(r.offset, r.value) for r in got]}, sent {sent}")
    check(end[0] == sent[-1][0] + 2, f"high watermark {end[0]} after the commit, want {sent[-1][0] + 2}")


@sync
async def s_txn_send_offsets(bootstrap: str) -> None:
    src = await new_topic(bootstrap, "txn_send_offsets-in", 1)
    dst = await new_topic(bootstrap, "txn_send_offsets-out", 1)
    vals = payloads(10, "in")
    await produce(bootstrap, src, list(vals))
    group = group_name(CLIENT, "txn_send_offsets")
    tp = TopicPartition(src, 0)

    async def committed() -> int | None:
        # A consumer that is not a member, read_uncommitted: a pending transactional offset is
        # not visible (the last committed one is).
        q = consumer(bootstrap, group_id=group)
        await q.start()
        try:
            return await q.committed(tp)
        finally:
            await q.stop()

    # aiokafka's send_offsets_to_transaction takes a group id (no member/generation checks).
    recs = await read_all(bootstrap, src, 10, isolation_level="read_committed")
    check([r.value for r in recs] == vals, f"consumed {len(recs)} of 10 input records")
    p = await txn_producer(bootstrap, dst + "-tx")
    try:
        async def txn(lo: int, hi: int, commit: bool) -> int | None:
            await p.begin_transaction()
            futs = [await p.send(dst, b"out-" + r.value, partition=0) for r in recs[lo:hi]]
            await p.send_offsets_to_transaction({tp: hi}, group)
            await asyncio.gather(*futs)
            before = await committed()
            if commit:
                await p.commit_transaction()
            else:
                await p.abort_transaction()
            return before

        before = await txn(0, 4, True)
        check(before is None, f"offset {before} visible before the first transaction committed")
        now = await committed()
        check(now == 4, f"committed offset {now} after the commit, want 4")
        before = await txn(4, 7, False)
        check(before == 4, f"committed offset {before} during the second transaction, want 4")
        now = await committed()
        check(now == 4, f"committed offset {now} after the abort, want 4")
        before = await txn(4, 10, True)
        check(before == 4, f"committed offset {before} during the third transaction, want 4")
        now = await committed()
        check(now == 10, f"committed offset {now} after the commit, want 10")
    finally:
        await p.stop()
    got, _ = await drain(bootstrap, [TopicPartition(dst, 0)], "read_committed", settle=0.5)
    check([r.value for r in got] == [b"out-" + v for v in vals], f"output {[r.value for r in got]}")


@sync
async def s_admin_topics(bootstrap: str) -> None:
    a = await admin(bootstrap)
    try:
        name = topic_name(CLIENT, "admin-topics")
        await a.create_topics([NewTopic(name, 2, 1)])
        check(name in await a.list_topics(), "created topic not listed")
        await a.delete_topics([name])
        deadline = time.monotonic() + 10
        while name in await a.list_topics():
            check(time.monotonic() < deadline, "deleted topic still listed")
            await asyncio.sleep(0.2)
    finally:
        await a.close()


@sync
async def s_admin_partitions(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "admin-partitions", 1)
    a = await admin(bootstrap)
    try:
        await a.create_partitions({topic: NewPartitions(3)})
        # Kafka answers once the controller committed the change; the broker answering the
        # describe may learn of it a moment later, so the new partitions may take a moment.
        deadline = time.monotonic() + 10
        while len((desc := await a.describe_topics([topic]))[0]["partitions"]) != 3:
            check(time.monotonic() < deadline, f"{len(desc[0]['partitions'])} partitions after create")
            await asyncio.sleep(0.2)
    finally:
        await a.close()
    await produce(bootstrap, topic, [b"p2"], partition=2)


async def _config(a: AIOKafkaAdminClient, res: ConfigResource, key: str) -> str:
    resp = await a.describe_configs([res])
    for r in resp:
        for resource in r.resources:
            check(resource[0] == 0, f"DescribeConfigs error {resource[0]}: {resource[1]}")
            for entry in resource[4]:
                if entry[0] == key:
                    return str(entry[1])
    raise AssertionError(f"{key} not in describe_configs response")


@sync
async def s_admin_configs(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "admin-configs", configs={"retention.ms": "3600000"})
    a = await admin(bootstrap)
    try:
        res = ConfigResource(ConfigResourceType.TOPIC, topic)
        got = await _config(a, res, "retention.ms")
        check(got == "3600000", f"retention.ms = {got}")
        resp = await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "12345"})])
        for r in resp:
            for resource in r.resources:
                check(resource[0] == 0, f"AlterConfigs error {resource[0]}: {resource[1]}")
        got = await _config(a, res, "retention.ms")
        check(got == "12345", f"after alter retention.ms = {got}")
        await _config(a, ConfigResource(ConfigResourceType.BROKER, "1"), "num.partitions")
    finally:
        await a.close()


@sync
async def s_admin_groups(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "admin-groups")
    await produce(bootstrap, topic, [b"x"])
    group = group_name(CLIENT, "admin-groups")
    c = consumer(bootstrap, topic, group_id=group)
    await c.start()
    try:
        check(await poll_n(c, 1, 20), "no record in the group consumer")
        await c.commit()
    finally:
        await c.stop()
    a = await admin(bootstrap)
    try:
        ids = [g[0] for g in await a.list_consumer_groups()]
        check(group in ids, "group not listed")
        desc = await a.describe_consumer_groups([group])
        groups = desc[0].groups
        check(groups and groups[0][2] == "Empty", f"described state {groups[0][2] if groups else None}")
        if not hasattr(a, "delete_consumer_groups"):
            return "list/describe pass; aiokafka's admin client has no delete-groups call"
        await a.delete_consumer_groups([group])
    finally:
        await a.close()


@sync
async def s_large_messages(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "large")
    big = large_value(LARGE_SIZE)
    await produce(bootstrap, topic, [big], max_request_size=4 * 1024 * 1024)
    got = await read_all(bootstrap, topic, 1, fetch_max_bytes=4 * 1024 * 1024,
                         max_partition_fetch_bytes=4 * 1024 * 1024)
    check(got[0].value == big, "large value differs")
    try:
        await produce(bootstrap, topic, [large_value(OVERSIZE)], max_request_size=4 * 1024 * 1024)
    except KafkaError as e:
        check("TooLarge" in type(e).__name__, f"rejected with {e!r}")
    else:
        raise AssertionError("broker accepted a record over max.message.bytes")


@sync
async def s_many_partitions(bootstrap: str) -> None:
    topic = await new_topic(bootstrap, "many", 64)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await p.start()
    try:
        futs = [await p.send(topic, value=f"p{i}".encode(), partition=i) for i in range(64)]
        for f in futs:
            await asyncio.wait_for(f, 30)
    finally:
        await p.stop()
    got = await read_all(bootstrap, topic, 64, partitions=list(range(64)), timeout=30)
    check(sorted((r.partition, r.value) for r in got) == [(i, f"p{i}".encode()) for i in range(64)],
          "records differ")


# ---------------------------------------------------------------- security

def _login_kw(lg: Login) -> dict[str, Any]:
    """aiokafka's settings for a Login."""
    from aiokafka.helpers import create_ssl_context
    kw: dict[str, Any] = {"security_protocol": lg.protocol}
    if lg.mechanism == "OAUTHBEARER":
        from aiokafka.abc import AbstractTokenProvider

        class Token(AbstractTokenProvider):
            async def token(self) -> str:
                return unsecured_jws(lg.user or "", lg.token_lifetime)

        kw.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Token())
    elif lg.sasl:
        kw.update(sasl_mechanism=lg.mechanism, sasl_plain_username=lg.user, sasl_plain_password=lg.password)
    if lg.tls:
        kw["ssl_context"] = create_ssl_context(cafile=lg.ca, certfile=lg.cert, keyfile=lg.key)
    return kw


async def _sec_roundtrip(bootstrap: str, scenario: str, lg: Login) -> str:
    """Create a topic over PLAINTEXT; produce and read back over ``lg``'s listener."""
    topic = await new_topic(bootstrap, scenario, 2)
    values: list[bytes | None] = list(payloads(10, "sec"))
    metas = await produce(lg.bootstrap, topic, values, **_login_kw(lg))
    check(len(metas) == 10, f"{len(metas)} acknowledged")
    got = await read_all(lg.bootstrap, topic, 10, **_login_kw(lg))
    check(sorted(r.value for r in got) == values, "records read back differ")
    return f"10 records over {lg.protocol}" + (f"/{lg.mechanism}" if lg.mechanism else "")


async def _refused_login(lg: Login, topic: str) -> tuple[BaseException | None, LogCapture]:
    """Start a producer as ``lg`` and send one record; the error aiokafka raised (None if it worked)
    and what it logged meanwhile."""
    capture = LogCapture()
    logging.getLogger("aiokafka").addHandler(capture)
    p = AIOKafkaProducer(bootstrap_servers=lg.bootstrap, request_timeout_ms=8000, **_login_kw(lg))
    try:
        await asyncio.wait_for(p.start(), 20)
        await asyncio.wait_for(p.send_and_wait(topic, b"refused"), 20)
    except Exception as e:  # the error the client reports is what the check is about
        return e, capture
    finally:
        await p.stop()
        logging.getLogger("aiokafka").removeHandler(capture)
    return None, capture


async def _end_offset(bootstrap: str, topic: str) -> int:
    """Partition 0's end offset, read over PLAINTEXT."""
    c = consumer(bootstrap)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await c.end_offsets([tp]))[tp])
    finally:
        await c.stop()


async def _sec_refused(bootstrap: str, scenario: str) -> str:
    from aiokafka.errors import KafkaConnectionError
    bad, good = sec_refusals(scenario)
    topic = await new_topic(bootstrap, scenario)
    notes = []
    for label, lg in bad:
        outcome, capture = await _refused_login(lg, topic)
        if lg.mechanism == "OAUTHBEARER":
            # aiokafka takes the broker's invalid_token challenge for a completed login and sends
            # no answer to it, so it never names the refusal: what shows is that nothing gets in.
            check(outcome is not None, f"{label}: the broker accepted it")
            got = await _end_offset(bootstrap, topic)
            check(got == 0, f"{label}: {got} records written")
            notes.append(f"{label}: nothing written; aiokafka reports {type(outcome).__name__}")
            continue
        check(isinstance(outcome, KafkaConnectionError), f"{label}: not refused at bootstrap: {outcome!r}")
        # aiokafka logs the reason and raises "Unable to bootstrap": SASL must be the broker's
        # SaslAuthenticate error; TLS the handshake (or, TLS 1.3, the first read after it) failing.
        reason = (capture.find("SaslAuthenticationFailed", "Authentication failed") if lg.sasl
                  else capture.find("SSL", "Connection reset", "Unable connect"))
        check(reason is not None, f"{label}: refused, but the log does not say why: {capture.lines[-3:]}")
        assert reason is not None
        notes.append(f"{label}: {reason[reason.find(': ') + 2:][:90]}")
    return await _sec_roundtrip(bootstrap, scenario, good) + "; refused: " + "; ".join(notes)


def _security(scenario: str) -> Any:
    if scenario in SEC_ROUNDTRIPS:
        listener, mechanism = SEC_ROUNDTRIPS[scenario]
        return lambda bootstrap: asyncio.run(_sec_roundtrip(bootstrap, scenario, login(listener, mechanism)))
    return lambda bootstrap: asyncio.run(_sec_refused(bootstrap, scenario))
