"""``kbroker cluster``: run a local cluster (etcd and N brokers) in a folder and act on it.

``up`` starts the processes detached and returns; the other subcommands find them through
the folder's state file (``cluster.json``), so any later shell can stop, kill, pause or
restart a broker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Exit code when the cluster operation failed (no cluster, broker not running, start-up failure).
EXIT_FAILED = 1
DEFAULT_DIR = Path("kbroker-cluster")


def register(subparsers: Any) -> None:
    """Add the ``cluster`` subcommand and its actions to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="run a local cluster of brokers with etcd",
        description="Run a local cluster: one etcd and several brokers as background processes, "
                    "everything (data, logs, the state file cluster.json) in one folder.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, with_broker: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                       help=f"the cluster's folder (default: ./{DEFAULT_DIR})")
        if with_broker:
            p.add_argument("broker", type=int, metavar="N", help="node id of the broker")
        p.set_defaults(handler=run)
        return p

    up = action("up", "start etcd and the brokers in the background; print the bootstrap servers")
    up.add_argument("--brokers", type=int, default=3, help="number of brokers (default: 3)")
    up.add_argument("--override", metavar="KEY=VALUE", action="append", default=[],
                    help="a broker config key for every broker (repeatable)")
    action("down", "stop every broker (controlled shutdown) and etcd")
    action("status", "show each broker's port, pid and state")
    action("kill", "kill a broker with SIGKILL (a crash)", with_broker=True)
    action("pause", "freeze a broker with SIGSTOP", with_broker=True)
    action("resume", "resume a paused broker with SIGCONT", with_broker=True)
    action("restart", "start a broker again on its port and data (stopping it first if it runs)",
           with_broker=True)
    action("stop", "stop a broker with SIGTERM (controlled shutdown)", with_broker=True)


def _overrides(pairs: list[str]) -> dict[str, str]:
    from kbroker.config import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--override expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.action`` on the cluster in ``args.dir``."""
    from kbroker.localcluster import ClusterError, LocalCluster

    try:
        if args.action == "up":
            if args.brokers < 1:
                print("kbroker: error: --brokers must be at least 1", file=sys.stderr)
                return 2
            cluster = LocalCluster(args.dir, args.brokers, _overrides(args.override))
            cluster.start()
            print(cluster.bootstrap_servers)
            return 0
        cluster = LocalCluster.attach(args.dir)
        if args.action == "down":
            cluster.stop()
        elif args.action == "status":
            etcd = f"running (pid {cluster.etcd_pid}, {cluster.etcd_endpoint})" if cluster.etcd_alive() else "stopped"
            print(f"etcd     {etcd}")
            for b in cluster.status():
                pid = f"pid {b['pid']}" if b["pid"] else ""
                print(f"broker {b['id']} 127.0.0.1:{b['port']} {b['state']} {pid}".rstrip())
            print(f"bootstrap {cluster.bootstrap_servers}")
        elif args.action == "kill":
            cluster.kill(args.broker)
        elif args.action == "pause":
            cluster.pause(args.broker)
        elif args.action == "resume":
            cluster.resume(args.broker)
        elif args.action == "restart":
            cluster.restart(args.broker)
        elif args.action == "stop":
            cluster.terminate(args.broker)
    except ClusterError as e:
        print(f"kbroker: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0
