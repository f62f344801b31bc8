"""SSL listeners with real clients over real sockets: kafka-python, confluent-kafka and aiokafka
produce and consume with and without client certificates; the principal comes from the
certificate; untrusted certificates, plaintext clients, garbage and stalled handshakes close only
their own connection, with one log line and no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as KafkaPythonError
from wait_helpers import wait_until

from kbroker.codec import decode_response, encode_request
from kbroker.server import connection
from kbroker.testing import BrokerThread
from tools.pki import CLIENT_DN, Pki, make_pki

CONNECTION_LOG = "kbroker.server.connection"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=CONNECTION_LOG)
    return caplog


def _broker(tmp_path: Path, pki: Pki, **extra: str) -> BrokerThread:
    overrides = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM",
                 "ssl.keystore.location": str(pki.server), "ssl.truststore.type": "PEM",
                 "ssl.truststore.location": str(pki.ca), **extra}
    return BrokerThread(tmp_path / "data", overrides)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[BrokerThread]:
    with _broker(tmp_path, pki) as broker:
        yield broker


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> Iterator[BrokerThread]:
    with _broker(tmp_path, pki, **{"ssl.client.auth": "required"}) as broker:
        yield broker


def _kafka_python_ssl(pki: Pki, cert: str | None = None) -> dict[str, object]:
    settings: dict[str, object] = {"security_protocol": "SSL", "ssl_cafile": str(pki.ca)}
    if cert is not None:
        settings.update(ssl_certfile=str(pki.file(f"{cert}.pem")), ssl_keyfile=str(pki.file(f"{cert}-key.pem")))
    return settings


def _confluent_ssl(pki: Pki, cert: str | None = None) -> dict[str, str]:
    settings = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}
    if cert is not None:
        settings.update({"ssl.certificate.location": str(pki.file(f"{cert}.pem")),
                         "ssl.key.location": str(pki.file(f"{cert}-key.pem"))})
    return settings


def _kafka_python_round_trip(bootstrap: str, topic: str, ssl_settings: dict[str, object], count: int = 3,
                             size: int = 16) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20, **ssl_settings)  # type: ignore[arg-type]
    values = [i.to_bytes(4, "big") * (size // 4) for i in range(count)]
    for value in values:
        producer.send(topic, value).get(30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, fetch_max_bytes=64 << 20,
                             max_partition_fetch_bytes=16 << 20, **ssl_settings)  # type: ignore[arg-type]
    got = []
    for message in consumer:
        got.append(message.value)
        if len(got) == count:
            break
    consumer.close()
    assert got == values


def _confluent_round_trip(bootstrap: str, topic: str, ssl_settings: dict[str, str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **ssl_settings})
    for i in range(3):
        producer.produce(topic, f"c{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", **ssl_settings})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            got.append(message.value())
    consumer.close()
    assert got == [b"c0", b"c1", b"c2"]


def _principals(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {r.getMessage().rsplit("principal ", 1)[1] for r in caplog.records
            if r.name == CONNECTION_LOG and r.getMessage().startswith("TLS connection from")}


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.name.split(".")[0] in ("kbroker", "asyncio", "anyio")
           and (r.exc_info or r.levelno >= logging.ERROR)]
    assert not bad, [r.getMessage() for r in bad]


def _handshake_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == CONNECTION_LOG and "TLS handshake" in r.getMessage()]


def _api_versions_over_tls(port: int, pki: Pki, cert: str | None = None) -> int:
    """ApiVersions over a TLS socket of our own; the error code."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(pki.file(f"{cert}.pem")), str(pki.file(f"{cert}-key.pem")))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(encode_request(18, 0, 7, {}))
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
    _, body = decode_response(18, 0, data[4:])
    return int(body["error_code"])


def _closed_within(s: socket.socket, seconds: float) -> float:
    """Seconds until the broker closed ``s`` (failing after ``seconds``)."""
    start = time.monotonic()
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the broker kept the connection open for {seconds} s")
    return time.monotonic() - start


# --- clients -------------------------------------------------------------------------------------

