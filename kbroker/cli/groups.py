"""``kbroker groups``: list, describe, delete consumer groups and reset their offsets.

Like kafka-consumer-groups.sh: ``--reset-offsets`` only prints the plan unless
``--execute`` is given, and refuses groups that still have active members.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kbroker.client import groups as g
from kbroker.client.cluster import KafkaClient
from kbroker.client.data import EARLIEST, LATEST, TopicPartition, list_offsets
from kbroker.client.errors import GROUP_ID_NOT_FOUND, INVALID_REQUEST, NON_EMPTY_GROUP, KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, run_tool

ACTIONS = ("list", "describe", "delete", "reset-offsets")
RESET_SPECS = ("to-earliest", "to-latest", "to-datetime", "to-offset", "shift-by")


def register(subparsers: Any) -> None:
    """Add the ``groups`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "groups", help="list, describe, delete consumer groups; reset their offsets",
        description="Manage consumer groups, as kafka-consumer-groups.sh does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action,
                             help=f"{action.replace('-', ' ')}")
    parser.add_argument("--group", action="append", default=[], help="the group to act on (repeatable)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--offsets", dest="view", action="store_const", const="offsets",
                       help="with --describe: offsets and lag per partition (the default)")
    shown.add_argument("--members", dest="view", action="store_const", const="members",
                       help="with --describe: one row per member (--verbose: with its partitions)")
    shown.add_argument("--state", nargs="?", const="", default=None, metavar="STATE[,STATE...]",
                       help="with --describe: the group's coordinator, assignor, state and member count; "
                            "with --list: each group's state, only those in the given states if any")
    parser.add_argument("--verbose", action="store_true",
                        help="with --describe --members: epochs and assignments; with --state: the group's epochs")
    parser.add_argument("--type", action="store_true",
                        help="with --list: each group's type (classic, consumer, share) and protocol; with "
                             "--describe: each group's type, state, assignor and member count")
    parser.add_argument("--topic", action="append", default=[], metavar="TOPIC[:P,P...]",
                        help="with --reset-offsets: a topic, optionally with partitions (repeatable)")
    parser.add_argument("--all-topics", action="store_true",
                        help="with --reset-offsets: every topic the group has offsets for")
    specs = parser.add_mutually_exclusive_group()
    specs.add_argument("--to-earliest", action="store_true", help="reset to the log start offset")
    specs.add_argument("--to-latest", action="store_true", help="reset to the log end offset")
    specs.add_argument("--to-datetime", metavar="ISO", help="reset to the first offset at or after a time "
                       "(YYYY-MM-DDTHH:mm:SS[.sss][zone]; local time without a zone)")
    specs.add_argument("--to-offset", type=int, metavar="N", help="reset to offset N (clamped to the log)")
    specs.add_argument("--shift-by", type=int, metavar="N", help="move the committed offset by N")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    mode.add_argument("--dry-run", action="store_true", help="only print the plan (the default)")
    parser.set_defaults(handler=run)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, each as wide as its widest cell, like Kafka's tools print."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(" ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _one_group(args: argparse.Namespace) -> str:
    if len(args.group) != 1:
        raise KafkaError(INVALID_REQUEST, f"--{args.action} needs exactly one --group")
    return str(args.group[0])


# -- list / delete -------------------------------------------------------------------


def _list(client: KafkaClient, args: argparse.Namespace) -> int:
    listings = g.list_groups(client)
    if args.state is not None:  # as kafka-consumer-groups.sh --list --state [STATES]
        wanted = {s.strip().lower() for s in args.state.split(",") if s.strip()}
        rows = [(x.group_id, x.state or "Unknown") for x in listings
                if not wanted or (x.state or "").lower() in wanted]
        print(format_table(("GROUP", "STATE"), rows))
        return 0
    if args.type:  # as kafka-consumer-groups.sh --list --type
        print(format_table(("GROUP", "TYPE", "PROTOCOL"),
                           [(x.group_id, x.group_type.capitalize(), x.protocol_type) for x in listings]))
        return 0
    for listing in listings:
        print(listing.group_id)
    return 0


def _delete(client: KafkaClient, args: argparse.Namespace) -> int:
    if not args.group:
        raise KafkaError(INVALID_REQUEST, "--delete needs --group")
    results = g.delete_groups(client, args.group)
    failed = {gid: err for gid, err in results.items() if err is not None}
    ok = [gid for gid in args.group if gid in results and results[gid] is None]
    if ok:
        names = ", ".join(f"'{gid}'" for gid in ok)
        print(f"Deletion of requested consumer groups ({names}) was successful.")
    if failed:
        gid, err = next(iter(failed.items()))
        if err.code == GROUP_ID_NOT_FOUND:
            raise KafkaError(err.code, f"Group '{gid}' could not be deleted: it does not exist.")
        if err.code == NON_EMPTY_GROUP:
            raise KafkaError(err.code, f"Group '{gid}' could not be deleted: it has active members.")
        raise KafkaError(err.code, f"Group '{gid}' could not be deleted: {err.message}")
    return 0


# -- describe ---------------------------------------------------------------------------


def _log_end_offsets(client: KafkaClient, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    for topic, ps in by_topic.items():
        try:
            offsets = list_offsets(client, topic, {p: LATEST for p in ps})
        except KafkaError:
            continue  # a deleted topic: leave the end offset unknown
        out.update({TopicPartition(topic, p): o for p, o in offsets.items()})
    return out


def describe_rows(client: KafkaClient, group_id: str) -> tuple[g.GroupDescription, list[list[object]]]:
    """The group and one row per partition it has offsets for or members consume."""
    desc = g.describe_group(client, group_id)
    committed = g.fetch_offsets(client, group_id)
    if desc.state == "Dead" and not committed:
        raise KafkaError(GROUP_ID_NOT_FOUND, f"Consumer group '{group_id}' does not exist.")
    owner: dict[TopicPartition, g.MemberDescription] = {}
    for m in desc.members:
        for tp in m.assignment:
            owner[tp] = m
    partitions = set(committed) | set(owner)
    ends = _log_end_offsets(client, partitions)
    rows: list[list[object]] = []
    for tp in sorted(partitions):
        c = committed.get(tp)
        end = ends.get(tp)
        lag: object = end - c.offset if c is not None and end is not None and end >= 0 else "-"
        o = owner.get(tp)
        rows.append([group_id, tp[0], tp[1], c.offset if c else "-", "-" if end is None else end, lag,
                     o.member_id if o else "-", o.client_host if o else "-", o.client_id if o else "-"])
    for m in desc.members:
        if not m.assignment:
            rows.append([group_id, "-", "-", "-", "-", "-", m.member_id, m.client_host, m.client_id])
    return desc, rows


DESCRIBE_HEADERS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                    "CONSUMER-ID", "HOST", "CLIENT-ID")


def _existing_group(client: KafkaClient, group_id: str) -> g.GroupDescription:
    desc = g.describe_group(client, group_id)
    if desc.state == "Dead":
        raise KafkaError(GROUP_ID_NOT_FOUND, f"Consumer group '{group_id}' does not exist.")
    return desc


def _assignment_text(assignment: Sequence[TopicPartition]) -> str:
    """Kafka's ``topic:0,1;other:2``, or ``-`` for none."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(assignment):
        by_topic.setdefault(topic, []).append(partition)
    return ";".join(f"{t}:{','.join(map(str, ps))}" for t, ps in by_topic.items()) or "-"


def _state_note(desc: g.GroupDescription) -> None:
    """What kafka-consumer-groups.sh says on stderr of an empty or rebalancing group."""
    if desc.state == "Empty":
        print(f"\nConsumer group '{desc.group_id}' has no active members.", file=sys.stderr)
    elif desc.state in ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling"):
        print(f"\nWarning: Consumer group '{desc.group_id}' is rebalancing.", file=sys.stderr)


def _or_missing(value: object) -> str:
    return "-" if value is None else str(value)


def _describe_members(client: KafkaClient, args: argparse.Namespace) -> int:
    """As ``kafka-consumer-groups.sh --describe --members [--verbose]``."""
    for group_id in args.group:
        desc = _existing_group(client, group_id)
        _state_note(desc)
        with_instance = any(m.group_instance_id for m in desc.members)
        headers = ["GROUP", "CONSUMER-ID", *(["GROUP-INSTANCE-ID"] if with_instance else []), "HOST", "CLIENT-ID",
                   "#PARTITIONS"]
        if args.verbose:
            headers += ["CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
        rows = []
        for m in desc.members:
            row: list[object] = [group_id, m.member_id, *([m.group_instance_id or ""] if with_instance else []),
                                 m.client_host, m.client_id, len(m.assignment)]
            if args.verbose:
                row += [_or_missing(m.member_epoch), _assignment_text(m.assignment),
                        _or_missing(desc.assignment_epoch if m.member_epoch is not None else None),
                        _assignment_text(m.target_assignment)]
            rows.append(row)
        print()
        print(format_table(headers, rows))
    return 0


def _describe_state(client: KafkaClient, args: argparse.Namespace) -> int:
    """As ``kafka-consumer-groups.sh --describe --state [--verbose]``."""
    for group_id in args.group:
        desc = _existing_group(client, group_id)
        _state_note(desc)
        md = client.cluster or client.metadata([])
        node = md.brokers.get(desc.coordinator)
        where = f"{node.host}:{node.port}  ({node.node_id})" if node else f"-  ({desc.coordinator})"
        headers = ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE"]
        row: list[object] = [group_id, where, desc.protocol or "-", desc.state]
        if args.verbose:
            headers += ["GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH"]
            row += [_or_missing(desc.group_epoch), _or_missing(desc.assignment_epoch)]
        print()
        print(format_table([*headers, "#MEMBERS"], [[*row, len(desc.members)]]))
    return 0


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    if not args.group:
        raise KafkaError(INVALID_REQUEST, "--describe needs --group")
    if args.state is not None:
        if args.state:
            raise KafkaError(INVALID_REQUEST, "--describe --state takes no value (states filter --list)")
        return _describe_state(client, args)
    if args.view == "members":
        return _describe_members(client, args)
    if args.type:
        summary = []
        for group_id in args.group:
            d = g.describe_group(client, group_id)
            if d.state == "Dead":
                raise KafkaError(GROUP_ID_NOT_FOUND, f"Consumer group '{group_id}' does not exist.")
            summary.append((group_id, d.group_type.capitalize(), d.state, d.protocol or "-", len(d.members)))
        print(format_table(("GROUP", "TYPE", "STATE", "ASSIGNMENT-STRATEGY", "#MEMBERS"), summary))
        return 0
    for group_id in args.group:
        desc, rows = describe_rows(client, group_id)
        print()
        if not desc.members:
            print(f"Consumer group '{group_id}' has no active members.")
            print()
        print(format_table(DESCRIBE_HEADERS, rows))
    return 0


# -- reset offsets ----------------------------------------------------------------------


def _reset_spec(args: argparse.Namespace) -> str | None:
    for spec in RESET_SPECS:
        if getattr(args, spec.replace("-", "_")) not in (None, False):
            return spec
    return None


def parse_datetime_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time; local time when it names no zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise KafkaError(INVALID_REQUEST, f"--to-datetime {text!r} is not YYYY-MM-DDTHH:mm:SS[.sss]") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


def _target_partitions(client: KafkaClient, args: argparse.Namespace,
                       committed: dict[TopicPartition, g.CommittedOffset]) -> list[TopicPartition]:
    if args.all_topics:
        return sorted(committed)
    out: list[TopicPartition] = []
    for item in args.topic:
        name, sep, plist = item.partition(":")
        info = client.topic(name)
        if sep:
            try:
                wanted = [int(p) for p in plist.split(",") if p.strip()]
            except ValueError:
                raise KafkaError(INVALID_REQUEST, f"--topic {item!r} is not TOPIC:P,P...") from None
            for p in wanted:
                info.partition(p)
        else:
            wanted = [p.partition for p in info.partitions]
        out.extend(TopicPartition(name, p) for p in wanted)
    return sorted(set(out))


def plan_reset(client: KafkaClient, args: argparse.Namespace, spec: str,
               partitions: list[TopicPartition],
               committed: dict[TopicPartition, g.CommittedOffset]) -> dict[TopicPartition, int]:
    """The new offset of each partition for reset ``spec``."""
    topics = sorted({t for t, _ in partitions})
    earliest: dict[TopicPartition, int] = {}
    latest: dict[TopicPartition, int] = {}
    for topic in topics:
        ps = [p for t, p in partitions if t == topic]
        earliest.update({TopicPartition(topic, p): o for p, o in list_offsets(client, topic, {p: EARLIEST for p in ps}).items()})
        latest.update({TopicPartition(topic, p): o for p, o in list_offsets(client, topic, {p: LATEST for p in ps}).items()})

    def clamp(tp: TopicPartition, offset: int) -> int:
        return max(earliest[tp], min(latest[tp], offset))

    if spec == "to-earliest":
        return {tp: earliest[tp] for tp in partitions}
    if spec == "to-latest":
        return {tp: latest[tp] for tp in partitions}
    if spec == "to-offset":
        return {tp: clamp(tp, args.to_offset) for tp in partitions}
    if spec == "shift-by":
        out = {}
        for tp in partitions:
            if tp not in committed:
                raise KafkaError(INVALID_REQUEST, f"Cannot shift offset for partition {tp[0]}-{tp[1]} "
                                                  "since there is no current committed offset.")
            out[tp] = clamp(tp, committed[tp].offset + args.shift_by)
        return out
    when = parse_datetime_ms(args.to_datetime)
    out = {}
    for topic in topics:
        ps = [p for t, p in partitions if t == topic]
        found = list_offsets(client, topic, {p: when for p in ps})
        for p in ps:
            out[TopicPartition(topic, p)] = found[p] if found.get(p, -1) >= 0 else latest[TopicPartition(topic, p)]
    return out


def _reset_offsets(client: KafkaClient, args: argparse.Namespace) -> int:
    group_id = _one_group(args)
    spec = _reset_spec(args)
    if spec is None:
        raise KafkaError(INVALID_REQUEST, "--reset-offsets needs one of " +
                         ", ".join(f"--{s}" for s in RESET_SPECS))
    if bool(args.topic) == bool(args.all_topics):
        raise KafkaError(INVALID_REQUEST, "--reset-offsets needs either --topic or --all-topics")
    desc = g.describe_group(client, group_id)
    if desc.active:
        raise KafkaError(NON_EMPTY_GROUP, f"Assignments can only be reset if the group '{group_id}' is "
                                          f"inactive, but the current state is {desc.state}.")
    committed = g.fetch_offsets(client, group_id)
    partitions = _target_partitions(client, args, committed)
    plan = plan_reset(client, args, spec, partitions, committed)
    if args.execute:
        g.commit_offsets(client, group_id, plan)
    print()
    print(format_table(("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"),
                       [[group_id, t, p, plan[TopicPartition(t, p)]] for t, p in sorted(plan)]))
    if not args.execute and not args.dry_run:
        print("WARN: No action will be performed as the --execute option is missing. "
              "Add --execute to reset the offsets.", file=sys.stderr)
    return 0


ACTION_FUNCS = {"list": _list, "describe": _describe, "delete": _delete, "reset-offsets": _reset_offsets}


def run(args: argparse.Namespace) -> int:
    """Run the chosen action against the group coordinator."""
    if args.action != "reset-offsets" and (_reset_spec(args) or args.execute or args.topic):
        return fail("INVALID_REQUEST: --to-*/--shift-by/--execute/--topic apply only to --reset-offsets")
    if args.action != "describe" and (args.view or args.verbose):
        return fail("INVALID_REQUEST: --offsets/--members/--verbose apply only to --describe")
    if args.action not in ("describe", "list") and args.state is not None:
        return fail("INVALID_REQUEST: --state applies only to --describe and --list")
    return run_tool(args, ACTION_FUNCS[args.action])
