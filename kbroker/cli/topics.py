"""``kbroker topics``: create, list, describe, alter and delete topics (like kafka-topics.sh)."""

from __future__ import annotations

import argparse
from typing import Any

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient, TopicInfo, uuid_to_str
from kbroker.client.errors import TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION, KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, parse_properties, run_tool

ACTIONS = ("create", "list", "describe", "delete", "alter")


def register(subparsers: Any) -> None:
    """Add the ``topics`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "topics", help="create, list, describe, alter and delete topics",
        description="Manage topics, as kafka-topics.sh does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action,
                             help=f"{action} topics")
    parser.add_argument("--topic", help="the topic to act on")
    parser.add_argument("--partitions", type=int, help="number of partitions (create, alter)")
    parser.add_argument("--replication-factor", type=int, help="replication factor (create)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a topic config override for --create (repeatable)")
    parser.add_argument("--if-not-exists", action="store_true", help="with --create: no error if it exists")
    parser.add_argument("--if-exists", action="store_true",
                        help="with --alter/--delete/--describe: no error if it does not exist")
    parser.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the options for the action, then run it against the broker."""
    if args.action in ("create", "delete", "alter") and not args.topic:
        return fail(f"INVALID_REQUEST: --{args.action} needs --topic")
    if args.action == "alter" and args.partitions is None:
        return fail("INVALID_REQUEST: --alter needs --partitions")
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


def _describe_one(client: KafkaClient, topic: TopicInfo) -> None:
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
              f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}")


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
    for topic in topics:
        _describe_one(client, topic)
    return 0


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


ACTION_FUNCS = {"create": _create, "list": _list, "describe": _describe, "delete": _delete, "alter": _alter}
