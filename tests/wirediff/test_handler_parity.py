"""Handler answers the wire differential check (compat/wirediff) found differing from Kafka 4.1.1.

Each test pins Kafka's answer for one request; they run the handler directly, no broker.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from kbroker.codec import decode_request, encode_request
from kbroker.codec.error_codes import ErrorCode
from kbroker.handlers import (
    api_versions,
    delete_records,
    describe_cluster,
    describe_groups,
    fetch,
    list_offsets,
)
from kbroker.handlers.api import RequestContext, Session
from kbroker.replica.types import FetchResult, OffsetResult


def _ctx(api_key: int, version: int, body: dict[str, Any], broker: Any = None) -> RequestContext:
    request = decode_request(encode_request(api_key, version, 1, body)[4:])
    broker = broker or SimpleNamespace()
    if not hasattr(broker, "authorizer"):
        broker.authorizer = None  # no ACLs: every request is allowed
    return RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1), request)


def _run(module: Any, ctx: RequestContext) -> Any:
    return asyncio.run(module.handle(ctx))


@pytest.mark.parametrize("name,version", [("bad name!", "1.0"), ("ok", "1.0 beta"), ("", "1"), ("-x", "1"),
                                          ("x", "1.")])
def test_api_versions_rejects_invalid_software_name(name: str, version: str) -> None:
    # Kafka: ApiVersionsRequest.isValid() fails -> INVALID_REQUEST with no API list.
    out = _run(api_versions, _ctx(18, 3, {"client_software_name": name, "client_software_version": version}))
    assert out["error_code"] == ErrorCode.INVALID_REQUEST and out["api_keys"] == []


def test_api_versions_accepts_kafka_style_software_names() -> None:
    ctx = _ctx(18, 4, {"client_software_name": "apache-kafka-java", "client_software_version": "4.1.1"})
    out = _run(api_versions, ctx)
    assert out["error_code"] == 0 and len(out["api_keys"]) > 10
    assert ctx.session.client_software_name == "apache-kafka-java"


def test_api_versions_unsupported_version_lists_only_api_versions() -> None:
    # KIP-511 as Kafka implements it: the v0 error answer carries ApiVersions' own range only.
    out = api_versions.unsupported_version_response()
    assert out["error_code"] == ErrorCode.UNSUPPORTED_VERSION
    assert out["api_keys"] == [{"api_key": 18, "min_version": 0, "max_version": 4}]


def test_describe_groups_unknown_group_is_dead_at_v6() -> None:
    broker = SimpleNamespace(groups=SimpleNamespace(describe_group=lambda group_id: None, group_type=lambda group_id: None))
    out = _run(describe_groups, _ctx(15, 6, {"groups": ["nope"]}, broker))
    group = out["groups"][0]
    assert group["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND and group["group_state"] == "Dead"


@pytest.mark.parametrize("endpoint_type,code,message", [
    (2, ErrorCode.MISMATCHED_ENDPOINT_TYPE,
     "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"),
    (9, ErrorCode.UNSUPPORTED_ENDPOINT_TYPE, "Unsupported endpoint type 9"),
])
def test_describe_cluster_other_endpoint_types(endpoint_type: int, code: int, message: str) -> None:
    broker = SimpleNamespace(metadata=SimpleNamespace(cluster_id="c" * 22))
    out = _run(describe_cluster, _ctx(60, 2, {"endpoint_type": endpoint_type}, broker))
    assert out["error_code"] == code and out["error_message"] == message
    assert out["endpoint_type"] == 1  # the answering endpoint's own type, as Kafka


def test_fetch_unknown_partition_answers_empty_aborted_transactions() -> None:
    # Kafka answers partitions it does not know before reading with the schema default ([]);
    # errors met while reading a log (offset out of range) keep null.
    rows = fetch._group([(("t", 0), FetchResult(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)),
                         (("t", 1), FetchResult(ErrorCode.OFFSET_OUT_OF_RANGE)),
                         (("t", 2), FetchResult(high_watermark=5, last_stable_offset=5, log_start_offset=0))],
                        uses_ids=False)
    parts = rows[0]["partitions"]
    assert [p["aborted_transactions"] for p in parts] == [[], None, None]


@pytest.mark.parametrize("timestamp,version,supported", [
    (-1, 1, True), (-2, 1, True), (-3, 6, False), (-3, 7, True), (-4, 7, False), (-4, 8, True),
    (-5, 8, False), (-5, 9, True), (-6, 10, False), (-6, 11, True), (-7, 10, False), (-7, 11, False),
    (0, 1, True), (123, 10, True),
])
def test_list_offsets_special_timestamps_by_version(timestamp: int, version: int, supported: bool) -> None:
    asked: list[int] = []

    def lookup(tp: Any, ts: int, **kw: Any) -> OffsetResult:
        asked.append(ts)
        return OffsetResult(ErrorCode.NONE, timestamp=-1, offset=3, leader_epoch=0)

    broker = SimpleNamespace(replica_manager=SimpleNamespace(fetch_offset_for_timestamp=lookup, replicated=False))
    body = {"replica_id": -1, "topics": [{"name": "t", "partitions": [{"partition_index": 0, "timestamp": timestamp}]}]}
    out = _run(list_offsets, _ctx(2, version, body, broker))
    p = out["topics"][0]["partitions"][0]
    if supported:
        assert p["error_code"] == 0 and asked == [timestamp]
    else:
        # Kafka: UNSUPPORTED_VERSION for this partition, offset and timestamp -1, no lookup.
        assert (p["error_code"], p["offset"], p["timestamp"], p["leader_epoch"]) == (35, -1, -1, -1)
        assert asked == []


def test_list_offsets_answers_a_repeated_partition_once() -> None:
    broker = SimpleNamespace(replica_manager=SimpleNamespace(
        fetch_offset_for_timestamp=lambda tp, ts, **kw: OffsetResult(ErrorCode.NONE, offset=1), replicated=False))
    body = {"replica_id": -1, "topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "timestamp": -1}, {"partition_index": 1, "timestamp": -1},
                                     {"partition_index": 0, "timestamp": -2}]}]}
    out = _run(list_offsets, _ctx(2, 5, body, broker))
    assert [(p["partition_index"], p["error_code"]) for p in out["topics"][0]["partitions"]] == [(0, 42), (1, 0)]


def test_delete_records_answers_a_repeated_partition_once_with_its_last_offset() -> None:
    # Kafka keys the request by topic-partition before deleting: the last offset named wins, and the
    # answer has one entry per partition under one entry per topic.
    calls: list[tuple[str, int, int]] = []

    def delete(tp: Any, offset: int) -> tuple[int, int, None]:
        calls.append((tp.topic, tp.partition, offset))
        return ErrorCode.NONE, offset, None

    broker = SimpleNamespace(replica_manager=SimpleNamespace(delete_records=delete, replicated=False))
    body = {"timeout_ms": 1000, "topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "offset": 1}, {"partition_index": 0, "offset": 3}]},
        {"name": "t", "partitions": [{"partition_index": 1, "offset": 2}]}]}
    out = _run(delete_records, _ctx(21, 2, body, broker))
    assert calls == [("t", 0, 3), ("t", 1, 2)]
    assert out["topics"] == [{"name": "t", "partitions": [
        {"partition_index": 0, "low_watermark": 3, "error_code": 0},
        {"partition_index": 1, "low_watermark": 2, "error_code": 0}]}]


def test_delete_records_of_many_partitions_deletes_files_off_the_event_loop() -> None:
    # A request naming thousands of partitions (each maybe freeing many segments) must not hold
    # up other connections: the file deletion runs in a worker thread, the answer is encoded
    # off the loop, and the handler yields while it works through the partitions.
    import threading

    from kbroker.handlers.api import MANY, DetachedBody

    deleted_in: list[threading.Thread] = []

    def delete(tp: Any, offset: int) -> tuple[int, int, Any]:
        if tp.partition == 0:
            return ErrorCode.NONE, offset, lambda: deleted_in.append(threading.current_thread())
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1, None

    broker = SimpleNamespace(replica_manager=SimpleNamespace(delete_records=delete, replicated=False))
    count = MANY * 3
    body = {"timeout_ms": 1000, "topics": [
        {"name": "t", "partitions": [{"partition_index": i, "offset": 5} for i in range(count)]}]}
    yields = 0

    async def main() -> Any:
        nonlocal yields
        task = asyncio.ensure_future(delete_records.handle(_ctx(21, 2, body, broker)))
        while not task.done():
            yields += 1
            await asyncio.sleep(0)
        return task.result()

    out = asyncio.run(main())
    assert isinstance(out, DetachedBody)
    assert len(out["topics"][0]["partitions"]) == count
    assert out["topics"][0]["partitions"][0] == {"partition_index": 0, "low_watermark": 5, "error_code": 0}
    assert len(deleted_in) == 1 and deleted_in[0] is not threading.main_thread()
    assert yields >= 3


class _NoWalk(dict):  # type: ignore[type-arg]
    """A topic's partitions that may be looked up by index but not walked whole."""

    def values(self) -> Any:
        raise AssertionError("the whole topic was walked")

    def __iter__(self) -> Any:
        raise AssertionError("the whole topic was walked")

    def items(self) -> Any:
        raise AssertionError("the whole topic was walked")


