"""``kbroker topics``: create, list, describe, alter and delete topics (like kafka-topics.sh),
and delete records (like kafka-delete-records.sh).

``--describe`` adds to each of kafka-topics.sh's partition lines the partition's log start
offset (ListOffsets earliest), its size on disk and the log cleaner's last pass (DescribeLogDirs,
asked of the partition's leader; the last cleaning is a kbroker field, see protocol/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kbroker.client import admin, data
from kbroker.client.cluster import KafkaClient, TopicInfo, uuid_to_str
from kbroker.client.errors import (
    TOPIC_ALREADY_EXISTS,
    UNKNOWN_TOPIC_OR_PARTITION,
    UNSUPPORTED_VERSION,
    KafkaError,
)
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool
from kbroker.common import CleaningSummary, TopicPartition

ACTIONS = ("create", "list", "describe", "delete", "alter", "delete-records")


def register(subparsers: Any) -> None:
    """Add the ``topics`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "topics", help="create, list, describe, alter and delete topics",
        description="Manage topics, as kafka-topics.sh does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action,
                             help=ACTION_HELP.get(action, f"{action} topics"))
    parser.add_argument("--topic", help="the topic to act on")
    parser.add_argument("--partitions", type=int, help="number of partitions (create, alter)")
    parser.add_argument("--replication-factor", type=int, help="replication factor (create)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a topic config override for --create (repeatable)")
    parser.add_argument("--if-not-exists", action="store_true", help="with --create: no error if it exists")
    parser.add_argument("--if-exists", action="store_true",
                        help="with --alter/--delete/--describe: no error if it does not exist")
    parser.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    parser.add_argument("--partition", type=int, help="the partition (delete-records)")
    parser.add_argument("--offset", type=int,
                        help="delete-records: delete the records below this offset (-1: the high watermark)")
    parser.add_argument("--offset-json-file", metavar="FILE",
                        help='delete-records: kafka-delete-records.sh\'s JSON, {"partitions": [{"topic": "foo", '
                             '"partition": 1, "offset": 1}], "version": 1}')
    parser.set_defaults(handler=run)


ACTION_HELP = {"delete-records": "delete the records of partitions below an offset (as kafka-delete-records.sh)"}


def run(args: argparse.Namespace) -> int:
    """Check the options for the action, then run it against the broker."""
    if args.action in ("create", "delete", "alter") and not args.topic:
        return fail(f"INVALID_REQUEST: --{args.action} needs --topic")
    if args.action == "alter" and args.partitions is None:
        return fail("INVALID_REQUEST: --alter needs --partitions")
    if args.action == "delete-records":
        try:
            args.delete_offsets = _records_to_delete(args)
        except ValueError as e:
            return fail(f"INVALID_REQUEST: {e}")
    try:
        args.config_map = parse_properties(args.config)
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")
    return run_tool(args, ACTION_FUNCS[args.action])


def _create(client: KafkaClient, args: argparse.Namespace) -> int:
    try:
        admin.create_topic(client, args.topic,
                           -1 if args.partitions is None else args.partitions,
                           -1 if args.replication_factor is None else args.replication_factor,
                           args.config_map)
    except KafkaError as e:
        if e.code == TOPIC_ALREADY_EXISTS and args.if_not_exists:
            return 0
        raise
    print(f"Created topic {args.topic}.")
    return 0


def _list(client: KafkaClient, args: argparse.Namespace) -> int:
    md = client.metadata(None)
    for name in sorted(md.topics):
        if args.exclude_internal and md.topics[name].is_internal:
            continue
        print(name)
    return 0


def _ids(nodes: tuple[int, ...]) -> str:
    return ",".join(str(n) for n in nodes)


def _describe_one(client: KafkaClient, topic: TopicInfo, logs: dict[TopicPartition, str]) -> None:
    try:
        overrides = admin.topic_overrides(client, topic.name)
    except KafkaError:
        overrides = {}
    configs = ",".join(f"{k}={v if v is not None else ''}" for k, v in sorted(overrides.items()))
    rf = len(topic.partitions[0].replicas) if topic.partitions else 0
    print(f"Topic: {topic.name}\tTopicId: {uuid_to_str(topic.topic_id)}\t"
          f"PartitionCount: {len(topic.partitions)}\tReplicationFactor: {rf}\tConfigs: {configs}")
    for p in topic.partitions:
        leader = "none" if p.leader < 0 else str(p.leader)
        print(f"\tTopic: {topic.name}\tPartition: {p.partition}\tLeader: {leader}\t"
              f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}\t{logs[TopicPartition(topic.name, p.partition)]}")


def format_cleaning(cleaning: CleaningSummary | None) -> str:
    """The last cleaning as ``--describe`` shows it: when it ended (UTC) and the bytes the
    cleaned segments held before and after; ``-`` when none is reported (a kbroker partition
    not cleaned since the broker started, or any partition of a broker that does not report
    cleanings, as Apache Kafka)."""
    if cleaning is None:
        return "-"
    ended = datetime.fromtimestamp(cleaning.ended_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return f"{ended}Z {cleaning.bytes_before}->{cleaning.bytes_after} bytes"


def _log_columns(client: KafkaClient, topics: list[TopicInfo]) -> dict[TopicPartition, str]:
    """Per partition, ``LogStartOffset: ..\tSize: ..\tLastCleaning: ..``, asked of its leader:
    ListOffsets earliest and DescribeLogDirs. A value the leader could not give is its error name
    (``-`` without a leader or when the broker does not serve DescribeLogDirs)."""
    by_leader: dict[int, list[TopicPartition]] = {}
    for t in topics:
        for p in t.partitions:
            if p.leader >= 0:
                by_leader.setdefault(p.leader, []).append(TopicPartition(t.name, p.partition))
    starts = data.offsets_at(client, by_leader, data.EARLIEST) if by_leader else {}
    replicas: dict[TopicPartition, admin.ReplicaLogInfo | str] = {}
    for leader, tps in by_leader.items():
        try:
            dirs = admin.describe_log_dirs(client, leader, tps)
        except KafkaError as e:
            if e.code != UNSUPPORTED_VERSION:
                raise
            continue
        for d in dirs:
            for tp, info in d.partitions.items():
                if not info.is_future:
                    replicas[tp] = info
            if d.error_code:
                # A failed log dir lists no partitions: its error stands for the ones not found.
                for tp in tps:
                    replicas.setdefault(tp, KafkaError(d.error_code).name)
    out: dict[TopicPartition, str] = {}
    for t in topics:
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition)
            start = starts.get(tp, "-")
            found = replicas.get(tp, "-")
            if isinstance(found, admin.ReplicaLogInfo):
                size, cleaning = str(found.size), format_cleaning(found.last_cleaning)
            else:
                size = cleaning = found
            out[tp] = (f"LogStartOffset: {start.name if isinstance(start, KafkaError) else start}\t"
                       f"Size: {size}\tLastCleaning: {cleaning}")
    return out


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    md = client.metadata(None if args.topic is None else [args.topic])
    if args.topic is not None:
        try:
            topics = [md.topic(args.topic)]
        except KafkaError as e:
            if e.code == UNKNOWN_TOPIC_OR_PARTITION and args.if_exists:
                return 0
            raise
    else:
        topics = [md.topics[n] for n in sorted(md.topics)
                  if not (args.exclude_internal and md.topics[n].is_internal) and not md.topics[n].error_code]
    logs = _log_columns(client, topics)
    for topic in topics:
        _describe_one(client, topic, logs)
    return 0


def _records_to_delete(args: argparse.Namespace) -> dict[TopicPartition, int]:
    """The offsets ``--delete-records`` deletes below: ``--offset-json-file`` (Kafka's format,
    version 1) or ``--topic``, ``--partition`` and ``--offset``; ValueError when malformed."""
    if args.offset_json_file is not None:
        if args.topic is not None or args.partition is not None or args.offset is not None:
            raise ValueError("--offset-json-file excludes --topic, --partition and --offset")
        try:
            text = Path(args.offset_json_file).read_text()
        except OSError as e:
            raise ValueError(f"cannot read {args.offset_json_file}: {e.strerror or e}") from None
        return parse_offset_json(text)
    missing = [o for o, v in (("--topic", args.topic), ("--partition", args.partition), ("--offset", args.offset))
               if v is None]
    if missing:
        raise ValueError(f"--delete-records needs {', '.join(missing)} (or --offset-json-file)")
    return {TopicPartition(args.topic, args.partition): args.offset}


def parse_offset_json(text: str) -> dict[TopicPartition, int]:
    """kafka-delete-records.sh's ``--offset-json-file``:
    ``{"partitions": [{"topic": "foo", "partition": 1, "offset": 1}], "version": 1}`` (version 1,
    the default, is the only one); a partition named twice is an error, as there."""
    try:
        js = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("The input string is not a valid JSON") from None
    if not isinstance(js, dict):
        raise ValueError("The input string is not a JSON object")
    version = js.get("version", 1)
    if version != 1:
        raise ValueError(f"Not supported version field value {version}")
    if "partitions" not in js:
        raise ValueError("Missing partitions field")
    out: dict[TopicPartition, int] = {}
    duplicates: list[str] = []
    items: list[Any] = js["partitions"] if isinstance(js["partitions"], list) else [js["partitions"]]
    for item in items:
        try:
            topic, partition, offset = item["topic"], item["partition"], item["offset"]
        except (KeyError, TypeError):
            raise ValueError(f"each partition needs topic, partition and offset: {item!r}") from None
        if not isinstance(topic, str) or type(partition) is not int or type(offset) is not int:
            raise ValueError(f"topic must be a string, partition and offset integers: {item!r}")
        tp = TopicPartition(topic, partition)
        if tp in out:
            duplicates.append(f"{topic}-{partition}")
        out[tp] = offset
    if duplicates:
        raise ValueError(f"Offset json file contains duplicate topic partitions: {','.join(duplicates)}")
    return out


def _delete_records(client: KafkaClient, args: argparse.Namespace) -> int:
    """Print each partition's new low watermark as kafka-delete-records.sh does; a partition's
    error goes to stderr with Kafka's error name, and makes the exit status 1."""
    results = admin.delete_records(client, args.delete_offsets)
    failed = False
    for tp in sorted(results):
        r = results[tp]
        if r.error is None:
            print(f"partition: {tp.topic}-{tp.partition}\tlow_watermark: {r.low_watermark}")
        else:
            failed = True
            print(f"kbroker: error: {r.error.name}: partition {tp.topic}-{tp.partition}: {r.error.message}",
                  file=sys.stderr)
    return 1 if failed else 0


def _delete(client: KafkaClient, args: argparse.Namespace) -> int:
    try:
        admin.delete_topic(client, args.topic)
    except KafkaError as e:
        if e.code == UNKNOWN_TOPIC_OR_PARTITION and args.if_exists:
            return 0
        raise
    return 0


def _alter(client: KafkaClient, args: argparse.Namespace) -> int:
    try:
        admin.create_partitions(client, args.topic, args.partitions)
    except KafkaError as e:
        if e.code == UNKNOWN_TOPIC_OR_PARTITION and args.if_exists:
            return 0
        raise
    return 0


ACTION_FUNCS = {"create": _create, "list": _list, "describe": _describe, "delete": _delete, "alter": _alter,
                "delete-records": _delete_records}
