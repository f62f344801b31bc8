"""Fault rules without a broker: the error responses Kafka gives, what rules match, how they
count down and expire, and the rules refused."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.codec import decode_response, encode_response
from kbroker.codec.apis import api_table
from kbroker.handlers.api import CloseConnection, EncodedBody, Session
from kbroker.server.error_response import error_response
from kbroker.server.faults import FaultInjector, FaultRuleError
from kbroker.server.intercept import Exchange, Interceptors

NOT_LEADER = 6


def roundtrip(api_key: int, version: int, request: dict[str, Any], code: int) -> Any:
    """The error response as a client decodes it off the wire."""
    frame = encode_response(api_key, version, 9, error_response(api_key, version, request, code))
    correlation_id, body = decode_response(api_key, version, frame[4:])
    assert correlation_id == 9
    return body


def test_produce_errors_every_partition_it_named() -> None:
    request = {"acks": -1, "timeout_ms": 100, "topic_data": [
        {"name": "a", "partition_data": [{"index": 0, "records": b"x"}, {"index": 2, "records": b"y"}]},
        {"name": "b", "partition_data": [{"index": 1, "records": b"z"}]}]}
    body = roundtrip(0, 9, request, NOT_LEADER)
    got = [(t.name, p.index, p.error_code, p.base_offset, p.log_start_offset)
           for t in body.responses for p in t.partition_responses]
    assert got == [("a", 0, 6, -1, -1), ("a", 2, 6, -1, -1), ("b", 1, 6, -1, -1)]


def test_fetch_errors_top_level_and_partitions_before_v13_and_top_level_alone_after() -> None:
    old = {"session_id": 0, "session_epoch": -1, "topics": [
        {"topic": "a", "partitions": [{"partition": 3, "fetch_offset": 5}]}], "forgotten_topics_data": []}
    body = roundtrip(1, 12, old, NOT_LEADER)
    assert body.error_code == 6
    [topic] = body.responses
    [part] = topic.partitions
    assert (topic.topic, part.partition_index, part.error_code, part.high_watermark, part.records) == \
        ("a", 3, 6, -1, b"")
    new = {"session_id": 42, "session_epoch": 3, "topics": [
        {"topic_id": uuid.uuid4(), "partitions": [{"partition": 0}]}], "forgotten_topics_data": []}
    body = roundtrip(1, 13, new, NOT_LEADER)
    assert (body.error_code, body.session_id, list(body.responses)) == (6, 42, [])


def test_metadata_offset_fetch_and_coordinator_errors_sit_where_kafka_puts_them() -> None:
    body = roundtrip(3, 13, {"topics": [{"name": "a", "topic_id": uuid.UUID(int=0)}]}, 29)
    assert body.error_code == 29 and [(t.name, t.error_code, list(t.partitions)) for t in body.topics] == [("a", 29, [])]
    assert list(roundtrip(3, 12, {"topics": None}, 29).topics) == []  # all topics: none named
    v1 = roundtrip(9, 1, {"group_id": "g", "topics": [{"name": "a", "partition_indexes": [0, 1]}]}, 16)
    assert [(t.name, p.partition_index, p.error_code, p.committed_offset)
            for t in v1.topics for p in t.partitions] == [("a", 0, 16, -1), ("a", 1, 16, -1)]
    v5 = roundtrip(9, 5, {"group_id": "g", "topics": [{"name": "a", "partition_indexes": [0]}]}, 16)
    assert (v5.error_code, list(v5.topics)) == (16, [])  # v2-v7: the top level alone
    v4 = roundtrip(10, 4, {"key_type": 0, "coordinator_keys": ["g1", "g2"]}, 15)
    assert [(c.key, c.error_code) for c in v4.coordinators] == [("g1", 15), ("g2", 15)]
    assert roundtrip(10, 3, {"key": "g", "key_type": 0}, 15).error_code == 15


def test_transaction_partitions_errors() -> None:
    old = roundtrip(24, 3, {"v3_and_below_transactional_id": "tx", "v3_and_below_topics": [
        {"name": "a", "partitions": [0, 1]}]}, 51)
    assert [(t.name, p.partition_index, p.partition_error_code)
            for t in old.results_by_topic_v3_and_below for p in t.results_by_partition] == [("a", 0, 51), ("a", 1, 51)]
    new = roundtrip(24, 4, {"transactions": [{"transactional_id": "tx", "topics": []}]}, 51)
    assert (new.error_code, list(new.results_by_transaction)) == (51, [])


def test_group_and_topic_admin_errors() -> None:
    join = roundtrip(11, 5, {"group_id": "g", "member_id": "m-1", "protocols": []}, 27)
    assert (join.error_code, join.member_id, join.generation_id) == (27, "", -1)
    deleted = roundtrip(20, 5, {"topic_names": ["a", "b"], "timeout_ms": 1}, 41)
    assert [(r.name, r.error_code) for r in deleted.responses] == [("a", 41), ("b", 41)]
    created = roundtrip(19, 7, {"topics": [{"name": "n", "num_partitions": 1, "replication_factor": 1,
                                            "assignments": [], "configs": []}]}, 41)
    assert [(t.name, t.error_code) for t in created.topics] == [("n", 41)]


def test_every_api_version_has_an_error_response_that_encodes() -> None:
    for key, api in api_table().items():
        for version in range(api.versions.low, api.versions.high + 1):
            body = roundtrip(key, version, {}, 55)
            top = any(f.attr == "error_code" and version in f.versions for f in api.response.fields)
            assert not top or body.error_code == 55, (api.name, version)


class Served:
    """A handler that counts the requests it applied."""

    def __init__(self, body: Any = None) -> None:
        self.applied = 0
        self.body = {"throttle_time_ms": 0, "topics": []} if body is None else body

    async def __call__(self) -> Any:
        self.applied += 1
        return self.body


def exchange(api_key: int = 3, request: Any = None, client_id: str | None = "c", version: int = 13) -> Exchange:
    return Exchange(Session("PLAINTEXT", "127.0.0.1", 1), api_key, version, 1, client_id,
                    request if request is not None else {"topics": None}, 10, 0.0)


def run(injector: FaultInjector, ex: Exchange, served: Served) -> Any:
    async def go() -> Any:
        return await injector(ex, served)

    return anyio.run(go)


def test_a_rule_fires_count_times_and_then_lets_requests_through() -> None:
    interceptors = Interceptors()
    faults = FaultInjector(interceptors, ManualClock())
    assert not interceptors  # no rule: not in the request path
    rule = faults.add("Metadata", error="LEADER_NOT_AVAILABLE", count=2)
    assert list(interceptors) == [faults]
    served = Served()
    answers = [run(faults, exchange(), served) for _ in range(3)]
    assert [a.get("error_code") for a in answers[:2]] == [5, 5] and served.applied == 1
    assert answers[2] is served.body
    assert faults.rule(rule) is not None and faults.fired(rule) == 2
    assert faults.rules()[0]["state"] == "exhausted"
    assert faults.remove(rule) and not faults.remove(rule)
    assert not interceptors
    with pytest.raises(KeyError):
        faults.fired(rule)


def test_count_zero_fires_until_removed_and_ttl_expires_on_the_clock() -> None:
    clock = ManualClock()
    faults = FaultInjector(Interceptors(), clock)
    forever = faults.add(3, "drop_response", count=0)
    served = Served()
    assert [run(faults, exchange(), served) for _ in range(5)] == [None] * 5
    assert served.applied == 5 and faults.fired(forever) == 5  # applied, never answered
    assert faults.clear() == 1
    brief = faults.add("metadata", "close_before", count=0, ttl_ms=1000)
    with pytest.raises(CloseConnection):
        run(faults, exchange(), served)
    clock.advance(1000)
    assert run(faults, exchange(), served) is served.body
    assert (faults.fired(brief), faults.rules()[0]["state"]) == (1, "expired")


def test_rules_match_api_client_topic_and_partition() -> None:
    topic_id = uuid.uuid4()
    faults = FaultInjector(Interceptors(), ManualClock(), topic_name={topic_id: "t"}.get)
    faults.add("Produce", error=NOT_LEADER, topic="t", partition=1, count=0)
    faults.add("Fetch", "close_after", topic="t", count=0)
    faults.add("DeleteTopics", error=41, topic="gone", client_id="admin", count=0)
    served = Served({"throttle_time_ms": 0, "responses": []})

    def produce(topic: str, partition: int) -> Exchange:
        return exchange(0, {"acks": 1, "topic_data": [{"name": topic, "partition_data": [
            {"index": partition, "records": b""}]}]}, version=9)

    assert run(faults, produce("t", 0), served) is served.body
    assert run(faults, produce("u", 1), served) is served.body
    assert run(faults, produce("t", 1), served)["responses"][0]["partition_responses"][0]["error_code"] == 6
    fetch = exchange(1, {"topics": [{"topic_id": topic_id, "partitions": [{"partition": 0}]}]}, version=13)
    with pytest.raises(CloseConnection):  # a topic named by id (Fetch v13+)
        run(faults, fetch, served)
    assert served.applied == 3  # close_after applied it first
    other = exchange(1, {"topics": [{"topic_id": uuid.uuid4(), "partitions": [{"partition": 0}]}]}, version=13)
    assert run(faults, other, served) is served.body
    names = {"topic_names": ["gone"], "timeout_ms": 1}
    assert run(faults, exchange(20, names, client_id="other", version=5), served) is served.body
    assert run(faults, exchange(20, names, client_id="admin", version=5), served)["responses"][0]["error_code"] == 41


def test_an_acks_0_produce_that_fails_closes_its_connection() -> None:
    faults = FaultInjector(Interceptors(), ManualClock())
    faults.add("Produce", error=NOT_LEADER, count=2)
    request = {"acks": 0, "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b""}]}]}
    served = Served()
    with pytest.raises(CloseConnection, match="acks=0"):
        run(faults, exchange(0, request, version=9), served)
    answer = run(faults, exchange(0, dict(request, acks=1), version=9), served)
    assert answer["responses"][0]["partition_responses"][0]["error_code"] == NOT_LEADER
    assert served.applied == 0


def test_a_produce_error_for_one_partition_fails_it_alone() -> None:
    topic_id = uuid.uuid4()
    faults = FaultInjector(Interceptors(), ManualClock(), topic_name={topic_id: "t"}.get)
    faults.add("Produce", error=NOT_LEADER, topic="t", partition=1, count=0)
    seen: list[Any] = []

    async def handler() -> Any:  # answers what it was asked, as the Produce handler does
        td = ex.request["topic_data"]
        seen.append([(t["name"], [p["index"] for p in t["partition_data"]]) for t in td])
        return {"throttle_time_ms": 0, "responses": [
            {"name": t["name"], "partition_responses": [{"index": p["index"], "error_code": 0, "base_offset": 7}
                                                        for p in t["partition_data"]]} for t in td]}

    original = [{"name": "t", "partition_data": [{"index": 0, "records": b""}, {"index": 1, "records": b""}]},
                {"name": "u", "partition_data": [{"index": 1, "records": b""}]}]
    ex = exchange(0, {"acks": -1, "topic_data": original}, version=9)
    body = anyio.run(faults, ex, handler)
    assert seen == [[("t", [0]), ("u", [1])]]  # partition t-1 was not applied
    assert ex.request["topic_data"] is original  # and the request is as it came
    assert [(t["name"], p["index"], p["error_code"], p["base_offset"])
            for t in body["responses"] for p in t["partition_responses"]] == \
        [("t", 0, 0, 7), ("t", 1, 6, -1), ("u", 1, 0, 7)]
    alone = exchange(0, {"acks": -1, "topic_data": [original[0] | {"partition_data": original[0]["partition_data"][1:]}]},
                     version=9)
    body = anyio.run(faults, alone, handler)
    assert len(seen) == 1 and body["responses"][0]["partition_responses"][0]["error_code"] == 6
    # From v13 topics are named by id.
    faults.clear()
    faults.add("Produce", error=NOT_LEADER, topic="t")
    by_id = exchange(0, {"acks": -1, "topic_data": [{"topic_id": topic_id, "partition_data": [{"index": 0, "records": b""}]},
                                                   {"topic_id": uuid.uuid4(), "partition_data": [{"index": 0, "records": b""}]}]},
                     version=13)

    async def by_id_handler() -> Any:
        td = by_id.request["topic_data"]
        return {"responses": [{"topic_id": t["topic_id"], "partition_responses": [{"index": 0, "error_code": 0}]}
                              for t in td]}

    body = anyio.run(faults, by_id, by_id_handler)
    assert [(t["topic_id"] == topic_id, t["partition_responses"][0]["error_code"]) for t in body["responses"]] == \
        [(False, 0), (True, 6)]


def test_latency_waits_and_throttle_sets_the_throttle_time() -> None:
    faults = FaultInjector(Interceptors(), ManualClock())
    faults.add("Metadata", "latency", ms=150)
    faults.add("Metadata", "throttle", ms=700)
    served = Served()

    async def timed() -> float:
        started = anyio.current_time()
        await faults(exchange(), served)
        return anyio.current_time() - started

    assert anyio.run(timed) >= 0.15
    shared = EncodedBody({"throttle_time_ms": 0, "topics": []}, b"encoded")
    served.body = shared
    ex = exchange()
    body = run(faults, ex, served)
    assert body["throttle_time_ms"] == 700 and ex.session.throttle_ms == 700
    assert shared["throttle_time_ms"] == 0 and not isinstance(body, EncodedBody)  # the shared body is left alone


@pytest.mark.parametrize(("spec", "says"), [
    ({"api": "Nope"}, "unknown API"),
    ({"api": 999}, "no API with key 999"),
    ({"api": "Produce"}, "needs an error"),
    ({"api": "Produce", "error": "NOT_AN_ERROR"}, "unknown Kafka error"),
    ({"api": "Produce", "error": 12345}, "no Kafka error code"),
    ({"api": "Produce", "action": "explode"}, "unknown action"),
    ({"api": "Produce", "action": "latency"}, "needs ms > 0"),
    ({"api": "Produce", "action": "latency", "ms": 10, "error": 6}, "'error' is for the error action"),
    ({"api": "Produce", "error": 6, "count": -1}, "count must be"),
    ({"api": "Produce", "error": 6, "ttl_ms": 0}, "ttl_ms must be"),
    ({"api": "Produce", "error": 6, "partition": 0}, "with a topic"),
    ({"api": "Produce", "error": 6, "topic": 5}, "topic must be a string"),
    ({"api": "Produce", "error": 6, "colour": "red"}, "unknown rule keys ['colour']"),
    ({"error": 6}, "needs an 'api'"),
    (["Produce"], "a JSON object"),
])
def test_rules_that_make_no_sense_are_refused(spec: Any, says: str) -> None:
    interceptors = Interceptors()
    faults = FaultInjector(interceptors, ManualClock())
    with pytest.raises(FaultRuleError, match=says.replace("[", r"\[").replace("]", r"\]")):
        faults.add_json(spec)
    assert faults.rules() == [] and not interceptors


def test_names_and_codes_are_both_taken() -> None:
    faults = FaultInjector(Interceptors(), ManualClock())
    for api, error in (("Produce", "not_leader_or_follower"), (0, 6), ("0", "6"), ("produce", " 6 ")):
        rule = faults.rule(faults.add(api, error=error))
        assert rule is not None and (rule["api"], rule["error"], rule["error_code"]) == \
            ("Produce", "NOT_LEADER_OR_FOLLOWER", 6)
    assert faults.rule(faults.add("offset_commit", "throttle", ms=5)) is not None
