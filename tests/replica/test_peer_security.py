"""Inter-broker connections over SSL, SASL_PLAINTEXT (PLAIN, SCRAM) and SASL_SSL, against a real
kbroker listener: a replica's Fetch v12 round-trips; bad logins and untrusted servers fail."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from kbroker.codec import decode_request, encode_response
from kbroker.config import BrokerConfig, ConfigError
from kbroker.replica.fetcher import FETCH, FETCH_VERSION
from kbroker.replica.peer import (
    PeerConnection,
    PeerError,
    SaslLogin,
    SaslStream,
    inter_broker_connector,
    inter_broker_listener,
    sasl_authenticate,
    sasl_login,
)
from kbroker.security.scram import ScramCredential
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import create_topic
from tools.pki import make_pki

pytestmark = pytest.mark.anyio

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
              'password="{password}" user_broker="secret";')
SCRAM_JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="{password}";'
FETCH_BODY = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "session_epoch": -1,
              "topics": [{"topic": "rep", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                            "partition_max_bytes": 1024}]}]}


def follower_config(settings: Mapping[str, str]) -> BrokerConfig:
    return BrokerConfig({"node.id": "2", **settings})


async def fetch_through(broker: BrokerThread, config: BrokerConfig) -> int:
    """The error code of a replica fetch sent with ``config``'s inter-broker connector."""
    host, port = broker.bootstrap.rsplit(":", 1)
    peer = PeerConnection(host, int(port), client_id="kbroker-replica-2", timeout_s=10, backoff_s=0,
                          connect=inter_broker_connector(config))
    try:
        with anyio.fail_after(20):
            resp = await peer.request(FETCH, FETCH_VERSION, FETCH_BODY)
        return int(resp.responses[0].partitions[0].error_code)
    finally:
        await peer.aclose()


def ssl_settings(pki_dir: Path, listener: str) -> dict[str, str]:
    pki = make_pki(pki_dir)
    prefix = f"listener.name.{listener.lower()}."
    return {prefix + "ssl.keystore.type": "PEM", prefix + "ssl.keystore.location": str(pki.server),
            prefix + "ssl.truststore.type": "PEM", prefix + "ssl.truststore.location": str(pki.ca)}


async def test_ssl_inter_broker_listener(tmp_path: Path) -> None:
    settings = {"listeners": "SSL://127.0.0.1:0", "security.inter.broker.protocol": "SSL",
                **ssl_settings(tmp_path / "pki", "SSL")}
    with BrokerThread(tmp_path / "data", settings) as broker:
        create_topic(broker, "rep")
        assert await fetch_through(broker, follower_config(settings)) == 0
        # A follower that does not trust the leader's certificate authority cannot connect.
        other = make_pki(tmp_path / "other-pki")
        untrusting = {**settings, "listener.name.ssl.ssl.truststore.location": str(other.ca)}
        with pytest.raises(PeerError, match="failed"):
            await fetch_through(broker, follower_config(untrusting))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_plaintext_inter_broker_listener(tmp_path: Path, mechanism: str) -> None:
    jaas = PLAIN_JAAS if mechanism == "PLAIN" else SCRAM_JAAS
    settings = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "security.inter.broker.protocol": "SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": mechanism, "sasl.mechanism.inter.broker.protocol": mechanism,
                f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config": jaas.format(password="secret")}
    with BrokerThread(tmp_path / "data", settings) as broker:
        create_topic(broker, "rep")
        if mechanism != "PLAIN":
            broker.call(broker.broker.credentials.upsert, "broker", mechanism,
                        ScramCredential.from_password(mechanism, "secret", 4096))
        assert await fetch_through(broker, follower_config(settings)) == 0
        wrong = {**settings, f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config":
                 jaas.format(password="wrong")}
        with pytest.raises(PeerError, match="authentication as broker failed"):
            await fetch_through(broker, follower_config(wrong))


async def test_sasl_ssl_inter_broker_listener(tmp_path: Path) -> None:
    settings = {"listeners": "SASL_SSL://127.0.0.1:0", "security.inter.broker.protocol": "SASL_SSL",
                "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS.format(password="secret"),
                **ssl_settings(tmp_path / "pki", "SASL_SSL")}
    with BrokerThread(tmp_path / "data", settings) as broker:
        create_topic(broker, "rep")
        assert await fetch_through(broker, follower_config(settings)) == 0


