"""SASL pieces without sockets: the JAAS parser, PLAIN, unsecured JWS tokens, the
mechanisms a listener offers and the per-connection authenticator's states."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.config import BrokerConfig
from kbroker.config.errors import ConfigError
from kbroker.security.jaas import parse_jaas, single_entry
from kbroker.security.sasl.authenticator import (
    API_VERSIONS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    SaslAuthenticator,
    SaslMetrics,
    SaslSettings,
    SaslState,
)
from kbroker.security.sasl.base import SaslFailure
from kbroker.security.sasl.mechanisms import mechanism_factories, sasl_settings
from kbroker.security.sasl.oauthbearer import (
    InvalidToken,
    OAuthBearerSaslServer,
    ValidatorOptions,
    parse_client_first,
    validate,
)
from kbroker.security.sasl.plain import PlainSaslServer, parse_plain_token

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
OAUTH_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
PRODUCE = 0


# --- JAAS ------------------------------------------------------------------------------

def test_jaas_kafka_broker_example() -> None:
    text = (f'{PLAIN_MODULE} required\n  username="admin"\n  password="admin-secret"\n'
            '  user_admin="admin-secret"\n  user_alice="alice-secret";')
    (entry,) = parse_jaas(text)
    assert entry.login_module == PLAIN_MODULE and entry.flag == "required"
    assert entry.options == {"username": "admin", "password": "admin-secret", "user_admin": "admin-secret",
                             "user_alice": "alice-secret"}
    assert "secret" not in repr(entry)


def test_jaas_flags_quotes_escapes_comments_and_several_entries() -> None:
    text = ("a.B REQUIRED k1=bare k2='single \"q\"' k3=\"tab\\there \\\"quoted\\\" \\101\\\\\";\n"
            "// a comment line; with = signs\n"
            "c.D Sufficient /* block ; comment */ x=\"\"; e.F optional; g.H requisite;")
    entries = parse_jaas(text)
    assert [(e.login_module, e.flag) for e in entries] == [
        ("a.B", "required"), ("c.D", "sufficient"), ("e.F", "optional"), ("g.H", "requisite")]
    assert entries[0].options == {"k1": "bare", "k2": 'single "q"', "k3": 'tab\there "quoted" A\\'}
    assert entries[1].options == {"x": ""}
    assert entries[2].options == {}


@pytest.mark.parametrize("text, needle", [
    ("", "login module not specified"),
    ("   // only a comment", "login module not specified"),
    ("a.B", "control flag not specified"),
    ("a.B mandatory;", "invalid login module control flag"),
    ("a.B required user_x=\"pw\"", "not terminated by a semicolon"),
    ("a.B required user_x=;", "value not specified for an option"),
    ("a.B required user_x;", "value not specified for an option"),
    ("a.B required user_x=\"pw\" leaked-secret-part;", "after option 'user_x'"),
    ("; a.B required;", "does not start with a login module"),
    ("a.B ;", "control flag is not available"),
])
def test_jaas_errors_name_the_key_and_never_a_value(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_jaas(text, "listener.name.sasl_plaintext.plain.sasl.jaas.config")
    message = str(e.value)
    assert needle in message
    assert message.startswith("listener.name.sasl_plaintext.plain.sasl.jaas.config: ")
    assert e.value.key == "listener.name.sasl_plaintext.plain.sasl.jaas.config"
    assert "pw" not in message and "leaked-secret-part" not in message


def test_jaas_single_entry() -> None:
    with pytest.raises(ConfigError, match="contains 2 login modules, should be 1"):
        single_entry("a.B required; c.D required;", "k")
    assert single_entry("a.B required;", "k").login_module == "a.B"


# --- PLAIN -----------------------------------------------------------------------------

def test_plain_token_parsing() -> None:
    assert parse_plain_token(b"\0alice\0pw") == ("", "alice", "pw")
    assert parse_plain_token(b"alice\0alice\0p\xc3\xa4ss") == ("alice", "alice", "päss")
    # As Kafka: fields past a third NUL are ignored.
    assert parse_plain_token(b"\0alice\0pw\0junk") == ("", "alice", "pw")
    for bad, message in [(b"alice", "username not specified"), (b"\0alice", "password not specified"),
                         (b"\0\0pw", "username not specified"), (b"\xff\0a\0b", "not UTF-8")]:
        with pytest.raises(SaslFailure, match=message) as e:
            parse_plain_token(bad)
        assert e.value.generic


def test_plain_server() -> None:
    server = PlainSaslServer({"alice": "alice-secret"})
    assert not server.complete
    with pytest.raises(RuntimeError):
        _ = server.authorization_id
    assert server.evaluate(b"\0alice\0alice-secret") == b""
    assert server.complete and server.authorization_id == "alice" and server.credential_expires_ms is None

    for token in (b"\0alice\0wrong", b"\0mallory\0alice-secret"):
        with pytest.raises(SaslFailure, match="^Authentication failed: Invalid username or password$") as e:
            PlainSaslServer({"alice": "alice-secret"}).evaluate(token)
        assert not e.value.generic and e.value.user in ("alice", "mallory")
    with pytest.raises(SaslFailure, match="authorization id that is different from username"):
        PlainSaslServer({"alice": "alice-secret"}).evaluate(b"bob\0alice\0alice-secret")


# --- OAUTHBEARER -----------------------------------------------------------------------

NOW_MS = 1_700_000_000_000


def b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def jws(claims: dict[str, object], header: dict[str, object] | None = None, signature: str = "") -> str:
    return f"{b64(header or {'alg': 'none'})}.{b64(claims)}.{signature}"


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"sub": "alice", "iat": NOW_MS / 1000 - 10, "exp": NOW_MS / 1000 + 3600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def test_jws_valid_token() -> None:
    token = validate(jws(claims(scope="a b")), ValidatorOptions(), NOW_MS)
    assert token.principal_name == "alice"
    assert token.lifetime_ms == NOW_MS + 3_600_000
    assert token.scope == frozenset({"a b"})  # a string claim is one scope item, as in Kafka
    token = validate(jws(claims(scope=["x", " y ", ""])), ValidatorOptions(), NOW_MS)
    assert token.scope == frozenset({"x", "y"})


@pytest.mark.parametrize("token, message", [
    (jws(claims(exp=NOW_MS / 1000)), "on or after the Expiration Time"),
    (jws(claims(exp=None)), "No expiration time in JWT"),
    (jws(claims(exp="soon")), "The 'exp' claim was not of type Number: String"),
    (jws(claims(iat=NOW_MS / 1000 + 5)), "Issued At value"),
    (jws(claims(iat=NOW_MS / 1000 + 3601, exp=NOW_MS / 1000 + 3600)), "Issued At value"),
    (jws(claims(sub=None)), "No principal name in JWT claim: sub"),
    (jws(claims(sub="  ")), "No principal name in JWT claim: sub"),
    (jws(claims(sub=42)), "The 'sub' claim was not of type String: Number"),
    (jws(claims(scope=5)), "The 'scope' claim was not of type List: Number"),
    (jws(claims(), header={"alg": "HS256"}), "must have 'none' for an algorithm"),
    (jws(claims(), header={"typ": "JWT"}), "must have an Algorithm value"),
    (jws(claims(), signature="c2ln"), "must not contain a digital signature"),
    ("a..b", "contains '..'"),
    ("abc", "must have 3 dot-separated"),
    ("a.b.c.d", "must have 3 dot-separated"),
    ("e30.!!!.", "malformed Base64 URL encoded value"),
    (b64("x")[:-1] + "." + b64({}) + ".", "malformed JSON"),
    (base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + "." + b64({}) + ".", "malformed JSON"),
])
def test_jws_invalid_tokens(token: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=message) as e:
        validate(token, ValidatorOptions(), NOW_MS)
    assert e.value.scope is None


def test_jws_clock_skew_scope_and_claim_names() -> None:
    late = jws(claims(exp=NOW_MS / 1000 - 1))
    with pytest.raises(InvalidToken):
        validate(late, ValidatorOptions(), NOW_MS)
    assert validate(late, ValidatorOptions(clock_skew_ms=2000), NOW_MS).principal_name == "alice"
    early = jws(claims(iat=NOW_MS / 1000 + 1))
    assert validate(early, ValidatorOptions(clock_skew_ms=1000), NOW_MS)

    options = ValidatorOptions(required_scope=("read", "write"))
    assert validate(jws(claims(scope=["read", "write", "x"])), options, NOW_MS)
    with pytest.raises(InvalidToken, match=r"missing a required scope \(write\)") as e:
        validate(jws(claims(scope=["read"])), options, NOW_MS)
    assert e.value.scope == "[read, write]"

    custom = ValidatorOptions(principal_claim="user", scope_claim="roles", required_scope=("admin",))
    token = validate(jws(claims(sub=None, user="bob", roles=["admin"])), custom, NOW_MS)
    assert token.principal_name == "bob"


def test_validator_options_from_jaas() -> None:
    o = ValidatorOptions.from_jaas({"unsecuredValidatorPrincipalClaimName": " user ",
                                    "unsecuredValidatorRequiredScope": "a  b",
                                    "unsecuredValidatorAllowableClockSkewMs": "250"}, "k")
    assert o == ValidatorOptions("user", "scope", ("a", "b"), 250)
    for bad in ("x", "-1"):
        with pytest.raises(ConfigError, match="k: unsecuredValidatorAllowableClockSkewMs"):
            ValidatorOptions.from_jaas({"unsecuredValidatorAllowableClockSkewMs": bad}, "k")
    with pytest.raises(ConfigError, match="invalid scope value"):
        ValidatorOptions.from_jaas({"unsecuredValidatorRequiredScope": 'a "b'}, "k")


def client_first(token: str, authzid: str = "", extensions: str = "") -> bytes:
    a = f"a={authzid}" if authzid else ""
    return f"n,{a},\x01auth=Bearer {token}{extensions}\x01\x01".encode()


def test_client_first_message() -> None:
    assert parse_client_first(client_first("t.o.", extensions="\x01traceId=123")) == ("", "t.o.", {"traceId": "123"})
    assert parse_client_first(client_first("tok", authzid="a=3Db=2C")) == ("a=b,", "tok", {})
    for bad, message in [(b"n,,auth=Bearer tok", "Invalid OAUTHBEARER client first message"),
                         (b"n,,\x01x=y\x01\x01", "'auth' not specified"),
                         (b"n,,\x01auth=Bearer\x01\x01", "invalid 'auth' format"),
                         (b"n,,\x01auth=Basic tok\x01\x01", "Invalid scheme"),
                         (b"\xff", "Invalid OAUTHBEARER client first message")]:
        with pytest.raises(SaslFailure, match=message):
            parse_client_first(bad)


def test_oauthbearer_server_success_and_error_challenge() -> None:
    server = OAuthBearerSaslServer(ValidatorOptions(), lambda: NOW_MS)
    assert server.evaluate(client_first(jws(claims()))) == b""
    assert server.complete and server.authorization_id == "alice"
    assert server.credential_expires_ms == NOW_MS + 3_600_000

    server = OAuthBearerSaslServer(ValidatorOptions(), lambda: NOW_MS)
    assert server.evaluate(client_first(jws(claims(exp=NOW_MS / 1000 - 60)))) == b'{"status":"invalid_token"}'
    assert not server.complete
    with pytest.raises(SaslFailure) as e:
        server.evaluate(b"\x01")
    assert str(e.value) == '{"status":"invalid_token"}' and e.value.user == "alice"
    assert "Expiration Time" in (e.value.detail or "")

    server = OAuthBearerSaslServer(ValidatorOptions(required_scope=("kafka",)), lambda: NOW_MS)
    assert server.evaluate(client_first(jws(claims()))) == b'{"status":"insufficient_scope", "scope":"[kafka]"}'

    server = OAuthBearerSaslServer(ValidatorOptions(), lambda: NOW_MS)
    with pytest.raises(SaslFailure, match="different from the token's principal name"):
        server.evaluate(client_first(jws(claims()), authzid="bob"))
    # A lone %x01 with no error outstanding is a malformed first message.
    with pytest.raises(SaslFailure, match="Invalid OAUTHBEARER"):
        OAuthBearerSaslServer(ValidatorOptions(), lambda: NOW_MS).evaluate(b"\x01")


# --- mechanisms per listener -------------------------------------------------------------

def config(tmp_path: Path, **values: str) -> BrokerConfig:
    base = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path)}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return BrokerConfig.from_sources(overrides=base, environ={})


PLAIN_JAAS = f'{PLAIN_MODULE} required user_alice="alice-secret" user_bob="bob-secret";'
OAUTH_JAAS = f'{OAUTH_MODULE} required unsecuredLoginStringClaim_sub="admin";'


def test_mechanism_factories(tmp_path: Path) -> None:
    c = config(tmp_path, **{"sasl.enabled.mechanisms": "OAUTHBEARER,PLAIN",
                            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
                            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS})
    factories = mechanism_factories(c, "SASL_PLAINTEXT", {"SCRAM-SHA-256": lambda: PlainSaslServer({})})
    assert list(factories) == ["OAUTHBEARER", "PLAIN"]
    server = factories["PLAIN"]()
    assert server.evaluate(b"\0bob\0bob-secret") == b"" and server.authorization_id == "bob"
    # A SCRAM factory comes from the caller.
    c2 = config(tmp_path, **{"sasl.enabled.mechanisms": "SCRAM-SHA-256"})
    assert list(mechanism_factories(c2, "SASL_PLAINTEXT", {"SCRAM-SHA-256": lambda: PlainSaslServer({})})) == [
        "SCRAM-SHA-256"]


@pytest.mark.parametrize("values, message", [
    ({}, r"GSSAPI \(Kerberos\) is not supported"),  # Kafka's default mechanism
    ({"sasl.enabled.mechanisms": "PLAIN,DIGEST-MD5", "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS},
     "unknown SASL mechanism 'DIGEST-MD5'"),
    ({"sasl.enabled.mechanisms": "SCRAM-SHA-512"}, "SCRAM-SHA-512 is not available"),
    ({"sasl.enabled.mechanisms": "PLAIN"}, "has no JAAS config: set listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    ({"sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": f'{PLAIN_MODULE} required username="a" password="b";'},
     "no users for SASL/PLAIN"),
    ({"sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": 'com.example.Other required user_a="b";'},
     "needs login module org.apache.kafka.common.security.plain.PlainLoginModule"),
    ({"sasl.enabled.mechanisms": "OAUTHBEARER"}, "oauthbearer.sasl.jaas.config"),
    ({"sasl.enabled.mechanisms": "OAUTHBEARER",
      "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
          f'{OAUTH_MODULE} required unsecuredValidatorAllowableClockSkewMs="soon";'}, "not an integer"),
    ({"sasl.enabled.mechanisms": "PLAIN", "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
      "listener.name.sasl_plaintext.sasl.server.callback.handler.class": "com.example.Handler"},
     "callback handlers cannot be loaded"),
])
def test_mechanism_config_errors(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        mechanism_factories(config(tmp_path, **values), "SASL_PLAINTEXT")
    assert "secret" not in str(e.value)


def test_sasl_settings_per_listener_and_mechanism(tmp_path: Path) -> None:
    c = config(tmp_path, **{"sasl.enabled.mechanisms": "PLAIN",
                            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
                            "connections.max.reauth.ms": "5000",
                            "listener.name.sasl_plaintext.connections.max.reauth.ms": "3000",
                            "listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "2000",
                            "connection.failed.authentication.delay.ms": "7",
                            "listener.name.sasl_plaintext.sasl.server.max.receive.size": "1000"})
    s = sasl_settings(c, "SASL_PLAINTEXT")
    assert s.max_reauth_ms == {"PLAIN": 2000}
    assert (s.failure_delay_ms, s.max_receive_size) == (7, 1000)


# --- the authenticator ---------------------------------------------------------------------

class ExpiringPlain(PlainSaslServer):
    """PLAIN whose credential expires at a set time, like an OAUTHBEARER token."""

    def __init__(self, users: dict[str, str], expires_ms: int | None) -> None:
        super().__init__(users)
        self._expires = expires_ms

    @property
    def credential_expires_ms(self) -> int | None:
        return self._expires


USERS = {"alice": "pw-a", "bob": "pw-b"}


def authenticator(clock: ManualClock | None = None, reauth_ms: int = 0, expires_ms: int | None = None,
                  metrics: SaslMetrics | None = None) -> SaslAuthenticator:
    settings = SaslSettings(
        listener="SASL_PLAINTEXT",
        factories={"PLAIN": lambda: ExpiringPlain(USERS, expires_ms), "OTHER": lambda: PlainSaslServer(USERS)},
        max_reauth_ms={"PLAIN": reauth_ms}, failure_delay_ms=50, clock=clock or ManualClock(),
        metrics=metrics)
    return SaslAuthenticator(settings, "10.0.0.1", 5555)


def login(a: SaslAuthenticator, user: str = "alice", password: str = "pw-a", mechanism: str = "PLAIN"):
    assert a.refuse(SASL_HANDSHAKE) is None
    assert a.handshake(mechanism, 1).error_code == ErrorCode.NONE
    assert a.refuse(SASL_AUTHENTICATE) is None
    return a.authenticate(f"\0{user}\0{password}".encode(), 2)


def test_authenticator_happy_path() -> None:
    a = authenticator()
    assert a.state is SaslState.INITIAL_REQUEST and a.authenticating
    assert a.refuse(API_VERSIONS) is None
    assert a.state is SaslState.HANDSHAKE_REQUEST
    result = login(a)
    assert (result.error_code, result.error_message, result.auth_bytes, result.session_lifetime_ms) == (0, None, b"", 0)
    assert a.state is SaslState.COMPLETE and not a.authenticating and a.principal == "User:alice"
    assert a.refuse(PRODUCE) is None and a.refuse(API_VERSIONS) is None
    # Authenticated, no session lifetime: SaslHandshake and SaslAuthenticate answer ILLEGAL_SASL_STATE.
    assert a.refuse(SASL_HANDSHAKE) is None
    assert a.handshake("PLAIN", 1).error_code == ErrorCode.ILLEGAL_SASL_STATE
    again = a.authenticate(b"\0alice\0pw-a", 1)
    assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert again.error_message == "SaslAuthenticate request received after successful authentication"
    assert not a.failed


def test_requests_before_authentication_close_the_connection() -> None:
    a = authenticator()
    refusal = a.refuse(PRODUCE)
    assert refusal is not None and not refusal.answer and "wrong security protocol" in refusal.reason
    a = authenticator()
    a.refuse(API_VERSIONS)
    refusal = a.refuse(3)
    assert refusal is not None and not refusal.answer and "during SASL handshake" in refusal.reason
    a = authenticator()
    a.refuse(API_VERSIONS)
    refusal = a.refuse(API_VERSIONS)  # ApiVersions twice: Kafka's IllegalStateException
    assert refusal is not None and "ApiVersions" in refusal.reason
    # SaslAuthenticate before any handshake.
    a = authenticator()
    assert a.refuse(SASL_AUTHENTICATE) is not None
    assert a.refuse(API_VERSIONS) is not None  # failed: nothing more


def test_request_during_authentication_answers_illegal_state_then_closes(caplog: pytest.LogCaptureFixture) -> None:
    metrics = SaslMetrics()
    a = authenticator(metrics=metrics)
    a.refuse(SASL_HANDSHAKE)
    a.handshake("PLAIN", 1)
    with caplog.at_level(logging.INFO, logger="kbroker.security.sasl.authenticator"):
        refusal = a.refuse(SASL_HANDSHAKE)  # a second handshake
    assert refusal is not None and refusal.answer
    assert a.failed and a.state is SaslState.FAILED and metrics.failed_authentication == 1
    assert len(caplog.records) == 1 and "10.0.0.1:5555" in caplog.text


def test_unsupported_mechanism_lists_the_enabled_ones() -> None:
    a = authenticator()
    a.refuse(SASL_HANDSHAKE)
    result = a.handshake("SCRAM-SHA-256", 1)
    assert result.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert result.mechanisms == ["PLAIN", "OTHER"]
    assert a.failed


def test_failed_login_message_and_log(caplog: pytest.LogCaptureFixture) -> None:
    metrics = SaslMetrics()
    a = authenticator(metrics=metrics)
    with caplog.at_level(logging.INFO, logger="kbroker.security.sasl.authenticator"):
        result = login(a, "alice", "not-the-password")
    assert result.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert result.error_message == "Authentication failed: Invalid username or password"
    assert a.failed and a.principal is None and metrics.failed_authentication == 1
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "10.0.0.1:5555" in line and "'alice'" in line and "not-the-password" not in line
    # A malformed token gets Kafka's generic message; the detail is logged only.
    a = authenticator()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kbroker.security.sasl.authenticator"):
        a.refuse(SASL_HANDSHAKE)
        a.handshake("PLAIN", 1)
        result = a.authenticate(b"garbage", 1)
    assert result.error_message == ("Authentication failed during authentication due to invalid credentials with "
                                    "SASL mechanism PLAIN")
    assert "username not specified" in caplog.text


def test_v0_handshake_takes_raw_tokens() -> None:
    a = authenticator()
    a.refuse(SASL_HANDSHAKE)
    assert a.handshake("PLAIN", 0).error_code == 0
    assert a.raw_tokens
    assert a.raw_token(b"\0bob\0pw-b") == b""
    assert a.principal == "User:bob" and not a.raw_tokens and not a.authenticating
    a = authenticator()
    a.refuse(SASL_HANDSHAKE)
    a.handshake("PLAIN", 0)
    assert a.raw_token(b"\0bob\0wrong") is None and a.failed


def test_session_lifetime_and_expiry() -> None:
    clock = ManualClock()
    a = authenticator(clock, reauth_ms=10_000)
    assert login(a).session_lifetime_ms == 10_000
    clock.advance(9_000)
    assert a.refuse(PRODUCE) is None
    clock.advance(1_001)
    assert a.expired()
    assert a.refuse(API_VERSIONS) is None
    refusal = a.refuse(PRODUCE)
    assert refusal is not None and "expired" in refusal.reason
    # The credential's expiry bounds the lifetime too, whichever is sooner.
    clock = ManualClock()
    a = authenticator(clock, reauth_ms=10_000, expires_ms=clock.time_ms() + 4_000)
    assert login(a).session_lifetime_ms == 4_000
    clock = ManualClock()
    a = authenticator(clock, reauth_ms=0, expires_ms=clock.time_ms() + 4_000)
    assert login(a).session_lifetime_ms == 4_000
    a = authenticator(ManualClock(), reauth_ms=0, expires_ms=ManualClock().time_ms() - 5)
    assert login(a).session_lifetime_ms == 0


def test_reauthentication() -> None:
    clock = ManualClock()
    metrics = SaslMetrics()
    a = authenticator(clock, reauth_ms=5_000, metrics=metrics)
    login(a)
    clock.advance(4_000)
    result = login(a)  # the client re-authenticates before the session ends
    assert result.error_code == 0 and result.session_lifetime_ms == 5_000
    assert metrics.successful_authentication == 1 and metrics.successful_reauthentication == 1
    clock.advance(4_000)
    assert a.refuse(PRODUCE) is None  # the new session runs from the re-authentication
    # Not more than once a second: the handshake is then an ordinary (refused) request.
    clock.advance(500)
    assert login(a).error_code == 0
    assert a.refuse(SASL_HANDSHAKE) is None
    assert a.handshake("PLAIN", 1).error_code == ErrorCode.ILLEGAL_SASL_STATE


def test_reauthentication_keeps_the_principal_and_the_mechanism() -> None:
    clock = ManualClock()
    metrics = SaslMetrics()
    a = authenticator(clock, reauth_ms=5_000, metrics=metrics)
    login(a)
    clock.advance(2_000)
    result = login(a, "bob", "pw-b")
    assert result.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert result.error_message == "Cannot change principals during re-authentication from User.alice: User.bob"
    assert a.failed and metrics.failed_reauthentication == 1

    a = authenticator(clock, reauth_ms=5_000)
    login(a)
    clock.advance(2_000)
    assert a.refuse(SASL_HANDSHAKE) is None
    assert a.handshake("OTHER", 1).error_code == 0
    result = a.authenticate(b"\0alice\0pw-a", 1)
    assert result.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert result.error_message == ("SASL mechanism 'OTHER' requested by client is not supported for "
                                    "re-authentication of mechanism 'PLAIN'")


def test_request_during_reauthentication_fails_it() -> None:
    clock = ManualClock()
    a = authenticator(clock, reauth_ms=5_000)
    login(a)
    clock.advance(2_000)
    a.refuse(SASL_HANDSHAKE)
    a.handshake("PLAIN", 1)
    assert a.authenticating and a.principal == "User:alice"
    refusal = a.refuse(PRODUCE)
    assert refusal is not None and refusal.answer and a.failed


def test_enabled_mechanisms_per_listener(tmp_path: Path) -> None:
    c = BrokerConfig.from_sources(overrides={
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0,CLIENTS://127.0.0.1:0",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CLIENTS:SASL_PLAINTEXT",
        "log.dirs": str(tmp_path), "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.clients.sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.clients.oauthbearer.sasl.jaas.config": OAUTH_JAAS}, environ={})
    assert list(mechanism_factories(c, "SASL_PLAINTEXT")) == ["PLAIN"]
    assert list(mechanism_factories(c, "CLIENTS")) == ["OAUTHBEARER"]
    # The PLAIN users of one listener are not another's.
    with pytest.raises(ConfigError, match="listener.name.clients.plain.sasl.jaas.config"):
        mechanism_factories(BrokerConfig.from_sources(overrides={
            **{k: v for k, v in c.listener_keys().items()}, "listeners": "CLIENTS://127.0.0.1:0",
            "listener.security.protocol.map": "CLIENTS:SASL_PLAINTEXT", "log.dirs": str(tmp_path),
            "listener.name.clients.sasl.enabled.mechanisms": "PLAIN"}, environ={}), "CLIENTS")
