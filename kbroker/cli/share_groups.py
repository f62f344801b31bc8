"""``kbroker share-groups``: list and describe share groups (KIP-932), reset their start offsets.

Like kafka-share-groups.sh: ``--reset-offsets`` only prints the plan unless ``--execute``
is given, and the broker refuses it while the group has members.
"""

from __future__ import annotations

import argparse
from typing import Any

from kbroker.cli.groups import format_table
from kbroker.client.cluster import KafkaClient
from kbroker.client.data import EARLIEST, LATEST, list_offsets
from kbroker.client.errors import GROUP_ID_NOT_FOUND, INVALID_REQUEST, KafkaError, check
from kbroker.client.groups import LIST_GROUPS, find_coordinator
from kbroker.client.tool import add_bootstrap_argument, run_tool

SHARE_GROUP_DESCRIBE = 77
DESCRIBE_SHARE_GROUP_OFFSETS = 90
ALTER_SHARE_GROUP_OFFSETS = 91
ACTIONS = ("list", "describe", "reset-offsets", "delete")


def register(subparsers: Any) -> None:
    """Add the ``share-groups`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "share-groups", help="list and describe share groups; reset their start offsets",
        description="Manage share groups (KIP-932), as kafka-share-groups.sh does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action,
                             help=f"{action.replace('-', ' ')}")
    parser.add_argument("--group", help="the share group to act on")
    parser.add_argument("--members", action="store_true", help="with --describe: the members and their assignments")
    parser.add_argument("--topic", action="append", default=[], metavar="TOPIC[:P,P...]",
                        help="with --reset-offsets: a topic, optionally with partitions (repeatable)")
    parser.add_argument("--all-topics", action="store_true",
                        help="with --reset-offsets: every partition the group has a start offset for")
    specs = parser.add_mutually_exclusive_group()
    specs.add_argument("--to-earliest", action="store_true", help="reset to the log start offset")
    specs.add_argument("--to-latest", action="store_true", help="reset to the log end offset")
    specs.add_argument("--to-offset", type=int, metavar="N", help="reset to offset N (clamped to the log)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="apply the new start offsets")
    mode.add_argument("--dry-run", action="store_true", help="only print the plan (the default)")
    parser.set_defaults(handler=run)


def list_share_groups(client: KafkaClient) -> list[tuple[str, str]]:
    """(group id, state) of every share group on any broker, sorted by id."""
    md = client.metadata([])
    seen: dict[str, str] = {}
    for node in sorted(md.brokers) or [-1]:
        resp = client.request(LIST_GROUPS, {"states_filter": [], "types_filter": ["share"]}, node)
        check(resp.error_code)
        for g in resp.groups:
            if g.get("group_type", "share") == "share":
                seen[g.group_id] = g.get("group_state", "")
    return sorted(seen.items())


def start_offsets(client: KafkaClient, group: str) -> list[tuple[str, int, int]]:
    """(topic, partition, start offset) of every share-partition of ``group`` with a state."""
    node = find_coordinator(client, group)
    resp = client.request(DESCRIBE_SHARE_GROUP_OFFSETS, {"groups": [{"group_id": group, "topics": None}]}, node)
    [g] = resp.groups
    check(g.error_code, g.get("error_message"))
    return sorted((t.topic_name, p.partition_index, p.start_offset) for t in g.topics for p in t.partitions)


def _list(client: KafkaClient, args: argparse.Namespace) -> int:
    for group_id, _ in list_share_groups(client):
        print(group_id)
    return 0


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    group = _group(args)
    node = find_coordinator(client, group)
    resp = client.request(SHARE_GROUP_DESCRIBE, {"group_ids": [group], "include_authorized_operations": False}, node)
    [d] = resp.groups
    if d.error_code == GROUP_ID_NOT_FOUND:
        raise KafkaError(GROUP_ID_NOT_FOUND, f"Share group '{group}' does not exist.")
    check(d.error_code, d.get("error_message"))
    if args.members:
        rows = [[group, m.member_id, m.client_id, m.client_host,
                 ",".join(f"{tp.topic_name}:{','.join(map(str, sorted(tp.partitions)))}"
                          for tp in m.assignment.topic_partitions) or "-"]
                for m in d.members]
        print(format_table(["GROUP", "CONSUMER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], rows))
        return 0
    print(f"GROUP {group} STATE {d.group_state} EPOCH {d.group_epoch} MEMBERS {len(d.members)}")
    rows = [[group, t, p, o] for t, p, o in start_offsets(client, group)]
    print(format_table(["GROUP", "TOPIC", "PARTITION", "START-OFFSET"], rows))
    return 0


def _group(args: argparse.Namespace) -> str:
    if not args.group:
        raise KafkaError(INVALID_REQUEST, f"--{args.action} needs --group")
    return str(args.group)


def _targets(client: KafkaClient, args: argparse.Namespace, group: str) -> dict[str, list[int]]:
    targets: dict[str, list[int]] = {}
    if args.all_topics:
        for t, p, _ in start_offsets(client, group):
            targets.setdefault(t, []).append(p)
    for spec in args.topic:
        name, _, parts = spec.partition(":")
        if parts:
            try:
                targets[name] = sorted({int(x) for x in parts.split(",")})
            except ValueError:
                raise KafkaError(INVALID_REQUEST, f"bad partition list in {spec!r}") from None
        else:
            targets[name] = sorted(p.partition for p in client.topic(name).partitions)
    if not targets:
        raise KafkaError(INVALID_REQUEST, "--reset-offsets needs --topic or --all-topics")
    return targets


def _reset(client: KafkaClient, args: argparse.Namespace) -> int:
    group = _group(args)
    if not (args.to_earliest or args.to_latest or args.to_offset is not None):
        raise KafkaError(INVALID_REQUEST, "--reset-offsets needs --to-earliest, --to-latest or --to-offset")
    plan: list[tuple[str, int, int]] = []
    for topic, parts in sorted(_targets(client, args, group).items()):
        if args.to_offset is not None:
            plan += [(topic, p, args.to_offset) for p in parts]
        else:
            offsets = list_offsets(client, topic, dict.fromkeys(parts, EARLIEST if args.to_earliest else LATEST))
            plan += [(topic, p, offsets[p]) for p in parts]
    print(format_table(["GROUP", "TOPIC", "PARTITION", "NEW-START-OFFSET"], [[group, *row] for row in plan]))
    if not args.execute:
        return 0
    by_topic: dict[str, list[dict[str, int]]] = {}
    for topic, p, offset in plan:
        by_topic.setdefault(topic, []).append({"partition_index": p, "start_offset": offset})
    node = find_coordinator(client, group)
    resp = client.request(ALTER_SHARE_GROUP_OFFSETS, {"group_id": group, "topics": [
        {"topic_name": t, "partitions": ps} for t, ps in by_topic.items()]}, node)
    check(resp.error_code, resp.get("error_message"))
    for t in resp.responses:
        for p in t.partitions:
            check(p.error_code, f"{t.topic_name}-{p.partition_index}: {p.get('error_message') or ''}".strip())
    return 0


def _delete(client: KafkaClient, args: argparse.Namespace) -> int:
    from kbroker.client.groups import delete_groups

    group = _group(args)
    err = delete_groups(client, [group]).get(group)
    if err is not None:
        raise KafkaError(err.code, f"Share group '{group}' could not be deleted: {err.message or err}")
    print(f"Deletion of requested share groups ('{group}') was successful.")
    return 0


_ACTIONS = {"list": _list, "describe": _describe, "reset-offsets": _reset, "delete": _delete}


def run(args: argparse.Namespace) -> int:
    """Run the ``share-groups`` subcommand."""
    return run_tool(args, _ACTIONS[args.action])
