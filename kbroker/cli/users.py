"""``kbroker users``: add, delete and describe users' SCRAM credentials (as
``kafka-configs.sh --entity-type users`` does with ``SCRAM-SHA-256=[iterations=...,password=...]``).

The password is salted and iterated here; only the salt, the iteration count and the salted
password reach the broker, which keeps keys derived from them and never the password.
"""

from __future__ import annotations

import argparse
from typing import Any

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import error_name
from kbroker.client.tool import add_bootstrap_argument, fail, run_tool
from kbroker.security.scram import MECHANISMS


def register(subparsers: Any) -> None:
    """Add the ``users`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "users", help="add, delete and describe users' SCRAM credentials",
        description="Manage SCRAM credentials of users, as kafka-configs.sh --entity-type users does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--add-scram", metavar="USER", help="set USER's credential for --mechanism")
    actions.add_argument("--delete-scram", metavar="USER", help="delete USER's credential for --mechanism")
    actions.add_argument("--describe", nargs="*", metavar="USER",
                         help="show the mechanisms and iterations of these users (none named: every user)")
    parser.add_argument("--mechanism", choices=sorted(MECHANISMS), help="the SCRAM mechanism")
    parser.add_argument("--password", help="with --add-scram: the password")
    parser.add_argument("--iterations", type=int, default=admin.DEFAULT_SCRAM_ITERATIONS, metavar="N",
                        help=f"with --add-scram: the iteration count (default {admin.DEFAULT_SCRAM_ITERATIONS}; "
                             "brokers accept 4096 to 16384)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the options for the action, then run it against the broker."""
    if args.describe is not None:
        if args.mechanism or args.password is not None:
            return fail("INVALID_REQUEST: --describe takes neither --mechanism nor --password")
        return run_tool(args, _describe)
    action = "--add-scram" if args.add_scram is not None else "--delete-scram"
    if not args.mechanism:
        return fail(f"INVALID_REQUEST: {action} needs --mechanism ({' or '.join(sorted(MECHANISMS))})")
    if args.add_scram is not None:
        if args.password is None:
            return fail("INVALID_REQUEST: --add-scram needs --password")
        if not args.password:
            return fail("INVALID_REQUEST: the password must not be empty")
        limit = MECHANISMS[args.mechanism].max_iterations
        if not 0 < args.iterations <= limit:
            # Salting with that count would take long (or be impossible) only to be refused.
            return fail(f"UNACCEPTABLE_CREDENTIAL: --iterations must be at most {limit} (and at least 4096)"
                        if args.iterations > 0 else "INVALID_REQUEST: --iterations must be positive")
        return run_tool(args, _add)
    if args.password is not None:
        return fail("INVALID_REQUEST: --delete-scram takes no --password")
    return run_tool(args, _delete)


def _report(results: dict[str, Any], user: str, done: str) -> int:
    if user not in results:
        return fail(f"UNKNOWN_SERVER_ERROR: the broker did not answer for user {user!r}")
    error = results[user]
    if error is not None:
        return fail(str(error))
    print(done)
    return 0


def _add(client: KafkaClient, args: argparse.Namespace) -> int:
    upsertion = admin.ScramUpsertion(args.add_scram, args.mechanism, args.password, args.iterations)
    results = admin.alter_user_scram_credentials(client, upsertions=[upsertion])
    return _report(results, args.add_scram,
                   f"Set the {args.mechanism} credential of user '{args.add_scram}' "
                   f"({args.iterations} iterations).")


def _delete(client: KafkaClient, args: argparse.Namespace) -> int:
    results = admin.alter_user_scram_credentials(client, deletions=[(args.delete_scram, args.mechanism)])
    return _report(results, args.delete_scram,
                   f"Deleted the {args.mechanism} credential of user '{args.delete_scram}'.")


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    users = admin.describe_user_scram_credentials(client, args.describe or None)
    code = 0
    for u in users:
        if u.error_code:
            code = fail(f"{error_name(u.error_code)}: {u.error_message or ''}".rstrip(": "))
            continue
        creds = ", ".join(f"{mech}=iterations={n}" for mech, n in sorted(u.credentials.items()))
        # kafka-configs.sh's line for a user's SCRAM credentials.
        print(f"SCRAM credential configs for user-principal '{u.user}' are {creds}")
    return code