def test_clients_without_certificate(tls_broker: BrokerThread, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    _kafka_python_round_trip(tls_broker.bootstrap, "kp", _kafka_python_ssl(pki))
    _confluent_round_trip(tls_broker.bootstrap, "ck", _confluent_ssl(pki))
    assert _principals(tls_log) == {"User:ANONYMOUS"}
    _assert_no_traceback(tls_log)


def test_clients_with_required_certificate(mtls_broker: BrokerThread, pki: Pki,
                                           tls_log: pytest.LogCaptureFixture) -> None:
    _kafka_python_round_trip(mtls_broker.bootstrap, "kp", _kafka_python_ssl(pki, "client"))
    _confluent_round_trip(mtls_broker.bootstrap, "ck", _confluent_ssl(pki, "client"))
    _aiokafka_round_trip(mtls_broker.bootstrap, pki)
    assert _principals(tls_log) == {f"User:{CLIENT_DN}"}
    _assert_no_traceback(tls_log)


def _aiokafka_round_trip(bootstrap: str, pki: Pki) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def main() -> list[bytes]:
        context = create_ssl_context(cafile=str(pki.ca), certfile=str(pki.client), keyfile=str(pki.client_key))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=context)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait("aio", f"a{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("aio", bootstrap_servers=bootstrap, security_protocol="SSL",
                                    ssl_context=context, auto_offset_reset="earliest")
        await consumer.start()
        try:
            got = []
            async with asyncio.timeout(30):
                async for message in consumer:
                    got.append(message.value)
                    if len(got) == 3:
                        break
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(main()) == [b"a0", b"a1", b"a2"]


def test_principal_mapping_rules(tmp_path: Path, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    with _broker(tmp_path, pki, **{"ssl.client.auth": "requested",
                                   "ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/U,DEFAULT"}) as broker:
        assert _api_versions_over_tls(broker.port, pki, "client") == 0
        assert _api_versions_over_tls(broker.port, pki) == 0  # requested: no certificate is fine
    assert _principals(tls_log) == {"User:ALICE", "User:ANONYMOUS"}


def test_no_matching_rule_closes_the_connection(tmp_path: Path, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    with _broker(tmp_path, pki, **{"ssl.client.auth": "required",
                                   "ssl.principal.mapping.rules": "RULE:^CN=bob,.*$/bob/"}) as broker:
        with pytest.raises((ConnectionError, ssl.SSLError, AssertionError)):
            _api_versions_over_tls(broker.port, pki, "client")
        wait_until(lambda: any("no principal for the client certificate" in r.getMessage()
                               for r in tls_log.records), 10)
    _assert_no_traceback(tls_log)


def test_large_fetches_over_tls(tmp_path: Path, pki: Pki) -> None:
    # Responses of several MB go out in slices; the request memory budget is all given back.
    # A request budget smaller than one request: each is still admitted alone, as over PLAINTEXT.
    with _broker(tmp_path, pki, **{"message.max.bytes": str(8 << 20),
                                   "queued.max.request.bytes": str(1 << 20)}) as broker:
        _kafka_python_round_trip(broker.bootstrap, "big", _kafka_python_ssl(pki), count=4, size=3 << 20)
        wait_until(lambda: broker.broker.request_memory.used == 0, 20,
                   lambda: f"request memory used: {broker.broker.request_memory.used}")


# --- refusals ------------------------------------------------------------------------------------

def test_untrusted_certificate_is_refused_while_others_are_served(
        mtls_broker: BrokerThread, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    errors: list[KafkaError] = []
    delivered: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": mtls_broker.bootstrap, **_confluent_ssl(pki, "untrusted"),
                         "message.timeout.ms": 3000, "error_cb": errors.append})
    producer.produce("denied", b"x", on_delivery=lambda err, _msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert len(delivered) == 1 and delivered[0] is not None  # never delivered
    # The broker's alert tells the client why: the certificate request names the trusted CAs (as
    # Kafka's), so librdkafka withholds its certificate and hears that one is required.
    assert any("alert certificate required" in e.str() or "alert unknown ca" in e.str() for e in errors), errors
    with pytest.raises((ConnectionError, ssl.SSLError)):
        _api_versions_over_tls(mtls_broker.port, pki, "untrusted")
    with pytest.raises((ConnectionError, ssl.SSLError)):
        _api_versions_over_tls(mtls_broker.port, pki)  # required: no certificate is refused too
    _kafka_python_round_trip(mtls_broker.bootstrap, "allowed", _kafka_python_ssl(pki, "client"))
    failures = _handshake_failures(tls_log)
    assert any("client certificate was refused" in f for f in failures), failures
    _assert_no_traceback(tls_log)


def test_plaintext_client_on_the_tls_port(tls_broker: BrokerThread, pki: Pki,
                                          tls_log: pytest.LogCaptureFixture) -> None:
    with pytest.raises(KafkaPythonError):
        producer = KafkaProducer(bootstrap_servers=tls_broker.bootstrap, api_version=(2, 5, 0),
                                 max_block_ms=3000)
        try:
            producer.send("plain", b"x").get(5)
        finally:
            producer.close(0)
    failures = _handshake_failures(tls_log)
    assert failures and all("not a TLS client" in f for f in failures), failures
    assert _api_versions_over_tls(tls_broker.port, pki) == 0  # still serving TLS clients
    _assert_no_traceback(tls_log)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 4,
                                     b"\x16\x03\x01\x00\x05hello" + b"\xff" * 64])
