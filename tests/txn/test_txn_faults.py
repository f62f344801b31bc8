"""Transactions against failures and hostile or buggy clients, over the raw wire."""

from __future__ import annotations

import time
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.replica.types import AppendResult
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic
from tests.txn.test_txn_wire import END_TXN, add_partitions, init, txn_batch, txn_produce, wait_state

E = ErrorCode


def test_a_failed_completion_write_is_retried(kafka_broker: BrokerThread, wire: WireClient) -> None:
    """A storage error writing CompleteCommit (a full disk, say) is transient: the coordinator
    retries it rather than leaving the id in PrepareCommit, refusing its producer, until a restart."""
    create_topic(kafka_broker, "t")
    r = init(wire, "tx")
    pid, epoch = r.producer_id, r.producer_epoch
    add_partitions(wire, 3, "tx", pid, epoch, {"t": [0]})
    assert txn_produce(wire, "tx", txn_batch(pid, epoch, 0)).error_code == 0
    state_log: Any = kafka_broker.broker.transactions.log
    real = state_log._append_records
    calls = []

    async def failing(entries: Any, **kw: Any) -> Any:
        calls.append(entries)
        if len(calls) == 2:  # PrepareCommit is written, CompleteCommit hits the full disk
            return {tp: AppendResult(E.KAFKA_STORAGE_ERROR, error_message="No space left on device")
                    for tp in entries}
        return await real(entries, **kw)

    state_log._append_records = failing
    end = {"transactional_id": "tx", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == 0
    wait_state(kafka_broker, "tx", "CompleteCommit")
    assert len(calls) == 3
    assert init(wire, "tx").error_code == 0  # the producer can start over
