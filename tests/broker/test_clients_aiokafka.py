"""aiokafka against the in-process broker (each test runs its own asyncio loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from replica_wire import WireClient, batch, create_topic, produce_one
from wait_helpers import parked_fetches, wait_until_async

from kbroker.testing import BrokerThread


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(fn(), 20))


async def _drain(c: AIOKafkaConsumer, n: int, timeout: float = 5.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in (await c.getmany(timeout_ms=200)).values():
            out.extend(recs)
    return out


def _consumer(bootstrap: str, **kw: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kw)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_acks(kafka_broker: BrokerThread, acks: Any) -> None:
    create_topic(kafka_broker, "acks")

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks=acks)
        await p.start()
        try:
            metas = [await p.send_and_wait("acks", b"m%d" % i, partition=0) for i in range(10)]
        finally:
            await p.stop()
        if acks != 0:
            assert [m.offset for m in metas] == list(range(10))
        c = _consumer(kafka_broker.bootstrap)
        await c.start()
        try:
            tp = TopicPartition("acks", 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            assert [r.value for r in await _drain(c, 10)] == [b"m%d" % i for i in range(10)]
        finally:
            await c.stop()

    run(main)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(kafka_broker: BrokerThread, codec: str) -> None:
    create_topic(kafka_broker, "comp")
    sent = [(b"k%d" % i, (b"v%d-" % i) * 40, [("h", b"%d" % i)]) for i in range(50)]

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, compression_type=codec, linger_ms=5)
        await p.start()
        try:
            futs = [await p.send("comp", v, key=k, headers=h, partition=0) for k, v, h in sent]
            futs.append(await p.send("comp", None, key=b"tomb", partition=0))
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        c = _consumer(kafka_broker.bootstrap)
        await c.start()
        try:
            tp = TopicPartition("comp", 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            got = await _drain(c, 51)
        finally:
            await c.stop()
        assert [(r.key, r.value, list(r.headers)) for r in got[:50]] == [(k, v, h) for k, v, h in sent]
        assert (got[50].key, got[50].value) == (b"tomb", None)

    run(main)


def test_offsets_and_positions(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "pos")
    base = int(time.time() * 1000) - 100_000

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await p.start()
        try:
            for i in range(10):
                await p.send_and_wait("pos", b"%d" % i, partition=0, timestamp_ms=base + i * 1000)
        finally:
            await p.stop()
        c = _consumer(kafka_broker.bootstrap)
        await c.start()
        try:
            tp = TopicPartition("pos", 0)
            assert await c.beginning_offsets([tp]) == {tp: 0}
            assert await c.end_offsets([tp]) == {tp: 10}
            found = (await c.offsets_for_times({tp: base + 4500}))[tp]
            assert (found.offset, found.timestamp) == (5, base + 5000)
            c.assign([tp])
            c.seek(tp, found.offset)
            assert [r.value for r in await _drain(c, 5)] == [b"5", b"6", b"7", b"8", b"9"]
            await c.seek_to_end(tp)
            assert await c.position(tp) == 10
        finally:
            await c.stop()

    run(main)


def test_long_poll_wakes_on_append(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "lp")

    async def main() -> None:
        # The fetch may wait 30 s: the record arriving within 10 s means the append woke it.
        c = _consumer(kafka_broker.bootstrap, fetch_max_wait_ms=30_000)
        await c.start()
        try:
            tp = TopicPartition("lp", 0)
            c.assign([tp])
            await c.seek_to_end(tp)
            getter = asyncio.ensure_future(c.getone())
            await wait_until_async(lambda: parked_fetches(kafka_broker) > 0,
                                   what="the consumer's fetch parked on the broker")

            def produce() -> None:
                w = WireClient(kafka_broker.bootstrap)
                produce_one(w, "lp", 0, batch([b"now"]))
                w.close()

            await asyncio.to_thread(produce)
            rec = await asyncio.wait_for(getter, 10)
            assert rec.value == b"now"
        finally:
            await c.stop()

    run(main)


def test_message_size_limit(kafka_broker: BrokerThread) -> None:
    limit = 100_000
    create_topic(kafka_broker, "big", configs={"max.message.bytes": str(limit)})

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=4 * limit)
        await p.start()
        try:
            ok = await p.send_and_wait("big", b"a" * (limit - 200), partition=0)
            assert ok.offset == 0
            with pytest.raises(MessageSizeTooLargeError):
                await p.send_and_wait("big", b"b" * (limit + 10), partition=0)
        finally:
            await p.stop()

    run(main)


def test_log_append_time(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "lat", configs={"message.timestamp.type": "LogAppendTime"})

    async def main() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await p.start()
        before = int(time.time() * 1000)
        try:
            meta = await p.send_and_wait("lat", b"x", partition=0, timestamp_ms=1)
        finally:
            await p.stop()
        after = int(time.time() * 1000)
        assert meta.timestamp_type == 1 and before <= meta.timestamp <= after
        c = _consumer(kafka_broker.bootstrap)
        await c.start()
        try:
            tp = TopicPartition("lat", 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            [rec] = await _drain(c, 1)
            assert (rec.timestamp_type, rec.timestamp) == (1, meta.timestamp)
        finally:
            await c.stop()

    run(main)
