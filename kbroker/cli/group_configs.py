"""``kbroker group-configs``: describe and alter a group's configs (the GROUP config resource),
as ``kafka-configs.sh --entity-type groups`` does.

    kbroker group-configs --describe --group G
    kbroker group-configs --alter --group G --add-config consumer.session.timeout.ms=50000,share.auto.offset.reset=earliest
    kbroker group-configs --alter --group G --delete-config share.auto.offset.reset
"""

from __future__ import annotations

import argparse
from typing import Any

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import INVALID_REQUEST, KafkaError, check
from kbroker.client.tool import add_bootstrap_argument, run_tool

DESCRIBE_CONFIGS = 32
INCREMENTAL_ALTER_CONFIGS = 44
RESOURCE_GROUP = 32
SET, DELETE = 0, 1
#: DescribeConfigs' config_source of a value set on the group.
SOURCE_GROUP = 8


def register(subparsers: Any) -> None:
    """Add the ``group-configs`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "group-configs", help="describe and alter group configs",
        description="Describe and alter a group's configs (consumer.session.timeout.ms, share.auto.offset.reset, "
                    "...), as kafka-configs.sh --entity-type groups does. A group needs not exist yet.")
    add_bootstrap_argument(parser)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--describe", dest="action", action="store_const", const="describe",
                        help="show the configs set on the group (--all: every config with its default)")
    action.add_argument("--alter", dest="action", action="store_const", const="alter",
                        help="set (--add-config) or remove (--delete-config) configs of the group")
    parser.add_argument("--group", required=True, help="the group's id")
    parser.add_argument("--all", action="store_true", help="with --describe: defaults too")
    parser.add_argument("--add-config", default="", metavar="K=V[,K=V...]", help="configs to set")
    parser.add_argument("--delete-config", default="", metavar="K[,K...]", help="configs to remove")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kbroker group-configs``."""
    return run_tool(args, _describe if args.action == "describe" else _alter)


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    body = {"resources": [{"resource_type": RESOURCE_GROUP, "resource_name": args.group, "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}
    resp = client.request(DESCRIBE_CONFIGS, body)
    [result] = resp.results
    check(result.error_code, result.error_message)
    shown = [c for c in result.configs if args.all or c.get("config_source") == SOURCE_GROUP]
    print(f"Dynamic configs for group {args.group} are:" if not args.all else f"All configs for group {args.group} are:")
    for c in sorted(shown, key=lambda c: c.name):
        origin = "GROUP_CONFIG" if c.get("config_source") == SOURCE_GROUP else "DEFAULT_CONFIG"
        print(f"  {c.name}={c.value} sensitive={str(bool(c.is_sensitive)).lower()} synonyms={{{origin}:{c.name}={c.value}}}")
    return 0


def parse_configs(add: str, delete: str) -> list[dict[str, Any]]:
    """The IncrementalAlterConfigs entries of ``--add-config`` and ``--delete-config``."""
    out: list[dict[str, Any]] = []
    for item in filter(None, (part.strip() for part in add.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KafkaError(INVALID_REQUEST, f"--add-config expects key=value, got {item!r}")
        out.append({"name": key.strip(), "config_operation": SET, "value": value.strip()})
    out += [{"name": k.strip(), "config_operation": DELETE, "value": None} for k in delete.split(",") if k.strip()]
    return out


def _alter(client: KafkaClient, args: argparse.Namespace) -> int:
    configs = parse_configs(args.add_config, args.delete_config)
    if not configs:
        raise KafkaError(INVALID_REQUEST, "--alter needs --add-config or --delete-config")
    body = {"resources": [{"resource_type": RESOURCE_GROUP, "resource_name": args.group, "configs": configs}],
            "validate_only": False}
    resp = client.request(INCREMENTAL_ALTER_CONFIGS, body)
    [result] = resp.responses
    check(result.error_code, result.error_message)
    print(f"Completed updating config for group {args.group}.")
    return 0