async def test_a_mechanism_the_leader_does_not_offer_is_refused(tmp_path: Path) -> None:
    settings = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "security.inter.broker.protocol": "SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": "SCRAM-SHA-256",
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS.format(password="x")}
    with BrokerThread(tmp_path / "data", settings) as broker:
        follower = {**settings, "sasl.mechanism.inter.broker.protocol": "PLAIN",
                    "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS.format(password="secret")}
        with pytest.raises(PeerError, match="handshake for PLAIN refused"):
            await fetch_through(broker, follower_config(follower))


def test_inter_broker_listener_and_login_settings() -> None:
    assert inter_broker_listener(BrokerConfig({})) == "PLAINTEXT"
    config = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0,REPL://127.0.0.1:0",
                           "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,REPL:SASL_PLAINTEXT",
                           "inter.broker.listener.name": "REPL", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                           "listener.name.repl.plain.sasl.jaas.config": PLAIN_JAAS.format(password="pw")})
    assert inter_broker_listener(config) == "REPL"
    login = sasl_login(config, "REPL")
    assert (login.mechanism, login.username, login.password) == ("PLAIN", "broker", "pw")
    assert "pw" not in repr(login)
    # GSSAPI (the default mechanism) and a missing JAAS config are refused at construction.
    with pytest.raises(ConfigError, match="GSSAPI cannot be used"):
        inter_broker_connector(BrokerConfig({"security.inter.broker.protocol": "SASL_PLAINTEXT",
                                             "listeners": "SASL_PLAINTEXT://127.0.0.1:0"}))
    with pytest.raises(ConfigError, match="needs listener.name.sasl_plaintext.plain.sasl.jaas.config"):
        inter_broker_connector(BrokerConfig({"security.inter.broker.protocol": "SASL_PLAINTEXT",
                                             "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
                                             "sasl.mechanism.inter.broker.protocol": "PLAIN"}))
    no_password = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="broker";'
    with pytest.raises(ConfigError, match="username and password"):
        sasl_login(BrokerConfig({"sasl.mechanism.inter.broker.protocol": "PLAIN",
                                 "listener.name.x.plain.sasl.jaas.config": no_password}), "X")


async def scripted_sasl_server(tg: anyio.abc.TaskGroup, server_first: bytes) -> int:
    """A server accepting any SCRAM handshake and answering the client-first with ``server_first``."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                while True:
                    (size,) = struct.unpack(">i", await reader.receive_exactly(4))
                    request = decode_request(await reader.receive_exactly(size))
                    if request.api_key == 17:
                        body: dict[str, object] = {"error_code": 0, "mechanisms": ["SCRAM-SHA-256"]}
                    else:
                        body = {"error_code": 0, "auth_bytes": server_first}
                    await stream.send(encode_response(request.api_key, request.api_version,
                                                      request.correlation_id, body))

    tg.start_soon(listener.serve, handle)
    return listener.extra(anyio.abc.SocketAttribute.local_port)


@pytest.mark.parametrize(("server_first", "error"), [
    (b"\xff\xfe", "malformed"),
    (b"r=NONCE,s=c2FsdA==,i=many", "malformed"),
    (b"r=NONCE,s=not base64!,i=4096", "malformed"),
    (b"r=someone-elses-nonce,s=c2FsdA==,i=4096", "unacceptable"),
    (b"r=NONCE,s=c2FsdA==,i=1000000000", "unacceptable"),  # would hold the event loop for minutes
    (b"r=NONCE,s=c2FsdA==,i=1024", "unacceptable"),
])
async def test_a_bad_scram_server_first_is_refused(server_first: bytes, error: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kbroker.replica.peer.secrets.token_urlsafe", lambda n: "fixed")
    async with anyio.create_task_group() as tg:
        port = await scripted_sasl_server(tg, server_first.replace(b"NONCE", b"fixed-and-server-part"))
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            with pytest.raises(PeerError, match=error), anyio.fail_after(5):
                await sasl_authenticate(stream, SaslLogin("SCRAM-SHA-256", "broker", "pw"))
        tg.cancel_scope.cancel()


async def test_a_sasl_session_is_renewed_before_it_ends(tmp_path: Path) -> None:
    settings = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "security.inter.broker.protocol": "SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "connections.max.reauth.ms": "1000",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS.format(password="secret")}
    with BrokerThread(tmp_path / "data", settings) as broker:
        create_topic(broker, "rep")
        host, port = broker.bootstrap.rsplit(":", 1)
        connect = inter_broker_connector(follower_config(settings))
        streams: list[SaslStream] = []

        async def counting(h: str, p: int) -> anyio.abc.ByteStream:
            stream = await connect(h, p)
            assert isinstance(stream, SaslStream) and 0 < stream.session_lifetime_ms <= 1000
            streams.append(stream)
            return stream

        async def unaware(h: str, p: int) -> anyio.abc.ByteStream:
            stream = await connect(h, p)
            assert isinstance(stream, SaslStream)
            return stream.inner  # the session lifetime hidden: nothing renews it

        renewing = PeerConnection(host, int(port), client_id="r", timeout_s=10, backoff_s=0, connect=counting)
        plain = PeerConnection(host, int(port), client_id="r", timeout_s=10, backoff_s=0, connect=unaware)
        try:
            for peer in (renewing, plain):
                assert (await peer.request(FETCH, FETCH_VERSION, FETCH_BODY)).error_code == 0
            await anyio.sleep(1.2)  # the session lifetime is the behaviour under test
            assert (await renewing.request(FETCH, FETCH_VERSION, FETCH_BODY)).error_code == 0
            assert len(streams) == 2
            # The same wait without renewal: the broker ends the expired session.
            with pytest.raises(PeerError):
                await plain.request(FETCH, FETCH_VERSION, FETCH_BODY)
        finally:
            await renewing.aclose()
            await plain.aclose()
