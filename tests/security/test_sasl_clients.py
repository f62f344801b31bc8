"""SASL_PLAINTEXT with real clients over real sockets: PLAIN and OAUTHBEARER logins with
kafka-python, confluent-kafka (librdkafka) and aiokafka, failed logins, re-authentication
(KIP-368), the raw v0 token framing, and hostile clients that must leave the broker serving."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiokafka
import confluent_kafka as ck
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.net.sasl.oauth import AbstractTokenProvider
from socket_helpers import read_frame

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
              'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret" user_bob="bob-secret";')
OAUTH_JAAS = 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;'
LISTENER = "listener.name.sasl_plaintext."
AUTH_LOG = "kbroker.security.sasl.authenticator"


def sasl_overrides(**extra: str) -> dict[str, str]:
    values = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER",
              LISTENER + "plain.sasl.jaas.config": PLAIN_JAAS, LISTENER + "oauthbearer.sasl.jaas.config": OAUTH_JAAS}
    values.update(extra)
    return values


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("sasl") / "data", sasl_overrides()) as b:
        yield b


def topic() -> str:
    return f"sasl-{uuid.uuid4().hex[:8]}"


# --- clients ---------------------------------------------------------------------------

def kp_config(bootstrap: str, user: str = "alice", password: str = "alice-secret") -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user, "sasl_plain_password": password}


def ck_config(bootstrap: str, user: str = "alice", password: str = "alice-secret", **extra: Any) -> dict[str, Any]:
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": password}
    conf.update(extra)
    return conf


def ck_roundtrip(conf: dict[str, Any], t: str, count: int = 5) -> list[bytes]:
    p = ck.Producer(conf)
    for i in range(count):
        p.produce(t, f"m{i}".encode())
    assert p.flush(20) == 0
    c = ck.Consumer({**conf, "group.id": f"g-{t}", "auto.offset.reset": "earliest"})
    c.subscribe([t])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


def test_kafka_python_plain_produce_consume(broker: BrokerThread) -> None:
    t = topic()
    p = KafkaProducer(**kp_config(broker.bootstrap))
    for i in range(5):
        p.send(t, f"m{i}".encode()).get(20)
    p.close()
    c = KafkaConsumer(t, **kp_config(broker.bootstrap, "bob", "bob-secret"), group_id=f"g-{t}",
                      auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 5:
            break
    c.close()
    assert got == [f"m{i}".encode() for i in range(5)]


def test_confluent_plain_produce_consume(broker: BrokerThread) -> None:
    t = topic()
    assert ck_roundtrip(ck_config(broker.bootstrap), t) == [f"m{i}".encode() for i in range(5)]


def test_aiokafka_plain_produce_consume(broker: BrokerThread) -> None:
    t = topic()
    conf = dict(bootstrap_servers=broker.bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                sasl_plain_username="alice", sasl_plain_password="alice-secret")

    async def main() -> list[bytes]:
        p = aiokafka.AIOKafkaProducer(**conf)
        await p.start()
        try:
            for i in range(5):
                await p.send_and_wait(t, f"m{i}".encode())
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer(t, group_id=f"g-{t}", auto_offset_reset="earliest", **conf)
        await c.start()
        try:
            got: list[bytes] = []
            while len(got) < 5:
                batch = await c.getmany(timeout_ms=1000)
                got += [m.value for ms in batch.values() for m in ms]
            return got
        finally:
            await c.stop()

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [f"m{i}".encode() for i in range(5)]


# --- failed logins ------------------------------------------------------------------------

@pytest.mark.parametrize("user, password", [("alice", "wrong-password"), ("mallory", "alice-secret")])
def test_failed_logins_fail_cleanly_on_every_client(broker: BrokerThread, caplog: pytest.LogCaptureFixture,
                                                    user: str, password: str) -> None:
    metrics = broker.broker.sasl_metrics
    failed_before = metrics.failed_authentication
    good = ck.Producer(ck_config(broker.bootstrap))
    t = topic()
    caplog.set_level(logging.INFO)

    # confluent-kafka: the broker's message reaches the error callback.
    errors: list[ck.KafkaError] = []
    bad = ck.Producer(ck_config(broker.bootstrap, user, password, error_cb=errors.append))
    bad.produce(t, b"never")
    deadline = time.monotonic() + 20
    while not any(e.code() == ck.KafkaError._AUTHENTICATION for e in errors) and time.monotonic() < deadline:
        bad.poll(0.2)
    auth_errors = [e for e in errors if e.code() == ck.KafkaError._AUTHENTICATION]
    assert auth_errors and "Authentication failed: Invalid username or password" in auth_errors[0].str()
    assert bad.flush(0) == 1  # nothing was delivered
    del bad

    # The broker serves an authenticated client meanwhile.
    good.produce(t, b"ok")
    assert good.flush(20) == 0

    # kafka-python: the bootstrap fails, having seen SASL_AUTHENTICATION_FAILED.
    with pytest.raises(Exception):  # noqa: B017 - kafka-python raises its timeout after the failures
        KafkaProducer(**kp_config(broker.bootstrap, user, password), bootstrap_timeout_ms=3000,
                      max_block_ms=2000, request_timeout_ms=2000)
    assert "SaslAuthenticationFailedError" in caplog.text

    # aiokafka: start() fails.
    async def aio() -> str:
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                      sasl_mechanism="PLAIN", sasl_plain_username=user,
                                      sasl_plain_password=password)
        try:
            await p.start()
        except Exception as e:
            return repr(e)
        finally:
            await p.stop()
        return "started"

    assert asyncio.run(asyncio.wait_for(aio(), 30)) != "started"
    assert "Invalid username or password" in caplog.text

    assert metrics.failed_authentication >= failed_before + 3
    lines = [r.getMessage() for r in caplog.records if r.name == AUTH_LOG and r.levelno == logging.INFO]
    assert lines and all(f"user '{user}'" in line and "127.0.0.1:" in line for line in lines)
    assert password not in caplog.text.replace("sasl_plain_password", "")
    good.produce(t, b"still ok")
    assert good.flush(20) == 0


# --- OAUTHBEARER ------------------------------------------------------------------------

def unsecured_jws(claims: dict[str, Any]) -> str:
    def b64(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'none'})}.{b64(claims)}."


class Tokens(AbstractTokenProvider):
    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__()
        self.claims = claims

    def token(self) -> str:
        return unsecured_jws(self.claims)


def test_oauthbearer_confluent_unsecured_jwt(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=AUTH_LOG)
    conf = {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": "principal=carol"}
    t = topic()
    assert ck_roundtrip(conf, t, 3) == [b"m0", b"m1", b"m2"]
    assert "as User:carol with SASL mechanism OAUTHBEARER" in caplog.text


def test_oauthbearer_kafka_python_token_provider(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=AUTH_LOG)
    now = time.time()
    conf = {"bootstrap_servers": broker.bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER"}
    p = KafkaProducer(**conf, sasl_oauth_token_provider=Tokens({"sub": "dave", "iat": now, "exp": now + 600}))
    p.send(topic(), b"x").get(20)
    p.close()
    assert "as User:dave with SASL mechanism OAUTHBEARER" in caplog.text
    # The token's expiry bounds the session, told to the client.
    assert any("session lifetime" in r.getMessage() and int(r.getMessage().split()[-2]) <= 600_000
               for r in caplog.records if "User:dave" in r.getMessage())

    # An expired token: the error challenge, then SASL_AUTHENTICATION_FAILED with it.
    caplog.clear()
    caplog.set_level(logging.INFO)
    with pytest.raises(Exception):  # noqa: B017 - kafka-python raises its timeout after the failures
        KafkaProducer(**conf, sasl_oauth_token_provider=Tokens({"sub": "dave", "exp": now - 60}),
                      bootstrap_timeout_ms=3000, max_block_ms=2000, request_timeout_ms=2000)
    assert '{"status":"invalid_token"}' in caplog.text
    assert "Expiration Time" in caplog.text  # the reason, in the broker log


# --- re-authentication ---------------------------------------------------------------------

def test_confluent_reauthenticates_while_producing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=AUTH_LOG)
    with BrokerThread(tmp_path / "data", sasl_overrides(**{"connections.max.reauth.ms": "1500"})) as b:
        metrics = b.broker.sasl_metrics
        t = topic()
        p = ck.Producer(ck_config(b.bootstrap, **{"linger.ms": 5}))
        delivered: list[bytes] = []
        errors: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            (errors if err else delivered).append(err or msg.value())

        sent = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            p.produce(t, f"m{sent}".encode(), on_delivery=report)
            sent += 1
            p.poll(0.05)
        assert p.flush(20) == 0
        assert errors == [] and len(delivered) == sent
        assert metrics.successful_reauthentication >= 2, vars(metrics)
        assert metrics.failed_reauthentication == 0
        assert "re-authentication of 127.0.0.1" in caplog.text


def test_expired_session_closes_the_connection_on_its_next_request(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", sasl_overrides(**{"connections.max.reauth.ms": "1000"})) as b:
        s = raw_login(b.port)
        assert metadata(s)["brokers"]
        time.sleep(1.2)
        s.sendall(encode_request(3, 1, 9, {"topics": None}))
        assert closed(s)


# --- raw sockets ------------------------------------------------------------------------

def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def call(s: socket.socket, key: int, version: int, body: dict[str, Any], correlation: int = 1) -> Any:
    s.sendall(encode_request(key, version, correlation, body))
    cid, resp = decode_response(key, version, read_frame(s))
    assert cid == correlation
    return resp


def closed(s: socket.socket, timeout: float = 10) -> bool:
    """True when the broker closed the connection (without sending anything more)."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_login(port: int, user: str = "alice", password: str = "alice-secret") -> socket.socket:
    s = connect(port)
    assert call(s, 17, 1, {"mechanism": "PLAIN"})["error_code"] == 0
    resp = call(s, 36, 2, {"auth_bytes": f"\0{user}\0{password}".encode()}, 2)
    assert resp["error_code"] == 0, resp
    return s


