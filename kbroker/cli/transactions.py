"""``kbroker transactions``: list, describe and abort transactions (like kafka-transactions.sh).

The actions are Kafka's subcommands as options: ``--list``, ``--describe``,
``--describe-producers``, ``--find-hanging`` and ``--abort``. Tables are printed as
Kafka's tool prints them: every column padded to its widest cell and followed by a tab.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from kbroker.client import transactions as tx
from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import INVALID_REQUEST, TRANSACTIONAL_ID_NOT_FOUND, KafkaError
from kbroker.client.tool import add_bootstrap_argument, fail, run_tool
from kbroker.common import TopicPartition

#: Which actions each option applies to (``dest`` -> actions).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "state": ("list",),
    "duration_filter": ("list",),
    "transactional_id_pattern": ("list",),
    "producer_id": ("list", "abort"),
    "transactional_id": ("describe",),
    "topic": ("describe-producers", "find-hanging", "abort"),
    "partition": ("describe-producers", "find-hanging", "abort"),
    "broker_id": ("describe-producers", "find-hanging"),
    "max_transaction_timeout": ("find-hanging",),
    "start_offset": ("abort",),
    "producer_epoch": ("abort",),
    "coordinator_epoch": ("abort",),
}

#: Default of ``--max-transaction-timeout`` (minutes), Kafka's tool's.
DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN = 15
#: Partitions per DescribeProducers request while searching for hanging transactions (Kafka's batch).
MAX_BATCH_SIZE = 500
INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1

LIST_HEADERS = ("TransactionalId", "Coordinator", "ProducerId", "TransactionState")
DESCRIBE_HEADERS = ("CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch", "TransactionState",
                    "TransactionTimeoutMs", "CurrentTransactionStartTimeMs", "TransactionDurationMs",
                    "TopicPartitions")
PRODUCERS_HEADERS = ("ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence", "LastTimestamp",
                     "CurrentTransactionStartOffset")
HANGING_HEADERS = ("Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch", "StartOffset",
                   "LastTimestamp", "Duration(min)")


def register(subparsers: Any) -> None:
    """Add the ``transactions`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "transactions", help="list, describe and abort transactions; find hanging ones",
        description="Analyze the transactional state of producers and recover from hanging "
                    "transactions, as kafka-transactions.sh does.")
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--list", dest="action", action="store_const", const="list",
                         help="list transactions")
    actions.add_argument("--describe", dest="action", action="store_const", const="describe",
                         help="describe the state of an active transactional id")
    actions.add_argument("--describe-producers", dest="action", action="store_const", const="describe-producers",
                         help="describe the active producers of a topic partition")
    actions.add_argument("--find-hanging", dest="action", action="store_const", const="find-hanging",
                         help="find hanging transactions")
    actions.add_argument("--abort", dest="action", action="store_const", const="abort",
                         help="abort a hanging transaction")
    parser.add_argument("--state", action="append", choices=tx.TRANSACTION_STATES,
                        help="with --list: only transactions in this state (repeatable)")
    parser.add_argument("--producer-id", type=int, action="append", metavar="ID",
                        help="with --list: only this producer's transactions (repeatable); "
                             "with --abort: the producer of the transaction")
    parser.add_argument("--duration-filter", type=int, metavar="MS",
                        help="with --list: only transactions running longer than MS milliseconds "
                             "(negative: all)")
    parser.add_argument("--transactional-id-pattern", metavar="REGEX",
                        help="with --list: only transactional ids the regular expression matches whole")
    parser.add_argument("--transactional-id", help="with --describe: the transactional id")
    parser.add_argument("--topic", help="the topic (--describe-producers, --find-hanging, --abort)")
    parser.add_argument("--partition", type=int, help="the partition (--describe-producers, --find-hanging, "
                                                      "--abort)")
    parser.add_argument("--broker-id", type=int, help="with --describe-producers: ask this replica instead of "
                                                      "the leader; with --find-hanging: search its partitions")
    parser.add_argument("--max-transaction-timeout", type=int, metavar="MIN",
                        help="with --find-hanging: only transactions whose producer wrote nothing for longer "
                             f"than MIN minutes (default: {DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN})")
    parser.add_argument("--start-offset", type=int, help="with --abort: start offset of the transaction")
    parser.add_argument("--producer-epoch", type=int, help="with --abort and --producer-id: producer epoch")
    parser.add_argument("--coordinator-epoch", type=int,
                        help="with --abort and --producer-id: coordinator epoch")
    parser.set_defaults(handler=run)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Kafka's tool's table: each cell padded to its column's width and followed by a tab."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("".join(c.ljust(w) + "\t" for c, w in zip(r, widths, strict=True)) for r in cells)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tp(args: argparse.Namespace) -> TopicPartition:
    return TopicPartition(args.topic, args.partition)


def _tp_str(tp: TopicPartition) -> str:
    return f"{tp.topic}-{tp.partition}"


def _usage_error(args: argparse.Namespace) -> str | None:
    """Why the options do not fit the action, or None."""
    action = args.action
    for dest, actions in APPLIES_TO.items():
        if getattr(args, dest) is not None and action not in actions:
            option = "--" + dest.replace("_", "-")
            return f"{option} applies only to " + ", ".join(f"--{a}" for a in actions)
    if action == "describe" and args.transactional_id is None:
        return "--describe needs --transactional-id"
    if action in ("describe-producers", "abort") and (args.topic is None or args.partition is None):
        return f"--{action} needs --topic and --partition"
    if action == "find-hanging":
        if args.topic is None and args.broker_id is None:
            return "--find-hanging needs --topic or --broker-id to limit the scope of the search"
        if args.partition is not None and args.topic is None:
            return "--partition needs --topic"
        if args.max_transaction_timeout is not None and args.max_transaction_timeout < 0:
            return "--max-transaction-timeout must not be negative"
    if action == "abort":
        return _abort_usage_error(args)
    return None


def _abort_usage_error(args: argparse.Namespace) -> str | None:
    by_producer = (args.producer_id, args.producer_epoch, args.coordinator_epoch)
    if args.start_offset is not None:
        if any(v is not None for v in by_producer):
            return ("--abort takes either --start-offset or --producer-id, --producer-epoch and "
                    "--coordinator-epoch, not both")
        return None
    if args.producer_id is None:
        return ("The transaction to abort must be identified either with --start-offset or with "
                "--producer-id, --producer-epoch and --coordinator-epoch")
    if len(args.producer_id) != 1:
        return "--abort takes one --producer-id"
    if args.producer_epoch is None:
        return "Missing required argument --producer-epoch"
    if not 0 <= args.producer_epoch <= INT16_MAX:
        return f"--producer-epoch must be between 0 and {INT16_MAX}"
    if args.coordinator_epoch is None:
        return "Missing required argument --coordinator-epoch"
    if args.coordinator_epoch > INT32_MAX:
        return f"--coordinator-epoch must be at most {INT32_MAX}"
    return None


# -- list / describe ---------------------------------------------------------------------


def _list(client: KafkaClient, args: argparse.Namespace) -> int:
    by_broker = tx.list_transactions(
        client, states=args.state or (), producer_ids=args.producer_id or (),
        duration_ms=-1 if args.duration_filter is None else args.duration_filter,
        transactional_id_pattern=args.transactional_id_pattern)
    rows = [[t.transactional_id, broker, t.producer_id, t.state]
            for broker, listings in sorted(by_broker.items())
            for t in sorted(listings, key=lambda t: t.transactional_id)]
    print(format_table(LIST_HEADERS, rows))
    return 0


def _describe(client: KafkaClient, args: argparse.Namespace) -> int:
    d = tx.describe_transaction(client, args.transactional_id)
    if d.start_time_ms is None:
        start: object = "None"
        duration: object = "None"
    else:
        start, duration = d.start_time_ms, _now_ms() - d.start_time_ms
    print(format_table(DESCRIBE_HEADERS, [[
        d.coordinator_id, d.transactional_id, d.producer_id, d.producer_epoch, d.state, d.timeout_ms,
        start, duration, ",".join(_tp_str(tp) for tp in d.partitions)]]))
    return 0


# -- producers -------------------------------------------------------------------------------


def _describe_producers(client: KafkaClient, args: argparse.Namespace) -> int:
    producers = tx.describe_partition_producers(client, _tp(args), broker_id=args.broker_id)
    print(format_table(PRODUCERS_HEADERS, [[
        p.producer_id, p.producer_epoch, -1 if p.coordinator_epoch is None else p.coordinator_epoch,
        p.last_sequence, p.last_timestamp,
        "None" if p.current_txn_start_offset is None else p.current_txn_start_offset]
        for p in producers]))
    return 0


# -- find hanging ------------------------------------------------------------------------------


def _partitions_to_search(client: KafkaClient, args: argparse.Namespace) -> list[TopicPartition]:
    if args.topic is not None and args.partition is not None:
        return [_tp(args)]
    if args.topic is not None:
        topics = [client.metadata([args.topic]).topic(args.topic)]
    else:  # every topic but the internal ones, as Kafka's listTopics
        md = client.metadata(None)
        topics = [md.topics[n] for n in sorted(md.topics)
                  if not md.topics[n].is_internal and not md.topics[n].error_code]
    return [TopicPartition(t.name, p.partition) for t in topics for p in t.partitions
            if args.broker_id is None or args.broker_id in p.replicas]


def find_hanging(client: KafkaClient, partitions: Sequence[TopicPartition], max_timeout_ms: int, *,
                 broker_id: int | None = None,
                 now_ms: int | None = None) -> list[tuple[TopicPartition, tx.ProducerState]]:
    """The open transactions in ``partitions`` that no coordinator will complete.

    Kafka's FindHangingTransactions: a producer with an open transaction whose last write is
    older than ``max_timeout_ms`` is a candidate; it hangs when no coordinator lists its
    producer id, when its transactional id is not found, or when the transaction the
    coordinator describes does not include the partition (no marker is coming for it).
    """
    candidates: list[tuple[TopicPartition, tx.ProducerState]] = []
    for i in range(0, len(partitions), MAX_BATCH_SIZE):
        batch = partitions[i:i + MAX_BATCH_SIZE]
        states = tx.describe_producers(client, batch, broker_id=broker_id)
        now = _now_ms() if now_ms is None else now_ms
        for tp in batch:
            result = states[tp]
            if isinstance(result, KafkaError):
                raise result
            candidates.extend((tp, p) for p in result
                              if p.current_txn_start_offset is not None
                              and now - p.last_timestamp > max_timeout_ms)
    if not candidates:
        return []
    producer_ids = {p.producer_id for _, p in candidates}
    txn_ids: dict[int, str] = {}
    for listings in tx.list_transactions(client, producer_ids=sorted(producer_ids)).values():
        txn_ids.update({t.producer_id: t.transactional_id for t in listings if t.producer_id in producer_ids})
    descriptions: dict[str, tx.TransactionDescription | None] = {}
    for txn_id, described in tx.describe_transactions(client, sorted(set(txn_ids.values()))).items():
        if isinstance(described, KafkaError):
            if described.code != TRANSACTIONAL_ID_NOT_FOUND:
                raise described
            descriptions[txn_id] = None
        else:
            descriptions[txn_id] = described
    hanging = []
    for tp, p in candidates:
        owner = txn_ids.get(p.producer_id)
        d = descriptions.get(owner) if owner is not None else None
        # The coordinator still owes a marker only to partitions of the transaction it describes.
        if d is None or tp not in d.partitions:
            hanging.append((tp, p))
    return hanging


def _find_hanging(client: KafkaClient, args: argparse.Namespace) -> int:
    minutes = (DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN if args.max_transaction_timeout is None
               else args.max_transaction_timeout)
    partitions = _partitions_to_search(client, args)
    hanging = find_hanging(client, partitions, minutes * 60_000, broker_id=args.broker_id)
    now = _now_ms()
    print(format_table(HANGING_HEADERS, [[
        tp.topic, tp.partition, p.producer_id, p.producer_epoch,
        -1 if p.coordinator_epoch is None else p.coordinator_epoch,
        -1 if p.current_txn_start_offset is None else p.current_txn_start_offset,
        p.last_timestamp, (now - p.last_timestamp) // 60_000] for tp, p in hanging]))
    return 0


# -- abort -----------------------------------------------------------------------------------


def _abort(client: KafkaClient, args: argparse.Namespace) -> int:
    tp = _tp(args)
    if args.start_offset is not None:
        producers = tx.describe_partition_producers(client, tp)
        found = next((p for p in producers if p.current_txn_start_offset == args.start_offset), None)
        if found is None:
            raise KafkaError(INVALID_REQUEST, f"Could not find any open transactions starting at offset "
                                              f"{args.start_offset} on partition {_tp_str(tp)}")
        producer_id, producer_epoch = found.producer_id, found.producer_epoch
        coordinator_epoch = found.coordinator_epoch or 0
    else:
        producer_id, producer_epoch = args.producer_id[0], args.producer_epoch
        # A transaction that hung before its producer's first marker shows coordinator epoch -1;
        # 0 is at or below any coordinator epoch, as Kafka's tool reasons.
        coordinator_epoch = max(args.coordinator_epoch, 0)
    tx.abort_transaction(client, tp, producer_id, producer_epoch, coordinator_epoch)
    return 0


ACTION_FUNCS = {"list": _list, "describe": _describe, "describe-producers": _describe_producers,
                "find-hanging": _find_hanging, "abort": _abort}


def run(args: argparse.Namespace) -> int:
    """Check the options for the action, then run it against the cluster."""
    problem = _usage_error(args)
    if problem is not None:
        return fail(f"INVALID_REQUEST: {problem}")
    return run_tool(args, ACTION_FUNCS[args.action])
