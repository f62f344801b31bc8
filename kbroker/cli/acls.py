"""``kbroker acls``: add, list and remove ACLs, with kafka-acls.sh's options and output.

``--add`` creates one ACL per principal, host, operation and resource given (the host
defaults to ``*`` and the operation to All); ``--list`` prints the ACLs of the resources
given (every ACL without one), optionally of one ``--principal``; ``--remove`` deletes the
ACLs given, or every ACL of the resources when no principal is given, after asking for
confirmation unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, run_tool
from kbroker.security.acl import AclBinding, AclBindingFilter
from kbroker.security.model import CLUSTER_NAME, AclOperation, AclPermissionType, PatternType, ResourceType

ACTIONS = ("add", "list", "remove")
PATTERN_TYPES = {"literal": PatternType.LITERAL, "prefixed": PatternType.PREFIXED,
                 "match": PatternType.MATCH, "any": PatternType.ANY}


def register(subparsers: Any) -> None:
    """Add the ``acls`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "acls", help="add, list and remove ACLs",
        description="Manage ACLs, as kafka-acls.sh does (the broker needs authorizer.class.name).")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action,
                             help=f"{action} ACLs")
    parser.add_argument("--topic", action="append", default=[], help="a topic (repeatable; * for every topic)")
    parser.add_argument("--group", action="append", default=[], help="a consumer group (repeatable)")
    parser.add_argument("--transactional-id", action="append", default=[], help="a transactional id (repeatable)")
    parser.add_argument("--cluster", action="store_true", help="the cluster resource")
    parser.add_argument("--resource-pattern-type", default="literal", type=str.lower,
                        choices=sorted(PATTERN_TYPES),
                        help="how resource names match: literal or prefixed to add; also match or any to "
                             "list and remove (default: literal)")
    parser.add_argument("--allow-principal", action="append", default=[], metavar="TYPE:NAME",
                        help="a principal to allow (repeatable), e.g. User:alice or User:*")
    parser.add_argument("--deny-principal", action="append", default=[], metavar="TYPE:NAME",
                        help="a principal to deny (repeatable)")
    parser.add_argument("--allow-host", action="append", default=[], help="a host allowed from (default: *)")
    parser.add_argument("--deny-host", action="append", default=[], help="a host denied from (default: *)")
    parser.add_argument("--operation", action="append", default=[],
                        help="an operation (repeatable): Read, Write, Create, Delete, Alter, Describe, "
                             "ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All (default: All)")
    parser.add_argument("--principal", help="with --list: only this principal's ACLs")
    parser.add_argument("--force", action="store_true", help="with --remove: do not ask for confirmation")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kbroker acls``."""
    try:
        _check_usage(args)
        operations = [parse_operation(o) for o in args.operation]
    except ValueError as e:
        return fail(str(e))
    args.operations = operations
    body = {"add": _add, "list": _list, "remove": _remove}[args.action]
    return run_tool(args, body)


def parse_operation(text: str) -> AclOperation:
    """An operation named as kafka-acls.sh takes it (``DescribeConfigs``, ``describe_configs``, ...)."""
    key = text.replace("_", "").replace("-", "").lower()
    for op in AclOperation:
        if op not in (AclOperation.UNKNOWN, AclOperation.ANY) and op.name.replace("_", "").lower() == key:
            return op
    raise ValueError(f"unknown operation {text!r}")


def _check_usage(args: argparse.Namespace) -> None:
    principals = args.allow_principal + args.deny_principal
    if args.action == "add":
        if not principals:
            raise ValueError("--add needs --allow-principal or --deny-principal")
        if args.resource_pattern_type not in ("literal", "prefixed"):
            raise ValueError(f"a --resource-pattern-type of {args.resource_pattern_type!r} is not valid when "
                             "adding ACLs")
    if args.action in ("add", "remove") and not _has_resource(args):
        raise ValueError(f"--{args.action} needs a resource: --topic, --group, --transactional-id or --cluster")
    if args.principal is not None and args.action != "list":
        raise ValueError("--principal is only valid with --list")
    if args.force and args.action != "remove":
        raise ValueError("--force is only valid with --remove")
    for p in principals + ([args.principal] if args.principal else []):
        if ":" not in p:
            raise ValueError(f"principal {p!r} is not TYPE:NAME (e.g. User:alice)")


def _has_resource(args: argparse.Namespace) -> bool:
    return bool(args.topic or args.group or args.transactional_id or args.cluster)


def _resources(args: argparse.Namespace, pattern_type: PatternType) -> list[tuple[ResourceType, str, PatternType]]:
    """The resources named, each with its pattern type (the cluster's is always literal, as kafka-acls.sh has it)."""
    out = [(ResourceType.TOPIC, t, pattern_type) for t in args.topic]
    out += [(ResourceType.GROUP, g, pattern_type) for g in args.group]
    out += [(ResourceType.TRANSACTIONAL_ID, t, pattern_type) for t in args.transactional_id]
    if args.cluster:
        out.append((ResourceType.CLUSTER, CLUSTER_NAME, PatternType.LITERAL))
    return out


def _entries(args: argparse.Namespace) -> list[tuple[str, str, AclOperation, AclPermissionType]]:
    """(principal, host, operation, permission) of each ACL the options describe."""
    operations = args.operations or [AclOperation.ALL]
    out = []
    for principals, hosts, perm in ((args.allow_principal, args.allow_host, AclPermissionType.ALLOW),
                                    (args.deny_principal, args.deny_host, AclPermissionType.DENY)):
        for p in principals:
            for h in hosts or ["*"]:
                for op in operations:
                    out.append((p, h, op, perm))
    return out


def pattern_text(resource_type: int, name: str | None, pattern_type: int) -> str:
    """A resource pattern as kafka-acls.sh prints it."""
    return (f"ResourcePattern(resourceType={ResourceType(resource_type).name}, name={name}, "
            f"patternType={PatternType(pattern_type).name})")


def entry_text(b: AclBinding) -> str:
    """An access control entry as kafka-acls.sh prints it."""
    return (f"(principal={b.principal}, host={b.host}, operation={b.operation.name}, "
            f"permissionType={b.permission.name})")


def _print_grouped(title: str, bindings: list[AclBinding]) -> None:
    grouped: dict[tuple[int, str, int], list[AclBinding]] = {}
    for b in bindings:
        grouped.setdefault((b.resource_type, b.name, b.pattern_type), []).append(b)
    for (rt, name, pt), acls in grouped.items():
        print(f"{title} `{pattern_text(rt, name, pt)}`:")
        for b in acls:
            print(f" \t{entry_text(b)} ")
        print()


def _add(client: KafkaClient, args: argparse.Namespace) -> int:
    pt = PATTERN_TYPES[args.resource_pattern_type]
    bindings = [AclBinding(rt, name, rpt, p, h, op, perm)
                for rt, name, rpt in _resources(args, pt) for p, h, op, perm in _entries(args)]
    # As kafka-acls.sh: an operation the resource type lacks is refused here, not sent.
    errors: list[tuple[AclBinding, object]] = [(b, b.operation_error()) for b in bindings if b.operation_error()]
    bindings = [b for b in bindings if not b.operation_error()]
    _print_grouped("Adding ACLs for resource", bindings)
    errors += [(b, e) for b, e in zip(bindings, admin.create_acls(client, bindings), strict=True) if e is not None]
    for b, e in errors:
        print(f"kbroker: error: {entry_text(b)} on {pattern_text(b.resource_type, b.name, b.pattern_type)}: {e}",
              file=sys.stderr)
    _show_current(client, args, pt)
    return 1 if errors else 0


def _resource_filters(args: argparse.Namespace, pattern_type: PatternType) -> list[AclBindingFilter]:
    return [AclBindingFilter(rt, name, rpt) for rt, name, rpt in _resources(args, pattern_type)]


def _show_current(client: KafkaClient, args: argparse.Namespace, pattern_type: PatternType) -> None:
    for flt in _resource_filters(args, pattern_type):
        _print_grouped("Current ACLs for resource", admin.describe_acls(client, flt))


def _list(client: KafkaClient, args: argparse.Namespace) -> int:
    pt = PATTERN_TYPES[args.resource_pattern_type]
    filters = _resource_filters(args, pt) if _has_resource(args) else [AclBindingFilter()]
    seen: dict[AclBinding, None] = {}
    for flt in filters:
        if args.principal is not None:
            flt = AclBindingFilter(flt.resource_type, flt.name, flt.pattern_type, principal=args.principal)
        seen.update(dict.fromkeys(admin.describe_acls(client, flt)))
    _print_grouped("Current ACLs for resource", list(seen))
    return 0


def _confirm(question: str) -> bool:
    print(f"{question} (y/n)")
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _remove(client: KafkaClient, args: argparse.Namespace) -> int:
    pt = PATTERN_TYPES[args.resource_pattern_type]
    entries = _entries(args)
    filters: list[AclBindingFilter] = []
    for base in _resource_filters(args, pt):
        where = pattern_text(base.resource_type, base.name, base.pattern_type).replace("ResourcePattern(",
                                                                                        "ResourcePatternFilter(")
        if entries:
            listed = "\n".join(f" \t(principal={p}, host={h}, operation={op.name}, permissionType={perm.name})"
                               for p, h, op, perm in entries)
            if not args.force and not _confirm(f"Are you sure you want to remove ACLs: \n{listed} \n "
                                               f"from resource filter `{where}`?"):
                continue
            filters += [AclBindingFilter(base.resource_type, base.name, base.pattern_type, p, h, op, perm)
                        for p, h, op, perm in entries]
        else:
            if not args.force and not _confirm(f"Are you sure you want to delete all ACLs for resource filter "
                                               f"`{where}`?"):
                continue
            filters.append(base)
    if not filters:
        return 0
    removed: list[AclBinding] = []
    failed = False
    for outcome in admin.delete_acls(client, filters):
        if isinstance(outcome, KafkaError):
            failed = True
            print(f"kbroker: error: {outcome}", file=sys.stderr)
        else:
            removed.extend(outcome)
    _print_grouped("Removed ACLs for resource", removed)
    _show_current(client, args, pt)
    return 1 if failed else 0
