"""Broker-side bounds on fetches: response size caps and the cost of long polling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from replica_wire import (
    FETCH,
    WireClient,
    batch,
    create_topic,
    fetch,
    fetch_body,
    partitions_of,
    produce_one,
    records_of,
)
from wait_helpers import parked_fetches, wait_until

from kbroker.log import segment
from kbroker.records.batch import iter_headers
from kbroker.testing import BrokerThread

INT_MAX = 2**31 - 1
CAP = 4096


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker whose fetch responses are capped at CAP bytes (consumers) and 2*CAP (followers)."""
    overrides = {"fetch.max.bytes": str(CAP), "replica.fetch.response.max.bytes": str(2 * CAP)}
    with BrokerThread(tmp_path / "data", overrides) as b:
        yield b


@pytest.fixture
def capped_wire(capped: BrokerThread) -> Iterator[WireClient]:
    c = WireClient(capped.bootstrap)
    yield c
    c.close()


def _fill(wire: WireClient, topic: str, partition: int, count: int, size: int) -> int:
    """Append ``count`` one-record batches of ``size``-byte values; the bytes written."""
    total = 0
    for i in range(count):
        data = batch([bytes([65 + i % 26]) * size])
        assert produce_one(wire, topic, partition, data).error_code == 0
        total += len(data)
    return total


def _sizes(records: bytes | None) -> list[int]:
    return [h.size for _, h in iter_headers(records or b"")]


def test_fetch_max_bytes_caps_a_consumer_response(capped: BrokerThread, capped_wire: WireClient) -> None:
    create_topic(capped, "t", partitions=2)
    written = _fill(capped_wire, "t", 0, 20, 500) + _fill(capped_wire, "t", 1, 20, 500)
    assert written > 4 * CAP
    resp = fetch(capped_wire, {"t": {0: 0, 1: 0}}, max_bytes=INT_MAX, partition_max_bytes=INT_MAX)
    parts = partitions_of(resp)
    total = sum(len(parts[("t", i)].records or b"") for i in range(2))
    assert 0 < total <= CAP
    # Whole batches only, from the start of the first partition.
    assert [r.offset for r in records_of(parts[("t", 0)].records)] == list(range(len(_sizes(parts[("t", 0)].records))))
    assert not parts[("t", 1)].records  # the cap was used up by partition 0


def test_first_batch_is_returned_whole_above_the_cap(capped: BrokerThread, capped_wire: WireClient) -> None:
    create_topic(capped, "t", partitions=2)
    _fill(capped_wire, "t", 0, 2, 3 * CAP)
    _fill(capped_wire, "t", 1, 2, 100)
    resp = fetch(capped_wire, {"t": {0: 0, 1: 0}}, max_bytes=INT_MAX, partition_max_bytes=INT_MAX)
    parts = partitions_of(resp)
    sizes = _sizes(parts[("t", 0)].records)
    assert len(sizes) == 1 and sizes[0] > CAP  # one batch, so the consumer progresses
    assert not parts[("t", 1)].records


def test_partition_max_bytes_still_applies_under_the_cap(capped: BrokerThread, capped_wire: WireClient) -> None:
    create_topic(capped, "t", partitions=2)
    _fill(capped_wire, "t", 0, 10, 100)
    _fill(capped_wire, "t", 1, 10, 100)
    resp = fetch(capped_wire, {"t": {0: 0, 1: 0}}, max_bytes=INT_MAX, partition_max_bytes=1000)
    parts = partitions_of(resp)
    for i in range(2):
        sizes = _sizes(parts[("t", i)].records)
        assert sizes and sum(sizes) <= 1000


def test_follower_fetches_use_the_replica_cap(capped: BrokerThread, capped_wire: WireClient) -> None:
    create_topic(capped, "t")
    _fill(capped_wire, "t", 0, 40, 500)
    body = fetch_body({"t": {0: 0}}, max_bytes=INT_MAX, partition_max_bytes=INT_MAX)
    body["replica_id"] = 7
    follower = partitions_of(capped_wire.call(FETCH, 11, body))[("t", 0)]
    consumer = partitions_of(fetch(capped_wire, {"t": {0: 0}}, max_bytes=INT_MAX, partition_max_bytes=INT_MAX))[("t", 0)]
    assert CAP < len(follower.records) <= 2 * CAP
    assert 0 < len(consumer.records) <= CAP


