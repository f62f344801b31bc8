"""The server SSLContext built from Kafka's ssl.* keys: each store type, client authentication,
protocols and cipher suites, proved by real handshakes in memory; errors name the key at fault."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from kbroker.config import BrokerConfig, ConfigError
from kbroker.security.tls import _cipher_names, listener_tls, server_context
from tools.pki import CLIENT_DN, PASSWORD, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _config(settings: Mapping[str, str], listeners: str = "SSL://127.0.0.1:0") -> BrokerConfig:
    return BrokerConfig.from_sources(overrides={"listeners": listeners, **settings}, environ={})


def _pem_store(pki: Pki, **more: str) -> dict[str, str]:
    return {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server), **more}


def _context(settings: Mapping[str, str], listener: str = "SSL", listeners: str = "SSL://127.0.0.1:0"
             ) -> ssl.SSLContext:
    return server_context(_config(settings, listeners), listener)


def _client(pki: Pki, cert: str | None = None, key: str | None = None,
            maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    client = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        client.load_cert_chain(str(pki.file(cert)), str(pki.file(key or "")))
    if maximum is not None:
        client.maximum_version = maximum
    if ciphers is not None:
        client.set_ciphers(ciphers)
    return client


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A whole TLS handshake between the two contexts through memory; raises ssl.SSLError.
    Returns the (server, client) ends after exchanging one message each way."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {"s": False, "c": False}
    for _ in range(20):
        for name, end in (("c", cli), ("s", srv)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done["s"] and done["c"]:
            break
    # TLS 1.3 checks the client's certificate after the client thinks it is done: one round trip more.
    cli.write(b"ping")
    s_in.write(c_out.read())
    assert srv.read(4) == b"ping"
    srv.write(b"pong")
    c_in.write(s_out.read())
    assert cli.read(4) == b"pong"
    return srv, cli


def _refused(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(server, client)


def _error(settings: Mapping[str, str], key: str, *words: str, listeners: str = "SSL://127.0.0.1:0",
           listener: str = "SSL") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        listener_tls(_config(settings, listeners), listener)
    assert info.value.key == key, info.value
    assert str(info.value).startswith(key), info.value
    for word in words:
        assert word in str(info.value), info.value
    return info.value


# --- key stores ------------------------------------------------------------------------------

def test_pem_file_with_chain_and_key(pki: Pki) -> None:
    context = _context(_pem_store(pki))
    assert context.options & ssl.OP_NO_RENEGOTIATION  # as Kafka, which refuses renegotiation
    srv, cli = _handshake(context, _client(pki))
    assert cli.getpeercert()["subject"] == ((("commonName", "localhost"),),)
    assert srv.version() == "TLSv1.3"


@pytest.mark.parametrize("key_format", [serialization.PrivateFormat.PKCS8,
                                        serialization.PrivateFormat.TraditionalOpenSSL])
def test_pem_file_with_encrypted_key(pki: Pki, tmp_path: Path, key_format: serialization.PrivateFormat) -> None:
    key = serialization.load_pem_private_key(pki.file("server-key.pem").read_bytes(), PASSWORD.encode())
    encrypted = key.private_bytes(serialization.Encoding.PEM, key_format,
                                  serialization.BestAvailableEncryption(PASSWORD.encode()))
    store = tmp_path / "server.pem"
    store.write_bytes(encrypted + pki.file("server-chain.pem").read_bytes())
    _handshake(_context({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(store),
                         "ssl.key.password": PASSWORD}), _client(pki))
    _error({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(store)}, "ssl.key.password", "encrypted")
    _error({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(store), "ssl.key.password": "nope"},
           "ssl.key.password", "wrong password")


def test_inline_pem_chain_and_encrypted_key(pki: Pki) -> None:
    inline = {"ssl.keystore.type": "PEM",
              "ssl.keystore.certificate.chain": pki.file("server-chain.pem").read_text(),
              "ssl.keystore.key": pki.file("server-key.pem").read_text()}
    _handshake(_context({**inline, "ssl.key.password": PASSWORD}), _client(pki))
    _error({**inline, "ssl.key.password": "wrong"}, "ssl.key.password", "wrong password")
    _error(inline, "ssl.key.password", "encrypted")
    _error({**inline, "ssl.key.password": PASSWORD, "ssl.keystore.type": "PKCS12"}, "ssl.keystore.type", "PEM")
    _error({**inline, "ssl.key.password": PASSWORD, "ssl.keystore.password": "x"}, "ssl.keystore.password")
    _error({**inline, "ssl.key.password": PASSWORD, "ssl.keystore.location": str(pki.server)},
           "ssl.keystore.location", "one of them")
    _error({"ssl.keystore.type": "PEM", "ssl.keystore.key": inline["ssl.keystore.key"]}, "ssl.keystore.key",
           "ssl.keystore.certificate.chain")
    _error({"ssl.keystore.type": "PEM", "ssl.keystore.certificate.chain": inline["ssl.keystore.certificate.chain"]},
           "ssl.keystore.certificate.chain", "ssl.keystore.key")


def test_pkcs12_key_store(pki: Pki) -> None:
    p12 = {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(pki.file("server.p12"))}
    srv, _ = _handshake(_context({**p12, "ssl.keystore.password": PASSWORD}), _client(pki))
    assert srv.version() == "TLSv1.3"
    _error({**p12, "ssl.keystore.password": "wrong"}, "ssl.keystore.password", "wrong password")
    _error(p12, "ssl.keystore.password", "password is not")


def test_missing_key_store_file_names_key_and_path(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    _error(_pem_store(pki, **{"ssl.keystore.location": str(missing)}), "ssl.keystore.location", str(missing),
           "No such file")
    _error({"ssl.keystore.type": "PEM"}, "ssl.keystore.location", "needs the server's certificate")


def test_key_that_does_not_match_the_certificate(pki: Pki) -> None:
    _error({"ssl.keystore.type": "PEM", "ssl.keystore.certificate.chain": pki.file("server-chain.pem").read_text(),
            "ssl.keystore.key": pki.client_key.read_text()}, "ssl.keystore.key", "does not match")


def test_a_file_that_is_no_key_store(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a store")
    _error(_pem_store(pki, **{"ssl.keystore.location": str(junk)}), "ssl.keystore.location", "no PEM certificate")
    _error({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(junk), "ssl.keystore.password": "x"},
           "ssl.keystore.password", "not a PKCS12 file")


def test_jks_is_refused_with_a_way_out(pki: Pki, tmp_path: Path) -> None:
    # JKS is Kafka's default type: a location without a type is a JKS store.
    error = _error({"ssl.keystore.location": str(pki.file("server.p12")), "ssl.keystore.password": PASSWORD},
                   "ssl.keystore.type", "JKS", "keytool -importkeystore", "PKCS12")
    assert PASSWORD not in str(error)
    jks = tmp_path / "store.jks"
    jks.write_bytes(b"\xfe\xed\xfe\xed" + b"\x00" * 60)  # a JKS file named as PKCS12
    _error({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(jks), "ssl.keystore.password": "x"},
           "ssl.keystore.type", "JKS")
    _error(_pem_store(pki, **{"ssl.truststore.location": str(pki.ca)}), "ssl.truststore.type", "JKS")


def test_errors_name_the_listener_override(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.p12"
    _error({"listener.name.client.ssl.keystore.type": "PKCS12",
            "listener.name.client.ssl.keystore.location": str(missing),
            "listener.name.client.ssl.keystore.password": "x", "listener.security.protocol.map": "CLIENT:SSL"},
           "listener.name.client.ssl.keystore.location", str(missing),
           listeners="CLIENT://127.0.0.1:0", listener="CLIENT")


def test_listener_override_wins(pki: Pki) -> None:
    # The broker-wide store is broken; the listener's own is used.
    settings = {"ssl.keystore.type": "PEM", "ssl.keystore.location": "/nonexistent.pem",
                "listener.name.ssl.ssl.keystore.location": str(pki.server)}
    _handshake(_context(settings), _client(pki))


# --- trust stores and client authentication --------------------------------------------------

def _trusting(pki: Pki, auth: str, **trust: str) -> ssl.SSLContext:
    return _context(_pem_store(pki, **{"ssl.client.auth": auth, **trust}))


@pytest.mark.parametrize("store", ["pem", "pkcs12", "inline"])
def test_trust_stores_and_required_client_auth(pki: Pki, store: str) -> None:
    trust = {
        "pem": {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca)},
        "pkcs12": {"ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(pki.file("truststore.p12")),
                   "ssl.truststore.password": PASSWORD},
        "inline": {"ssl.truststore.type": "PEM", "ssl.truststore.certificates": pki.ca.read_text()},
    }[store]
    server = _trusting(pki, "required", **trust)
    srv, _ = _handshake(server, _client(pki, "client.pem", "client-key.pem"))
    der = srv.getpeercert(binary_form=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == CLIENT_DN
    _refused(server, _client(pki))  # no certificate
    _refused(server, _client(pki, "untrusted.pem", "untrusted-key.pem"))


def test_requested_client_auth(pki: Pki) -> None:
    server = _trusting(pki, "requested", **{"ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca)})
    srv, _ = _handshake(server, _client(pki))
    assert srv.getpeercert(binary_form=True) is None
    srv, _ = _handshake(server, _client(pki, "client.pem", "client-key.pem"))
    assert srv.getpeercert(binary_form=True) is not None
    _refused(server, _client(pki, "untrusted.pem", "untrusted-key.pem"))


def test_no_client_auth_asks_for_no_certificate(pki: Pki) -> None:
    srv, _ = _handshake(_trusting(pki, "none"), _client(pki, "client.pem", "client-key.pem"))
    assert srv.getpeercert(binary_form=True) is None


def test_sasl_ssl_asks_for_certificates_only_when_its_listener_says_so(pki: Pki) -> None:
    trust = {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca)}
    broker_wide = _context(_pem_store(pki, **{"ssl.client.auth": "required", **trust}), "SASL_SSL",
                           "SASL_SSL://127.0.0.1:0")
    assert broker_wide.verify_mode == ssl.CERT_NONE
    _handshake(broker_wide, _client(pki))
    own = _context(_pem_store(pki, **{"listener.name.sasl_ssl.ssl.client.auth": "required", **trust}), "SASL_SSL",
                   "SASL_SSL://127.0.0.1:0")
    assert own.verify_mode == ssl.CERT_REQUIRED
    _refused(own, _client(pki))


def test_trust_store_errors(pki: Pki, tmp_path: Path) -> None:
    _error(_pem_store(pki, **{"ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(
        pki.file("truststore.p12")), "ssl.truststore.password": "wrong"}), "ssl.truststore.password", "wrong")
    _error(_pem_store(pki, **{"ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca),
                              "ssl.truststore.password": "x"}), "ssl.truststore.password", "PEM")
    _error(_pem_store(pki, **{"ssl.truststore.type": "PEM", "ssl.truststore.location": str(tmp_path / "x")}),
           "ssl.truststore.location", str(tmp_path / "x"))
    _error(_pem_store(pki, **{"ssl.truststore.type": "PKCS12", "ssl.truststore.certificates": pki.ca.read_text()}),
           "ssl.truststore.type", "PEM")
    _error(_pem_store(pki, **{"ssl.truststore.type": "PEM", "ssl.truststore.certificates": "garbage"}),
           "ssl.truststore.certificates", "no PEM certificate")
    _error(_pem_store(pki, **{"ssl.truststore.password": "x"}), "ssl.truststore.password", "location is not")


def test_pkcs12_trust_store_without_password(pki: Pki, tmp_path: Path) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    store = tmp_path / "open.p12"
    store.write_bytes(pkcs12.serialize_key_and_certificates(None, None, None, [ca],
                                                            serialization.NoEncryption()))
    server = _trusting(pki, "required", **{"ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(store)})
    _handshake(server, _client(pki, "client.pem", "client-key.pem"))
    _refused(server, _client(pki, "untrusted.pem", "untrusted-key.pem"))


# --- protocols and cipher suites -------------------------------------------------------------

def test_enabled_protocols(pki: Pki) -> None:
    only12 = _context(_pem_store(pki, **{"ssl.enabled.protocols": "TLSv1.2"}))
    srv, _ = _handshake(only12, _client(pki))
    assert srv.version() == "TLSv1.2"
    only13 = _context(_pem_store(pki, **{"ssl.enabled.protocols": "TLSv1.3"}))
    assert _handshake(only13, _client(pki))[0].version() == "TLSv1.3"
    _refused(only13, _client(pki, maximum=ssl.TLSVersion.TLSv1_2))


def test_cipher_suites_by_iana_and_openssl_names(pki: Pki) -> None:
    for suite in ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"):
        server = _context(_pem_store(pki, **{"ssl.cipher.suites": suite}))
        srv, _ = _handshake(server, _client(pki))
        # No TLS 1.3 suite named: TLS 1.3 is off, as in Java.
        assert srv.version() == "TLSv1.2"
        assert srv.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        _refused(server, _client(pki, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", maximum=ssl.TLSVersion.TLSv1_2))


def test_tls13_cipher_suites_only_turn_tls12_off(pki: Pki) -> None:
    server = _context(_pem_store(pki, **{"ssl.cipher.suites": "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,"
                                                              "TLS_CHACHA20_POLY1305_SHA256"}))
    assert _handshake(server, _client(pki))[0].version() == "TLSv1.3"
    _refused(server, _client(pki, maximum=ssl.TLSVersion.TLSv1_2))


def test_cipher_suite_errors(pki: Pki) -> None:
    _error(_pem_store(pki, **{"ssl.cipher.suites": "TLS_NOT_A_SUITE"}), "ssl.cipher.suites", "TLS_NOT_A_SUITE")
    _error(_pem_store(pki, **{"ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                              "ssl.enabled.protocols": "TLSv1.3"}), "ssl.cipher.suites", "TLSv1.3")


def test_iana_names_agree_with_openssl() -> None:
    try:
        out = subprocess.run(["openssl", "ciphers", "-stdname", "ALL:@SECLEVEL=0"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no openssl command")
    by_iana, _ = _cipher_names()
    expected = {line.split()[0]: line.split()[2] for line in out.splitlines() if " - " in line}
    checked = 0
    for iana, name in expected.items():
        if name.startswith("TLS_") or "SRP" in iana:  # TLS 1.3 names are the same; SRP is not mapped
            continue
        assert by_iana.get(iana) == name, iana
        checked += 1
    assert checked > 50


# --- principal mapping rules -----------------------------------------------------------------

def test_bad_principal_mapping_rules(pki: Pki) -> None:
    _error(_pem_store(pki, **{"ssl.principal.mapping.rules": "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U"}),
           "ssl.principal.mapping.rules", "Invalid rule")
    _error(_pem_store(pki, **{"ssl.principal.mapping.rules": "RULE:^CN=((.*$/$1/"}),
           "ssl.principal.mapping.rules", "regular expression")


def test_listener_principal_from_certificate(pki: Pki) -> None:
    tls = listener_tls(_config(_pem_store(pki, **{"ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/U"})),
                       "SSL")
    der = x509.load_pem_x509_certificate(pki.client.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert tls.principal(der) == "User:ALICE"
    assert tls.principal(None) == "User:ANONYMOUS"
