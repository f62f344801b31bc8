"""``kbroker consume``: print records of a topic (like kafka-console-consumer.sh and kcat -C).

Without ``--group`` it reads the chosen partitions from a start position
(``--from-beginning``, ``--offset``, ``--from-timestamp``, ``--last``). With ``--group`` it
joins a consumer group (the consumer group protocol: the broker assigns the partitions),
starts each assigned partition at the group's committed offset (else at the start
position), and commits what it printed. Output is Kafka's default message formatter
(``--property print.*``), a kcat-style ``--format`` string, or kcat's ``--json`` objects.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kbroker.cli.progress import Progress
from kbroker.client import groups as g
from kbroker.client.cluster import KafkaClient
from kbroker.client.data import (
    EARLIEST,
    LATEST,
    LOG_APPEND_TIME,
    FetchedRecord,
    TopicPartition,
    fetch,
    list_offsets,
)
from kbroker.client.errors import NOT_LEADER_OR_FOLLOWER, RETRIABLE, ClientError, KafkaError
from kbroker.client.member import GroupMember
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool

#: Longest a single fetch waits on the broker, so timeouts and Ctrl-C stay responsive.
MAX_WAIT_MS = 500
#: Upper bound when growing the per-partition fetch size to fit one large batch.
MAX_PARTITION_BYTES = 256 * 1024 * 1024
#: Seconds between two commits with ``--commit auto`` (Kafka's auto.commit.interval.ms).
AUTO_COMMIT_INTERVAL = 5.0
COMMIT_MODES = ("auto", "after-print", "none")

#: The ``--property`` keys of Kafka's DefaultMessageFormatter that this command honours.
KNOWN_PROPERTIES = ("headers.separator", "key.separator", "line.separator", "null.literal", "print.headers",
                    "print.key", "print.offset", "print.partition", "print.timestamp", "print.value")


def register(subparsers: Any) -> None:
    """Add the ``consume`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "consume", help="print records from a topic",
        description="Fetch records from a topic and print them, as kafka-console-consumer.sh (and kcat -C) do.")
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", required=True, help="the topic to read")
    parser.add_argument("--group", help="consume as a member of this consumer group (committing offsets)")
    parser.add_argument("--commit", choices=COMMIT_MODES, default="auto",
                        help="with --group: commit every 5 s and at exit (auto, the default), after each "
                             "printed batch (after-print), or never (none)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the earliest offset instead of the end")
    start.add_argument("--offset", default=None, metavar="OFFSET",
                       help="'earliest', 'latest' (default) or, with --partition, a non-negative offset")
    start.add_argument("--from-timestamp", metavar="MS|ISO",
                       help="start at the first record at or after this time (ms since the epoch or "
                            "YYYY-MM-DDTHH:mm:SS[.sss][zone])")
    start.add_argument("--last", type=int, metavar="N",
                       help="print the last N records of each partition, then exit (unless --follow)")
    parser.add_argument("--partition", type=int, help="read only this partition")
    ending = parser.add_mutually_exclusive_group()
    ending.add_argument("-f", "--follow", action="store_true",
                        help="keep waiting for new records (the default, except with --last)")
    ending.add_argument("-e", "--exit-at-end", action="store_true",
                        help="exit once every partition has been read to its end (as kcat -e)")
    parser.add_argument("--max-messages", type=int, help="exit after printing this many records")
    parser.add_argument("--timeout-ms", type=int,
                        help="exit when no record arrived for this many milliseconds")
    parser.add_argument("--isolation-level", choices=["read_uncommitted", "read_committed"],
                        default="read_uncommitted", help="whether to hide uncommitted transactional records")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--format", metavar="FMT",
                        help="kcat-style format: %%t topic, %%p partition, %%o offset, %%k key, %%K key length, "
                             "%%s value, %%S value length, %%h headers (k=v,...), %%T timestamp (ms), "
                             "%%%% a percent sign; \\n \\t \\r \\\\ escapes")
    output.add_argument("--json", action="store_true",
                        help="one JSON object per record (kcat -J's fields: topic, partition, offset, tstype, "
                             "ts, broker, headers, key, payload)")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                        help="formatter properties: " + ", ".join(KNOWN_PROPERTIES))
    parser.set_defaults(handler=run)


# -- output ----------------------------------------------------------------------------------

Render = Callable[[str, int, FetchedRecord, int], str]


def _text(data: bytes | None, null: str) -> str:
    return null if data is None else data.decode("utf-8", errors="replace")


@dataclass
class Formatter:
    """Renders records as Kafka's DefaultMessageFormatter does (columns split by key.separator)."""

    print_key: bool = False
    print_partition: bool = False
    print_offset: bool = False
    print_timestamp: bool = False
    print_headers: bool = False
    print_value: bool = True
    key_separator: str = "\t"
    line_separator: str = "\n"
    headers_separator: str = ","
    null_literal: str = "null"

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> Formatter:
        """The formatter of ``--property`` values; ValueError naming an unknown key."""
        unknown = sorted(set(props) - set(KNOWN_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown property {unknown[0]!r}; known properties: {', '.join(KNOWN_PROPERTIES)}")

        def flag(name: str, default: bool = False) -> bool:
            return props.get(name, str(default)).strip().lower() == "true"

        return cls(flag("print.key"), flag("print.partition"), flag("print.offset"), flag("print.timestamp"),
                   flag("print.headers"), flag("print.value", True), props.get("key.separator", "\t"),
                   props.get("line.separator", "\n"), props.get("headers.separator", ","),
                   props.get("null.literal", "null"))

    def format(self, partition: int, record: FetchedRecord) -> str:
        """One record, with its line separator when the value is printed (as Kafka)."""
        columns = []
        if self.print_timestamp:
            # Magic-2 batches always carry a type (Kafka's NO_TIMESTAMP is for older formats).
            columns.append(f"{record.timestamp_type}:{record.timestamp}")
        if self.print_partition:
            columns.append(f"Partition:{partition}")
        if self.print_offset:
            columns.append(f"Offset:{record.offset}")
        if self.print_headers:
            columns.append(self.headers_separator.join(f"{k}:{_text(v, self.null_literal)}" for k, v in record.headers)
                           if record.headers else "NO_HEADERS")
        if self.print_key:
            columns.append(_text(record.key, self.null_literal))
        if self.print_value:
            columns.append(_text(record.value, self.null_literal))
        return self.key_separator.join(columns) + self.line_separator if columns else ""

    def render(self, topic: str, partition: int, record: FetchedRecord, broker: int) -> str:
        return self.format(partition, record)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_TOKEN = re.compile(r"%(.)|\\(.)|[^%\\]+|%$|\\$", re.DOTALL)


def compile_format(fmt: str) -> Render:
    """A renderer for a kcat-style format string; ValueError on an unknown ``%x`` or ``\\x``.

    Null keys and values print as nothing, their lengths as -1 (as kcat).
    """
    pieces: list[str | Callable[[str, int, FetchedRecord], str]] = []  # literal text or a directive
    for m in _TOKEN.finditer(fmt):
        directive, escape = m.group(1), m.group(2)
        text = m.group(0)
        if directive is not None:
            piece = _DIRECTIVES.get(directive)
            if piece is None:
                raise ValueError(f"unsupported format directive %{directive} in {fmt!r}")
            pieces.append(piece)
        elif escape is not None:
            if escape not in _ESCAPES:
                raise ValueError(f"unsupported escape \\{escape} in {fmt!r}")
            pieces.append(_ESCAPES[escape])
        elif text in ("%", "\\"):
            raise ValueError(f"format {fmt!r} ends with a lone {text!r}")
        else:
            pieces.append(text)

    def render(topic: str, partition: int, record: FetchedRecord, broker: int) -> str:
        return "".join(piece if isinstance(piece, str) else piece(topic, partition, record) for piece in pieces)

    return render


def _length(data: bytes | None) -> str:
    return "-1" if data is None else str(len(data))


_DIRECTIVES: dict[str, Callable[[str, int, FetchedRecord], str]] = {
    "t": lambda t, p, r: t,
    "p": lambda t, p, r: str(p),
    "o": lambda t, p, r: str(r.offset),
    "k": lambda t, p, r: _text(r.key, ""),
    "K": lambda t, p, r: _length(r.key),
    "s": lambda t, p, r: _text(r.value, ""),
    "S": lambda t, p, r: _length(r.value),
    "T": lambda t, p, r: str(r.timestamp),
    "h": lambda t, p, r: ",".join(f"{k}={_text(v, '')}" for k, v in r.headers),
    "%": lambda t, p, r: "%",
}


def render_json(topic: str, partition: int, record: FetchedRecord, broker: int) -> str:
    """kcat -J's object for one record (headers as a flat [key, value, ...] list), with a newline."""
    headers: list[str | None] = []
    for k, v in record.headers:
        headers += [k, None if v is None else _text(v, "")]
    obj = {"topic": topic, "partition": partition, "offset": record.offset,
           "tstype": "logappend" if record.timestamp_type == LOG_APPEND_TIME else "create",
           "ts": record.timestamp, "broker": broker, "headers": headers,
           "key": None if record.key is None else _text(record.key, ""),
           "payload": None if record.value is None else _text(record.value, "")}
    return json.dumps(obj, ensure_ascii=False) + "\n"


# -- start positions ---------------------------------------------------------------------------


def parse_time_ms(text: str) -> int:
    """Milliseconds since the epoch: a number as is, else an ISO-8601 time (local without a zone)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--from-timestamp {text!r} is neither milliseconds nor YYYY-MM-DDTHH:mm:SS") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


def start_offsets(client: KafkaClient, args: argparse.Namespace,
                  partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """Where each of ``partitions`` (of ``args.topic``) starts, per the start options."""
    ps = sorted(tp.partition for tp in partitions)
    if not ps:
        return {}
    topic = args.topic

    def at(spec: int) -> dict[int, int]:
        return list_offsets(client, topic, {p: spec for p in ps})

    if args.last is not None:
        first, end = at(EARLIEST), at(LATEST)
        found = {p: max(first[p], end[p] - args.last) for p in ps}
    elif args.from_timestamp is not None:
        when, end = at(parse_time_ms(args.from_timestamp)), at(LATEST)
        found = {p: when[p] if when[p] >= 0 else end[p] for p in ps}  # nothing that late: the end
    elif args.offset is not None and args.offset not in ("earliest", "latest"):
        found = {p: int(args.offset) for p in ps}
    elif args.from_beginning or args.offset == "earliest":
        found = at(EARLIEST)
    else:
        found = at(LATEST)
    return {TopicPartition(topic, p): found[p] for p in ps}


# -- the loop ------------------------------------------------------------------------------------


class Consumption:
    """The fetch loop: positions, leaders, output, group membership and commits."""

    def __init__(self, client: KafkaClient, args: argparse.Namespace, render: Render) -> None:
        self.client = client
        self.args = args
        self.render = render
        self.isolation = 1 if args.isolation_level == "read_committed" else 0
        self.positions: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        self.leader_of: dict[TopicPartition, int] | None = None
        self.partition_max_bytes = 1024 * 1024
        self.count = 0
        self.member: GroupMember | None = None
        self.committed: dict[TopicPartition, int] = {}
        self.next_commit = time.monotonic() + AUTO_COMMIT_INTERVAL
        self.exit_at_end = args.exit_at_end or (args.last is not None and not args.follow)
        self.progress = Progress(sys.stderr, "Consumed", enabled=not _isatty(sys.stdout))

    # group membership

    def _apply_assignment(self) -> None:
        assert self.member is not None
        change = self.member.poll()
        if change.revoked:
            if not change.fenced:
                self.commit([tp for tp in change.revoked if tp in self.positions])
            for tp in change.revoked:
                self.positions.pop(tp, None)
                self.ends.pop(tp, None)
                self.committed.pop(tp, None)
        if change.added:
            committed = g.fetch_offsets(self.client, self.member.group_id, change.added)
            fresh = [tp for tp in change.added if tp not in committed]
            self.positions.update({tp: c.offset for tp, c in committed.items()})
            self.committed.update({tp: c.offset for tp, c in committed.items()})
            self.positions.update(start_offsets(self.client, self.args, fresh))
            self.leader_of = None

    def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit the positions (of ``partitions``, default all) that moved since the last commit."""
        if self.member is None or self.args.commit == "none":
            return
        wanted = self.positions if partitions is None else {tp: self.positions[tp] for tp in partitions}
        moved = {tp: o for tp, o in wanted.items() if self.committed.get(tp) != o}
        if moved:
            done = self.member.commit(moved)
            self.committed.update({tp: moved[tp] for tp in done})

    # fetching

    def _wait_ms(self, last_record: float) -> int | None:
        """How long the next fetch may wait; None when --timeout-ms has run out."""
        # Exiting at the end means not waiting for records that are not there yet.
        wait_ms = 0 if self.exit_at_end else MAX_WAIT_MS
        if self.args.timeout_ms is not None:
            left = self.args.timeout_ms - (time.monotonic() - last_record) * 1000
            if left <= 0:
                return None
            wait_ms = max(0, min(wait_ms, int(left)))
        if self.member is not None:
            wait_ms = max(0, min(wait_ms, int((self.member.next_heartbeat - time.monotonic()) * 1000)))
        return wait_ms

    def _at_end(self) -> bool:
        return bool(self.positions) and all(tp in self.ends and pos >= self.ends[tp]
                                            for tp, pos in self.positions.items())

    def _fetch_round(self, wait_ms: int) -> int:
        """One fetch from each leader; the number of records printed."""
        if self.leader_of is None:
            topic = self.client.topic(self.args.topic)
            self.leader_of = {tp: topic.partition(tp.partition).leader for tp in self.positions}
        by_leader: dict[int, dict[TopicPartition, int]] = {}
        for tp, offset in self.positions.items():
            by_leader.setdefault(self.leader_of[tp], {})[tp] = offset
        out = sys.stdout
        limit = self.args.max_messages
        got = 0
        for leader, wanted in by_leader.items():
            result = fetch(self.client, leader, wanted, max_wait_ms=wait_ms, isolation_level=self.isolation,
                           partition_max_bytes=self.partition_max_bytes)
            for tp in sorted(result):
                fp = result[tp]
                if fp.error_code in RETRIABLE or fp.error_code == NOT_LEADER_OR_FOLLOWER:
                    self.leader_of = None  # look the leaders up again
                    time.sleep(0.05)
                    continue
                if fp.truncated:
                    self.partition_max_bytes = min(self.partition_max_bytes * 2, MAX_PARTITION_BYTES)
                if fp.error_code:
                    raise KafkaError(fp.error_code, _fetch_error(tp, wanted[tp], fp.error_code))
                self.ends[tp] = fp.last_stable_offset if self.isolation and fp.last_stable_offset >= 0 \
                    else fp.high_watermark
                for record in fp.records:
                    if limit is not None and self.count >= limit:
                        break
                    out.write(self.render(tp.topic, tp.partition, record, leader))
                    self.count += 1
                    got += 1
                    self.positions[tp] = record.offset + 1
                else:
                    self.positions[tp] = max(self.positions[tp], fp.next_offset)
        return got

    def run(self) -> int:
        args = self.args
        topic = self.client.topic(args.topic)  # a missing topic is an error, group or not
        if args.group is not None:
            self.member = GroupMember(self.client, args.group, [args.topic])
        else:
            partitions = [TopicPartition(args.topic, p.partition) for p in topic.partitions]
            if args.partition is not None:
                topic.partition(args.partition)
                partitions = [TopicPartition(args.topic, args.partition)]
            self.positions = start_offsets(self.client, args, partitions)
        last_record = time.monotonic()
        clean = False
        try:
            while args.max_messages is None or self.count < args.max_messages:
                if self.member is not None:
                    self._apply_assignment()
                if self.exit_at_end and self._at_end():
                    break
                wait_ms = self._wait_ms(last_record)
                if wait_ms is None:
                    break
                if not self.positions:  # a group member waiting for partitions (heartbeats come due)
                    time.sleep(0.05)
                    continue
                if self._fetch_round(wait_ms):
                    sys.stdout.flush()
                    last_record = time.monotonic()
                    if args.commit == "after-print":
                        self.commit()
                    self.progress.update(self.count)
                if args.commit == "auto" and time.monotonic() >= self.next_commit:
                    self.commit()
                    self.next_commit = time.monotonic() + AUTO_COMMIT_INTERVAL
            clean = True
        finally:
            sys.stdout.flush()
            self.progress.finish()
            print(f"Processed a total of {self.count} messages", file=sys.stderr)
            if self.member is not None:
                self._close_member(clean)
        return 0

    def _close_member(self, clean: bool) -> None:
        """Commit what was printed and leave the group; after an interrupt, best effort."""
        assert self.member is not None
        try:
            self.commit()
            self.member.leave()
        except ClientError:
            if clean:
                raise


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fetch_error(tp: TopicPartition, offset: int, code: int) -> str | None:
    if code == 1:  # OFFSET_OUT_OF_RANGE
        return f"Fetch position {offset} is out of range for partition {tp[0]}-{tp[1]}."
    return None


def _check_options(args: argparse.Namespace) -> str | None:
    """The first usage error in ``args``, or None."""
    if args.offset is not None and args.offset not in ("earliest", "latest"):
        if not args.offset.isdigit():
            return (f"--offset must be a non-negative number, 'earliest' or 'latest', not {args.offset!r}")
        if args.partition is None:
            return "--offset with a number needs --partition"
    if args.group is not None and args.partition is not None:
        return "--partition cannot be used with --group (the group assigns the partitions)"
    if args.max_messages is not None and args.max_messages < 0:
        return "--max-messages must not be negative"
    if args.last is not None and args.last < 0:
        return "--last must not be negative"
    if args.from_timestamp is not None:
        try:
            parse_time_ms(args.from_timestamp)
        except ValueError as e:
            return str(e)
    return None


def run(args: argparse.Namespace) -> int:
    """Validate the options, then fetch and print until done."""
    problem = _check_options(args)
    if problem:
        return fail(f"INVALID_REQUEST: {problem}")
    try:
        props = parse_properties(args.property)
        render: Render
        if args.format is not None:
            render = compile_format(args.format)
        elif args.json:
            render = render_json
        else:
            render = Formatter.from_properties(props).render
        if props and (args.format is not None or args.json):
            raise ValueError("--property applies to the default output, not to --format or --json")
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")
    return run_tool(args, lambda client, a: Consumption(client, a, render).run())
