"""The wire differential check's comparison, normalisation, accepted-rule matching and frame
mutations (compat/wirediff), without a broker."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest
from construct import Container

from compat.wirediff import catalog, report
from compat.wirediff.compare import ABSENT, SET, Difference, compare_bodies, diff, normalize
from compat.wirediff.runner import (
    CaseResult,
    Rule,
    Run,
    classify,
    compare_outcomes,
    load_rules,
)
from compat.wirediff.wire import Outcome, decode
from kbroker.codec import decode_request, encode_response
from kbroker.records.builder import build_batch


def test_identical_bodies_have_no_differences() -> None:
    body = Container(throttle_time_ms=0, topics=[Container(name="t", error_code=0)])
    assert compare_bodies(body, body) == []


def test_only_the_listed_fields_are_dropped_or_masked() -> None:
    a = {"throttle_time_ms": 5, "host": "a", "port": 1, "cluster_id": "x", "error_message": "m1",
         "topic_id": uuid.uuid4(), "member_id": "m-1", "producer_id": 7, "session_id": 3, "error_code": 0}
    b = {"throttle_time_ms": 0, "host": "b", "port": 2, "cluster_id": "y", "error_message": None,
         "topic_id": uuid.uuid4(), "member_id": "m-2", "producer_id": 9, "session_id": 4, "error_code": 0}
    assert compare_bodies(a, b) == []
    out = normalize(a)
    assert out["topic_id"] == SET and "host" not in out and "error_message" not in out
    # A masked field still tells "set" from "none": a zero topic id or an empty member id differ.
    b2 = dict(b, topic_id=uuid.UUID(int=0), member_id="", producer_id=-1)
    paths = {d.path for d in compare_bodies(a, b2)}
    assert paths == {"topic_id", "member_id", "producer_id"}
    # Anything else is compared exactly, a leader epoch or generation included.
    assert [d.path for d in compare_bodies({"generation_id": 1}, {"generation_id": 2})] == ["generation_id"]


def test_lists_are_matched_by_identity_not_order() -> None:
    a = {"topics": [{"name": "a", "partitions": [{"partition_index": 0, "error_code": 0},
                                                  {"partition_index": 1, "error_code": 0}]},
                    {"name": "b", "partitions": []}]}
    b = {"topics": [{"name": "b", "partitions": []},
                    {"name": "a", "partitions": [{"partition_index": 1, "error_code": 3},
                                                  {"partition_index": 0, "error_code": 0}]}]}
    assert [(d.path, d.kafka, d.kbroker) for d in diff(normalize(a), normalize(b))] == [
        ("topics[name=a].partitions[partition_index=1].error_code", 0, 3)]


def test_missing_elements_and_fields_are_reported() -> None:
    out = diff({"groups": [{"group_id": "g1"}, {"group_id": "g2"}], "x": 1},
               {"groups": [{"group_id": "g1"}], "y": 2})
    assert {(d.path, str(d.kbroker)) for d in out} == {
        ("groups[group_id=g2]", ABSENT), ("x", ABSENT), ("y", "2")}


def test_scalar_lists_keep_their_order() -> None:
    assert [d.path for d in diff([1, 2], [2, 1])] == ["[0]", "[1]"]


def test_error_message_is_a_note_on_a_differing_code() -> None:
    out = compare_bodies({"error_code": 3, "error_message": "no such topic"}, {"error_code": 0, "error_message": None})
    assert out == [Difference("error_code", 3, 0, "messages: kafka='no such topic' kbroker=None")]


def test_records_are_compared_decoded_without_crc_or_producer_id() -> None:
    one = build_batch([(b"k", b"v", (), 1000)], producer_id=5, producer_epoch=0, base_sequence=0)
    other = build_batch([(b"k", b"v", (), 1000)], producer_id=9, producer_epoch=0, base_sequence=0)
    assert one != other
    assert compare_bodies({"records": one}, {"records": other}) == []
    changed = build_batch([(b"k", b"w", (), 1000)])
    assert [d.path for d in compare_bodies({"records": one}, {"records": changed})] == [
        "records[0].records[offset=0].value"]


def test_transaction_start_time_is_masked_but_none_is_kept() -> None:
    a = {"transaction_start_time_ms": 1_700_000_000_123}
    assert compare_bodies(a, {"transaction_start_time_ms": 1_700_000_000_456}) == []
    assert [d.path for d in compare_bodies(a, {"transaction_start_time_ms": -1})] == ["transaction_start_time_ms"]


def test_control_record_timestamps_are_masked_data_record_timestamps_are_not() -> None:
    """A transaction marker's timestamp is the writing broker's clock; a data record's is the producer's."""
    def marker(ts: int) -> bytes:
        return build_batch([(b"\0\0\0\0", b"\0\0\0\0\0\0", (), ts)], producer_id=5, producer_epoch=0,
                           transactional=True, control=True)

    assert compare_bodies({"records": marker(1000)}, {"records": marker(2000)}) == []
    data = [build_batch([(b"k", b"v", (), ts)], producer_id=5, producer_epoch=0, transactional=True)
            for ts in (1000, 2000)]
    assert [d.path for d in compare_bodies({"records": data[0]}, {"records": data[1]})] == [
        "records[0].records[offset=0].timestamp"]


def test_list_groups_keeps_only_own_groups() -> None:
    a = {"groups": [{"group_id": "wd-1", "group_state": "Empty"}, {"group_id": "someone-else"}]}
    b = {"groups": [{"group_id": "wd-1", "group_state": "Empty"}]}
    assert compare_bodies(a, b, api_key=16) == []
    assert compare_bodies(a, b, api_key=15) != []


def test_describe_topic_partitions_keeps_own_internal_and_failed_topics() -> None:
    own = {"name": "wd-t", "error_code": 0, "partitions": []}
    a = {"topics": [own, {"name": "other-test", "error_code": 0}, {"name": "__consumer_offsets", "error_code": 0}],
         "next_cursor": None}
    assert compare_bodies(a, {"topics": [own], "next_cursor": None}, api_key=75) == [
        Difference("topics[name=__consumer_offsets]", {"name": "__consumer_offsets", "error_code": 0}, ABSENT)]
    unknown = {"topics": [{"name": "someone-else", "error_code": 3}], "next_cursor": None}
    assert [d.path for d in compare_bodies(unknown, {"topics": [], "next_cursor": None}, api_key=75)] == [
        "topics[name=someone-else]"]


def test_outcome_kinds_are_compared_first() -> None:
    closed, answered = Outcome("closed"), Outcome("response", Container(error_code=0))
    assert [d.path for d in compare_outcomes(closed, answered)] == ["<outcome>"]
    assert compare_outcomes(closed, Outcome("closed", detail="other text")) == []


def _result(api: int, version: int, name: str, d: Difference) -> CaseResult:
    return CaseResult(api, version, name, "valid", Outcome("closed"), Outcome("closed"), [d])


def test_rules_match_api_version_case_path_and_values() -> None:
    rule = Rule(api="ListOffsets,Fetch", versions="0,11", case="*", path="<outcome>", reason="r",
                kafka="closed", kbroker="response*")
    hit = _result(2, 11, "x", Difference("<outcome>", "closed", "response(error_code=0)"))
    classify(hit, [rule])
    assert hit.status == "accepted" and rule.used == 1
    for r in (_result(2, 5, "x", Difference("<outcome>", "closed", "response")),     # version
              _result(3, 0, "x", Difference("<outcome>", "closed", "response")),     # API
              _result(2, 0, "x", Difference("<outcome>", "response", "closed"))):    # values
        classify(r, [rule])
        assert r.status == "differs"


def test_rule_paths_are_literal_but_for_star() -> None:
    rule = Rule(api="*", versions="3+", case="*", path="topics[name=wd-*].error_code", reason="r")
    ok = _result(3, 4, "c", Difference("topics[name=wd-3-4-a].error_code", 3, 0))
    other = _result(3, 4, "c", Difference("topics[name=xd-3].error_code", 3, 0))
    old = _result(3, 2, "c", Difference("topics[name=wd-3-2-a].error_code", 3, 0))
    for r in (ok, other, old):
        classify(r, [rule])
    assert (ok.status, other.status, old.status) == ("accepted", "differs", "differs")


def test_accepted_file_loads_and_every_rule_has_a_reason(tmp_path: Path) -> None:
    rules = load_rules()
    assert rules and all(r.reason for r in rules)
    bad = tmp_path / "a.toml"
    bad.write_text('[[accept]]\napi = "Fetch"\n')
    with pytest.raises(ValueError, match="reason"):
        load_rules(bad)


def test_generic_malformed_frames() -> None:
    cases = {c.name: c for c in catalog.cases_for(catalog.METADATA, 12)}
    assert {"truncated-body", "trailing-bytes", "oversized-length"} <= set(cases)
    st = catalog.State({"shared.topic_id": uuid.uuid4()})
    base = catalog.frame(3, 12, 5, cases["shared-topic"].resolve(st))
    truncated = cases["truncated-body"].raw(5, st)  # type: ignore[misc]
    assert len(truncated) < len(base) and struct.unpack(">i", truncated[:4])[0] == len(truncated) - 4
    padded = cases["trailing-bytes"].raw(5, st)  # type: ignore[misc]
    assert padded.startswith(struct.pack(">i", len(padded) - 4)) and padded.endswith(b"garbage")
    assert decode_request(padded[4:]).body.topics[0].name == catalog.SHARED_TOPIC  # still readable
    oversized = cases["oversized-length"].raw(5, st)  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017 - the codec's own error type varies by field
        decode_request(oversized[4:])


def test_oversized_length_patches_a_classic_string() -> None:
    # FindCoordinator v0: the first field is the key, an int16-length string.
    case = next(c for c in catalog.cases_for(catalog.FIND_COORDINATOR, 0) if c.name == "oversized-length")
    frame = case.raw(1, catalog.State())  # type: ignore[misc]
    header = 4 + 8 + 2 + len("wirediff")
    assert frame[header:header + 2] == b"\x7f\xff"


def test_bad_version_case_names_an_unserved_version() -> None:
    frame = catalog.bad_version_case(18, 4, 5).raw(9, catalog.State())  # type: ignore[misc]
    assert struct.unpack(">hhi", frame[4:12]) == (18, 5, 9)


def test_api_versions_unsupported_answer_decodes_as_v0() -> None:
    payload = encode_response(18, 0, 9, {"error_code": 35, "api_keys": [
        {"api_key": 18, "min_version": 0, "max_version": 4}]})[4:]
    out = decode(18, 5, 9, payload)
    assert out.kind == "response" and out.body.error_code == 35 and out.detail == "read as v0"
    assert decode(18, 3, 8, payload).kind == "undecodable"  # wrong correlation id


def test_report_groups_versions_and_counts() -> None:
    same = CaseResult(3, 1, "a", "valid", Outcome("closed"), Outcome("closed"))
    d = Difference("topics[name=wd-3-1-t].error_code", 3, 0)
    r1 = _result(3, 1, "b", d)
    r2 = _result(3, 2, "b", Difference("topics[name=wd-3-2-t].error_code", 3, 0))
    for r in (r1, r2):
        classify(r, [])
    run = Run([same, r1, r2], {3: (0, 13)}, {3: (0, 13)}, 1.0, False, [])
    counts = report.counts(run)
    assert (counts["cases"], counts["same"], counts["differs"], counts["kbroker_versions"]) == (3, 1, 2, 14)
    text = report.render(run)
    assert "| Metadata | v1-2 | b | `topics[name=wd-3-V-t].error_code` | 3 | 0 |" in text
    r3 = _result(3, 4, "c", Difference("topics[name=wd-3-4-t].error_code", 3, 0))
    classify(r3, [])
    text = report.render(Run([r1, r2, r3], {3: (0, 13)}, {3: (0, 13)}, 1.0, False, []))
    assert "| Metadata | v1-2, v4 | b, c | `topics[name=wd-3-V-t].error_code` | 3 | 0 |" in text


def test_describe_log_dirs_masks_dirs_and_space_and_keeps_own_topics() -> None:
    def answer(log_dir: str, total: int, topics: list[str], size: int = 70) -> dict[str, object]:
        return {"error_code": 0, "results": [{"error_code": 0, "log_dir": log_dir, "total_bytes": total,
                                              "usable_bytes": total // 2, "topics": [
            {"name": t, "partitions": [{"partition_index": 0, "partition_size": size, "offset_lag": 0,
                                        "is_future_key": False}]} for t in topics]}]}

    kafka = answer("/tmp/kafka-logs", 10_000, ["wd-35-4-t", "wd-21-2-t", "__consumer_offsets", "tools-x"])
    kbroker = answer("/tmp/kbroker/data", 20_000, ["wd-35-4-t", "wd-0-9-t"])
    assert compare_bodies(kafka, kbroker, api_key=35) == []
    # Unreported space (-1) still differs from a reported one; sizes of own topics are compared.
    assert [d.path for d in compare_bodies(kafka, answer("/x", -1, ["wd-35-4-t"]), api_key=35)] == [
        "results[error_code=0].total_bytes", "results[error_code=0].usable_bytes"]
    assert [d.path for d in compare_bodies(kafka, answer("/x", 2, ["wd-35-4-t"], size=71), api_key=35)] == [
        "results[error_code=0].topics[name=wd-35-4-t].partitions[partition_index=0].partition_size"]
    assert [d.path for d in compare_bodies(kafka, answer("/x", 2, []), api_key=35)] == [
        "results[error_code=0].topics[name=wd-35-4-t]"]


def test_config_resources_match_by_type_and_name_and_others_topics_are_left_out() -> None:
    """ListConfigResources: a broker and its logger share a name, so entries are matched by type
    and name, in any order; topics and groups other users of a shared Kafka made are not compared."""
    kafka = {"error_code": 0, "config_resources": [
        {"resource_type": 4, "resource_name": "1"}, {"resource_type": 8, "resource_name": "1"},
        {"resource_type": 2, "resource_name": "wd-74-t"}, {"resource_type": 2, "resource_name": "someone-else"},
        {"resource_type": 32, "resource_name": "their-group"}, {"resource_type": 2, "resource_name": "__consumer_offsets"}]}
    kbroker = {"error_code": 0, "config_resources": [
        {"resource_type": 2, "resource_name": "__consumer_offsets"}, {"resource_type": 2, "resource_name": "wd-74-t"},
        {"resource_type": 8, "resource_name": "1"}, {"resource_type": 4, "resource_name": "1"}]}
    assert compare_bodies(kafka, kbroker, 74) == []
    kbroker["config_resources"].pop()  # the broker itself missing is a difference
    assert [d.path for d in compare_bodies(kafka, kbroker, 74)] == ["config_resources[resource=4:1]"]
