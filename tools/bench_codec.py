#!/usr/bin/env python3
"""Micro-benchmark of the wire codec.

Large messages: times decode and encode (median of many runs, in µs) of a Produce request
carrying 1 MiB of record batches over 10 partitions (v3, v9 and the highest version) and of a
Fetch response of the same size (v11 and the highest version), against a target of
200 µs each. The record bytes are opaque to the codec, so random bytes stand in for
real batches.

Small messages (``--small``): the hot APIs' requests decoded and responses encoded, each by
the reference codec (the ``construct`` structs, :mod:`kbroker.codec.reference`) and by the
compiled one (:mod:`kbroker.codec`), side by side.

Usage: python tools/bench_codec.py [--runs N] [--profile] [--small]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kbroker.codec import (  # noqa: E402
    api_by_name,
    api_table,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    encode_response_parts,
)
from kbroker.codec import reference as ref  # noqa: E402

TARGET_US = 200.0
TOTAL = 1 << 20
PARTITIONS = 10


def _batches() -> list[bytes]:
    size = TOTAL // PARTITIONS
    return [os.urandom(size) for _ in range(PARTITIONS)]


def produce_body(batches: list[bytes]) -> dict[str, Any]:
    return {
        "transactional_id": None, "acks": -1, "timeout_ms": 30000,
        "topic_data": [{
            "name": "bench-topic", "topic_id": uuid.UUID(int=0x1234),
            "partition_data": [{"index": i, "records": b} for i, b in enumerate(batches)],
        }],
    }


def fetch_body(batches: list[bytes]) -> dict[str, Any]:
    return {
        "throttle_time_ms": 0, "error_code": 0, "session_id": 7,
        "responses": [{
            "topic": "bench-topic", "topic_id": uuid.UUID(int=0x1234),
            "partitions": [{"partition_index": i, "error_code": 0, "high_watermark": 1000, "last_stable_offset": 1000,
                            "log_start_offset": 0, "aborted_transactions": [], "preferred_read_replica": -1,
                            "records": b} for i, b in enumerate(batches)],
        }],
    }


def median_us(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    batches = _batches()
    produce, fetch = api_by_name("Produce"), api_by_name("Fetch")
    out = []
    for v in (3, 9, produce.versions.high):
        body = produce_body(batches)
        frame = encode_request(produce.key, v, 1, body)[4:]
        out.append((f"Produce request v{v}",
                    lambda frame=frame: decode_request(frame),
                    lambda v=v, body=body: encode_request(produce.key, v, 1, body)))
    for v in (11, fetch.versions.high):
        body = fetch_body(batches)
        frame = encode_response(fetch.key, v, 1, body)[4:]
        out.append((f"Fetch response v{v}",
                    lambda v=v, frame=frame: decode_response(fetch.key, v, frame),
                    lambda v=v, body=body: encode_response(fetch.key, v, 1, body)))
    return out


def _topic_id(i: int) -> uuid.UUID:
    return uuid.UUID(int=0x1000 + i)


def small_cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, reference, compiled) of the hot APIs' small requests and responses."""
    batch = os.urandom(100 + 61)  # one record of 100 B in its batch
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []

    def request(name: str, version: int, body: dict[str, Any], label: str = "") -> None:
        api = api_by_name(name)
        frame = encode_request(api.key, version, 7, body, client_id="bench-client")[4:]
        cases.append((f"{name} v{version} request decode{label}",
                      lambda: ref.decode_request(frame), lambda: decode_request(frame)))

    def response(name: str, version: int, body: dict[str, Any], label: str = "") -> None:
        key = api_by_name(name).key
        cases.append((f"{name} v{version} response encode{label}",
                      lambda: ref.encode_response_parts(key, version, 7, body),
                      lambda: encode_response_parts(key, version, 7, body)))

    produce = {"transactional_id": None, "acks": -1, "timeout_ms": 30000, "topic_data": [
        {"name": "bench-topic", "partition_data": [{"index": 0, "records": batch}]}]}
    request("Produce", 9, produce)
    request("Produce", 11, produce)
    produced = {"responses": [{"name": "bench-topic", "partition_responses": [
        {"index": 0, "error_code": 0, "base_offset": 1234, "log_append_time_ms": -1, "log_start_offset": 0,
         "record_errors": [], "error_message": None}]}], "throttle_time_ms": 0}
    response("Produce", 9, produced)
    response("Produce", 11, produced)
    for n in (1, 100):
        fetch = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 52428800, "isolation_level": 0,
                 "session_id": 0, "session_epoch": -1, "topics": [{"topic": "bench-topic", "partitions": [
                     {"partition": i, "current_leader_epoch": 0, "fetch_offset": 100, "log_start_offset": -1,
                      "partition_max_bytes": 1048576} for i in range(n)]}],
                 "forgotten_topics_data": [], "rack_id": ""}
        plural = f" ({n} partition{'s' if n > 1 else ''})"
        request("Fetch", 12, fetch, plural)
        fetched = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [
            {"topic": "bench-topic", "partitions": [
                {"partition_index": i, "error_code": 0, "high_watermark": 1000, "last_stable_offset": 1000,
                 "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
                 "records": batch} for i in range(n)]}]}
        response("Fetch", 12, fetched, plural)
    request("Metadata", 12, {"topics": [{"name": "bench-topic", "topic_id": _topic_id(0)}],
                             "allow_auto_topic_creation": False, "include_topic_authorized_operations": False})
    metadata = {"throttle_time_ms": 0, "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
                "cluster_id": "kbroker-cluster", "controller_id": 1, "topics": [
                    {"error_code": 0, "name": f"topic-{t}", "topic_id": _topic_id(t), "is_internal": False,
                     "partitions": [{"error_code": 0, "partition_index": p, "leader_id": 1, "leader_epoch": 0,
                                     "replica_nodes": [1], "isr_nodes": [1], "offline_replicas": []}
                                    for p in range(3)],
                     "topic_authorized_operations": -2147483648} for t in range(10)]}
    response("Metadata", 12, metadata, " (10 topics)")
    request("ApiVersions", 3, {"client_software_name": "bench", "client_software_version": "1.0"})
    versions = {"error_code": 0, "throttle_time_ms": 0, "api_keys": [
        {"api_key": k, "min_version": a.versions.low, "max_version": a.versions.high} for k, a in api_table().items()]}
    response("ApiVersions", 3, versions)
    request("Heartbeat", 4, {"group_id": "bench-group", "generation_id": 3, "member_id": "member-" + "x" * 36,
                             "group_instance_id": None})
    response("Heartbeat", 4, {"throttle_time_ms": 0, "error_code": 0})
    request("OffsetCommit", 8, {"group_id": "bench-group", "generation_id_or_member_epoch": 3,
                                "member_id": "member-" + "x" * 36, "group_instance_id": None, "topics": [
                                    {"name": "bench-topic", "partitions": [
                                        {"partition_index": 0, "committed_offset": 100, "committed_leader_epoch": 0,
                                         "committed_metadata": ""}]}]})
    response("OffsetCommit", 8, {"throttle_time_ms": 0, "topics": [
        {"name": "bench-topic", "partitions": [{"partition_index": 0, "error_code": 0}]}]})
    return cases


