#!/usr/bin/env python3
"""Micro-benchmark of the wire codec on large messages.

Times decode and encode (median of many runs, in µs) of a Produce request carrying
1 MiB of record batches over 10 partitions (v3, v9 and the highest version) and of a
Fetch response of the same size (v11 and the highest version), against a target of
200 µs each. The record bytes are opaque to the codec, so random bytes stand in for
real batches.

Usage: python tools/bench_codec.py [--runs N] [--profile]
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

from kbroker.codec import api_by_name, decode_request, decode_response, encode_request, encode_response  # noqa: E402

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


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each case instead")
    args = ap.parse_args(argv)
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
