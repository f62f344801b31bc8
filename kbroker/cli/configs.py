"""``kbroker configs``: describe and alter topic, broker and group configs, as kafka-configs.sh does.

    kbroker configs --describe --entity-type topics --entity-name T [--all]
    kbroker configs --alter --entity-type topics --entity-name T --add-config k=v,k2=[a,b] --delete-config k3
    kbroker configs --alter --entity-type brokers --entity-default --add-config log.roll.ms=5000000
    kbroker configs --describe --entity-type groups --entity-name G

``--topic T``, ``--broker N``, ``--broker-defaults`` and ``--group G`` are the short forms
Kafka's tool also accepts. The output is Kafka's: one line per config with its source
synonyms, and ``Completed updating config for topic T.`` after an alteration.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from kbroker.client import groups as g
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import INVALID_REQUEST, UNKNOWN_TOPIC_OR_PARTITION, KafkaError, check
from kbroker.client.tool import add_bootstrap_argument, run_tool

DESCRIBE_CONFIGS = 32
INCREMENTAL_ALTER_CONFIGS = 44
INVALID_CONFIG = 40
SET, DELETE = 0, 1
#: DescribeConfigs' resource types by --entity-type.
RESOURCE_TYPES = {"topics": 2, "brokers": 4, "groups": 32}
#: Kafka's ConfigEntry.ConfigSource names, by the wire's config_source.
SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
           4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
           7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
#: The source of the values an entity has set on itself (what --describe without --all lists).
OWN_SOURCE = {"topics": 1, "brokers": 2, "groups": 8}
DEFAULT_BROKER_SOURCE = 3
#: Commas split configs, except inside [brackets] (list values: ``k=[a,b]``).
_SPLIT = re.compile(r",(?![^\[]*\])")


def register(subparsers: Any) -> None:
    """Add the ``configs`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "configs", help="describe and alter topic, broker and group configs",
        description="Describe and alter the configs of topics, brokers and groups, as kafka-configs.sh does.")
    add_bootstrap_argument(parser)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--describe", dest="action", action="store_const", const="describe",
                        help="list the configs set on the entity (--all: every config)")
    action.add_argument("--alter", dest="action", action="store_const", const="alter",
                        help="set (--add-config) or remove (--delete-config) configs")
    parser.add_argument("--entity-type", choices=sorted(RESOURCE_TYPES), help="topics, brokers or groups")
    parser.add_argument("--entity-name", help="the topic, broker id or group (all of them with --describe when omitted)")
    parser.add_argument("--entity-default", action="store_true", help="with brokers: the cluster-wide default")
    shortcuts = parser.add_mutually_exclusive_group()
    shortcuts.add_argument("--topic", help="short for --entity-type topics --entity-name TOPIC")
    shortcuts.add_argument("--broker", help="short for --entity-type brokers --entity-name ID")
    shortcuts.add_argument("--broker-defaults", action="store_true",
                           help="short for --entity-type brokers --entity-default")
    shortcuts.add_argument("--group", help="short for --entity-type groups --entity-name GROUP")
    parser.add_argument("--all", action="store_true", help="with --describe: every config, defaults included")
    parser.add_argument("--add-config", default="", metavar="K=V[,K=[V1,V2]...]", help="configs to set")
    parser.add_argument("--delete-config", default="", metavar="K[,K...]", help="configs to remove")
    parser.set_defaults(handler=run)


def _entity(args: argparse.Namespace) -> tuple[str, str | None, bool]:
    """``(entity type, name or None, default)`` from the long or the short options."""
    short = [(t, n, d) for t, n, d in (("topics", args.topic, False), ("brokers", args.broker, False),
                                       ("brokers", None, args.broker_defaults), ("groups", args.group, False))
             if n is not None or d]
    if short:
        if args.entity_type or args.entity_name or args.entity_default:
            raise KafkaError(INVALID_REQUEST, "--topic/--broker/--broker-defaults/--group replace --entity-*")
        return short[0]
    if args.entity_type is None:
        raise KafkaError(INVALID_REQUEST, "--entity-type (or --topic, --broker, --broker-defaults, --group) is "
                                          "required")
    if args.entity_default and args.entity_type != "brokers":
        raise KafkaError(INVALID_REQUEST, "--entity-default applies to --entity-type brokers only")
    if args.entity_default and args.entity_name:
        raise KafkaError(INVALID_REQUEST, "--entity-name and --entity-default are exclusive")
    if args.entity_type == "brokers" and args.entity_name is not None and not args.entity_name.isdigit():
        raise KafkaError(INVALID_REQUEST, f"The entity name for brokers must be a valid integer broker id, but it "
                                          f"is: {args.entity_name}")
    return args.entity_type, args.entity_name, args.entity_default


def parse_add_config(text: str) -> dict[str, str]:
    """``k=v,k2=[a,b]`` as ``{k: v, k2: "a,b"}`` (Kafka's --add-config syntax)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in _SPLIT.split(text))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KafkaError(INVALID_REQUEST, 'Invalid entity config: all configs to be added must be in the format '
                                              '"key=val" or "key=[val1,val2]".')
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        out[key.strip()] = value
    return out


def _node(entity_type: str, name: str) -> int | None:
    """Broker configs are read and changed on that broker itself; the rest on any broker."""
    return int(name) if entity_type == "brokers" and name else None


def describe_entity(client: KafkaClient, entity_type: str, name: str, *, all_configs: bool = False,
                    source: int | None = None) -> list[Any]:
    """The entity's config entries (with synonyms), sorted; only those from ``source`` unless ``all_configs``."""
    body = {"resources": [{"resource_type": RESOURCE_TYPES[entity_type], "resource_name": name,
                           "configuration_keys": None}],
            "include_synonyms": True, "include_documentation": False}
    resp = client.request(DESCRIBE_CONFIGS, body, _node(entity_type, name))
    [result] = resp.results
    check(result.error_code, result.error_message)
    wanted = OWN_SOURCE[entity_type] if source is None else source
    return sorted((c for c in result.configs if all_configs or c.get("config_source") == wanted),
                  key=lambda c: c.name)


def _value(value: str | None) -> str:
    return "null" if value is None else value


def format_entry(entry: Any) -> str:
    """Kafka's ``  name=value sensitive=false synonyms={SOURCE:name=value, ...}``."""
    synonyms = ", ".join(f"{SOURCES.get(s.source, 'UNKNOWN')}:{s.name}={_value(s.value)}"
                         for s in entry.get("synonyms") or ())
    return (f"  {entry.name}={_value(entry.value)} sensitive={str(bool(entry.is_sensitive)).lower()} "
            f"synonyms={{{synonyms}}}")


def _print_entity(client: KafkaClient, entity_type: str, name: str, all_configs: bool) -> None:
    default = entity_type == "brokers" and name == ""
    entries = describe_entity(client, entity_type, name, all_configs=all_configs,
                              source=DEFAULT_BROKER_SOURCE if default else None)
    if default:
        print("Default configs for brokers in the cluster are:")
    else:
        print(f"{'All' if all_configs else 'Dynamic'} configs for {entity_type[:-1]} {name} are:")
    for entry in entries:
        print(format_entry(entry))


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    entity_type, name, default = _entity(args)
    if args.add_config or args.delete_config:
        raise KafkaError(INVALID_REQUEST, "--add-config and --delete-config apply to --alter")
    if default:
        _print_entity(client, "brokers", "", False)
        return 0
    if name is not None:
        if entity_type == "topics":
            try:
                _print_entity(client, entity_type, name, args.all)
            except KafkaError as e:
                if e.code != UNKNOWN_TOPIC_OR_PARTITION:
                    raise
                print(f"The topic '{name}' doesn't exist and doesn't have dynamic config.")
            return 0
        _print_entity(client, entity_type, name, args.all)
        return 0
    # No name: every entity of the type (and, for brokers, the cluster default too).
    if entity_type == "topics":
        names = sorted(client.metadata(None).topics)
    elif entity_type == "brokers":
        names = [str(b) for b in sorted(client.metadata([]).brokers)]
    else:
        names = [x.group_id for x in g.list_groups(client)]
    for each in names:
        _print_entity(client, entity_type, each, args.all)
    if entity_type == "brokers" and not args.all:
        _print_entity(client, "brokers", "", False)
    return 0


def _alter(client: KafkaClient, args: argparse.Namespace) -> int:
    entity_type, name, default = _entity(args)
    if args.all:
        raise KafkaError(INVALID_REQUEST, "--all applies to --describe")
    if name is None and not default:
        raise KafkaError(INVALID_REQUEST, "--alter needs --entity-name" + (" or --entity-default"
                                                                           if entity_type == "brokers" else ""))
    name = name or ""
    to_set = parse_add_config(args.add_config)
    to_delete = [k.strip() for k in args.delete_config.split(",") if k.strip()]
    if not to_set and not to_delete:
        raise KafkaError(INVALID_REQUEST, "At least one of --add-config or --delete-config must be specified "
                                          "with --alter")
    if to_delete:
        # As Kafka's tool: only a config the entity has set can be deleted.
        current = {c.name for c in describe_entity(client, entity_type, name,
                                                   source=DEFAULT_BROKER_SOURCE if default else None)}
        invalid = [k for k in to_delete if k not in current]
        if invalid:
            raise KafkaError(INVALID_CONFIG, f"Invalid config(s): {','.join(invalid)}")
    configs = [{"name": k, "config_operation": SET, "value": v} for k, v in to_set.items()]
    configs += [{"name": k, "config_operation": DELETE, "value": None} for k in to_delete]
    body = {"resources": [{"resource_type": RESOURCE_TYPES[entity_type], "resource_name": name,
                           "configs": configs}], "validate_only": False}
    resp = client.request(INCREMENTAL_ALTER_CONFIGS, body, _node(entity_type, name))
    [result] = resp.responses
    check(result.error_code, result.error_message)
    if default:
        print("Completed updating default config for brokers in the cluster.")
    else:
        print(f"Completed updating config for {entity_type[:-1]} {name}.")
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kbroker configs``."""
    return run_tool(args, _describe if args.action == "describe" else _alter)
