"""InitProducerId (key 22): producer ids for idempotent producers.

With a null transactional id the answer is a fresh producer id at epoch 0, or (v3+,
KIP-360) the named id with its epoch bumped when it matches the latest epoch handed
out; as in Kafka this path never fails and does not look at the transaction timeout
(librdkafka sends -1 there for idempotent producers).

Transactional ids are not supported yet (no transaction coordinator). They are
answered with TRANSACTIONAL_ID_AUTHORIZATION_FAILED: COORDINATOR_NOT_AVAILABLE and
NOT_COORDINATOR are retriable and would leave ``init_transactions()`` spinning until
its timeout, and librdkafka retries every other InitProducerId error as well, while
all clients (Java, librdkafka, kafka-python, aiokafka) fail fast and fatally on this
one, saying the transactional id is not permitted - which is true of this broker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers.api import RequestContext
from kbroker.txn.config import TRANSACTION_MAX_TIMEOUT_MS, int_setting
from kbroker.txn.producer_ids import ProducerIdError

API_KEY = 22
#: v6 adds two-phase commit (KIP-939), which needs transactions.
VERSIONS = VersionRange(0, 5)
TRANSACTIONS_UNSUPPORTED = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

log = logging.getLogger(__name__)


def _answer(error: ErrorCode, producer_id: int = -1, producer_epoch: int = -1) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": error, "producer_id": producer_id,
            "producer_epoch": producer_epoch}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    transactional_id = body.transactional_id
    if transactional_id is not None:
        return _transactional(ctx, transactional_id, body.transaction_timeout_ms)
    manager = ctx.broker.producer_ids
    try:
        pid, epoch = manager.init_idempotent_producer(int(body.get("producer_id", -1)),
                                                      int(body.get("producer_epoch", -1)))
    except (OSError, ProducerIdError) as e:
        log.error("cannot allocate a producer id: %s", e)
        return _answer(ErrorCode.UNKNOWN_SERVER_ERROR)
    return _answer(ErrorCode.NONE, pid, epoch)


def _transactional(ctx: RequestContext, transactional_id: str, timeout_ms: int) -> dict[str, Any]:
    # Kafka's checks, in its order, before the coordinator would be consulted.
    if not transactional_id:
        return _answer(ErrorCode.INVALID_REQUEST)
    if timeout_ms <= 0 or timeout_ms > int_setting(ctx.broker.config, TRANSACTION_MAX_TIMEOUT_MS):
        return _answer(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
    log.info("refusing transactional id %r from %s: transactions are not supported", transactional_id, ctx.client_id)
    return _answer(TRANSACTIONS_UNSUPPORTED)
