"""The security scenarios of the compatibility matrix (compat/security.py, the ``sec_*`` scenarios).

Without a broker: the broker settings they generate are valid kbroker configuration with the
listeners, protocols, JAAS entries and client-authentication modes intended; the scenario list,
the cells' environment, the clients' dispatch and the librdkafka security runs are consistent.

With the clients (slow): ``python -m compat --scenarios sec_...`` runs every security scenario with
every client against a kbroker with PLAINTEXT, SASL_PLAINTEXT, SSL (client certificate requested),
MTLS (required) and SASL_SSL listeners; every cell must pass, except where a client cannot do it
at all (the cell is n/a, with a reason this test knows). In CI (``CI=true``) a missing client is
a failure; elsewhere it skips the test with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from compat import security  # noqa: E402
from compat.clients import common  # noqa: E402
from compat.librdkafka import __main__ as rdk  # noqa: E402
from compat.report import parse_cells  # noqa: E402
from compat.scenarios import SCENARIOS  # noqa: E402
from kbroker.config import BrokerConfig  # noqa: E402

sys.path.remove(str(REPO))

SECURITY = [s for s in SCENARIOS if s.security]

#: (client, reason fragment) of the cells that may be n/a: the client cannot do this at all.
EXPECTED_NA = [
    ("kafka-streams", "Kafka Streams is a stream-processing library"),
    # Debian's kcat 1.7.1 links librdkafka 2.0.2, whose SCRAM client-final nonce Kafka 4.x refuses.
    ("kcat", "wrong SCRAM nonce"),
    ("kafka-go", "no OAUTHBEARER mechanism"),
    ("kcat", "takes no token of one's own"),
]


def _config(tmp_path: Path, **extra: str) -> BrokerConfig:
    overrides = {**security.security_config(tmp_path / "pki"), "log.dirs": str(tmp_path / "data"), **extra}
    return BrokerConfig.load(None, overrides=overrides, env={})


def test_security_config_is_valid_kbroker_config(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert [ls.name for ls in config.listeners] == list(security.LISTENERS)
    assert {ls.name: config.security_protocol(ls.name) for ls in config.listeners} == security.LISTENERS
    assert config.listener_get("SSL", "ssl.client.auth") == "requested"
    assert config.listener_get("MTLS", "ssl.client.auth") == "required"
    assert config.listener_get("SASL_SSL", "ssl.client.auth") == "none"
    assert config.listener_get("PLAINTEXT", "ssl.keystore.location") == str(tmp_path / "pki" / "server.p12")
    for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
        plain = config.listener_get(listener, "sasl.jaas.config", "PLAIN")
        assert f'user_{security.USER}="{security.PASSWORD}"' in str(plain)
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            assert "ScramLoginModule" in str(config.listener_get(listener, "sasl.jaas.config", mechanism))
        assert "OAuthBearerLoginModule" in str(config.listener_get(listener, "sasl.jaas.config", "OAUTHBEARER"))
    assert config.listener_get("SASL_PLAINTEXT", "sasl.enabled.mechanisms") == list(security.MECHANISMS)


def test_security_config_ports_and_extra_listeners(tmp_path: Path) -> None:
    conf = security.security_config(tmp_path, {"PLAINTEXT": 9092, "MTLS": 9095},
                                     extra_listeners={"CONTROLLER": ("PLAINTEXT", 9093)})
    assert "PLAINTEXT://127.0.0.1:9092" in conf["listeners"]
    assert "MTLS://127.0.0.1:9095" in conf["listeners"]
    assert "CONTROLLER://127.0.0.1:9093" in conf["listeners"]
    # The controller is no client listener: not advertised.
    assert "CONTROLLER" not in conf["advertised.listeners"]
    assert "CONTROLLER:PLAINTEXT" in conf["listener.security.protocol.map"]


def test_parse_endpoints() -> None:
    line = ("kbroker 1 listening on PLAINTEXT://127.0.0.1:4001, SASL_PLAINTEXT://127.0.0.1:4002, "
            "SSL://127.0.0.1:4003, SSL://127.0.0.1:4004 (listener MTLS), SASL_SSL://127.0.0.1:4005, data in /tmp/x")
    assert security.parse_endpoints(line) == {
        "PLAINTEXT": "127.0.0.1:4001", "SASL_PLAINTEXT": "127.0.0.1:4002", "SSL": "127.0.0.1:4003",
        "MTLS": "127.0.0.1:4004", "SASL_SSL": "127.0.0.1:4005"}
    assert security.parse_endpoints("no listeners here") == {}


def _cell_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    endpoints = {name: f"127.0.0.1:{4000 + i}" for i, name in enumerate(security.LISTENERS)}
    env = security.cell_env(endpoints, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_cell_env_drives_the_logins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = _cell_env(monkeypatch, tmp_path)
    assert env["COMPAT_SEC_USER"] == security.USER and env["COMPAT_SEC_CA"] == str(tmp_path / "ca.pem")
    lg = common.login("SASL_SSL", "SCRAM-SHA-512")
    assert (lg.bootstrap, lg.protocol, lg.user, lg.password, lg.ca, lg.cert) == (
        env["COMPAT_SEC_SASL_SSL"], "SASL_SSL", security.USER, security.PASSWORD, str(tmp_path / "ca.pem"), None)
    mtls = common.login("MTLS")
    assert (mtls.protocol, mtls.cert, mtls.key, mtls.sasl, mtls.tls) == (
        "SSL", str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem"), False, True)
    assert common.login("MTLS", cert="untrusted").cert == str(tmp_path / "untrusted.pem")
    assert common.login("MTLS", cert=None).cert is None
    bad, good = common.sec_refusals("sec_wrong_password")
    assert {lg.password for _, lg in bad} == {security.WRONG_PASSWORD} and good.password == security.PASSWORD
    bad, good = common.sec_refusals("sec_unknown_user")
    assert {lg.user for _, lg in bad} == {security.UNKNOWN_USER} and good.user == security.USER
    bad, good = common.sec_refusals("sec_oauthbearer_expired")
    assert [lg.token_lifetime for _, lg in bad] == [-600] and good.token_lifetime > 0
    assert good.mechanism == "OAUTHBEARER" and good.user == security.USER
    bad, good = common.sec_refusals("sec_untrusted_cert")
    assert [lg.cert for _, lg in bad] == [str(tmp_path / "untrusted.pem"), None] and good.cert


def test_login_without_the_environment_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in security.cell_env(dict.fromkeys(security.LISTENERS, "x"), Path(".")):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(common.CheckFailed, match=r"COMPAT_SEC_\w+ not set: security scenarios run against"):
        common.login("SASL_PLAINTEXT", "PLAIN")


def test_refusal_check() -> None:
    assert "boom" in common.sec_check_refused("x", ValueError("boom"), (ValueError,))
    with pytest.raises(common.CheckFailed, match="accepted"):
        common.sec_check_refused("x", None, (ValueError,))
    with pytest.raises(common.CheckFailed, match="not with an authentication error"):
        common.sec_check_refused("x", KeyError("other"), (ValueError,), words=("auth",))


def test_security_scenarios_cover_every_case() -> None:
    ids = {s.id for s in SECURITY}
    refusals = {"sec_wrong_password", "sec_unknown_user", "sec_oauthbearer_expired", "sec_untrusted_cert"}
    assert ids == set(common.SEC_ROUNDTRIPS) | refusals
    assert all(s.id.startswith("sec_") and s.fast for s in SECURITY)
    assert not [s for s in SCENARIOS if s.id.startswith("sec_") and not s.security]
    # Every client implements them: the Python ones through _security, the others by name.
    for module in ("kafka_python", "confluent", "aiokafka_client", "kcat"):
        text = (REPO / "compat" / "clients" / f"{module}.py").read_text()
        assert "def _security(" in text, module
    kafkajs = (REPO / "compat" / "clients" / "kafkajs.js").read_text()
    java = (REPO / "compat" / "clients" / "java" / "src" / "CompatCell.java").read_text()
    go = (REPO / "compat" / "clients" / "go" / "common" / "security.go").read_text()
    for sid in ids:
        assert f"s_{sid}()" in java, sid
        assert sid in go or sid in common.SEC_ROUNDTRIPS, sid
    assert "SEC_ROUNDTRIPS" in kafkajs and "sec_untrusted_cert" in kafkajs
    for listener, mechanism in common.SEC_ROUNDTRIPS.values():
        assert listener in security.LISTENERS and (mechanism is None or mechanism in security.MECHANISMS)


def test_secure_reference_needs_the_local_jars(tmp_path: Path) -> None:
    from compat.broker import BrokerError
    from compat.runner import _secure_reference
    with pytest.raises(BrokerError, match="local reference Kafka"):
        _secure_reference("docker", tmp_path)
    kafka = _secure_reference("local", tmp_path)
    try:
        assert isinstance(kafka, security.SecureKafka) and (kafka.pki_dir / "server.p12").exists()
    finally:
        kafka.stop()  # never started: removes its work dir and certificates
    assert not kafka.workdir.exists()


def test_client_keystores(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12

    from tools.pki import PASSWORD
    security.make_certificates(tmp_path)
    files = security.client_keystores(tmp_path)
    key, cert, cas = pkcs12.load_key_and_certificates(files["client.p12"].read_bytes(), PASSWORD.encode())
    assert key is not None and cert is not None and len(cas) == 1
    assert x509.load_der_x509_certificate(files["client.der"].read_bytes()) == cert
    assert x509.load_der_x509_certificate(files["ca.der"].read_bytes()) == cas[0]


def test_librdkafka_security_runs(tmp_path: Path) -> None:
    assert rdk.split_entry("0135_sasl_credentials@SASL_SSL/SCRAM-SHA-512") == (
        "0135_sasl_credentials", "SASL_SSL/SCRAM-SHA-512")
    assert rdk.split_entry("0012_produce_consume") == ("0012_produce_consume", "")
    for entry in rdk.SECURITY_RUNS:
        assert rdk.check_variant(rdk.split_entry(entry)[1]) is None, entry
    assert rdk.check_variant("PLAINTEXT") and rdk.check_variant("SASL_SSL") and rdk.check_variant("MTLS/PLAIN")
    assert rdk.check_variant("SASL_PLAINTEXT/GSSAPI")
    endpoints = {name: f"127.0.0.1:{4000 + i}" for i, name in enumerate(security.LISTENERS)}
    security.make_certificates(tmp_path)
    conf, env = rdk.security_test_conf("SASL_SSL/SCRAM-SHA-256", endpoints, tmp_path)
    assert "metadata.broker.list=127.0.0.1:4004\n" in conf and "security.protocol=SASL_SSL\n" in conf
    assert "sasl.mechanisms=SCRAM-SHA-256\n" in conf and f"sasl.password={security.PASSWORD}\n" in conf
    assert f"ssl.ca.location={tmp_path / 'ca.pem'}\n" in conf and env == {}
    conf, env = rdk.security_test_conf("MTLS", endpoints, tmp_path)
    assert "security.protocol=SSL\n" in conf and "ssl.key.location=" in conf and "sasl." not in conf
    assert env["SSL_client_auth"] == "required" and Path(env["SSL_pkcs"]).exists()
    assert rdk.security_test_conf("SSL", endpoints, tmp_path)[1]["SSL_client_auth"] == "requested"
    test_c = rdk.DEFAULT_BUILD / "tests" / "test.c"
    if test_c.exists():  # the names exist in the librdkafka this repository builds
        names = {t.name for t in rdk.parse_tests(test_c)}
        assert {rdk.split_entry(e)[0] for e in rdk.SECURITY_RUNS} <= names


def test_every_client_passes_every_security_cell_in_the_baseline() -> None:
    """Every security cell of compat/REPORT.md passes on kbroker (or is a listed n/a). CI runs those
    cells in the fast matrix (test_compat_matrix), which fails on any cell that falls from this
    baseline, and against Kafka in the reference matrix."""
    cells, _, _ = parse_cells(REPO / "compat" / "REPORT.md")
    security = {s.id for s in SECURITY}
    seen = {scenario for (_, scenario) in cells if scenario in security}
    assert seen == security, f"security scenarios missing from the baseline: {sorted(security - seen)}"
    bad = []
    for (client, scenario), cell in sorted(cells.items()):
        if scenario not in security or cell.status == "pass":
            continue
        if cell.status == "na" and any(c == client and why in cell.detail for c, why in EXPECTED_NA):
            continue
        bad.append(f"{client} × {scenario}: {cell.status}: {cell.detail}")
    assert not bad, "security cells that do not pass in compat/REPORT.md:\n" + "\n".join(bad)
    assert all(s.fast for s in SECURITY), "every security scenario runs in CI's fast matrix"


def test_unsecured_jws() -> None:
    import base64
    import json
    import time

    token = common.unsecured_jws("alice", -600)
    header, claims, signature = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    assert decode(header) == {"alg": "none"} and signature == ""
    doc = decode(claims)
    assert doc["sub"] == "alice" and doc["exp"] < time.time() - 500 and doc["iat"] < doc["exp"]