def metadata(s: socket.socket) -> Any:
    return call(s, 3, 1, {"topics": None}, 7)


def test_raw_v0_handshake_with_raw_plain_token(broker: BrokerThread) -> None:
    s = connect(broker.port)
    resp = call(s, 17, 0, {"mechanism": "PLAIN"})
    assert resp["error_code"] == 0 and "PLAIN" in resp["mechanisms"]
    token = b"\0bob\0bob-secret"
    s.sendall(struct.pack(">i", len(token)) + token)
    assert read_frame(s) == b""  # the empty PLAIN challenge, size-prefixed
    assert metadata(s)["brokers"]
    s.close()
    # A wrong password: no answer, the connection closes.
    s = connect(broker.port)
    call(s, 18, 0, {})
    call(s, 17, 0, {"mechanism": "PLAIN"}, 2)
    token = b"\0bob\0nope"
    s.sendall(struct.pack(">i", len(token)) + token)
    assert closed(s)


def test_handshake_errors(broker: BrokerThread) -> None:
    s = connect(broker.port)
    resp = call(s, 17, 1, {"mechanism": "GSSAPI"})
    assert resp["error_code"] == 33 and resp["mechanisms"] == ["PLAIN", "OAUTHBEARER"]
    assert closed(s)
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    resp = call(s, 17, 1, {"mechanism": "PLAIN"}, 2)  # a second handshake
    assert resp["error_code"] == 34
    assert closed(s)
    # Authenticated, without a session lifetime: ILLEGAL_SASL_STATE, the connection stays.
    s = raw_login(broker.port)
    assert call(s, 17, 1, {"mechanism": "PLAIN"}, 3)["error_code"] == 34
    resp = call(s, 36, 1, {"auth_bytes": b"\0alice\0alice-secret"}, 4)
    assert resp["error_code"] == 34
    assert metadata(s)["brokers"]


