"""InitProducerId (key 22): producer ids for idempotent and transactional producers.

With a null transactional id the answer is a fresh producer id at epoch 0, or (v3+,
KIP-360) the named id with its epoch bumped when it matches the latest epoch handed
out; as in Kafka this path never fails and does not look at the transaction timeout
(librdkafka sends -1 there for idempotent producers). A transactional id goes to the
transaction coordinator, which bumps the id's epoch and fences its previous producer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.handlers import authz
from kbroker.handlers.api import RequestContext
from kbroker.security.model import AclOperation, ResourceType
from kbroker.txn.producer_ids import ProducerIdError, ProducerIdsUnavailable

API_KEY = 22
#: v6 adds two-phase commit (KIP-939), which this broker does not support.
VERSIONS = VersionRange(0, 5)

log = logging.getLogger(__name__)


def _answer(error: ErrorCode, producer_id: int = -1, producer_epoch: int = -1) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": error, "producer_id": producer_id,
            "producer_epoch": producer_epoch}


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    body = ctx.request.body
    transactional_id = body.transactional_id
    # As Kafka: WRITE on the transactional id; an idempotent producer needs IDEMPOTENT_WRITE on
    # the cluster or WRITE on some topic (KIP-679).
    if transactional_id is not None:
        if not ctx.authorize(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
            return _answer(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    elif not authz.cluster(ctx, AclOperation.IDEMPOTENT_WRITE) and not authz.authorize_by_resource_type(
            ctx, AclOperation.WRITE, ResourceType.TOPIC):
        return _answer(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    if transactional_id is not None:
        try:
            error, pid, epoch = await ctx.broker.transactions.init_producer_id(
                transactional_id, body.transaction_timeout_ms, int(body.get("producer_id", -1)),
                int(body.get("producer_epoch", -1)))
        except ProducerIdsUnavailable as e:
            log.warning("cannot allocate a producer id yet: %s", e)
            return _answer(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        except (OSError, ProducerIdError) as e:
            log.error("cannot allocate a producer id: %s", e)
            return _answer(ErrorCode.UNKNOWN_SERVER_ERROR)
        if ctx.version < 4 and error == ErrorCode.PRODUCER_FENCED:
            error = ErrorCode.INVALID_PRODUCER_EPOCH  # clients before v4 do not know PRODUCER_FENCED
        return _answer(error, pid, epoch)
    manager = ctx.broker.producer_ids
    try:
        await manager.ready()  # in a cluster a new block may come from etcd; nothing awaits below
        pid, epoch = manager.init_idempotent_producer(int(body.get("producer_id", -1)),
                                                      int(body.get("producer_epoch", -1)))
    except ProducerIdsUnavailable as e:
        log.warning("cannot allocate a producer id yet: %s", e)
        return _answer(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)  # as Kafka while it waits for a block
    except (OSError, ProducerIdError) as e:
        log.error("cannot allocate a producer id: %s", e)
        return _answer(ErrorCode.UNKNOWN_SERVER_ERROR)
    return _answer(ErrorCode.NONE, pid, epoch)
