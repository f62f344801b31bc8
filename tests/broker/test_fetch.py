"""Fetch over the raw wire: limits, errors, long polling and KIP-227 sessions."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from replica_wire import (
    WireClient,
    batch,
    create_topic,
    fetch,
    partitions_of,
    produce_one,
    records_of,
)
from wait_helpers import parked_fetches, wait_until

from kbroker.records.batch import iter_headers
from kbroker.testing import BrokerThread


def _fill(wire: WireClient, topic: str, partition: int, batches: list[list[bytes]]) -> None:
    for values in batches:
        assert produce_one(wire, topic, partition, batch(values)).error_code == 0


@pytest.mark.parametrize("version", [4, 5, 7, 11, 12, 13, 15, 16, 17, 18])
def test_every_version_reads_records(kafka_broker: BrokerThread, wire: WireClient, version: int) -> None:
    topic_id = create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"a", b"b"], [b"c"]])
    key = topic_id if version >= 13 else "t"
    p = partitions_of(fetch(wire, {key: {0: 0}}, version=version))[(key, 0)]
    assert p.error_code == 0
    assert p.high_watermark == 3
    assert p.last_stable_offset == 3
    if version >= 5:
        assert p.log_start_offset == 0
    assert [r.value for r in records_of(p.records)] == [b"a", b"b", b"c"]


def test_offset_inside_a_batch_returns_the_whole_batch(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"0", b"1", b"2", b"3"], [b"4"]])
    p = partitions_of(fetch(wire, {"t": {0: 2}}))[("t", 0)]
    assert [r.offset for r in records_of(p.records)] == [0, 1, 2, 3, 4]


def test_first_batch_is_whole_even_when_larger_than_limits(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"x" * 5000], [b"y" * 5000]])
    p = partitions_of(fetch(wire, {"t": {0: 0}}, partition_max_bytes=100, max_bytes=100))[("t", 0)]
    headers = [h for _, h in iter_headers(p.records)]
    assert [h.base_offset for h in headers] == [0]
    assert len(p.records) == headers[0].size


def test_max_bytes_is_shared_across_partitions(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", partitions=3)
    for part in range(3):
        _fill(wire, "t", part, [[b"z" * 3000]])
    resp = fetch(wire, {"t": {0: 0, 1: 0, 2: 0}}, max_bytes=4000)
    parts = partitions_of(resp)
    sizes = [len(parts[("t", i)].records) for i in range(3)]
    assert sizes[0] > 3000 and sizes[1] == 0 and sizes[2] == 0  # the rest would overshoot 4000
    # Every partition is still reported with its watermark.
    assert [parts[("t", i)].high_watermark for i in range(3)] == [1, 1, 1]


def test_partition_max_bytes_cuts_at_batch_boundaries(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"a" * 100]] * 10)
    one = len(batch([b"a" * 100]))
    p = partitions_of(fetch(wire, {"t": {0: 0}}, partition_max_bytes=one * 3 + 10))[("t", 0)]
    assert len(records_of(p.records)) == 3


def test_offset_out_of_range(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"a"], [b"b"], [b"c"]])
    p = partitions_of(fetch(wire, {"t": {0: 10}}))[("t", 0)]
    assert p.error_code == 1
    assert p.records in (b"", None)
    at_end = partitions_of(fetch(wire, {"t": {0: 3}}))[("t", 0)]
    assert (at_end.error_code, at_end.high_watermark, len(at_end.records or b"")) == (0, 3, 0)
    plog = kafka_broker.broker.log_manager.get_log("t", 0)
    kafka_broker.call(plog.delete_records_before, 2)
    before = partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)]
    assert before.error_code == 1
    after = partitions_of(fetch(wire, {"t": {0: 2}}))[("t", 0)]
    assert after.log_start_offset == 2 and after.error_code == 0


def test_unknown_partitions_next_to_known_ones(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"a"]])
    parts = partitions_of(fetch(wire, {"t": {0: 0, 5: 0}, "ghost": {0: 0}}))
    assert parts[("t", 0)].error_code == 0
    assert parts[("t", 5)].error_code == 3
    assert parts[("ghost", 0)].error_code == 3
    # Nothing to wait for: answered at once, not after 30 s (the wire client's 10 s socket
    # timeout would fail the call first).
    alone = partitions_of(fetch(wire, {"ghost": {0: 0}}, max_wait_ms=30_000))
    assert alone[("ghost", 0)].error_code == 3


def test_unknown_topic_id(kafka_broker: BrokerThread, wire: WireClient) -> None:
    bogus = uuid.uuid4()
    parts = partitions_of(fetch(wire, {bogus: {0: 0}}, version=13))
    assert parts[(bogus, 0)].error_code == 100


def test_leader_epoch_fencing(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    epoch = kafka_broker.broker.metadata.partition("t", 0).leader_epoch
    body: dict[str, Any] = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                            "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                            "topics": [{"topic": "t", "partitions": [
                                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20,
                                 "current_leader_epoch": epoch + 1}]}],
                            "forgotten_topics_data": [], "rack_id": ""}
    resp = wire.call(1, 12, body)
    assert resp.responses[0].partitions[0].error_code == 75  # UNKNOWN_LEADER_EPOCH
    body["topics"][0]["partitions"][0]["current_leader_epoch"] = epoch
    assert wire.call(1, 12, body).responses[0].partitions[0].error_code == 0


def test_read_committed_reads_to_last_stable_offset(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    _fill(wire, "t", 0, [[b"a", b"b"]])
    p = partitions_of(fetch(wire, {"t": {0: 0}}, isolation_level=1))[("t", 0)]
    assert p.last_stable_offset == 2
    assert p.aborted_transactions == []
    assert len(records_of(p.records)) == 2
    unc = partitions_of(fetch(wire, {"t": {0: 0}}, isolation_level=0))[("t", 0)]
    assert unc.aborted_transactions is None


# -- long polling ------------------------------------------------------------------------------------

def _fetch_in_thread(bootstrap: str, topics: dict[Any, dict[int, int]], **kw: Any
                     ) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        c = WireClient(bootstrap, timeout=60)  # longer than any max_wait_ms below
        try:
            out["resp"] = fetch(c, topics, **kw)
            out["done"] = time.monotonic()
        finally:
            c.close()

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _parked(broker: BrokerThread) -> None:
    wait_until(lambda: parked_fetches(broker) > 0, what="a fetch parked on the broker")


def _answered_before_max_wait(t: threading.Thread) -> None:
    # The fetches wait up to 30 s: an answer within 10 s came from a wake-up, not the deadline.
    t.join(10)
    assert not t.is_alive(), "the fetch was not woken"


def test_long_poll_wakes_on_append(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", partitions=2)
    t, out = _fetch_in_thread(kafka_broker.bootstrap, {"t": {0: 0, 1: 0}}, max_wait_ms=30_000)
    _parked(kafka_broker)
    assert "resp" not in out  # still waiting
    produce_one(wire, "t", 1, batch([b"wake"]))
    _answered_before_max_wait(t)
    parts = partitions_of(out["resp"])
    assert [r.value for r in records_of(parts[("t", 1)].records)] == [b"wake"]


def test_long_poll_times_out_empty(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    started = time.monotonic()
    p = partitions_of(fetch(wire, {"t": {0: 0}}, max_wait_ms=300))[("t", 0)]
    elapsed = time.monotonic() - started
    assert p.error_code == 0 and not p.records
    assert elapsed >= 0.28  # it waited out max_wait_ms (the socket timeout bounds it from above)


def test_long_poll_waits_for_min_bytes(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    one = len(batch([b"q" * 200]))
    t, out = _fetch_in_thread(kafka_broker.bootstrap, {"t": {0: 0}}, max_wait_ms=30_000, min_bytes=one * 2 + 1)
    _parked(kafka_broker)
    produce_one(wire, "t", 0, batch([b"q" * 200]))
    produce_one(wire, "t", 0, batch([b"q" * 200]))
    _parked(kafka_broker)  # each append woke it; it read two batches and went back to sleep
    assert "resp" not in out  # two batches are still short of min_bytes
    produce_one(wire, "t", 0, batch([b"q" * 200]))
    _answered_before_max_wait(t)
    assert len(records_of(partitions_of(out["resp"])[("t", 0)].records)) == 3


def test_appends_to_other_partitions_do_not_end_the_wait(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "watched")
    create_topic(kafka_broker, "other")
    started = time.monotonic()
    t, out = _fetch_in_thread(kafka_broker.bootstrap, {"watched": {0: 0}}, max_wait_ms=600)
    _parked(kafka_broker)
    for _ in range(3):
        produce_one(wire, "other", 0, batch([b"noise"]))
    t.join(30)
    assert out["done"] - started >= 0.6  # it waited out max_wait_ms
    assert not records_of(partitions_of(out["resp"])[("watched", 0)].records)


def test_waiting_fetches_wake_when_their_topic_is_deleted(kafka_broker: BrokerThread) -> None:
    create_topic(kafka_broker, "doomed")
    t, out = _fetch_in_thread(kafka_broker.bootstrap, {"doomed": {0: 0}}, max_wait_ms=30_000)
    _parked(kafka_broker)
    md = kafka_broker.broker.metadata
    kafka_broker.call(md.delete_topic, "doomed")
    _answered_before_max_wait(t)
    assert partitions_of(out["resp"])[("doomed", 0)].error_code == 3


# -- fetch sessions ----------------------------------------------------------------------------------

def test_session_full_then_incremental(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", partitions=3)
    _fill(wire, "t", 0, [[b"a"]])
    full = fetch(wire, {"t": {0: 0, 1: 0, 2: 0}}, session_id=0, session_epoch=0)
    sid = full.session_id
    assert sid != 0 and full.error_code == 0
    assert len(partitions_of(full)) == 3

    # Nothing changed: an incremental fetch lists no partitions.
    inc = fetch(wire, {"t": {0: 1}}, session_id=sid, session_epoch=1)
    assert (inc.error_code, inc.session_id) == (0, sid)
    assert partitions_of(inc) == {}

    # New data on partition 2 (fetch offset cached from the full fetch): only it is listed.
    _fill(wire, "t", 2, [[b"c"]])
    inc = fetch(wire, {}, session_id=sid, session_epoch=2)
    parts = partitions_of(inc)
    assert list(parts) == [("t", 2)]
    assert [r.value for r in records_of(parts[("t", 2)].records)] == [b"c"]

    # Forget partition 1 and 2; data on 1 is then not reported.
    _fill(wire, "t", 1, [[b"b"]])
    inc = fetch(wire, {"t": {2: 1}}, session_id=sid, session_epoch=3, forgotten={"t": [1]})
    assert partitions_of(inc) == {}  # 2 has no news at offset 1; 1 is forgotten
    session = kafka_broker.broker.replica_manager.fetch_sessions.get(sid)
    assert sorted(k[1] for k in session.partitions) == [0, 2]


def test_session_errors(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    assert fetch(wire, {"t": {0: 0}}, session_id=12345, session_epoch=1).error_code == 70
    sid = fetch(wire, {"t": {0: 0}}, session_id=0, session_epoch=0).session_id
    bad = fetch(wire, {}, session_id=sid, session_epoch=5)
    assert (bad.error_code, bad.session_id, list(bad.responses)) == (71, 0, [])
    assert fetch(wire, {}, session_id=sid, session_epoch=1).error_code == 0  # still usable
    # A v13 (topic id) fetch cannot continue a session made with names.
    assert fetch(wire, {}, version=13, session_id=sid, session_epoch=2).error_code == 106


def test_sessionless_and_closing(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    assert fetch(wire, {"t": {0: 0}}, session_id=0, session_epoch=-1).session_id == 0
    cache = kafka_broker.broker.replica_manager.fetch_sessions
    sid = fetch(wire, {"t": {0: 0}}, session_id=0, session_epoch=0).session_id
    assert cache.get(sid) is not None
    # A full fetch naming a session closes it.
    assert fetch(wire, {"t": {0: 0}}, session_id=sid, session_epoch=-1).session_id == 0
    assert cache.get(sid) is None
    # Forgetting every partition closes the session too.
    sid = fetch(wire, {"t": {0: 0}}, session_id=0, session_epoch=0).session_id
    resp = fetch(wire, {}, session_id=sid, session_epoch=1, forgotten={"t": [0]})
    assert resp.session_id == 0 and cache.get(sid) is None


def test_session_with_topic_ids(kafka_broker: BrokerThread, wire: WireClient) -> None:
    tid = create_topic(kafka_broker, "t")
    bogus = uuid.uuid4()
    full = fetch(wire, {tid: {0: 0}, bogus: {0: 0}}, version=13, session_id=0, session_epoch=0)
    parts = partitions_of(full)
    assert parts[(tid, 0)].error_code == 0 and parts[(bogus, 0)].error_code == 100
    _fill(wire, "t", 0, [[b"hello"]])
    inc = partitions_of(fetch(wire, {}, version=13, session_id=full.session_id, session_epoch=1))
    assert [r.value for r in records_of(inc[(tid, 0)].records)] == [b"hello"]
    assert inc[(bogus, 0)].error_code == 100  # errors are always repeated


def test_incremental_long_poll_wakes_on_session_partition(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t", partitions=2)
    sid = fetch(wire, {"t": {0: 0, 1: 0}}, session_id=0, session_epoch=0).session_id
    t, out = _fetch_in_thread(kafka_broker.bootstrap, {}, max_wait_ms=30_000, session_id=sid, session_epoch=1)
    _parked(kafka_broker)
    produce_one(wire, "t", 0, batch([b"late"]))
    _answered_before_max_wait(t)
    assert list(partitions_of(out["resp"])) == [("t", 0)]