def test_failure_is_delayed_without_blocking_others(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", sasl_overrides(**{"connection.failed.authentication.delay.ms": "2000"})) as b:
        bad = connect(b.port)
        call(bad, 17, 1, {"mechanism": "PLAIN"})
        started = time.monotonic()
        bad.sendall(encode_request(36, 1, 2, {"auth_bytes": b"\0alice\0wrong"}))
        # Another client logs in and is served while the failed one waits for its answer.
        good = raw_login(b.port)
        assert metadata(good)["brokers"]
        bad.setblocking(False)
        with pytest.raises(BlockingIOError):
            bad.recv(1)
        bad.setblocking(True)
        bad.settimeout(10)
        _, resp = decode_response(36, 1, read_frame(bad))
        assert time.monotonic() - started >= 1.95
        assert resp["error_code"] == 58 and resp["error_message"] == "Authentication failed: Invalid username or password"
        assert closed(bad)


def test_hostile_inputs_leave_the_broker_serving(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    good = raw_login(broker.port)
    # Produce before authenticating: the connection closes, unanswered, from the request's header
    # alone (its body, garbage here, is never decoded).
    s = connect(broker.port)
    s.sendall(encode_request(0, 9, 1, {"transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": []}))
    assert closed(s)
    s = connect(broker.port)
    s.sendall(struct.pack(">ihhi", 8 + 1000, 0, 9, 1) + b"\xee" * 1000)
    assert closed(s)
    # Another API during the exchange: ILLEGAL_SASL_STATE, then the connection closes.
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    assert call(s, 60, 0, {"include_cluster_authorized_operations": False}, 2)["error_code"] == 34
    assert closed(s)
    # A SaslAuthenticate token larger than sasl.server.max.receive.size (512 KiB).
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        s.sendall(encode_request(36, 2, 2, {"auth_bytes": b"\0alice\0" + b"x" * 600_000}))
    assert closed(s)
    # A 100 MB frame announced before authentication: closed at its size prefix.
    s = connect(broker.port)
    s.sendall(struct.pack(">i", 100 * 1024 * 1024) + b"\0\x12\0\0")
    assert closed(s, timeout=5)
    # Garbage tokens: Kafka's generic message, then the connection closes.
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    resp = call(s, 36, 2, {"auth_bytes": b"\xff\xfe garbage"}, 2)
    assert resp["error_code"] == 58
    assert resp["error_message"] == ("Authentication failed during authentication due to invalid credentials with SASL "
                                     "mechanism PLAIN")
    assert closed(s)
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "OAUTHBEARER"})
    assert call(s, 36, 2, {"auth_bytes": b"n,,\x01auth=Bearer x.y.z\x01\x01"}, 2)["auth_bytes"] == \
        b'{"status":"invalid_token"}'
    resp = call(s, 36, 2, {"auth_bytes": b"\x01"}, 3)
    assert (resp["error_code"], resp["error_message"]) == (58, '{"status":"invalid_token"}')
    assert closed(s)
    # A garbage frame in place of a SaslAuthenticate request.
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    s.sendall(struct.pack(">i", 12) + b"\x00\x24\x00\x05" + b"\xff" * 8)
    assert closed(s)
    # The authenticated connection was served throughout.
    assert metadata(good)["brokers"]
    assert "malformed request" not in caplog.text  # refused before decoding
    assert caplog.text.count("Invalid request, potential reasons: kafka client configured with the wrong security") == 2