def test_describe_topic_partitions_page_deep_in_a_big_topic_reads_only_that_page() -> None:
    # A cursor deep into a topic of many partitions must cost one page, not the whole topic
    # (sorted and filtered again for every page).
    import uuid

    from kbroker.handlers import describe_topic_partitions
    from kbroker.handlers.api import DetachedBody
    from kbroker.metadata.model import PartitionInfo, TopicInfo

    parts = _NoWalk({i: PartitionInfo("big", i, 1, 0, [1], [1]) for i in range(50_000)})
    topic = TopicInfo("big", uuid.uuid4(), parts)
    broker = SimpleNamespace(metadata=SimpleNamespace(topics={"big": topic}, topic={"big": topic}.get, clustered=False), authorizer=None)
    body = {"topics": [{"name": "big"}], "response_partition_limit": 2**31 - 1,
            "cursor": {"topic_name": "big", "partition_index": 40_000}}
    out = _run(describe_topic_partitions, _ctx(75, 0, body, broker))
    indexes = [p["partition_index"] for p in out["topics"][0]["partitions"]]
    assert indexes == list(range(40_000, 42_000))
    assert isinstance(out, DetachedBody)  # a full page is encoded off the loop
    assert out["next_cursor"] == {"topic_name": "big", "partition_index": 42_000}
    body["cursor"] = {"topic_name": "big", "partition_index": 2**31 - 1}
    out = _run(describe_topic_partitions, _ctx(75, 0, body, broker))
    assert out["topics"][0]["partitions"] == [] and out["next_cursor"] is None


