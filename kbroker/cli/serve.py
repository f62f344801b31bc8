"""``kbroker serve``: build the broker config and run the broker."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from kbroker.config import BrokerConfig
from kbroker.log.errors import KafkaStorageError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Exit code when the broker cannot start (port in use, unusable data directory).
EXIT_STARTUP_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the broker",
        description=(
            "Run the broker. Configuration: defaults < --config file < KBROKER_<KEY> "
            "environment variables < --override key=value."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="server.properties file to read")
    parser.add_argument(
        "--override",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a config key, overriding file and environment (repeatable)",
    )
    parser.add_argument("--record", metavar="FILE",
                        help="flight recorder: append one JSON line per request to FILE (record.file); "
                             "read it with `kbroker trace FILE`")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (default: INFO)",
    )
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> BrokerConfig:
    """The :class:`BrokerConfig` that ``args`` describe (raises ``ConfigError``)."""
    overrides = list(args.override)
    if getattr(args, "record", None):
        overrides.append(f"record.file={args.record}")
    return BrokerConfig.load(args.config, overrides=overrides)


def run(args: argparse.Namespace) -> int:
    """Configure logging, build the config, and hand over to ``kbroker.broker.run``."""
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    logging.getLogger().setLevel(args.log_level)  # also when logging was configured before us
    config = build_config(args)
    broker = importlib.import_module("kbroker.broker")  # late: the server is heavy

    try:
        return int(broker.run(config))
    except broker.StartupError as e:
        print(f"kbroker: error: {e}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    except KeyboardInterrupt:
        return 130
    except KafkaStorageError as exc:  # e.g. a log dir locked by another broker: one clear line
        print(f"kbroker: error: {exc}", file=sys.stderr)
        return 1
