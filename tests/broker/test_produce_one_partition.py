"""Produce's direct path for one partition of one topic answers exactly as the general path.

Each scenario runs twice on a fresh topic: once as sent (one partition: the direct path),
once with the direct path turned off; the answers must be identical, field for field.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from replica_wire import WireClient, batch, create_topic, produce

from kbroker.handlers import produce as produce_handler
from kbroker.testing import BrokerThread


def _corrupt(data: bytes) -> bytes:
    out = bytearray(data)
    out[-1] ^= 0xFF
    return bytes(out)


def _transactional(data: bytes) -> bytes:
    out = bytearray(data)
    out[22] |= 0x10  # the transactional attribute bit (the CRC then fails too, as a client's would not)
    return bytes(out)


Scenario = Callable[[BrokerThread, WireClient, str], list[Any]]


def _ok(broker: BrokerThread, wire: WireClient, topic: str) -> list[Any]:
    create_topic(broker, topic, partitions=2)
    return [produce(wire, topic, {0: batch([b"a", b"b"])}, version=v) for v in (3, 7, 9, 12)] + [
        produce(wire, topic, {1: batch([b"c"])}, version=9, acks=-1)]


def _errors(broker: BrokerThread, wire: WireClient, topic: str) -> list[Any]:
    create_topic(broker, topic, partitions=2)
    two = batch([b"x"]) + batch([b"y"])
    return [produce(wire, topic, {0: _corrupt(batch([b"bad"]))}),
            produce(wire, topic, {7: batch([b"x"])}),
            produce(wire, topic, {0: two}),
            produce(wire, topic, {0: None}),
            produce(wire, topic, {0: b"\x00" * 10}),
            produce(wire, topic, {0: batch([b"x"])}, acks=2),
            produce(wire, topic, {0: _transactional(batch([b"t"]))}),
            produce(wire, topic, {0: batch([b"after"])})]


def _unknown_topic(broker: BrokerThread, wire: WireClient, topic: str) -> list[Any]:
    return [produce(wire, topic, {0: batch([b"x"])})]


def _by_id(broker: BrokerThread, wire: WireClient, topic: str) -> list[Any]:
    topic_id = create_topic(broker, topic)
    return [produce(wire, topic_id, {0: batch([b"x"])}, version=13),
            produce(wire, uuid.UUID(int=7), {0: batch([b"x"])}, version=13)]


def _internal(broker: BrokerThread, wire: WireClient, topic: str) -> list[Any]:
    create_topic(broker, topic)
    # Kafka refuses a client's write to an internal topic; __consumer_offsets may not exist yet.
    return [produce(wire, "__consumer_offsets", {0: batch([b"x"])})]


def _normalized(broker: BrokerThread, responses: list[Any], topic: str) -> list[Any]:
    info = broker.broker.metadata.topic(topic)
    own_id = info.topic_id if info is not None else None
    out = []
    for r in responses:
        entries = []
        for t in r.responses:
            name = t.get("name")
            topic_id = t.get("topic_id")
            entries.append((None if name == topic else name, None if topic_id == own_id else topic_id,
                            [dict(p) for p in t.partition_responses]))
        out.append((r.throttle_time_ms, entries))
    return out


@pytest.fixture
def general_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    def use_general(on: bool) -> None:
        if on:
            async def general(*_: Any) -> Any:
                return produce_handler._GENERAL
            monkeypatch.setattr(produce_handler, "_handle_one", general)
        else:
            monkeypatch.undo()
    yield use_general


@pytest.mark.parametrize("scenario", [_ok, _errors, _unknown_topic, _by_id, _internal])
def test_direct_path_answers_as_the_general_path(kafka_broker: BrokerThread, wire: WireClient,
                                                 general_only: Callable[[bool], None], scenario: Scenario) -> None:
    direct = _normalized(kafka_broker, scenario(kafka_broker, wire, "direct"), "direct")
    general_only(True)
    general = _normalized(kafka_broker, scenario(kafka_broker, wire, "general"), "general")
    assert direct == general
    if scenario is _errors:
        codes = [[p["error_code"] for _, _, ps in r[1] for p in ps] for r in direct]
        assert codes == [[2], [3], [87], [87], [2], [21], [53], [0]]


@pytest.mark.parametrize("use_general", [False, True])
def test_acks_zero_failure_closes_the_connection_on_both_paths(kafka_broker: BrokerThread,
                                                               general_only: Callable[[bool], None],
                                                               use_general: bool) -> None:
    general_only(use_general)
    create_topic(kafka_broker, "t")
    wire = WireClient(kafka_broker.bootstrap)
    try:
        assert produce(wire, "t", {0: batch([b"fine"])}, acks=0) is None
        produce(wire, "t", {0: _corrupt(batch([b"bad"]))}, acks=0)
        assert wire.sock.recv(1) == b""
    finally:
        wire.close()
    wire = WireClient(kafka_broker.bootstrap)
    try:
        resp = produce(wire, "t", {0: batch([b"next"])})
        assert resp.responses[0].partition_responses[0].base_offset == 1  # the acks=0 batch was written
    finally:
        wire.close()
