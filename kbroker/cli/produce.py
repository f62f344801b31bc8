"""``kbroker produce``: send lines from stdin as records (like kafka-console-producer.sh and kcat -P).

Lines may carry headers and keys (``parse.headers``/``parse.key``); ``--header`` adds
headers to every record; ``null.marker`` or ``-Z`` turns values into nulls (tombstones).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kbroker.cli.progress import Progress
from kbroker.client.cluster import KafkaClient, TopicInfo
from kbroker.client.data import COMPRESSION, partition_for_key, produce
from kbroker.client.errors import LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, ClientError, KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool

#: Lines buffered before they are sent when stdin is not a terminal.
BATCH_LINES = 1000
#: Bytes of keys and values buffered before they are sent (below the default
#: max.message.bytes of 1 MiB, so an uncompressed batch still fits).
BATCH_BYTES = 512 * 1024
#: Sends of one batch while its partition's leadership moves (a new topic's leader being elected).
MOVED_LEADER_ATTEMPTS = 30

Headers = list[tuple[str, bytes | None]]
Record = tuple[bytes | None, bytes | None, Headers]

#: The ``--property`` keys of Kafka's LineMessageReader.
KNOWN_PROPERTIES = ("headers.delimiter", "headers.key.separator", "headers.separator", "ignore.error",
                    "key.separator", "null.marker", "parse.headers", "parse.key")


def register(subparsers: Any) -> None:
    """Add the ``produce`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "produce", help="send lines from stdin to a topic",
        description="Read lines from stdin and send each as a record, as kafka-console-producer.sh does.")
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", required=True, help="the topic to write to")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                        help="line parsing as Kafka's console producer: parse.key=true, key.separator (tab), "
                             "parse.headers=true, headers.delimiter (tab), headers.separator (,), "
                             "headers.key.separator (:), null.marker, ignore.error")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="KEY=VALUE",
                        help="a header added to every record (repeatable; KEY alone: a null value)")
    parser.add_argument("-Z", "--null-empty", action="store_true",
                        help="send an empty value as null, a tombstone (as kcat -Z)")
    parser.add_argument("--compression", "--compression-codec", dest="compression", default="none",
                        choices=sorted(COMPRESSION), help="batch compression (default: none)")
    parser.add_argument("--acks", "--request-required-acks", dest="acks", default="-1",
                        choices=["0", "1", "-1", "all"], help="acknowledgements to wait for (default: -1)")
    parser.add_argument("--partition", type=int, help="write every record to this partition")
    parser.set_defaults(handler=run)


def parse_header_option(item: str) -> tuple[str, bytes | None]:
    """``--header k=v`` as a header (``k`` alone: a null value); ValueError without a key."""
    key, sep, value = item.partition("=")
    if not key:
        raise ValueError(f"header {item!r} is not KEY=VALUE")
    return key, value.encode() if sep else None


class LineParser:
    """Turns input lines into ``(key, value, headers)`` per the console producer's properties."""

    def __init__(self, properties: dict[str, str], *, headers: Iterable[tuple[str, bytes | None]] = (),
                 null_empty: bool = False) -> None:
        unknown = sorted(set(properties) - set(KNOWN_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown property {unknown[0]!r}; known properties: {', '.join(KNOWN_PROPERTIES)}")

        def flag(name: str) -> bool:
            return properties.get(name, "false").strip().lower() == "true"

        self.parse_key = flag("parse.key")
        self.separator = properties.get("key.separator", "\t")
        self.ignore_error = flag("ignore.error")
        self.parse_headers = flag("parse.headers")
        self.headers_delimiter = properties.get("headers.delimiter", "\t")
        self.headers_separator = properties.get("headers.separator", ",")
        self.headers_key_separator = properties.get("headers.key.separator", ":")
        self.null_marker = properties.get("null.marker")
        self.fixed_headers = list(headers)
        self.null_empty = null_empty
        if self.parse_key and not self.separator:
            raise ValueError("key.separator must not be empty")
        if self.parse_headers and not (self.headers_delimiter and self.headers_separator
                                       and self.headers_key_separator):
            raise ValueError("headers.delimiter, headers.separator and headers.key.separator must not be empty")
        if self.null_marker == "":
            raise ValueError("null.marker must not be empty")

    def _nullable(self, text: str) -> bytes | None:
        return None if text == self.null_marker else text.encode()

    def _headers(self, text: str, number: int) -> Headers:
        out: Headers = []
        for item in text.split(self.headers_separator):
            key, sep, value = item.partition(self.headers_key_separator)
            if key == self.null_marker:
                raise ClientError(f"Header keys should not be equal to the null marker '{self.null_marker}' "
                                  f"as they can't be null. Line number {number}")
            out.append((key, self._nullable(value) if sep else None))
        return out

    def parse(self, line: str, number: int) -> Record:
        headers = list(self.fixed_headers)
        rest = line
        if self.parse_headers:
            text, sep, after = line.partition(self.headers_delimiter)
            if not sep:
                if not self.ignore_error:
                    raise ClientError(f"No headers delimiter found on line number {number}: '{line}'")
            else:
                headers += self._headers(text, number)
                rest = after
        key: bytes | None = None
        if self.parse_key:
            key_text, sep, value_text = rest.partition(self.separator)
            if not sep:
                if not self.ignore_error:
                    raise ClientError(f"No key separator found on line number {number}: '{line}'")
            else:
                key, rest = self._nullable(key_text), value_text
        value = None if self.null_empty and rest == "" else self._nullable(rest)
        return key, value, headers


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
        self.pending_bytes += len(record[0] or b"") + len(record[1] or b"") + 16 + sum(
            len(k) + len(v or b"") for k, v in record[2])

    def _send(self, partition: int, records: list[Record]) -> None:
        """One batch to the partition's leader; after a leadership change, again to the new leader."""
        for attempt in range(MOVED_LEADER_ATTEMPTS):
            try:
                produce(self.client, self.topic.name, partition, records, acks=self.acks,
                        compression=self.compression, leader=self.topic.partition(partition).leader)
                return
            except KafkaError as e:
                # Refused before any append (as Kafka's producer retries it): safe to send again.
                if e.code not in (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE) or attempt == MOVED_LEADER_ATTEMPTS - 1:
                    raise
            time.sleep(0.1)
            self.topic = self.client.topic(self.topic.name)

    def flush(self) -> None:
        for partition, records in sorted(self.pending.items()):
            self._send(partition, records)
            self.sent += len(records)
        self.pending.clear()
        self.pending_bytes = 0
        if self.topic.partitions:  # the next batch of keyless records sticks to a new partition
            self.sticky = random.randrange(len(self.topic.partitions))


def run(args: argparse.Namespace) -> int:
    """Validate the properties, then produce stdin."""
    try:
        headers = [parse_header_option(h) for h in args.header]
        parser = LineParser(parse_properties(args.property), headers=headers, null_empty=args.null_empty)
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")

    def body(client: KafkaClient, args: argparse.Namespace) -> int:
        topic = client.topic(args.topic, auto_create=True)
        sender = Sender(client, topic, args)
        interactive = sys.stdin.isatty()
        progress = Progress(sys.stderr, "Produced", enabled=not interactive)
        try:
            for number, line in enumerate(_lines(sys.stdin), 1):
                sender.add(parser.parse(line, number))
                if interactive or number % BATCH_LINES == 0 or sender.pending_bytes >= BATCH_BYTES:
                    sender.flush()
                    progress.update(sender.sent)
            sender.flush()
        finally:
            progress.finish()
        return 0

    return run_tool(args, body)
