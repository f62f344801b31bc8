"""``kbroker consume``: print records of a topic (like kafka-console-consumer.sh)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from kbroker.client.cluster import KafkaClient
from kbroker.client.data import EARLIEST, LATEST, TopicPartition, fetch, list_offsets
from kbroker.client.errors import NOT_LEADER_OR_FOLLOWER, RETRIABLE, KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool
from kbroker.records.record import Record

#: Longest a single fetch waits on the broker, so timeouts and Ctrl-C stay responsive.
MAX_WAIT_MS = 500
#: Upper bound when growing the per-partition fetch size to fit one large batch.
MAX_PARTITION_BYTES = 256 * 1024 * 1024


def register(subparsers: Any) -> None:
    """Add the ``consume`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "consume", help="print records from a topic",
        description="Fetch records from a topic and print them, as kafka-console-consumer.sh does.")
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", required=True, help="the topic to read")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the earliest offset instead of the end")
    parser.add_argument("--partition", type=int, help="read only this partition")
    parser.add_argument("--offset", default=None, metavar="OFFSET",
                        help="with --partition: a non-negative offset, 'earliest' or 'latest' (default)")
    parser.add_argument("--max-messages", type=int, help="exit after printing this many records")
    parser.add_argument("--timeout-ms", type=int,
                        help="exit when no record arrived for this many milliseconds")
    parser.add_argument("--isolation-level", choices=["read_uncommitted", "read_committed"],
                        default="read_uncommitted", help="whether to hide uncommitted transactional records")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                        help="print.key, print.partition, print.offset, print.timestamp=true; "
                             "key.separator=SEP; null.literal=TEXT")
    parser.set_defaults(handler=run)


@dataclass
class Formatter:
    """Renders records as the console consumer's default message formatter does."""

    print_key: bool = False
    print_partition: bool = False
    print_offset: bool = False
    print_timestamp: bool = False
    key_separator: str = "\t"
    null_literal: str = "null"

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> Formatter:
        def flag(name: str) -> bool:
            return props.get(name, "false").lower() == "true"

        return cls(flag("print.key"), flag("print.partition"), flag("print.offset"), flag("print.timestamp"),
                   props.get("key.separator", "\t"), props.get("null.literal", "null"))

    def _text(self, data: bytes | None) -> str:
        return self.null_literal if data is None else data.decode("utf-8", errors="replace")

    def format(self, partition: int, record: Record) -> str:
        parts = []
        if self.print_timestamp:
            parts.append(f"CreateTime:{record.timestamp}")
        if self.print_partition:
            parts.append(f"Partition:{partition}")
        if self.print_offset:
            parts.append(f"Offset:{record.offset}")
        prefix = "".join(p + "\t" for p in parts)
        key = self._text(record.key) + self.key_separator if self.print_key else ""
        return prefix + key + self._text(record.value)


def _start_spec(args: argparse.Namespace) -> int:
    """EARLIEST, LATEST or an explicit offset for the partitions to read."""
    if args.offset is None:
        return EARLIEST if args.from_beginning else LATEST
    if args.offset == "earliest":
        return EARLIEST
    if args.offset == "latest":
        return LATEST
    offset = int(args.offset)  # validated in run()
    return offset


def _positions(client: KafkaClient, args: argparse.Namespace) -> dict[TopicPartition, int]:
    topic = client.topic(args.topic)
    partitions = [p.partition for p in topic.partitions]
    if args.partition is not None:
        topic.partition(args.partition)
        partitions = [args.partition]
    spec = _start_spec(args)
    if spec >= 0:
        return {TopicPartition(args.topic, p): spec for p in partitions}
    offsets = list_offsets(client, args.topic, {p: spec for p in partitions})
    return {TopicPartition(args.topic, p): offsets[p] for p in partitions}


def _consume(client: KafkaClient, args: argparse.Namespace, fmt: Formatter) -> int:
    positions = _positions(client, args)
    isolation = 1 if args.isolation_level == "read_committed" else 0
    leader_of: dict[TopicPartition, int] | None = None
    partition_max_bytes = 1024 * 1024
    count = 0
    last_record = time.monotonic()
    out = sys.stdout
    try:
        while args.max_messages is None or count < args.max_messages:
            wait_ms = MAX_WAIT_MS
            if args.timeout_ms is not None:
                left = args.timeout_ms - (time.monotonic() - last_record) * 1000
                if left <= 0:
                    break
                wait_ms = max(0, min(wait_ms, int(left)))
            if leader_of is None:
                topic = client.topic(args.topic)
                leader_of = {tp: topic.partition(tp[1]).leader for tp in positions}
            by_leader: dict[int, dict[TopicPartition, int]] = {}
            for tp, offset in positions.items():
                by_leader.setdefault(leader_of[tp], {})[tp] = offset
            got = 0
            for leader, wanted in by_leader.items():
                result = fetch(client, leader, wanted, max_wait_ms=wait_ms, isolation_level=isolation,
                               partition_max_bytes=partition_max_bytes)
                for tp in sorted(result):
                    fp = result[tp]
                    if fp.error_code in RETRIABLE or fp.error_code == NOT_LEADER_OR_FOLLOWER:
                        leader_of = None  # look the leaders up again
                        time.sleep(0.05)
                        continue
                    if fp.truncated:
                        partition_max_bytes = min(partition_max_bytes * 2, MAX_PARTITION_BYTES)
                    if fp.error_code:
                        raise KafkaError(fp.error_code, _fetch_error(tp, wanted[tp], fp.error_code))
                    for record in fp.records:
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        out.write(fmt.format(tp[1], record) + "\n")
                        count += 1
                        got += 1
                        positions[tp] = record.offset + 1
                    else:
                        positions[tp] = max(positions[tp], fp.next_offset)
            if got:
                out.flush()
                last_record = time.monotonic()
    finally:
        out.flush()
        print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


def _fetch_error(tp: TopicPartition, offset: int, code: int) -> str | None:
    if code == 1:  # OFFSET_OUT_OF_RANGE
        return f"Fetch position {offset} is out of range for partition {tp[0]}-{tp[1]}."
    return None


def run(args: argparse.Namespace) -> int:
    """Validate the options, then fetch and print until done."""
    if args.offset is not None:
        if args.partition is None:
            return fail("INVALID_REQUEST: --offset needs --partition")
        if args.offset not in ("earliest", "latest") and not args.offset.isdigit():
            return fail(f"INVALID_REQUEST: --offset must be a non-negative number, 'earliest' or "
                        f"'latest', not {args.offset!r}")
    if args.max_messages is not None and args.max_messages < 0:
        return fail("INVALID_REQUEST: --max-messages must not be negative")
    try:
        fmt = Formatter.from_properties(parse_properties(args.property))
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")
    return run_tool(args, lambda client, a: _consume(client, a, fmt))
