"""The fuzzer: its corpus and cases, and seeded doses against the codec and a live broker."""

from __future__ import annotations

import time

import pytest

from kbroker.codec import decode_request
from kbroker.handlers import registry
from tools.fuzz.broker_mode import BrokerFuzz, BrokerOptions, BrokerSummary, LogMonitor, exit_signature
from tools.fuzz.cli import broker_report, codec_report, make_mutator
from tools.fuzz.codec_mode import CodecSummary, check_case, run_codec
from tools.fuzz.corpus import CAPTURED, build_corpus, check_seed, load_captured
from tools.fuzz.mutate import STRATEGIES


def test_corpus_covers_every_served_api_version_with_valid_requests() -> None:
    corpus = build_corpus(1, captured=None)
    served = {(k, v) for k, h in registry().items() for v in range(h.versions.low, h.versions.high + 1)}
    assert {(s.api_key, s.version) for s in corpus} == served
    for s in corpus:
        check_seed(s)  # decodes, and the traced encoding is byte for byte the codec's own


def test_captured_client_frames_are_seeds_the_codec_decodes() -> None:
    seeds = load_captured(CAPTURED)
    assert {s.api_name for s in seeds} >= {"Produce", "Fetch", "Metadata", "JoinGroup", "SyncGroup", "CreateTopics"}
    assert sum(bool(s.spans) for s in seeds) > len(seeds) // 2  # most re-encode byte for byte: fields mutable
    for s in seeds:
        decode_request(s.frame[4:])


def test_cases_are_deterministic_in_seed_and_index() -> None:
    a, b, c = make_mutator(5), make_mutator(5), make_mutator(6)
    assert [a.case(i).wire for i in range(300)] == [b.case(i).wire for i in range(300)]
    assert [a.case(i).wire for i in range(300)] != [c.case(i).wire for i in range(300)]
    assert {a.case(i).strategy for i in range(300)} == set(STRATEGIES)


def test_codec_mode_reports_a_non_codec_exception_with_its_reproducer(monkeypatch: pytest.MonkeyPatch) -> None:
    m = make_mutator(1)
    case = next(c for c in map(m.case, range(100)) if c.strategy == "valid")

    def broken(frame: bytes) -> None:
        raise KeyError("boom")

    monkeypatch.setattr("tools.fuzz.codec_mode.decode_request", broken)
    s = CodecSummary()
    check_case(case, s)
    (f,) = list(s.findings)
    assert f.kind == "codec-exception" and f.signature.startswith("KeyError")
    assert f.reproducer_hex == case.wire.hex() and f.case_index == case.index


def test_codec_mode_reports_a_decode_that_does_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    m = make_mutator(1)
    case = next(c for c in map(m.case, range(100)) if c.strategy == "valid")
    monkeypatch.setattr("tools.fuzz.codec_mode.decode_request", lambda frame: time.sleep(5))
    s = CodecSummary()
    check_case(case, s, hang_seconds=0.2)
    (f,) = list(s.findings)
    assert f.kind == "codec-hang" and f.reproducer_hex == case.wire.hex()


def test_codec_dose_finds_nothing() -> None:
    """20k seeded mutations: the decoder refuses bad frames only with the codec's own errors."""
    s = run_codec(make_mutator(20261128), 20_000, None)
    print(codec_report(s))
    assert s.cases == 20_000 and s.decoded > 1000 and s.codec_errors > 1000
    assert not len(s.findings), codec_report(s)


def test_log_monitor_groups_tracebacks_by_exception_and_place(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "broker.log"
    log.write_text(
        "kbroker 1 listening on PLAINTEXT://127.0.0.1:1, data in x\n"
        "2026-01-01 00:00:00,001 WARNING kbroker.server.connection: closing connection\n"
        "2026-01-01 00:00:00,002 ERROR kbroker.server.dispatch: Produce v9 from 127.0.0.1 failed\n"
        "Traceback (most recent call last):\n"
        '  File "/x/kbroker/records/batch.py", line 129, in peek_size\n'
        "    return 1\n"
        "struct.error: offset -2 out of range\n"
        "2026-01-01 00:00:00,003 INFO kbroker.broker: fine\n")
    (err,) = LogMonitor(log).poll(final=True)
    assert err.api == "Produce v9"
    assert err.signature == ("kbroker.server.dispatch: Produce vN from N failed -> struct.error at "
                             "kbroker/records/batch.py:129 in peek_size")


def test_exit_signature_names_the_innermost_exception_of_an_exception_group() -> None:
    tail = """  + Exception Group Traceback (most recent call last):
  |   File "/x/kbroker/broker.py", line 67, in running
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/x/kbroker/groups/manager.py", line 81, in store_group
    |   File "/x/kbroker/groups/records.py", line 212, in group_value
    |   File "/x/kbroker/groups/records.py", line 87, in i16
    | struct.error: 'h' format requires -32768 <= number <= 32767
    +------------------------------------"""
    assert exit_signature(tail) == ("struct.error at kbroker/groups/records.py:87 in i16 < "
                                    "kbroker/groups/records.py:212 in group_value < "
                                    "kbroker/groups/manager.py:81 in store_group")


@pytest.fixture(scope="module")
def live_dose() -> BrokerSummary:
    """3000 seeded requests against a ``kbroker serve`` subprocess, then a confluent-kafka check."""
    pytest.importorskip("confluent_kafka")
    s = BrokerFuzz(make_mutator(20261128), BrokerOptions(requests=3000, workers=8, attribute_seconds=20)).run()
    print(broker_report(s))
    return s


def test_live_dose_broker_survives_and_still_serves_clients(live_dose: BrokerSummary) -> None:
    assert live_dose.sent - live_dose.session_requests == 3000 and live_dose.session_requests > 0
    assert live_dose.broker_exits == 0, broker_report(live_dose)
    assert live_dose.health == "passed", broker_report(live_dose)
    assert live_dose.responses > 300 and live_dose.closes > 300
    assert not live_dose.findings.of_kind("unresponsive", "bad-response", "shutdown"), broker_report(live_dose)


def test_live_dose_logs_no_unhandled_exceptions(live_dose: BrokerSummary) -> None:
    errors = live_dose.findings.of_kind("broker-error")
    assert not errors, "\n".join(f.render() for f in errors)