def test_describe_producers_reads_a_repeated_partition_once_and_yields() -> None:
    # Kafka answers a partition named twice twice; kbroker reads its producers once, so a request
    # repeating a busy partition many thousands of times does not copy its state each time, and
    # a large answer is encoded off the loop.
    from kbroker.handlers import describe_producers
    from kbroker.handlers.api import MANY, DetachedBody
    from kbroker.log.producer_state_entry import ProducerStateEntry

    reads: list[Any] = []
    entry = ProducerStateEntry(producer_id=7, producer_epoch=1)

    def active(tp: Any) -> tuple[int, list[ProducerStateEntry]]:
        reads.append(tp)
        return ErrorCode.NONE, [entry]

    broker = SimpleNamespace(metadata=SimpleNamespace(partition=lambda t, i: object() if (t, i) == ("t", 0) else None,
                                                      topic=lambda t: object() if t == "t" else None),
                             replica_manager=SimpleNamespace(active_producers=active))
    body = {"topics": [{"name": "t", "partition_indexes": [0] * (MANY * 2) + [5]},
                       {"name": "t", "partition_indexes": [0]}]}
    out = _run(describe_producers, _ctx(61, 0, body, broker))
    assert isinstance(out, DetachedBody)
    assert len(reads) == 1
    first, second = out["topics"]
    assert len(first["partitions"]) == MANY * 2 + 1 and len(second["partitions"]) == 1
    assert first["partitions"][0]["active_producers"][0]["producer_id"] == 7
    assert first["partitions"][-1] == {"partition_index": 5, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                       "error_message": None, "active_producers": []}
    assert second["partitions"][0]["active_producers"] == first["partitions"][0]["active_producers"]


def test_describe_producers_explains_an_unknown_topic_only() -> None:
    # Kafka 4.1.1: a topic it does not know answers UNKNOWN_TOPIC_OR_PARTITION with its message;
    # an unknown partition of a known topic (-1, past the end) the same code with no message.
    from kbroker.handlers import describe_producers

    broker = SimpleNamespace(metadata=SimpleNamespace(partition=lambda t, i: None,
                                                      topic=lambda t: object() if t == "t" else None),
                             replica_manager=SimpleNamespace())
    body = {"topics": [{"name": "t", "partition_indexes": [-1, 7]}, {"name": "nope", "partition_indexes": [0]}]}
    out = _run(describe_producers, _ctx(61, 0, body, broker))
    got = [(p["partition_index"], p["error_code"], p["error_message"]) for t in out["topics"] for p in t["partitions"]]
    assert got == [(-1, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None), (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None),
                   (0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")]


def test_delete_records_answers_when_one_partitions_file_deletion_fails() -> None:
    # The log start offsets have moved before the files go: a failure deleting one partition's
    # freed segments must neither lose the answer (the connection closing) nor keep the other
    # partitions' files.
    deleted: list[int] = []

    def fail() -> None:
        raise RuntimeError("disk trouble")

    def delete(tp: Any, offset: int) -> tuple[int, int, Any]:
        return ErrorCode.NONE, offset, fail if tp.partition == 0 else (lambda: deleted.append(tp.partition))

    broker = SimpleNamespace(replica_manager=SimpleNamespace(delete_records=delete, replicated=False))
    body = {"timeout_ms": 1000, "topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "offset": 4}, {"partition_index": 1, "offset": 2}]}]}
    out = _run(delete_records, _ctx(21, 2, body, broker))
    assert out["topics"][0]["partitions"] == [{"partition_index": 0, "low_watermark": 4, "error_code": 0},
                                              {"partition_index": 1, "low_watermark": 2, "error_code": 0}]
    assert deleted == [1]
