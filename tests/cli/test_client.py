"""The client library under the tools: versions, partitioning, errors, the data path."""

from __future__ import annotations

import struct

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from kbroker.client import BrokerConnection, KafkaClient, KafkaError, admin, data
from kbroker.client.connection import CLIENT_VERSIONS
from kbroker.client.errors import error_name
from kbroker.client.groups import decode_assignment
from kbroker.testing import BrokerThread


def test_versions_are_the_highest_both_sides_support(kafka_broker: BrokerThread) -> None:
    host, port = kafka_broker.bootstrap.rsplit(":", 1)
    with BrokerConnection(host, int(port)) as conn:
        assert conn.broker_versions, "ApiVersions was not negotiated"
        for key, ours in CLIENT_VERSIONS.items():
            theirs = conn.broker_versions.get(key)
            if theirs is None:
                continue
            assert conn.version_for(key) == min(ours.high, theirs.high)
        with pytest.raises(KafkaError) as e:
            conn.version_for(9999)
        assert e.value.name == "UNSUPPORTED_VERSION"


def test_produce_fetch_and_list_offsets(kafka_broker: BrokerThread) -> None:
    with KafkaClient(kafka_broker.bootstrap) as client:
        admin.create_topic(client, "d", 1)
        assert data.produce(client, "d", 0, [(b"k", b"v0"), (None, b"v1")]) == 0
        assert data.produce(client, "d", 0, [(None, b"v2")], compression=data.COMPRESSION["zstd"]) == 2
        assert data.produce(client, "d", 0, [(None, b"v3")], acks=0) is None
        assert data.list_offsets(client, "d", {0: data.EARLIEST}) == {0: 0}
        for _ in range(50):  # the acks=0 record lands asynchronously
            if data.list_offsets(client, "d", {0: data.LATEST}) == {0: 4}:
                break
        leader = client.topic("d").partition(0).leader
        got = data.fetch(client, leader, {("d", 0): 1}, max_wait_ms=0)[("d", 0)]
        assert got.error_code == 0 and got.high_watermark == 4
        assert [(r.offset, r.value) for r in got.records] == [(1, b"v1"), (2, b"v2"), (3, b"v3")]
        assert got.next_offset == 4


def test_errors_carry_kafka_names(kafka_broker: BrokerThread) -> None:
    with KafkaClient(kafka_broker.bootstrap) as client:
        with pytest.raises(KafkaError) as e:
            data.produce(client, "absent", 0, [(None, b"x")])
        assert e.value.name == "UNKNOWN_TOPIC_OR_PARTITION"
        assert str(e.value).startswith("UNKNOWN_TOPIC_OR_PARTITION: ")
    assert error_name(36) == "TOPIC_ALREADY_EXISTS"
    assert error_name(12345) == "UNKNOWN_ERROR_CODE_12345"


@pytest.mark.parametrize("key", [b"", b"a", b"ab", b"abc", b"abcd", b"key1", b"a longer key \xff\x00"])
def test_murmur2_matches_the_java_partitioner(key: bytes) -> None:
    assert data.murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF


def test_decode_assignment() -> None:
    topic = b"t"
    raw = struct.pack(">hih", 0, 1, len(topic)) + topic + struct.pack(">iii", 2, 1, 0) + struct.pack(">i", -1)
    assert decode_assignment(raw) == (("t", 0), ("t", 1))
    assert decode_assignment(b"") == ()
    assert decode_assignment(b"\x00\x00\xff") == ()


def test_bootstrap_parsing() -> None:
    with pytest.raises(ValueError):
        KafkaClient("no-port")
    assert KafkaClient("a:1, b:2").bootstrap == [("a", 1), ("b", 2)]


def test_negotiation_falls_back_to_api_versions_v0() -> None:
    """A broker that knows only ApiVersions v0-2 answers our v4 request with a v0 error body."""
    import socket
    import threading

    from kbroker.codec import decode_request, encode_response

    seen: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(2):
                size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
                req = decode_request(conn.recv(size, socket.MSG_WAITALL))
                seen.append(req.api_version)
                keys = [{"api_key": 18, "min_version": 0, "max_version": 2},
                        {"api_key": 3, "min_version": 0, "max_version": 5}]
                error = 35 if req.api_version > 2 else 0
                conn.sendall(encode_response(18, 0, req.correlation_id, {"error_code": error, "api_keys": keys}))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with BrokerConnection("127.0.0.1", listener.getsockname()[1], timeout=5) as conn:
            assert seen == [CLIENT_VERSIONS[18].high, 0]
            assert conn.version_for(3) == 5
            assert not conn.supports(0)
    finally:
        listener.close()
        thread.join(5)


def test_decode_records_drops_aborted_transactions() -> None:
    from kbroker.records.builder import build_batch, build_control_batch
    from kbroker.records.record import ControlType

    committed = build_batch([(None, b"c0")], base_offset=0, producer_id=7, producer_epoch=0,
                            base_sequence=0, transactional=True)
    plain = build_batch([(None, b"p1")], base_offset=1)
    aborted = build_batch([(None, b"a2"), (None, b"a3")], base_offset=2, producer_id=9, producer_epoch=0,
                          base_sequence=0, transactional=True)
    commit = build_control_batch(ControlType.COMMIT, producer_id=7, producer_epoch=0, coordinator_epoch=0,
                                 base_offset=4)
    abort = build_control_batch(ControlType.ABORT, producer_id=9, producer_epoch=0, coordinator_epoch=0,
                                base_offset=5)
    later = build_batch([(None, b"a6")], base_offset=6, producer_id=9, producer_epoch=0,
                        base_sequence=2, transactional=True)
    blob = committed + plain + aborted + commit + abort + later
    records, next_offset, truncated = data.decode_records(blob, 1, [(9, 2)])
    assert [r.value for r in records] == [b"p1", b"a6"]
    assert (next_offset, truncated) == (7, False)
    records, _, _ = data.decode_records(blob, 0)
    assert [r.value for r in records] == [b"c0", b"p1", b"a2", b"a3", b"a6"]
    assert data.decode_records(blob[:30], 0) == ([], 0, True)
