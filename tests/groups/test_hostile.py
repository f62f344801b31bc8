"""Malformed or hostile group requests are answered, and never wedge a group."""

from __future__ import annotations

from typing import Any

import pytest

from kbroker.groups import GroupState, OffsetAndMetadata
from kbroker.groups.storage import Appended, MemoryOffsetsLog
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

from .helpers import coordinator, subscription

NONE, NOT_COORDINATOR, INCONSISTENT, UNKNOWN_SERVER_ERROR = 0, 16, 23, -1
JOIN, SYNC = 11, 14


@pytest.mark.anyio
async def test_duplicate_protocol_names_collapse() -> None:
    async with coordinator() as h:
        first = await h.join("g")
        dup = [("range", subscription("t")), ("range", b"ignored")]
        r = await h.join("g", first.member_id, protocols=dup)
        assert r.error == NONE and r.protocol_name == "range"
        assert r.members[0][2] == subscription("t")  # the first occurrence's metadata
        # A second member with one of the names joins the same generation's successor.
        second = await h.join("g")
        box = h.start_join("g", second.member_id, protocols=[("range", subscription("t"))])
        again = h.start_join("g", first.member_id, protocols=dup)
        await h.settle()
        assert box["result"].error == NONE and again["result"].error == NONE
        assert h.group("g").state is GroupState.COMPLETING_REBALANCE


@pytest.mark.anyio
async def test_failed_transition_answers_and_resets_only_that_group() -> None:
    async with coordinator() as h:
        other = await h.join("other")
        assert (await h.join("other", other.member_id)).error == NONE
        first = await h.join("g")
        group = h.group("g")

        def broken() -> str:
            raise RuntimeError("boom")

        group.select_protocol = broken  # type: ignore[method-assign]
        r = await h.join("g", first.member_id)
        assert r.error == UNKNOWN_SERVER_ERROR
        assert group.state is GroupState.EMPTY and not group.members
        del group.select_protocol  # the group works again
        again = await h.join("g")
        ok = await h.join("g", again.member_id)
        assert ok.error == NONE and ok.leader_id == again.member_id
        assert h.group("other").state is GroupState.COMPLETING_REBALANCE


@pytest.mark.anyio
async def test_failed_timer_transition_answers_the_waiting_join() -> None:
    async with coordinator() as h:
        first = await h.join("g")
        await h.join("g", first.member_id)
        ids = [first.member_id]
        # A second member forces a rebalance completed by the join timer.
        second = await h.join("g")
        box = h.start_join("g", second.member_id)
        await h.settle()
        group = h.group("g")

        def broken() -> str:
            raise RuntimeError("boom")

        group.select_protocol = broken  # type: ignore[method-assign]
        await h.advance(30_000)  # the rebalance timeout: the timer completes the join
        assert box["result"].error == UNKNOWN_SERVER_ERROR
        assert group.state is GroupState.EMPTY and ids[0] not in group.members
        del group.select_protocol
        again = await h.join("g")
        assert (await h.join("g", again.member_id)).error == NONE


def _join(c: WireClient, member_id: str, protocols: list[tuple[str, bytes]], protocol_type: str = "consumer") -> Any:
    return c.call(JOIN, 9, {
        "group_id": "dup", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000, "member_id": member_id,
        "group_instance_id": None, "protocol_type": protocol_type,
        "protocols": [{"name": n, "metadata": m} for n, m in protocols]})


def test_wire_duplicate_protocols_and_hostile_sync(kafka_broker: BrokerThread) -> None:
    c = WireClient(kafka_broker.bootstrap)
    dup = [("range", subscription("t")), ("range", subscription("t"))]
    first = _join(c, "", dup)
    assert first.error_code == 79
    r = _join(c, first.member_id, dup)
    assert r.error_code == NONE and r.protocol_name == "range" and len(r.members) == 1
    me, gen = r.member_id, r.generation_id
    # Assignments naming strangers (and the member twice) are answered; the member gets its own.
    assignments = [{"member_id": f"stranger-{i}", "assignment": b"x"} for i in range(1000)]
    assignments += [{"member_id": me, "assignment": b"A"}, {"member_id": me, "assignment": b"B"}]
    r = c.call(SYNC, 5, {"group_id": "dup", "generation_id": gen, "member_id": me, "protocol_type": "consumer",
                         "protocol_name": "range", "assignments": assignments})
    assert r.error_code == NONE and r.assignment in (b"A", b"B")
    group = kafka_broker.broker.groups.manager.get("dup")
    assert set(group.members) == {me} and group.state is GroupState.STABLE
    # Another protocol type, or no common protocol, is refused; the group stays as it was.
    other = WireClient(kafka_broker.bootstrap)
    assert _join(other, "", dup, protocol_type="connect").error_code == INCONSISTENT
    assert _join(other, "", [("roundrobin", b"")]).error_code == INCONSISTENT
    r = c.call(SYNC, 5, {"group_id": "dup", "generation_id": gen, "member_id": me, "protocol_type": "connect",
                         "protocol_name": "range", "assignments": []})
    assert r.error_code == INCONSISTENT
    assert group.state is GroupState.STABLE
    c.close()
    other.close()