def test_thousands_of_failed_logins(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)  # the INFO line per failure is not needed here
    metrics = broker.broker.sasl_metrics
    before = metrics.failed_authentication
    attempts, parallel = 2000, 100
    handshake = encode_request(17, 1, 1, {"mechanism": "PLAIN"})
    authenticate = encode_request(36, 2, 2, {"auth_bytes": b"\0alice\0wrong"})

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
        writer.write(handshake + authenticate)  # pipelined
        frames = []
        for _ in range(2):
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            frames.append(await reader.readexactly(size))
        writer.close()  # as clients do on a failed login
        return decode_response(36, 2, frames[1])[1]["error_code"]

    async def worker(n: int, codes: list[int]) -> None:
        for _ in range(n):
            codes.append(await one())

    async def main() -> tuple[list[int], float]:
        codes: list[int] = []
        good = raw_login(broker.port)
        workers = asyncio.gather(*(worker(attempts // parallel, codes) for _ in range(parallel)))
        # Meanwhile an authenticated client gets answers promptly.
        slowest = 0.0
        while not workers.done():
            t0 = time.monotonic()
            await asyncio.to_thread(metadata, good)
            slowest = max(slowest, time.monotonic() - t0)
            await asyncio.sleep(0.1)
        await workers
        return codes, slowest

    started = time.monotonic()
    codes, slowest = asyncio.run(asyncio.wait_for(main(), 120))
    assert codes == [58] * attempts
    assert time.monotonic() - started < 90
    assert slowest < 5
    assert metrics.failed_authentication - before == attempts


# --- start-up ------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}, "GSSAPI (Kerberos) is not supported"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN"},
     "set listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    ({"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN",
      LISTENER + "plain.sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule required '
                                           'username="admin" password="admin-secret";'}, "no users for SASL/PLAIN"),
])
def test_startup_errors(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    from kbroker.broker import StartupError

    with pytest.raises(RuntimeError) as e:
        BrokerThread(tmp_path / "data", overrides).start()
    cause = e.value.__cause__
    assert isinstance(cause, StartupError) and message in str(cause)
    assert "admin-secret" not in str(cause)


def test_raw_reauthentication_extends_the_session_and_keeps_the_principal(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", sasl_overrides(**{"connections.max.reauth.ms": "1500"})) as b:
        s = connect(b.port)
        call(s, 17, 1, {"mechanism": "PLAIN"})
        resp = call(s, 36, 1, {"auth_bytes": b"\0alice\0alice-secret"}, 2)
        assert resp["session_lifetime_ms"] == 1500
        time.sleep(1.1)
        assert call(s, 17, 1, {"mechanism": "PLAIN"}, 3)["error_code"] == 0  # re-authentication begins
        resp = call(s, 36, 1, {"auth_bytes": b"\0alice\0alice-secret"}, 4)
        assert (resp["error_code"], resp["session_lifetime_ms"]) == (0, 1500)
        time.sleep(0.8)  # past the first session's end, within the second's
        assert metadata(s)["brokers"]
        assert b.broker.sasl_metrics.successful_reauthentication == 1

        # Re-authenticating as someone else fails, and closes the connection.
        s = raw_login(b.port)
        time.sleep(1.1)
        call(s, 17, 1, {"mechanism": "PLAIN"}, 3)
        resp = call(s, 36, 2, {"auth_bytes": b"\0bob\0bob-secret"}, 4)
        assert resp["error_code"] == 58
        assert resp["error_message"] == "Cannot change principals during re-authentication from User.alice: User.bob"
        assert closed(s)
        assert b.broker.sasl_metrics.failed_reauthentication == 1
