"""Produce (key 0): append one record batch per partition; acks=0 gets no response.

Served from v3 (magic-2 batches only), but advertised from v0 as Kafka 4 does:
librdkafka decides whether the broker speaks magic 2 from Produce's advertised
range (KAFKA-18659) and never actually sends v0-v2.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers.api import CloseConnection, RequestContext
from kbroker.records.batch import is_transactional
from kbroker.replica.types import AppendResult

API_KEY = 0
VERSIONS = VersionRange(3, 13)
ADVERTISED_MIN_VERSION = 0
_TXN_REFUSED = AppendResult(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                            error_message="Transactional writes are not supported by this broker")


async def handle(ctx: RequestContext) -> Mapping[str, Any] | None:
    body = ctx.request.body
    version = ctx.version
    metadata = ctx.broker.metadata
    entries: dict[TopicPartition, Any] = {}
    # Response layout in request order: (name or id, [(partition, tp or None when unresolved)]).
    layout: list[tuple[str | uuid.UUID, list[tuple[int, TopicPartition | None]]]] = []
    for td in body.topic_data:
        name: str | None
        if version >= 13:
            topic = metadata.topic_by_id(td.topic_id)
            name = topic.name if topic is not None else None
            key: str | uuid.UUID = td.topic_id
        else:
            name = key = td.name
        parts: list[tuple[int, TopicPartition | None]] = []
        for pd in td.partition_data:
            tp = TopicPartition(name, pd.index) if name is not None else None
            if tp is not None:
                entries[tp] = pd.records
            parts.append((pd.index, tp))
        layout.append((key, parts))

    unresolved = AppendResult(ErrorCode.UNKNOWN_TOPIC_ID)
    if any(is_transactional(pd.records) for td in body.topic_data for pd in td.partition_data):
        # As Kafka, transactional batches need a transactional id the client may write
        # with; this broker grants none (InitProducerId refuses every one), so the
        # whole request is refused and nothing is written.
        results = {tp: _TXN_REFUSED for tp in entries}
        unresolved = _TXN_REFUSED
    else:
        results = await ctx.broker.replica_manager.append_records(
            entries, acks=body.acks, timeout_ms=body.timeout_ms, transactional_id=body.transactional_id)

    if body.acks == 0:
        failed = any(r.error_code for r in results.values()) or any(
            tp is None for _, parts in layout for _, tp in parts)
        if failed:
            # As Kafka: with no response to carry the error, closing the connection makes
            # the client refresh its metadata.
            raise CloseConnection("acks=0 produce failed for at least one partition")
        return None

    responses = []
    for key, parts in layout:
        partition_responses = []
        for index, tp in parts:
            r = results.get(tp, unresolved) if tp is not None else unresolved
            partition_responses.append(_partition_response(index, r))
        entry: dict[str, Any] = {"partition_responses": partition_responses}
        if version >= 13:
            entry["topic_id"] = key
        else:
            entry["name"] = key
        responses.append(entry)
    return {"responses": responses, "throttle_time_ms": 0}


def _partition_response(index: int, r: AppendResult) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": r.error_code,
        "base_offset": r.base_offset,
        "log_append_time_ms": r.log_append_time_ms,
        "log_start_offset": r.log_start_offset,
        "record_errors": [{"batch_index": i, "batch_index_error_message": m} for i, m in r.record_errors],
        "error_message": r.error_message,
    }
