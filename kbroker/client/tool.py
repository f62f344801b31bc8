"""Shared plumbing for the client-side CLI tools (topics, produce, consume, groups)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from kbroker.client.cluster import DEFAULT_BOOTSTRAP, KafkaClient
from kbroker.client.errors import ClientError

#: Exit code when the broker reports an error or cannot be reached.
EXIT_FAILURE = 1

ToolBody = Callable[[KafkaClient, argparse.Namespace], int]


#: The environment variable naming the default ``--bootstrap-server`` of every client command.
BOOTSTRAP_ENV = "KBROKER_BOOTSTRAP"


def add_bootstrap_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--bootstrap-server HOST:PORT[,HOST:PORT...]``, defaulting to ``$KBROKER_BOOTSTRAP``
    when set (read when the parser is built), else to :data:`DEFAULT_BOOTSTRAP`."""
    default = os.environ.get(BOOTSTRAP_ENV, "").strip() or DEFAULT_BOOTSTRAP
    parser.add_argument("--bootstrap-server", default=default, metavar="HOST:PORT",
                        help=f"broker(s) to connect to (default: ${BOOTSTRAP_ENV} if set, else {DEFAULT_BOOTSTRAP})")
    parser.add_argument("--command-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="socket timeout for each request (default: 30)")


def fail(message: str) -> int:
    """Print ``kbroker: error: <message>`` to stderr and return :data:`EXIT_FAILURE`."""
    print(f"kbroker: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def parse_properties(items: list[str]) -> dict[str, str]:
    """``--property k=v`` values as a dict; ValueError on an item without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"property {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def run_tool(args: argparse.Namespace, body: ToolBody) -> int:
    """Run ``body`` with a connected client, turning client errors into one line on stderr."""
    try:
        client = KafkaClient(args.bootstrap_server, timeout=args.command_timeout)
    except ValueError as e:
        return fail(f"INVALID_CONFIG: {e}")
    try:
        with client:
            return body(client, args)
    except ClientError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): stop quietly, as Kafka's tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