def test_fetch_session_slots_bound_the_session_cache(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", {"max.incremental.fetch.session.cache.slots": "2"}) as b:
        wire = WireClient(b.bootstrap)
        try:
            create_topic(b, "t")
            ids = [fetch(wire, {"t": {0: 0}}, session_id=0, session_epoch=0).session_id for _ in range(4)]
            assert all(ids[:2]) and ids[2:] == [0, 0]  # full: later consumers fetch sessionless
            assert len(b.broker.replica_manager.fetch_sessions) == 2
        finally:
            wire.close()


def test_a_partition_named_twice_is_fetched_once(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")
    wire = WireClient(kafka_broker.bootstrap)
    try:
        _fill(wire, "t", 0, 3, 100)
        body = fetch_body({"t": {0: 0}})
        body["topics"].append({"topic": "t", "partitions": [
            {"partition": 0, "fetch_offset": 2, "partition_max_bytes": 1 << 20}]})
        resp = wire.call(FETCH, 11, body)
        listed = [(t.topic, p.partition_index) for t in resp.responses for p in t.partitions]
        assert listed == [("t", 0)]
        # The last parameters named win, as in Kafka's request map.
        assert [r.offset for r in records_of(resp.responses[0].partitions[0].records)] == [2]
    finally:
        wire.close()


def test_sessions_hold_a_bounded_number_of_partitions(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "t")
    kafka_broker.broker.replica_manager.fetch_sessions.max_partitions = 3
    wire = WireClient(kafka_broker.bootstrap)
    try:
        # Unknown partitions still cost a session slot each; past the budget: no session.
        small = fetch(wire, {"t": {0: 0}, "nope": {0: 0, 1: 0}}, session_id=0, session_epoch=0)
        big = fetch(wire, {"t": {0: 0}, "nope": {i: 0 for i in range(10)}}, session_id=0, session_epoch=0)
        assert small.session_id != 0 and big.session_id == 0
        assert len(partitions_of(big)) == 11
    finally:
        wire.close()


# -- long polling reads once -------------------------------------------------------------------------

def test_long_poll_reads_the_log_once(kafka_broker: BrokerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long poll satisfied by many small appends reads about the response's bytes, not
    everything available again at every wake-up."""
    create_topic(kafka_broker, "t")
    wire = WireClient(kafka_broker.bootstrap)
    one = batch([b"v" * 1000])
    appends = 200
    read_bytes = [0]
    real_pread = segment._pread

    def counting_pread(fd: int, n: int, pos: int) -> bytes:
        data = real_pread(fd, n, pos)
        read_bytes[0] += len(data)
        return data

    monkeypatch.setattr(segment, "_pread", counting_pread)
    out: dict[str, Any] = {}

    def poll() -> None:
        c = WireClient(kafka_broker.bootstrap)
        try:
            out["resp"] = fetch(c, {"t": {0: 0}}, max_wait_ms=30_000, min_bytes=len(one) * appends,
                                partition_max_bytes=INT_MAX)
        finally:
            c.close()

    t = threading.Thread(target=poll)
    t.start()
    try:
        # The fetch is parked on the partition's notifier before the first append.
        wait_until(lambda: parked_fetches(kafka_broker) == 1, 10, "the fetch parked")
        for _ in range(appends):
            assert produce_one(wire, "t", 0, one).error_code == 0
    finally:
        t.join(30)
        wire.close()
    records = partitions_of(out["resp"])[("t", 0)].records
    assert len(records_of(records)) == appends
    assert read_bytes[0] < 3 * len(records), f"read {read_bytes[0]} bytes for a {len(records)}-byte response"


def test_long_poll_reads_across_segment_rolls(kafka_broker: BrokerThread) -> None:
    """Bytes available are measured within a segment; appends that roll segments still
    bring a waiting fetch its records, whole and in order."""
    create_topic(kafka_broker, "t", configs={"segment.bytes": "3000"})
    wire = WireClient(kafka_broker.bootstrap)
    one = batch([b"r" * 1000])
    _fill(wire, "t", 0, 2, 1000)
    out: dict[str, Any] = {}

    def poll() -> None:
        c = WireClient(kafka_broker.bootstrap)
        try:
            # From offset 1 (inside the existing data), wanting more than is there.
            out["resp"] = fetch(c, {"t": {0: 1}}, max_wait_ms=30_000, min_bytes=len(one) * 6,
                                partition_max_bytes=INT_MAX)
        finally:
            c.close()

    t = threading.Thread(target=poll)
    t.start()
    try:
        wait_until(lambda: parked_fetches(kafka_broker) == 1, 10, "the fetch parked")
        for _ in range(8):
            assert produce_one(wire, "t", 0, one).error_code == 0
    finally:
        t.join(30)
        wire.close()
    assert not t.is_alive()
    offsets = [r.offset for r in records_of(partitions_of(out["resp"])[("t", 0)].records)]
    assert offsets and offsets == list(range(1, 1 + len(offsets)))