def test_garbage_on_the_tls_port(tls_broker: BrokerThread, pki: Pki, tls_log: pytest.LogCaptureFixture,
                                 garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10) as s:
        s.sendall(garbage)
        _closed_within(s, 10)
    wait_until(lambda: _handshake_failures(tls_log), 10)
    assert len(_handshake_failures(tls_log)) == 1
    assert _api_versions_over_tls(tls_broker.port, pki) == 0
    _assert_no_traceback(tls_log)


def test_stalled_handshake_is_closed_after_the_bound(tmp_path: Path, pki: Pki, tls_log: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "TLS_HANDSHAKE_TIMEOUT", 1.0)
    with _broker(tmp_path, pki) as broker:
        for opening in (b"", b"\x16\x03\x01\x02\x00\x01"):  # nothing; half a ClientHello
            with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
                s.sendall(opening)
                waited = _closed_within(s, 10)
            assert 0.8 <= waited < 5, waited
            # Meanwhile and after, other clients are served.
            assert _api_versions_over_tls(broker.port, pki) == 0
    failures = _handshake_failures(tls_log)
    assert len(failures) == 2 and all("not done within 1 s" in f for f in failures), failures
    _assert_no_traceback(tls_log)


def test_idle_tls_connection_is_closed(tmp_path: Path, pki: Pki) -> None:
    with _broker(tmp_path, pki, **{"connections.max.idle.ms": "1500"}) as broker:
        context = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            start = time.monotonic()
            s.settimeout(10)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                assert s.recv(1) == b""
            assert 1.0 <= time.monotonic() - start < 8


def test_shutdown_ends_pending_handshakes_and_idle_tls_connections(
        tmp_path: Path, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    broker = _broker(tmp_path, pki).start()
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as pending, \
            socket.create_connection(("127.0.0.1", broker.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as established:
        wait_until(lambda: len(broker.broker._connections) == 2, 10)
        start = time.monotonic()
        broker.stop()
        assert time.monotonic() - start < 5  # not the 10 s handshake bound, nor the idle timeout
        _closed_within(pending, 5)
        with contextlib.suppress(ssl.SSLError):
            _closed_within(established, 5)
    assert not _handshake_failures(tls_log)  # closing for shutdown is not a failure


def test_a_certificate_from_another_ca_is_withheld_where_one_is_only_requested(
        tmp_path: Path, pki: Pki, tls_log: pytest.LogCaptureFixture) -> None:
    # As Kafka's, the certificate request names the trusted CAs: a client whose certificate no
    # listed CA issued connects without sending it (User:ANONYMOUS) instead of failing.
    with _broker(tmp_path, pki, **{"ssl.client.auth": "requested"}) as broker:
        delivered: list[KafkaError | None] = []
        producer = Producer({"bootstrap.servers": broker.bootstrap, **_confluent_ssl(pki, "untrusted"),
                             "message.timeout.ms": 10000})
        producer.produce("withheld", b"x", on_delivery=lambda err, _msg: delivered.append(err))
        assert producer.flush(15) == 0
        assert delivered == [None]
        named = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{broker.port}", "-tls1_2"],
                               input=b"", capture_output=True, timeout=20).stdout.decode(errors="replace")
        assert "Acceptable client certificate CA names" in named and "kbroker test CA" in named, named
    assert _principals(tls_log) == {"User:ANONYMOUS"}
    _assert_no_traceback(tls_log)
