"""The ``kbroker`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` (a function
taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kbroker import __version__
from kbroker.cli import (
    acls,
    cluster,
    configs,
    consume,
    group_configs,
    groups,
    produce,
    quotas,
    serve,
    share_groups,
    topics,
    trace,
    transactions,
    users,
)
from kbroker.config import ConfigError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (serve, topics, produce, consume, groups, configs, group_configs, share_groups, transactions, acls, users,
            quotas, cluster, trace)

#: Exit code for usage and configuration errors (as argparse uses).
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="kbroker",
        description="A Kafka-protocol broker in Python for local development and tests.",
    )
    parser.add_argument("--version", action="version", version=f"kbroker {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def error(message: str) -> int:
    """Print ``kbroker: error: <message>`` to stderr and return the usage exit code."""
    print(f"kbroker: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        return error(str(exc))
    return code
