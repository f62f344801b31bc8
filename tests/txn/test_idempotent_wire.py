"""InitProducerId and idempotent Produce over the raw wire, including broker restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.log import producer_snapshot as snap
from kbroker.log.checkpoint import CLEAN_SHUTDOWN_FILE
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, create_topic, fetch, partitions_of, produce_one, records_of

from .helpers import pbatch

INIT_PRODUCER_ID = 22



def init_pid(wire: WireClient, version: int = 4, transactional_id: str | None = None, timeout_ms: int = 60_000,
             producer_id: int = -1, producer_epoch: int = -1) -> Any:
    return wire.call(INIT_PRODUCER_ID, version, {
        "transactional_id": transactional_id, "transaction_timeout_ms": timeout_ms,
        "producer_id": producer_id, "producer_epoch": producer_epoch})


def values(wire: WireClient, topic: str = "t") -> list[bytes | None]:
    """Every value in partition 0 (a fetch stops at a segment end, so fetch until empty)."""
    out: list[bytes | None] = []
    while True:
        part = partitions_of(fetch(wire, {topic: {0: len(out)}}))[(topic, 0)]
        got = [r.value for r in records_of(part.records)]
        if not got:
            return out
        out += got


@pytest.mark.parametrize("version", range(6))
def test_init_producer_id_allocates_distinct_ids(wire: WireClient, version: int) -> None:
    # librdkafka sends a -1 timeout for idempotent producers: not validated, as in Kafka.
    answers = [init_pid(wire, version, timeout_ms=-1) for _ in range(3)]
    assert [(a.error_code, a.producer_epoch) for a in answers] == [(0, 0)] * 3
    assert len({a.producer_id for a in answers}) == 3 and min(a.producer_id for a in answers) >= 0


def test_init_producer_id_bumps_a_matching_epoch(wire: WireClient) -> None:
    first = init_pid(wire)
    bumped = init_pid(wire, 3, producer_id=first.producer_id, producer_epoch=0)
    assert (bumped.error_code, bumped.producer_id, bumped.producer_epoch) == (0, first.producer_id, 1)
    stale = init_pid(wire, 4, producer_id=first.producer_id, producer_epoch=0)
    assert stale.error_code == 0 and stale.producer_id != first.producer_id and stale.producer_epoch == 0


@pytest.mark.parametrize(("txn_id", "timeout", "code"), [
    ("", 60_000, ErrorCode.INVALID_REQUEST),
    ("tx", 0, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
    ("tx", 900_001, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
])
def test_invalid_transactional_init_is_refused(wire: WireClient, txn_id: str, timeout: int, code: int) -> None:
    answer = init_pid(wire, transactional_id=txn_id, timeout_ms=timeout)
    assert (answer.error_code, answer.producer_id, answer.producer_epoch) == (code, -1, -1)


def test_duplicate_batch_returns_original_offsets(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    pid = init_pid(wire).producer_id
    first = produce_one(wire, "t", 0, pbatch(pid, 0, 0, 3))
    second = produce_one(wire, "t", 0, pbatch(pid, 0, 3, 2))
    dup = produce_one(wire, "t", 0, pbatch(pid, 0, 0, 3))
    assert [(r.error_code, r.base_offset) for r in (first, second, dup)] == [(0, 0), (0, 3), (0, 0)]
    assert values(wire) == [b"v0", b"v1", b"v2", b"v3", b"v4"]


def test_sequence_and_epoch_errors(kafka_broker: BrokerThread, wire: WireClient) -> None:
    create_topic(kafka_broker, "t")
    pid = init_pid(wire).producer_id
    assert produce_one(wire, "t", 0, pbatch(pid, 0, 0)).error_code == 0
    gap = produce_one(wire, "t", 0, pbatch(pid, 0, 2))
    assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER and "Out of order" in gap.error_message
    bumped = init_pid(wire, producer_id=pid, producer_epoch=0)
    assert bumped.producer_epoch == 1
    assert produce_one(wire, "t", 0, pbatch(pid, 1, 1)).error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce_one(wire, "t", 0, pbatch(pid, 1, 0, tag="e1-")).base_offset == 1  # epoch bump resets
    fenced = produce_one(wire, "t", 0, pbatch(pid, 0, 1))
    assert fenced.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert values(wire) == [b"v0", b"e1-0"]


def _restart(broker: BrokerThread, data: Path, *, crash: bool) -> BrokerThread:
    broker.stop()
    if crash:
        (data / CLEAN_SHUTDOWN_FILE).unlink()
        for d in (p for p in data.iterdir() if p.is_dir()):
            for off in snap.list_snapshots(d):
                snap.delete_snapshot(d, off)
    return BrokerThread(data).start()


@pytest.mark.parametrize("crash", [False, True], ids=["clean", "unclean"])
def test_producer_state_and_ids_survive_restart(tmp_path: Path, crash: bool) -> None:
    data = tmp_path / "data"
    broker = BrokerThread(data, {"log.segment.bytes": "300"}).start()
    try:
        create_topic(broker, "t")
        wire = WireClient(broker.bootstrap)
        pid = init_pid(wire).producer_id
        offsets = [produce_one(wire, "t", 0, pbatch(pid, 0, i * 2, 2)).base_offset for i in range(6)]
        wire.close()
        broker = _restart(broker, data, crash=crash)
        wire = WireClient(broker.bootstrap)
        assert init_pid(wire).producer_id != pid  # ids are never handed out twice
        assert produce_one(wire, "t", 0, pbatch(pid, 0, 10, 2)).base_offset == offsets[-1]  # duplicate
        assert produce_one(wire, "t", 0, pbatch(pid, 0, 4, 2)).base_offset == offsets[2]
        assert produce_one(wire, "t", 0, pbatch(pid, 0, 13)).error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert produce_one(wire, "t", 0, pbatch(pid, 0, 12)).base_offset == 12
        assert len(values(wire)) == 13
        wire.close()
    finally:
        broker.stop()


def test_produce_errors_carry_the_log_start_offset_as_kafka(kafka_broker: BrokerThread, wire: WireClient) -> None:
    # Kafka 4.1.1: a sequence error is answered with the partition's log start offset (its
    # generic error path), an unknown partition with -1; a duplicate reports the remembered
    # batch's timestamp as log_append_time_ms even on a CreateTime topic.
    create_topic(kafka_broker, "t")
    pid = init_pid(wire)
    first = produce_one(wire, "t", 0, pbatch(pid.producer_id, 0, 0, ts=7000))
    assert (first.error_code, first.log_append_time_ms) == (0, -1)
    gap = produce_one(wire, "t", 0, pbatch(pid.producer_id, 0, 5))
    assert (gap.error_code, gap.base_offset, gap.log_start_offset) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1, 0)
    dup = produce_one(wire, "t", 0, pbatch(pid.producer_id, 0, 0, ts=7000))
    assert (dup.error_code, dup.base_offset, dup.log_append_time_ms) == (0, 0, 7000)
    unknown = produce_one(wire, "t", 3, pbatch(pid.producer_id, 0, 1))
    assert (unknown.error_code, unknown.log_start_offset) == (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)
