"""Command line: ``python -m tools.fuzz {codec,broker,replay} [options]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tools.fuzz.broker_mode import BrokerFuzz, BrokerOptions, BrokerSummary, replay
from tools.fuzz.codec_mode import CodecSummary, check_case, run_codec
from tools.fuzz.corpus import build_corpus
from tools.fuzz.findings import Findings
from tools.fuzz.mutate import Mutator


def make_mutator(seed: int) -> Mutator:
    """The corpus and mutator of a run with ``seed``."""
    return Mutator(build_corpus(seed), seed)


def _findings(findings: Findings) -> list[str]:
    if not len(findings):
        return ["findings: none"]
    out = [f"findings: {len(findings)} distinct"]
    for f in sorted(findings, key=lambda f: (f.kind, -f.count)):
        out.append(f.render())
    return out


def codec_report(s: CodecSummary) -> str:
    rate = s.cases / s.seconds if s.seconds else 0.0
    return "\n".join([
        f"codec: {s.cases} cases, {s.frames} frames, {s.decoded} decoded, {s.codec_errors} refused with codec "
        f"errors, {s.seconds:.1f} s, {rate:.0f} cases/s",
        *_findings(s.findings),
    ])


def broker_report(s: BrokerSummary) -> str:
    rss = [b for _, b in s.rss]
    growth = ""
    if len(rss) >= 10:
        tenth = max(len(rss) // 10, 1)
        growth = f", RSS first 10% max {max(rss[:tenth]) >> 20} MiB, last 10% max {max(rss[-tenth:]) >> 20} MiB"
    return "\n".join([
        f"broker: {s.sent} requests sent, {s.responses} responses, {s.closes} connections closed by the broker, "
        f"{s.timeouts} read timeouts, {s.connections} connections, {s.connect_errors} connect errors; "
        f"{s.session_requests} of the requests in group sessions",
        f"broker exits: {s.broker_exits}; max RSS {s.max_rss >> 20} MiB{growth}; slowest ApiVersions probe "
        f"{s.probe_max:.2f} s",
        f"time {s.seconds:.1f} s, rate {s.rate:.0f} requests/s; health (confluent-kafka produce+consume): {s.health}",
        *_findings(s.findings),
    ])


def _json(findings: Findings, extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "findings": [
        {"kind": f.kind, "signature": f.signature, "count": f.count, "api": f.api, "case": f.case_index,
         "reproducer_hex": f.reproducer_hex, "detail": f.detail} for f in findings]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    for name, help_ in (("codec", "decode mutated frames in-process"),
                        ("broker", "send mutated frames to a live broker"),
                        ("replay", "regenerate one case by index; decode it, or send it with --bootstrap"),
                        ("capture", "record real clients' requests into tools/fuzz/captured.txt")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--seed", type=int, default=1, help="run seed (default 1); cases are deterministic in it")
        if name == "capture":
            continue
        if name == "replay":
            sp.add_argument("--case", type=int, required=True, help="case index")
            sp.add_argument("--bootstrap", help="host:port of a broker to send the case to")
            continue
        sp.add_argument("--requests", type=int, help="number of cases (default: 20000 codec, 3000 broker)")
        sp.add_argument("--seconds", type=float, help="stop after this many seconds")
        sp.add_argument("--json", type=Path, help="also write the summary and findings here")
        if name == "broker":
            sp.add_argument("--bootstrap", help="host:port of a running broker (default: start one)")
            sp.add_argument("--broker-log", type=Path, help="with --bootstrap: the broker's log file to watch")
            sp.add_argument("--work-dir", type=Path, help="keep the broker's data and log here")
            sp.add_argument("--workers", type=int, default=16, help="concurrent connections (default 16)")
            sp.add_argument("--pipeline", type=int, default=8, help="most requests sent ahead per connection")
            sp.add_argument("--progress", type=float, default=0.0, help="print progress every N seconds")
            sp.add_argument("--no-health", action="store_true", help="skip the confluent-kafka check at the end")
    a = p.parse_args(argv)
    if a.mode == "capture":
        from tools.fuzz.capture import capture

        print(f"{capture()} frames written")
        return 0
    mutator = make_mutator(a.seed)

    if a.mode == "replay":
        case = mutator.case(a.case)
        print(f"case {case.index}: {case.api_name} v{case.version} ({case.strategy})\n{case.wire.hex()}")
        if a.bootstrap:
            host, port = a.bootstrap.rsplit(":", 1)
            print("broker:", replay(host, int(port), case.wire))
            return 0
        s = CodecSummary()
        check_case(case, s)
        print(codec_report(s))
        return 1 if len(s.findings) else 0

    if a.mode == "codec":
        requests = a.requests if a.requests is not None or a.seconds is not None else 20000
        cs = run_codec(mutator, requests, a.seconds)
        print(codec_report(cs))
        if a.json:
            a.json.write_text(json.dumps(_json(cs.findings, {"mode": "codec", "cases": cs.cases,
                                                             "seconds": cs.seconds}), indent=1))
        return 1 if len(cs.findings) else 0

    opts = BrokerOptions(
        requests=a.requests if a.requests is not None or a.seconds is not None else 3000,
        seconds=a.seconds, workers=a.workers, pipeline=a.pipeline, bootstrap=a.bootstrap,
        broker_log=a.broker_log, work_dir=a.work_dir, progress=a.progress, health=not a.no_health)
    bs = BrokerFuzz(mutator, opts).run()
    print(broker_report(bs))
    if a.json:
        a.json.write_text(json.dumps(_json(bs.findings, {
            "mode": "broker", "sent": bs.sent, "responses": bs.responses, "closes": bs.closes,
            "timeouts": bs.timeouts, "session_requests": bs.session_requests, "broker_exits": bs.broker_exits, "max_rss": bs.max_rss,
            "probe_max": bs.probe_max,
            "seconds": bs.seconds, "rate": bs.rate, "health": bs.health, "rss": bs.rss}), indent=1))
    sys.stdout.flush()
    return 1 if len(bs.findings) else 0
