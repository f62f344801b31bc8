"""``kbroker produce``: send lines from stdin as records (like kafka-console-producer.sh)."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from kbroker.client.cluster import KafkaClient, TopicInfo
from kbroker.client.data import COMPRESSION, partition_for_key, produce
from kbroker.client.errors import ClientError
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool

#: Lines buffered before they are sent when stdin is not a terminal.
BATCH_LINES = 1000
#: Bytes of keys and values buffered before they are sent (below the default
#: max.message.bytes of 1 MiB, so an uncompressed batch still fits).
BATCH_BYTES = 512 * 1024

Record = tuple[bytes | None, bytes]


def register(subparsers: Any) -> None:
    """Add the ``produce`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "produce", help="send lines from stdin to a topic",
        description="Read lines from stdin and send each as a record, as kafka-console-producer.sh does.")
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", required=True, help="the topic to write to")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                        help="parse.key=true and key.separator=SEP (default tab) split keys off lines")
    parser.add_argument("--compression", "--compression-codec", dest="compression", default="none",
                        choices=sorted(COMPRESSION), help="batch compression (default: none)")
    parser.add_argument("--acks", "--request-required-acks", dest="acks", default="-1",
                        choices=["0", "1", "-1", "all"], help="acknowledgements to wait for (default: -1)")
    parser.add_argument("--partition", type=int, help="write every record to this partition")
    parser.set_defaults(handler=run)


class LineParser:
    """Turns input lines into ``(key, value)`` per the console producer's properties."""

    def __init__(self, properties: dict[str, str]) -> None:
        self.parse_key = properties.get("parse.key", "false").lower() == "true"
        self.separator = properties.get("key.separator", "\t")
        self.ignore_error = properties.get("ignore.error", "false").lower() == "true"
        if self.parse_key and not self.separator:
            raise ValueError("key.separator must not be empty")

    def parse(self, line: str, number: int) -> Record:
        if not self.parse_key:
            return None, line.encode()
        key, sep, value = line.partition(self.separator)
        if not sep:
            if self.ignore_error:
                return None, line.encode()
            raise ClientError(f"No key separator found on line number {number}: '{line}'")
        return key.encode(), value.encode()


def _lines(stream: Iterable[str]) -> Iterator[str]:
    for line in stream:
        if line.endswith("\n"):
            line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        yield line


class Sender:
    """Routes records to partitions and sends one batch per partition on :meth:`flush`."""

    def __init__(self, client: KafkaClient, topic: TopicInfo, args: argparse.Namespace) -> None:
        self.client = client
        self.topic = topic
        self.fixed_partition: int | None = args.partition
        if self.fixed_partition is not None:
            topic.partition(self.fixed_partition)  # raises if it does not exist
        self.acks = -1 if args.acks == "all" else int(args.acks)
        self.compression = COMPRESSION[args.compression]
        self.pending: dict[int, list[Record]] = {}
        self.sticky = random.randrange(len(topic.partitions)) if topic.partitions else 0
        self.pending_bytes = 0
        self.sent = 0

    def add(self, record: Record) -> None:
        if self.fixed_partition is not None:
            partition = self.fixed_partition
        else:
            parts = self.topic.partitions
            index = self.sticky if record[0] is None else partition_for_key(record[0], len(parts))
            partition = parts[index].partition
        self.pending.setdefault(partition, []).append(record)
        self.pending_bytes += len(record[0] or b"") + len(record[1]) + 16

    def flush(self) -> None:
        for partition, records in sorted(self.pending.items()):
            leader = self.topic.partition(partition).leader
            produce(self.client, self.topic.name, partition, records, acks=self.acks,
                    compression=self.compression, leader=leader)
            self.sent += len(records)
        self.pending.clear()
        self.pending_bytes = 0
        if self.topic.partitions:  # the next batch of keyless records sticks to a new partition
            self.sticky = random.randrange(len(self.topic.partitions))


def run(args: argparse.Namespace) -> int:
    """Validate the properties, then produce stdin."""
    try:
        parser = LineParser(parse_properties(args.property))
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")

    def body(client: KafkaClient, args: argparse.Namespace) -> int:
        topic = client.topic(args.topic, auto_create=True)
        sender = Sender(client, topic, args)
        interactive = sys.stdin.isatty()
        for number, line in enumerate(_lines(sys.stdin), 1):
            sender.add(parser.parse(line, number))
            if interactive or number % BATCH_LINES == 0 or sender.pending_bytes >= BATCH_BYTES:
                sender.flush()
        sender.flush()
        return 0

    return run_tool(args, body)