class _RaisingLog(MemoryOffsetsLog):
    """An offsets log whose writes raise while ``broken`` is set."""

    broken = False

    async def append(self, partition: int, records: Any, **kw: Any) -> Appended:
        if self.broken:
            raise OSError(28, "No space left on device")
        return await super().append(partition, records, **kw)


@pytest.mark.anyio
async def test_offsets_write_failure_answers_every_member() -> None:
    log = _RaisingLog(5)
    async with coordinator(log=log) as h:
        ids = [(await h.join("g")).member_id for _ in range(2)]
        boxes = [h.start_join("g", mid) for mid in ids]
        await h.settle()
        results = [b["result"] for b in boxes]
        leader = results[0].leader_id
        follower = next(m for m in ids if m != leader)
        log.broken = True
        waiting = h.start_sync("g", 1, follower)
        await h.settle()
        led = h.start_sync("g", 1, leader, {m: b"a" for m in ids})
        await h.settle()
        # A storage failure is Kafka's NOT_COORDINATOR: clients look the coordinator up again.
        assert led["result"].error == NOT_COORDINATOR
        assert waiting["result"].error == NOT_COORDINATOR  # not left waiting for a timeout
        commit = await h.coord.commit_offsets("simple", -1, "", None, {("t", 0): OffsetAndMetadata(1, -1, "", 0)})
        assert commit == {("t", 0): NOT_COORDINATOR}
        log.broken = False
        # The members come back (as clients do once they found the coordinator again) and sync.
        boxes = [h.start_join("g", mid) for mid in ids]
        await h.settle()
        assert [b["result"].error for b in boxes] == [NONE, NONE]
        led = h.start_sync("g", boxes[0]["result"].generation_id, boxes[0]["result"].leader_id,
                           {m: b"a" for m in ids})
        await h.settle()
        assert led["result"].error == NONE and h.group("g").state is GroupState.STABLE


def test_offsets_write_failure_on_a_real_broker(kafka_broker: BrokerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    # The offsets topic's writes go through the append it was given at wiring time.
    rm = kafka_broker.broker.groups.manager.log
    original = rm._append_records

    async def failing(entries: Any, **kw: Any) -> Any:
        if kw.get("internal"):
            raise OSError(28, "No space left on device")
        return await original(entries, **kw)

    monkeypatch.setattr(rm, "_append_records", failing)
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as err:
            c.commit(offsets=[TopicPartition("t", 0, 5)], asynchronous=False)
        assert err.value.args[0].code() == NOT_COORDINATOR
        monkeypatch.setattr(rm, "_append_records", original)
        c.commit(offsets=[TopicPartition("t", 0, 5)], asynchronous=False)
        assert c.committed([TopicPartition("t", 0)], timeout=10)[0].offset == 5
    finally:
        c.close()


def test_member_metadata_too_large_to_store(kafka_broker: BrokerThread) -> None:
    """Kafka's answer when the group record exceeds the batch limit: UNKNOWN_SERVER_ERROR, then a normal rejoin."""
    c = WireClient(kafka_broker.bootstrap)

    def sync(r: Any) -> int:
        return int(c.call(SYNC, 5, {
            "group_id": "dup", "generation_id": r.generation_id, "member_id": r.member_id,
            "protocol_type": "consumer", "protocol_name": "range",
            "assignments": [{"member_id": r.member_id, "assignment": b"A"}]}).error_code)

    huge = [("range", subscription("t", user_data=b"x" * 3_000_000))]
    r = _join(c, _join(c, "", huge).member_id, huge)
    assert r.error_code == NONE and len(r.members) == 1
    assert sync(r) == UNKNOWN_SERVER_ERROR
    r = _join(c, r.member_id, [("range", subscription("t"))])
    assert r.error_code == NONE and sync(r) == NONE
    c.close()


def test_member_id_of_a_client_id_at_the_string_limit_is_encodable(kafka_broker: BrokerThread) -> None:
    """A 32767-byte client id made a member id (``<client id>-<uuid>``) no response could carry."""
    from kbroker.codec.primitives import KString

    c = WireClient(kafka_broker.bootstrap, client_id="c" * 0x7FFF)
    try:
        resp = c.call(11, 2, {"group_id": "long-client", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
                              "member_id": "", "protocol_type": "consumer",
                              "protocols": [{"name": "range", "metadata": b""}]})
        assert resp.error_code == 0
        assert len(resp.member_id.encode()) <= 0x7FFF and resp.member_id.startswith("ccc")
        KString(nullable=False, compact=False).build(resp.member_id)
    finally:
        c.close()
