"""DescribeProducers (key 61): the producers a partition's log remembers (KIP-664).

``kafka-transactions describe-producers`` asks the partition leader for each producer's id,
epoch, last sequence and last timestamp — the producer state kbroker keeps per partition —
with the epoch of the coordinator that wrote the producer's last marker and the first offset
of its open transaction (-1 when none is open), which is what holds the last stable offset back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.handlers import authz
from kbroker.handlers.api import MANY, RequestContext, response
from kbroker.log.producer_state_entry import ProducerStateEntry
from kbroker.security.model import AclOperation, ResourceType

API_KEY = 61
VERSIONS = VersionRange(0, 0)
#: Kafka's message for UNKNOWN_TOPIC_OR_PARTITION, given when the topic itself is unknown.
UNKNOWN_TOPIC_MESSAGE = "This server does not host this topic-partition."


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    md = ctx.broker.metadata
    rm = ctx.broker.replica_manager
    # As Kafka, a partition named twice is answered twice; its producers are read once, so a
    # request repeating a busy partition does not copy its producer state again each time.
    answers: dict[TopicPartition, tuple[int, str | None, list[dict[str, int]]]] = {}
    # As Kafka: READ on the topic, else every partition named answers TOPIC_AUTHORIZATION_FAILED.
    refused = authz.denied(ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in ctx.request.body.topics))

    def describe(tp: TopicPartition) -> dict[str, Any]:
        found = answers.get(tp)
        if found is None:
            code: int
            producers: list[ProducerStateEntry]
            message = None
            if tp.topic in refused:
                code, producers = ErrorCode.TOPIC_AUTHORIZATION_FAILED, []
                message = authz.MESSAGES[ErrorCode.TOPIC_AUTHORIZATION_FAILED]
            elif md.partition(tp.topic, tp.partition) is None:
                code, producers = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, []
                if md.topic(tp.topic) is None:
                    # Kafka explains an unknown topic (its partition check, by the log, does not).
                    message = UNKNOWN_TOPIC_MESSAGE
            else:
                code, producers = rm.active_producers(tp)
            found = answers[tp] = (code, message, [
                {"producer_id": p.producer_id, "producer_epoch": p.producer_epoch,
                 "last_sequence": p.last_seq, "last_timestamp": p.last_timestamp,
                 "coordinator_epoch": p.coordinator_epoch,
                 "current_txn_start_offset": -1 if p.current_txn_first_offset is None
                 else p.current_txn_first_offset}
                for p in producers])
        code, message, active = found
        return {"partition_index": tp.partition, "error_code": code, "error_message": message,
                "active_producers": active}

    topics = []
    count = 0
    for t in ctx.request.body.topics:
        partitions = []
        for index in t.partition_indexes:
            partitions.append(describe(TopicPartition(t.name, index)))
            count += 1
            if count % MANY == 0:
                await anyio.sleep(0)  # a request may name hundreds of thousands: let others in
        topics.append({"name": t.name, "partitions": partitions})
    return response(count, throttle_time_ms=0, topics=topics)
