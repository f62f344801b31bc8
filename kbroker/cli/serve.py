"""``kbroker serve``: build the broker config and run the broker."""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import sys
import tempfile
from typing import Any

from kbroker.config import BrokerConfig
from kbroker.config.broker_keys import EMULATED_RELEASES
from kbroker.config.listeners import parse_listener_list
from kbroker.log.errors import KafkaStorageError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Exit code when the broker cannot start (port in use, unusable data directory).
EXIT_STARTUP_FAILED = 1
#: The web console's port for ``--console`` given without one, when ``console.port`` is unset.
CONSOLE_PORT = 9021
#: What ``--dev`` sets unless the config file, the environment or ``--override`` sets it: a
#: local consumer group starts at once, and producing to a new topic creates it.
DEV_DEFAULTS = {"group.initial.rebalance.delay.ms": "0", "auto.create.topics.enable": "true"}


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
    parser.add_argument("--dev", action="store_true",
                        help="for development: no initial rebalance delay, topics created on first use, "
                             "data in a temporary folder removed at exit (unless --data-dir or log.dirs)")
    parser.add_argument("--port", type=_port, metavar="N",
                        help="serve the first listener on port N (its name and host kept; default 9092)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (log.dirs)")
    parser.add_argument("--emulate", metavar="X.Y", choices=EMULATED_RELEASES,
                        help="advertise the API versions of Apache Kafka X.Y and refuse others "
                             f"(emulate.version; one of {', '.join(EMULATED_RELEASES)})")
    parser.add_argument("--console", nargs="?", const=CONSOLE_PORT, type=_port, metavar="PORT",
                        help="serve the web console on 127.0.0.1:PORT (console.port; without PORT: "
                             f"console.port if set, else {CONSOLE_PORT}; 0 picks a free port); the URL is printed "
                             "at start")
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0..65535")
    return port


def build_config(args: argparse.Namespace, dev_data_dir: str | None = None) -> BrokerConfig:
    """The :class:`BrokerConfig` that ``args`` describe (raises ``ConfigError``). The shortcut
    options (``--data-dir``, ``--emulate``) weigh as ``--override`` given before the others;
    ``--dev``'s settings (and ``dev_data_dir``, its temporary data folder) only fill keys no
    layer sets; ``--port`` changes the port of the listener the rest configures."""
    shortcuts = []
    if getattr(args, "data_dir", None) is not None:
        shortcuts.append(f"log.dirs={args.data_dir}")
    if getattr(args, "emulate", None) is not None:
        shortcuts.append(f"emulate.version={args.emulate}")
    if getattr(args, "record", None):
        shortcuts.append(f"record.file={args.record}")
    overrides = [*shortcuts, *args.override]
    config = BrokerConfig.load(args.config, overrides=overrides)
    extra: list[str] = []
    if getattr(args, "dev", False):
        extra += [f"{key}={value}" for key, value in DEV_DEFAULTS.items() if not config.is_set(key)]
        if dev_data_dir is not None and not (config.is_set("log.dirs") or config.is_set("log.dir")):
            extra.append(f"log.dirs={dev_data_dir}")
    port = getattr(args, "port", None)
    late: list[str] = []
    console = getattr(args, "console", None)
    if console is not None and not (console == CONSOLE_PORT and config.is_set("console.port")):
        # --console PORT wins over every layer; a bare --console keeps a configured console.port.
        late.append(f"console.port={console}")
    if port is not None:
        late.append(f"listeners={_with_port(config.get('listeners'), port)}")
    if extra or late:
        config = BrokerConfig.load(args.config, overrides=[*extra, *overrides, *late])
    return config


def _with_port(listeners: list[str], port: int) -> str:
    """``listeners`` with the first one's port set to ``port``."""
    first = parse_listener_list("listeners", listeners)[0]
    host = f"[{first.host}]" if ":" in first.host else first.host
    return ",".join([f"{first.name}://{host}:{port}", *listeners[1:]])


def run(args: argparse.Namespace) -> int:
    """Configure logging, build the config, and hand over to ``kbroker.broker.run``."""
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    logging.getLogger().setLevel(args.log_level)  # also when logging was configured before us
    scratch = tempfile.mkdtemp(prefix="kbroker-dev-") if args.dev and args.data_dir is None else None
    try:
        return _run(args, scratch)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, scratch: str | None) -> int:
    config = build_config(args, scratch)  # a ConfigError is printed by the command line's handler
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
