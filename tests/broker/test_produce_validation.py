"""Produce refuses batches whose records do not match their header, over a real socket.

Each batch here has a correct CRC: only the records inside are wrong. Every refusal
leaves the log untouched and the connection serving.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
import zstandard
from confluent_kafka import Consumer
from replica_wire import (
    PRODUCE,
    WireClient,
    batch,
    create_topic,
    fetch,
    partitions_of,
    produce,
    produce_one,
    records_of,
)

from kbroker.records.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CONTROL_BIT,
    CRC_START,
    MAGIC_V2,
    TRANSACTIONAL_BIT,
    BatchHeader,
    pack_header,
)
from kbroker.records.compression import compress
from kbroker.records.crc import crc32c
from kbroker.records.varint import encode_varint, encode_varlong
from kbroker.testing import BrokerThread

CORRUPT_MESSAGE, INVALID_RECORD, TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 2, 87, 53
INVALID_PRODUCER_ID_MAPPING = 49
MiB = 1024 * 1024


def record(value: bytes, offset_delta: int = 0) -> bytes:
    body = b"\x00" + encode_varlong(0) + encode_varint(offset_delta) + encode_varint(-1)
    body += encode_varint(len(value)) + value + encode_varint(0)
    return encode_varint(len(body)) + body


def craft(records: bytes, count: int, *, attributes: int = 0, producer_id: int = -1) -> bytes:
    """A batch around ``records`` with a correct CRC, whatever the records are."""
    h = BatchHeader(0, 49 + len(records), -1, MAGIC_V2, 0, attributes, count - 1, 0, 0, producer_id,
                    0 if producer_id >= 0 else -1, 0 if producer_id >= 0 else -1, count)
    buf = bytearray(pack_header(h) + records)
    buf[17:21] = crc32c(buf[CRC_START:]).to_bytes(4, "big")
    return bytes(buf)


@pytest.fixture
def wire(kafka_broker: BrokerThread) -> Iterator[WireClient]:
    create_topic(kafka_broker, "t")
    c = WireClient(kafka_broker.bootstrap)
    yield c
    c.close()


def assert_log_untouched_and_serving(wire: WireClient) -> None:
    """Nothing was written, and the same connection still appends at offset 0."""
    assert produce_one(wire, "t", 0, batch([b"ok"])).base_offset == 0
    assert [r.offset for r in records_of(partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)].records)] == [0]


def test_negative_batch_length_is_corrupt_message(wire: WireClient) -> None:
    bad = bytearray(batch([b"x"]))
    bad[8:12] = (-100).to_bytes(4, "big", signed=True)
    r = produce_one(wire, "t", 0, bytes(bad))
    assert r.error_code == CORRUPT_MESSAGE
    assert_log_untouched_and_serving(wire)


def test_record_count_beyond_the_records(wire: WireClient) -> None:
    r = produce_one(wire, "t", 0, craft(record(b"x"), 2**31 - 1))
    assert r.error_code == INVALID_RECORD
    assert_log_untouched_and_serving(wire)  # the log end offset did not jump by 2^31


def test_more_records_than_the_count(wire: WireClient) -> None:
    three = record(b"a", 0) + record(b"b", 1) + record(b"c", 2)
    assert produce_one(wire, "t", 0, craft(three, 1)).error_code == INVALID_RECORD
    assert produce_one(wire, "t", 0, craft(compress(COMPRESSION_LZ4, three), 1,
                                           attributes=COMPRESSION_LZ4)).error_code == INVALID_RECORD
    assert_log_untouched_and_serving(wire)


@pytest.mark.parametrize("codec", [COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD])
def test_compression_flag_over_garbage(wire: WireClient, codec: int) -> None:
    r = produce_one(wire, "t", 0, craft(b"plain bytes, not compressed" * 4, 1, attributes=codec))
    assert r.error_code == CORRUPT_MESSAGE
    assert_log_untouched_and_serving(wire)


def test_wrong_offset_deltas_inside_a_compressed_batch(wire: WireClient) -> None:
    """Consumers take a compressed record's offset from its delta: deltas 0, 0, 7 would have them
    read offsets 3, 3, 10 of a log whose next offset is 3."""
    wrong = record(b"a", 0) + record(b"b", 0) + record(b"c", 7)
    r = produce_one(wire, "t", 0, craft(compress(COMPRESSION_GZIP, wrong), 3, attributes=COMPRESSION_GZIP))
    assert r.error_code == INVALID_RECORD
    assert_log_untouched_and_serving(wire)


def test_garbage_uncompressed_records(wire: WireClient) -> None:
    assert produce_one(wire, "t", 0, craft(b"\xff" * 64, 1)).error_code == INVALID_RECORD
    assert produce_one(wire, "t", 0, craft(b"\x00" * 64, 1)).error_code == INVALID_RECORD
    assert_log_untouched_and_serving(wire)


def test_clients_may_not_write_control_batches(wire: WireClient) -> None:
    marker = record(b"\x00\x00\x00\x00\x00\x00")
    assert produce_one(wire, "t", 0, craft(marker, 1, attributes=CONTROL_BIT)).error_code == INVALID_RECORD
    assert_log_untouched_and_serving(wire)


def _txn_request(transactional_id: str | None) -> dict[str, object]:
    txn = craft(record(b"x"), 1, attributes=TRANSACTIONAL_BIT, producer_id=1)
    return {"transactional_id": transactional_id, "acks": 1, "timeout_ms": 5000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": txn}]},
                           {"name": "other", "partition_data": [{"index": 0, "records": batch([b"y"])}]}]}


def test_transactional_batch_without_a_transactional_id(wire: WireClient) -> None:
    resp = wire.call(PRODUCE, 9, _txn_request(None))
    codes = [p.error_code for t in resp.responses for p in t.partition_responses]
    assert codes == [TRANSACTIONAL_ID_AUTHORIZATION_FAILED] * 2  # as Kafka: the whole request
    assert_log_untouched_and_serving(wire)


def test_transactional_batch_of_an_unknown_transaction(wire: WireClient) -> None:
    # The transaction coordinator does not know "tx": that partition fails verification and is
    # not written; the request's other partitions are appended, as Kafka does.
    resp = wire.call(PRODUCE, 9, _txn_request("tx"))
    codes = [p.error_code for t in resp.responses for p in t.partition_responses]
    assert codes[0] == INVALID_PRODUCER_ID_MAPPING
    assert_log_untouched_and_serving(wire)


def _zstd_bomb(mib: int) -> bytes:
    """A batch of one 2 GiB record, cut off after ``mib`` MiB; its compressed bytes are a few KB."""
    c = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(MiB)
    parts = [c.compress(encode_varint(2**31 - 1))]
    parts += [c.compress(zeros) for _ in range(mib)]
    return craft(b"".join(parts) + c.flush(), 1, attributes=COMPRESSION_ZSTD)


@pytest.mark.parametrize("compacted", [False, True])
def test_decompression_bomb_is_refused_without_inflating(kafka_broker: BrokerThread, compacted: bool) -> None:
    configs = {"cleanup.policy": "compact"} if compacted else {}
    create_topic(kafka_broker, "bomb", configs=configs)
    bomb = _zstd_bomb(256)
    assert len(bomb) < 64 * 1024
    wire = WireClient(kafka_broker.bootstrap)
    # The broker runs in this process: tracemalloc sees what it allocates for the request.
    tracemalloc.start()
    try:
        r = produce_one(wire, "bomb", 0, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        wire.close()
    assert r.error_code == INVALID_RECORD
    assert peak < 16 * MiB


def test_consumers_read_what_was_accepted(kafka_broker: BrokerThread, wire: WireClient) -> None:
    for codec in (0, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD):
        assert produce_one(wire, "t", 0, batch([b"c%d" % codec, b"d"], compression=codec)).error_code == 0
        produce_one(wire, "t", 0, craft(record(b"x"), 3, attributes=codec))  # refused, never seen
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe(["t"])
        seen: list[tuple[int, bytes | None]] = []
        while len(seen) < 10:
            m = c.poll(10)
            assert m is not None and m.error() is None, m and m.error()
            seen.append((m.offset(), m.value()))
    finally:
        c.close()
    assert [o for o, _ in seen] == list(range(10))
    assert produce(wire, "t", {0: batch([b"last"])}).responses[0].partition_responses[0].base_offset == 10


def test_crc_mismatch_is_reported_before_bad_records(kafka_broker: BrokerThread, wire: WireClient) -> None:
    bad = bytearray(craft(record(b"x") * 2, 1))  # refused for its records...
    bad[-1] ^= 0xFF  # ...but first for its CRC, as Kafka checks that first
    assert produce_one(wire, "t", 0, bytes(bad)).error_code == CORRUPT_MESSAGE
    create_topic(kafka_broker, "c", configs={"cleanup.policy": "compact"})
    keyless = bytearray(batch([b"no key"]))
    keyless[-1] ^= 0xFF
    assert produce_one(wire, "c", 0, bytes(keyless)).error_code == CORRUPT_MESSAGE
    damaged_marker = bytearray(craft(record(b"\x00\x00\x00\x00\x00\x00"), 1, attributes=CONTROL_BIT))
    damaged_marker[-1] ^= 0xFF
    assert produce_one(wire, "t", 0, bytes(damaged_marker)).error_code == CORRUPT_MESSAGE
    assert_log_untouched_and_serving(wire)
