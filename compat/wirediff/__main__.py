"""Command line: ``python -m compat.wirediff [--apis ...] [--fast] [--out FILE] [--check]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from compat.wirediff import report, runner
from kbroker.codec import api_table

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_REPORT = REPO / "compat" / "WIRE-DIFF.md"
WORK_REPORT = REPO / "compat" / "work" / "wirediff" / "WIRE-DIFF.md"
#: kbroker runs as node 1, as the reference Kafka does, so broker ids need no masking.
#: The rest mirror tools/kafka_reference's server.properties.
KBROKER_OVERRIDES = {"node.id": "1", "num.partitions": "1", "auto.create.topics.enable": "true",
                     "offsets.topic.num.partitions": "1", "offsets.topic.replication.factor": "1",
                     "transaction.state.log.num.partitions": "1", "transaction.state.log.replication.factor": "1",
                     "transaction.state.log.min.isr": "1", "group.initial.rebalance.delay.ms": "0",
                     "inter.broker.listener.name": "PLAINTEXT"}


def parse_apis(text: str | None) -> set[int] | None:
    """``Produce,3,FindCoordinator`` -> API keys."""
    if not text:
        return None
    by_name = {a.name.lower(): k for k, a in api_table().items()}
    out = set()
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            out.add(int(part))
        elif part.lower() in by_name:
            out.add(by_name[part.lower()])
        else:
            raise SystemExit(f"unknown API {part!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m compat.wirediff", description=__doc__)
    p.add_argument("--apis", help="comma-separated API names or keys (default: all)")
    p.add_argument("--fast", action="store_true", help="each API at its highest version only")
    p.add_argument("--out", type=Path, help="report path (default: compat/WIRE-DIFF.md for a full run, "
                                            "compat/work/wirediff/WIRE-DIFF.md otherwise)")
    p.add_argument("--check", action="store_true", help="exit 1 on a difference accepted.toml does not list")
    p.add_argument("--accepted", type=Path, default=runner.ACCEPTED_FILE,
                   help="accepted differences (default: compat/wirediff/accepted.toml)")
    p.add_argument("--kafka", help="use a running Kafka at host:port instead of starting one")
    p.add_argument("--kbroker", help="use a running kbroker at host:port instead of starting one")
    p.add_argument("-v", "--verbose", action="store_true", help="print every differing case as it runs")
    args = p.parse_args(argv)
    apis = parse_apis(args.apis)

    from compat.broker import Broker
    from tools.kafka_reference import KafkaReference

    stack = []
    try:
        kafka_addr = args.kafka
        if not kafka_addr:
            kref = KafkaReference(Path(tempfile.mkdtemp(prefix="wirediff-kafka-")), heap="384m")
            stack.append(kref)
            kafka_addr = kref.start().bootstrap
        kb_addr = args.kbroker
        if not kb_addr:
            kb = Broker(overrides=KBROKER_OVERRIDES)
            stack.append(kb)
            kb_addr = kb.start().bootstrap

        def progress(i: int, n: int, r: runner.CaseResult) -> None:
            if args.verbose and r.seconds > 2:
                print(f"[{i}/{n}] {r.api_name} v{r.version} {r.name}: slow, {r.seconds:.1f} s", flush=True)
            if args.verbose and r.unaccepted:
                print(f"[{i}/{n}] {r.api_name} v{r.version} {r.name}: "
                      + "; ".join(d.render() for d in r.unaccepted[:4]), flush=True)

        result = runner.run(kafka_addr, kb_addr, apis=apis, fast=args.fast, progress=progress,
                            rules=runner.load_rules(args.accepted))
    finally:
        for s in reversed(stack):
            s.stop()
    full = apis is None and not args.fast
    out = args.out or (DEFAULT_REPORT if full and not args.check else WORK_REPORT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(result))
    counts = report.counts(result)
    print(f"wirediff: {counts['apis']} APIs, {counts['versions']} API versions, {counts['cases']} cases: "
          f"{counts['same']} same, {counts['accepted']} differ as accepted, {counts['differs']} differ "
          f"({result.seconds:.1f} s) -> {out}")
    if args.check and counts["differs"]:
        for r in result.results:
            for d in r.unaccepted:
                print(f"UNACCEPTED {r.api_name} v{r.version} {r.name}: {d.render()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
