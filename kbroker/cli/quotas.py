"""``kbroker quotas``: describe and alter client quotas, as kafka-configs.sh does for
users and clients.

    kbroker quotas --describe [--user U | --user-default] [--client-id C | --client-default]
    kbroker quotas --alter --user U --add-config producer_byte_rate=1024,consumer_byte_rate=2048
    kbroker quotas --alter --client-default --delete-config request_percentage
"""

from __future__ import annotations

import argparse
from typing import Any

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import INVALID_REQUEST, KafkaError
from kbroker.client.tool import add_bootstrap_argument, run_tool


def register(subparsers: Any) -> None:
    """Add the ``quotas`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "quotas", help="describe and alter client quotas",
        description="Describe and alter client quotas of users and client ids, as kafka-configs.sh does.")
    add_bootstrap_argument(parser)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--describe", dest="action", action="store_const", const="describe",
                        help="show the quotas of the entities named (all when none is)")
    action.add_argument("--alter", dest="action", action="store_const", const="alter",
                        help="set (--add-config) or remove (--delete-config) quotas of one entity")
    user = parser.add_mutually_exclusive_group()
    user.add_argument("--user", metavar="USER", help="a user principal's name (without User:)")
    user.add_argument("--user-default", action="store_true", help="the default user")
    client = parser.add_mutually_exclusive_group()
    client.add_argument("--client-id", metavar="ID", help="a client id")
    client.add_argument("--client-default", action="store_true", help="the default client id")
    parser.add_argument("--add-config", default="", metavar="K=V[,K=V...]",
                        help="quotas to set: producer_byte_rate, consumer_byte_rate, request_percentage, "
                             "controller_mutation_rate")
    parser.add_argument("--delete-config", default="", metavar="K[,K...]", help="quotas to remove")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kbroker quotas``."""
    return run_tool(args, _describe if args.action == "describe" else _alter)


def _entity(args: argparse.Namespace) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    if args.user is not None or args.user_default:
        out["user"] = args.user
    if args.client_id is not None or args.client_default:
        out["client-id"] = args.client_id
    return out


def parse_add_config(text: str) -> dict[str, float]:
    """``k=v,k=v`` as quota values; KafkaError(INVALID_REQUEST) on a value that is no number."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KafkaError(INVALID_REQUEST, f"--add-config expects key=value, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise KafkaError(INVALID_REQUEST, f"quota {key.strip()} must be a number, got {value!r}") from None
    return out


def describe_entity(entity: admin.QuotaEntity) -> str:
    """``user-principal 'alice', client-id 'app'`` as kafka-configs.sh names an entity."""
    words = {"user": "user-principal", "client-id": "client-id", "ip": "ip"}
    return ", ".join(f"the default {words.get(t, t)}" if n is None else f"{words.get(t, t)} '{n}'"
                     for t, n in sorted(entity, key=lambda p: (p[0] != "user", p[0])))


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    components = [(t, admin.MATCH_DEFAULT if n is None else admin.MATCH_EXACT, n) for t, n in _entity(args).items()]
    found = admin.describe_client_quotas(client, components, strict=bool(components))
    for entity, values in sorted(found.items(), key=lambda kv: [(t, n or "") for t, n in kv[0]]):
        listed = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
        print(f"Quota configs for {describe_entity(entity)} are {listed}")
    return 0


def _alter(client: KafkaClient, args: argparse.Namespace) -> int:
    entity = _entity(args)
    if not entity:
        raise KafkaError(INVALID_REQUEST, "--alter needs --user/--user-default and/or --client-id/--client-default")
    add = parse_add_config(args.add_config)
    delete = [k.strip() for k in args.delete_config.split(",") if k.strip()]
    if not add and not delete:
        raise KafkaError(INVALID_REQUEST, "--alter needs --add-config or --delete-config")
    admin.alter_client_quotas(client, entity, add, delete)
    key = tuple(sorted(entity.items()))
    print(f"Completed updating config for {describe_entity(key)}.")
    return 0
