"""``emulate.version``: the broker advertises a Kafka release's API versions (within its own) and
refuses the others as that release would; real clients produce and consume through it."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer
from socket_helpers import read_frame

from kbroker.codec import decode_response, encode_request
from kbroker.config import BrokerConfig, ConfigError
from kbroker.config.broker_keys import EMULATED_RELEASES
from kbroker.handlers import registry
from kbroker.server.emulation import ApiVersionEmulation, intersect, release_patch, release_ranges, releases
from kbroker.testing import BrokerThread

API_VERSIONS, METADATA = 18, 3


def own_ranges() -> dict[int, tuple[int, int]]:
    return {k: (h.advertised_min, h.versions.high) for k, h in registry().items()}


def expected(release: str) -> dict[int, tuple[int, int]]:
    """The release's ranges cut to kbroker's, computed here independently of the interceptor."""
    own = own_ranges()
    out = {}
    for key, (lo, hi) in release_ranges(release).items():
        if key in own and max(lo, own[key][0]) <= min(hi, own[key][1]):
            out[key] = (max(lo, own[key][0]), min(hi, own[key][1]))
    return out


# -- the data ------------------------------------------------------------------------------------

def test_the_data_covers_exactly_the_releases_the_config_key_accepts() -> None:
    assert releases() == list(EMULATED_RELEASES)
    assert [release_patch(r) for r in ("2.8", "3.9", "4.0", "4.1")] == ["2.8.2", "3.9.2", "4.0.2", "4.1.2"]


def test_the_data_holds_known_facts_of_releases() -> None:
    # From Kafka's protocol documentation of each release.
    r28, r36, r41 = release_ranges("2.8"), release_ranges("3.6"), release_ranges("4.1")
    assert (r28[0], r28[1], r28[API_VERSIONS], r28[METADATA]) == ((0, 9), (0, 12), (0, 3), (0, 11))
    assert 68 not in r28 and 58 not in r28  # no ConsumerGroupHeartbeat; Envelope only with forwarding
    assert (r36[1], r36[METADATA]) == ((0, 15), (0, 12))
    # KIP-896 removed old versions in 4.0; Produce still advertises v0 (a librdkafka quirk).
    assert (r41[0], r41[1], r41[API_VERSIONS], r41[68]) == ((0, 13), (4, 18), (0, 4), (0, 1))
    assert 4 not in r41  # LeaderAndIsr: no ZooKeeper in 4.x
    for release in releases():
        ranges = release_ranges(release)
        assert all(0 <= lo <= hi for lo, hi in ranges.values()), release


def test_intersect_keeps_the_common_part_and_names_what_is_lacking() -> None:
    release = {0: (0, 9), 1: (0, 12), 38: (0, 2), 60: (0, 0), 18: (0, 3)}
    own = {0: (0, 11), 1: (4, 18), 60: (1, 1), 18: (0, 4)}
    ranges, lacking = intersect(release, own)
    assert ranges == {0: (0, 9), 1: (4, 12), 18: (0, 3)}
    assert lacking == ["Fetch v0-v3", "CreateDelegationToken (v0-v2)",
                       "DescribeCluster (v0-v0; kbroker serves v1-v1)"]


def test_an_unknown_release_is_refused_by_the_config_and_the_interceptor() -> None:
    with pytest.raises(ConfigError, match="emulate.version"):
        BrokerConfig.load(overrides=["emulate.version=2.7"])
    with pytest.raises(ValueError, match="known releases are 2.8, 3.0"):
        ApiVersionEmulation.for_release("5.0")


def test_what_kbroker_cannot_offer_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kbroker.server.emulation"):
        emulation = ApiVersionEmulation.for_release("2.8")
    assert emulation.ranges == expected("2.8")
    text = caplog.text
    assert "Apache Kafka 2.8.2" in text
    assert "CreateDelegationToken (v0-v2)" in text  # a 2.8 API kbroker does not serve
    assert "Fetch v0-v3" in text  # versions kbroker does not serve


# -- on the wire ---------------------------------------------------------------------------------

def api_versions(bootstrap: str, version: int, answered_in: int | None = None) -> tuple[int, dict[int, tuple[int, int]]]:
    """One raw ApiVersions exchange at ``version``, its answer read in ``answered_in`` (default
    the same version): (error code, ranges)."""
    host, port = bootstrap.rsplit(":", 1)
    body = {"client_software_name": "emulation-test", "client_software_version": "1"}
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(encode_request(API_VERSIONS, version, 7, body))
        frame = read_frame(s)
    correlation_id, answer = decode_response(API_VERSIONS, version if answered_in is None else answered_in, frame)
    assert correlation_id == 7
    return answer.error_code, {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}


def closes(bootstrap: str, api_key: int, version: int, body: dict) -> bool:
    """True when the broker closes the connection instead of answering the request."""
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(encode_request(api_key, version, 9, body))
        try:
            read_frame(s)
        except ConnectionError:
            return True
    return False


@pytest.fixture(scope="module")
def broker28(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("e28"), {"emulate.version": "2.8",
                                                       "group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


@pytest.fixture(scope="module")
def broker36(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("e36"), {"emulate.version": "3.6",
                                                       "group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


@pytest.mark.parametrize("release", ["2.8", "3.6"])
def test_api_versions_equals_the_release_table(release: str, broker28: BrokerThread, broker36: BrokerThread) -> None:
    broker = broker28 if release == "2.8" else broker36
    code, ranges = api_versions(broker.bootstrap, 3)
    assert code == 0
    assert ranges == expected(release)
    assert ranges != own_ranges()
    assert api_versions(broker.bootstrap, 0) == (0, ranges)  # every version lists the same


def test_an_api_versions_version_the_release_lacks_is_unsupported(broker28: BrokerThread) -> None:
    # kbroker serves ApiVersions v4; Kafka 2.8 stops at v3 and answers v0 UNSUPPORTED_VERSION (KIP-511).
    assert api_versions(broker28.bootstrap, 4, answered_in=0) == (35, {API_VERSIONS: (0, 3)})


def test_other_requests_outside_the_release_close_the_connection(broker28: BrokerThread) -> None:
    metadata = {"topics": [], "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
    assert closes(broker28.bootstrap, METADATA, 12, metadata)  # 2.8 knows Metadata up to v11
    assert not closes(broker28.bootstrap, METADATA, 11, metadata)
    heartbeat = {"group_id": "g", "member_id": "", "member_epoch": 0, "instance_id": None, "rack_id": None,
                 "rebalance_timeout_ms": 30000, "subscribed_topic_names": ["t"], "server_assignor": None,
                 "topic_partitions": []}
    assert closes(broker28.bootstrap, 68, 0, heartbeat)  # ConsumerGroupHeartbeat came in 3.x


@pytest.mark.parametrize("release", ["2.8", "3.6"])
def test_kafka_python_and_librdkafka_produce_and_consume(release: str, broker28: BrokerThread,
                                                         broker36: BrokerThread) -> None:
    broker = broker28 if release == "2.8" else broker36
    topic = f"emu-{release}-{uuid.uuid4().hex[:6]}"
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(3):
        kp.send(topic, key=b"k", value=f"kp{i}".encode()).get(10)
    kp.close()
    ck = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(3):
        ck.produce(topic, key=b"k", value=f"ck{i}".encode())
    assert ck.flush(10) == 0

    kc = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}",
                       auto_offset_reset="earliest", consumer_timeout_ms=8000)
    got = [m.value for _, m in zip(range(6), kc, strict=False)]
    kc.close()
    assert got == [b"kp0", b"kp1", b"kp2", b"ck0", b"ck1", b"ck2"]

    cc = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"c-{topic}",
                   "auto.offset.reset": "earliest"})
    cc.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(60):
            msg = cc.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                values.append(msg.value())
            if len(values) == 6:
                break
    finally:
        cc.close()
    assert values == [b"kp0", b"kp1", b"kp2", b"ck0", b"ck1", b"ck2"]


def test_emulation_sits_in_the_broker_interceptors(broker28: BrokerThread) -> None:
    items = list(broker28.broker.interceptors)
    assert [type(i) for i in items] == [ApiVersionEmulation]
    assert items[0].release == "2.8"


def test_a_broker_without_emulation_advertises_its_own(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "own") as broker:
        assert not broker.broker.interceptors
        assert api_versions(broker.bootstrap, 3) == (0, own_ranges())