def main_small(runs: int) -> int:
    print(f"{'message (small)':<44} {'reference µs':>13} {'compiled µs':>12} {'speed-up':>9}")
    for name, reference, compiled in small_cases():
        assert _same(reference(), compiled()), name
        r, c = median_us(reference, runs), median_us(compiled, runs)
        print(f"{name:<44} {r:>13.1f} {c:>12.2f} {r / c:>8.1f}x")
    return 0


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "body"):  # a decoded request
        return bool(a.header == b.header and a.body == b.body)
    return bool(a == b)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each case instead")
    ap.add_argument("--small", action="store_true", help="the hot APIs' small messages: reference vs compiled")
    args = ap.parse_args(argv)
    if args.small:
        return main_small(args.runs)
    all_under = True
    print(f"{'message (1 MiB, 10 partitions)':<32} {'decode µs':>10} {'encode µs':>10}  target {TARGET_US:.0f} µs")
    for name, dec, enc in cases():
        if args.profile:
            import cProfile
            import pstats

            for label, fn in (("decode", dec), ("encode", enc)):
                prof = cProfile.Profile()
                prof.runcall(lambda fn=fn: [fn() for _ in range(200)])
                print(f"--- {name} {label}")
                pstats.Stats(prof).sort_stats("tottime").print_stats(8)
            continue
        d, e = median_us(dec, args.runs), median_us(enc, args.runs)
        ok = d < TARGET_US and e < TARGET_US
        all_under &= ok
        print(f"{name:<32} {d:>10.1f} {e:>10.1f}  {'under target' if ok else 'OVER TARGET'}")
    if not args.profile:
        print("all under target" if all_under else "some cases are over target")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
