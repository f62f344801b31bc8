"""Hostile clients against a SASL_PLAINTEXT listener over real sockets: malformed PLAIN and
OAUTHBEARER tokens must fail (or succeed) cleanly, never leak a secret into the log, and
unauthenticated connections must not be able to stop the broker serving others."""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sasl_clients import call, closed, connect, metadata, raw_login, sasl_overrides

from kbroker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("hostile") / "data", sasl_overrides()) as b:
        yield b


def test_plain_token_without_authzid_does_not_log_its_password(
        broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # "user NUL password" (no leading NUL) is two tokens, refused as Kafka 4.1 refuses them; with
    # a trailing NUL it reads as authzid "alice", user name "alice-secret" and no password:
    # refused either way, without logging that "user name".
    for token, message in ((b"alice\0alice-secret", "Invalid SASL/PLAIN response: expected 3 tokens, got 2"),
                           (b"alice\0alice-secret\0", "Authentication failed: password not specified")):
        s = connect(broker.port)
        call(s, 17, 1, {"mechanism": "PLAIN"})
        resp = call(s, 36, 2, {"auth_bytes": token}, 2)
        assert resp["error_code"] == 58
        assert resp["error_message"] == message
        assert closed(s)
    assert "password not specified" in caplog.text
    assert "alice-secret" not in caplog.text
    assert metadata(raw_login(broker.port))["brokers"]


def jws(claims: str) -> bytes:
    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    header = b64('{"alg":"none"}')
    return f"n,,\x01auth=Bearer {header}.{b64(claims)}.\x01\x01".encode()


@pytest.mark.parametrize("claims", ['{"sub":"x","exp":NaN}', '{"sub":"x","exp":Infinity}',
                                    '{"sub":"x","exp":-Infinity}', '{"sub":"x","exp":1e10,"iat":NaN}'])
def test_oauthbearer_non_json_numbers_are_invalid_tokens(broker: BrokerThread, caplog: pytest.LogCaptureFixture,
                                                         claims: str) -> None:
    caplog.set_level(logging.INFO)
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "OAUTHBEARER"})
    resp = call(s, 36, 2, {"auth_bytes": jws(claims)}, 2)
    assert (resp["error_code"], resp["auth_bytes"]) == (0, b'{"status":"invalid_token"}')
    resp = call(s, 36, 2, {"auth_bytes": b"\x01"}, 3)
    assert resp["error_code"] == 58
    assert closed(s)
    assert "Traceback" not in caplog.text and "UNKNOWN_SERVER_ERROR" not in caplog.text


@pytest.mark.parametrize("exp", ["1e17", "1e400", "1" + "0" * 400])
def test_oauthbearer_far_future_expiry_gives_a_bounded_lifetime(broker: BrokerThread,
                                                                caplog: pytest.LogCaptureFixture, exp: str) -> None:
    # Kafka's Math.round saturates: such a token lives "forever" (Long.MAX_VALUE ms), and the
    # answer must say so rather than fail to encode after the session was authenticated.
    caplog.set_level(logging.INFO)
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "OAUTHBEARER"})
    resp = call(s, 36, 2, {"auth_bytes": jws(f'{{"sub":"far","exp":{exp}}}')}, 2)
    assert resp["error_code"] == 0, resp
    assert 0 < resp["session_lifetime_ms"] <= 2**63 - 1
    assert metadata(s)["brokers"]
    assert "Traceback" not in caplog.text and "UNKNOWN_SERVER_ERROR" not in caplog.text


def test_stalled_unauthenticated_frames_do_not_spend_the_request_memory_budget(tmp_path: Path) -> None:
    limit = 2_000_000
    with BrokerThread(tmp_path / "data", sasl_overrides(**{"queued.max.request.bytes": str(limit)})) as b:
        good = raw_login(b.port)
        stalled = []
        # Unauthenticated connections announce frames under sasl.server.max.receive.size whose
        # sizes add up to the budget exactly, and never send the rest.
        for _ in range(limit // 500_000 + 2):
            s = connect(b.port)
            s.sendall(struct.pack(">i", 500_000 - 4) + b"\0\x11\0\x01")
            stalled.append(s)
        time.sleep(0.5)
        assert not b.broker.request_memory.exhausted
        good.settimeout(3)
        assert metadata(good)["brokers"]  # an authenticated client is still served
        fresh = raw_login(b.port)  # and a new one can log in
        assert metadata(fresh)["brokers"]
        for s in stalled:
            s.close()


def test_jaas_errors_do_not_quote_a_password_split_by_a_semicolon() -> None:
    from kbroker.config import ConfigError
    from kbroker.security.jaas import parse_jaas

    # An unquoted password holding ';' ends the entry early; its rest reads as a second module.
    with pytest.raises(ConfigError) as e:
        parse_jaas('org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=Sup3r;SecretPW;')
    assert "SecretPW" not in str(e.value) and "entry 2" in str(e.value)
    with pytest.raises(ConfigError, match="invalid login module control flag for org.example.Module"):
        parse_jaas("org.example.Module requird a=b;")


def test_a_failed_login_writes_a_bounded_log_line_whatever_the_user_name(
        broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    # Unauthenticated clients choose the user name (up to sasl.server.max.receive.size): each
    # failed login must not write that much to the log.
    caplog.set_level(logging.INFO, logger="kbroker.security.sasl.authenticator")
    s = connect(broker.port)
    call(s, 17, 1, {"mechanism": "PLAIN"})
    assert call(s, 36, 2, {"auth_bytes": b"\0" + b"u" * 400_000 + b"\0pw"}, 2)["error_code"] == 58
    assert closed(s)
    s = connect(broker.port)
    assert call(s, 17, 1, {"mechanism": "M" * 30_000})["error_code"] == 33
    assert closed(s)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Failed authentication")]
    assert len(lines) == 2
    assert all(len(line) < 2000 for line in lines), [len(line) for line in lines]
    assert "(400000 characters)" in lines[0]
