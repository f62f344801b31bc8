"""The security scenarios' broker: several listeners with TLS and SASL, for kbroker and Kafka alike.

One broker serves every security cell of a run, with five listeners:

============== ============== =====================================================
listener       protocol       what it checks
============== ============== =====================================================
PLAINTEXT      PLAINTEXT      administration (topics, SCRAM users) and the cells' set-up
SASL_PLAINTEXT SASL_PLAINTEXT PLAIN (JAAS ``user_<name>``), SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
SSL            SSL            ``ssl.client.auth=requested``: a client without a certificate is served
MTLS           SSL            ``ssl.client.auth=required``: only a certificate the CA signed gets in
SASL_SSL       SASL_SSL       the four mechanisms over TLS
============== ============== =====================================================

Certificates come from :func:`tools.pki.make_pki` (a throw-away CA; the server certificate names
127.0.0.1 and localhost). The broker settings are Kafka's own keys, identical for kbroker and
Kafka 4.1.1 (:func:`security_config`): the key store is the PKCS12 ``server.p12``, the trust store
the PEM ``ca.pem``, the JAAS configuration per listener and mechanism
(``listener.name.<l>.<mechanism>.sasl.jaas.config``). The SCRAM credentials are created with
AlterUserScramCredentials over the PLAINTEXT listener once the broker listens
(:func:`create_scram_users`), before any cell runs.

A cell learns where and how to connect from environment variables (:func:`cell_env`): its
command line stays ``SCENARIO BOOTSTRAP`` with BOOTSTRAP the PLAINTEXT listener, and
``COMPAT_SEC_<LISTENER>`` name the other listeners' ``host:port``; ``COMPAT_SEC_CA``,
``COMPAT_SEC_CLIENT_CERT``/``_KEY`` and ``COMPAT_SEC_UNTRUSTED_CERT``/``_KEY`` the PEM files;
``COMPAT_SEC_USER``, ``COMPAT_SEC_PASSWORD``, ``COMPAT_SEC_WRONG_PASSWORD`` and
``COMPAT_SEC_UNKNOWN_USER`` the credentials. Every client (Python, Node, Java, Go) reads the same.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat.broker import Broker, BrokerError
from compat.reference import LocalKafka

#: Listener name → security protocol, in the order the listeners are configured.
LISTENERS: dict[str, str] = {
    "PLAINTEXT": "PLAINTEXT",
    "SASL_PLAINTEXT": "SASL_PLAINTEXT",
    "SSL": "SSL",
    "MTLS": "SSL",
    "SASL_SSL": "SASL_SSL",
}
#: The SASL mechanisms both SASL listeners offer. OAUTHBEARER validates unsecured JWS tokens
#: (Kafka's default server callback handler, kbroker's only one): its principal is the ``sub`` claim.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
#: The one user every client logs in as (PLAIN via JAAS, SCRAM via AlterUserScramCredentials).
USER = "alice"
PASSWORD = "alice-secret"
#: A password that is not the user's, and a user the broker does not know.
WRONG_PASSWORD = "not-alice-secret"
UNKNOWN_USER = "mallory"
#: SCRAM iterations per mechanism (Kafka accepts 4096..16384).
SCRAM_ITERATIONS = {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 8192}
#: Environment variable prefix of the cells' security settings.
ENV_PREFIX = "COMPAT_SEC_"

_JAAS_PLAIN = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}="{password}";'
_JAAS_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
# The broker's own (login) token, which Kafka's unsecured login handler needs; clients' tokens
# are checked by the unsecured validator.
_JAAS_OAUTHBEARER = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
                     'unsecuredLoginStringClaim_sub="admin";')


def jaas_config(mechanism: str) -> str:
    """The broker's JAAS entry for one mechanism: PLAIN lists its users, SCRAM has none (they are
    stored credentials), OAUTHBEARER validates unsecured tokens."""
    if mechanism == "PLAIN":
        return _JAAS_PLAIN.format(user=USER, password=PASSWORD)
    if mechanism == "OAUTHBEARER":
        return _JAAS_OAUTHBEARER
    return _JAAS_SCRAM


def security_config(pki_dir: Path, ports: Mapping[str, int] | None = None, host: str = "127.0.0.1",
                    extra_listeners: Mapping[str, tuple[str, int]] | None = None) -> dict[str, str]:
    """Broker settings (Kafka's keys) for the five listeners of :data:`LISTENERS`.

    ``ports`` gives each listener's port (0, the default, lets the OS choose: kbroker);
    ``extra_listeners`` adds listeners (name → (protocol, port)) the broker needs besides,
    such as Kafka's KRaft CONTROLLER listener, to ``listeners`` and the protocol map only.
    """
    ports = ports or {}
    listeners = {name: (protocol, ports.get(name, 0)) for name, protocol in LISTENERS.items()}
    every = {**listeners, **(extra_listeners or {})}
    conf = {
        "listeners": ",".join(f"{name}://{host}:{port}" for name, (_, port) in every.items()),
        "advertised.listeners": ",".join(f"{name}://{host}:{port}" for name, (_, port) in listeners.items()),
        "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, (protocol, _) in every.items()),
        "inter.broker.listener.name": "PLAINTEXT",
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki_dir / "server.p12"),
        "ssl.keystore.password": _pki_password(),
        "ssl.key.password": _pki_password(),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki_dir / "ca.pem"),
        "listener.name.ssl.ssl.client.auth": "requested",
        "listener.name.mtls.ssl.client.auth": "required",
    }
    for name, protocol in LISTENERS.items():
        if protocol.startswith("SASL_"):
            for mechanism in MECHANISMS:
                conf[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"] = jaas_config(mechanism)
    return conf


def _pki_password() -> str:
    from tools.pki import PASSWORD as PKI_PASSWORD
    return PKI_PASSWORD


def make_certificates(directory: Path) -> Path:
    """Write the CA, server and client certificates (tools.pki) into ``directory``; returns it."""
    from tools.pki import make_pki
    return make_pki(directory).directory


def cell_env(endpoints: Mapping[str, str], pki_dir: Path) -> dict[str, str]:
    """The environment variables a security cell reads (see the module's doc)."""
    env = {f"{ENV_PREFIX}{name}": endpoints[name] for name in LISTENERS if name in endpoints}
    env.update({
        f"{ENV_PREFIX}CA": str(pki_dir / "ca.pem"),
        f"{ENV_PREFIX}CLIENT_CERT": str(pki_dir / "client.pem"),
        f"{ENV_PREFIX}CLIENT_KEY": str(pki_dir / "client-key.pem"),
        f"{ENV_PREFIX}UNTRUSTED_CERT": str(pki_dir / "untrusted.pem"),
        f"{ENV_PREFIX}UNTRUSTED_KEY": str(pki_dir / "untrusted-key.pem"),
        f"{ENV_PREFIX}USER": USER,
        f"{ENV_PREFIX}PASSWORD": PASSWORD,
        f"{ENV_PREFIX}WRONG_PASSWORD": WRONG_PASSWORD,
        f"{ENV_PREFIX}UNKNOWN_USER": UNKNOWN_USER,
    })
    return env


def create_scram_users(admin_bootstrap: str, timeout: float = 30.0) -> None:
    """Create :data:`USER`'s SCRAM-SHA-256 and SCRAM-SHA-512 credentials with AlterUserScramCredentials
    over the PLAINTEXT listener (confluent-kafka's AdminClient), then wait until DescribeUserScramCredentials
    lists both; raises BrokerError if the broker refuses."""
    try:
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )
    except ImportError as e:
        raise BrokerError(f"creating SCRAM users needs confluent-kafka: {e}") from e
    admin = AdminClient({"bootstrap.servers": admin_bootstrap})
    upserts = [UserScramCredentialUpsertion(USER, ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), n),
                                            PASSWORD.encode())
               for m, n in SCRAM_ITERATIONS.items()]
    deadline = time.monotonic() + timeout
    try:
        # One request per mechanism: Kafka refuses a user named twice in one request (DUPLICATE_RESOURCE).
        for upsert in upserts:
            for fut in admin.alter_user_scram_credentials([upsert], request_timeout=timeout).values():
                fut.result(timeout)
        # Kafka applies the credentials through its metadata log: wait until they are described.
        while True:
            described = admin.describe_user_scram_credentials([USER], request_timeout=timeout)
            infos = _described_mechanisms(described, USER, timeout)
            if {m.replace("_", "-") for m in infos} >= set(SCRAM_ITERATIONS):
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"SCRAM credentials of {USER} not described after {timeout:.0f}s: {infos}")
            time.sleep(0.2)
    except BrokerError:
        raise
    except Exception as e:  # the admin call's error text is the reason
        raise BrokerError(f"creating SCRAM credentials over {admin_bootstrap} failed: {e}") from e


def _described_mechanisms(described: Any, user: str, timeout: float) -> list[str]:
    """Mechanism names of ``user`` in a describe_user_scram_credentials answer (a future or a dict)."""
    result = described.result(timeout) if hasattr(described, "result") else described[user].result(timeout)
    desc = result[user] if isinstance(result, dict) else result
    return [info.mechanism.name for info in desc.scram_credential_infos]


_ENDPOINT = re.compile(r"([A-Z][A-Z0-9_]*)://([0-9.]+):(\d+)(?: \(listener ([A-Za-z0-9_.-]+)\))?")


def parse_endpoints(line: str) -> dict[str, str]:
    """``{listener: host:port}`` from kbroker's start-up line: ``listening on PROTOCOL://host:port,
    ...``, a listener not named after its protocol followed by `` (listener NAME)``."""
    _, _, rest = line.partition("listening on ")
    rest = rest.split(", data in", 1)[0]
    return {(m.group(4) or m.group(1)): f"{m.group(2)}:{m.group(3)}" for m in _ENDPOINT.finditer(rest)}


@dataclass
class SecureSetup:
    """What the security cells of one broker need: its endpoints and the certificate directory."""

    endpoints: dict[str, str]
    pki_dir: Path

    def env(self) -> dict[str, str]:
        """The cells' environment (:func:`cell_env`)."""
        return cell_env(self.endpoints, self.pki_dir)


class SecureKbroker(Broker):
    """A kbroker subprocess with the five listeners and the SCRAM users created."""

    def __init__(self, log_path: Path | None = None, overrides: Mapping[str, str] | None = None) -> None:
        self.pki_dir = make_certificates(Path(tempfile.mkdtemp(prefix="kbroker-compat-pki-")))
        super().__init__(overrides={**security_config(self.pki_dir), **(overrides or {})}, log_path=log_path)
        self.endpoints: dict[str, str] = {}

    def start(self, timeout: float = 30.0) -> SecureKbroker:
        """Start the broker, note every listener's endpoint, create the SCRAM users."""
        super().start(timeout)
        line = self.listening_line
        self.endpoints = parse_endpoints(line)
        missing = [name for name in LISTENERS if name not in self.endpoints]
        if missing:
            self.stop()
            raise BrokerError(f"broker did not report listeners {missing}: {line}")
        self.bootstrap = self.endpoints["PLAINTEXT"]
        try:
            create_scram_users(self.bootstrap)
        except BrokerError:
            self.stop()
            raise
        return self

    def setup(self) -> SecureSetup:
        """Endpoints and certificates for the cells."""
        return SecureSetup(dict(self.endpoints), self.pki_dir)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the broker and remove its certificates."""
        super().stop(timeout)
        shutil.rmtree(self.pki_dir, ignore_errors=True)


class SecureKafka(LocalKafka):
    """The reference Apache Kafka (tools/kafka_reference, local jars) with the same five listeners
    (plus its KRaft CONTROLLER listener), certificates and SCRAM users: the security cells' Kafka
    column. compat.broker.Broker's interface, as compat.reference.LocalKafka's (whose log keeping,
    liveness and stop it shares)."""

    def __init__(self, log_dir: Path, heap: str = "512m") -> None:
        super().__init__(log_dir, heap)
        self.pki_dir = make_certificates(self.workdir / "pki")
        self.kept_log = log_dir / f"kafka-sec-{time.strftime('%Y%m%d-%H%M%S')}-{self.workdir.name[-8:]}.log"
        self.endpoints: dict[str, str] = {}

    def start(self) -> SecureKafka:
        """Resolve the jars (once), start Kafka with the listeners, create the SCRAM users."""
        from compat.reference import kafka_config
        from tools.kafka_reference import KafkaReference, resolve_jars
        from tools.kafka_reference.reference import _free_ports

        pki_dir = self.pki_dir

        class _Secure(KafkaReference):
            endpoints: dict[str, str] = {}

            def _write_config(self) -> Path:
                # The base picks the PLAINTEXT and CONTROLLER ports; the security listeners get
                # theirs here and, written after the base settings, replace its listener keys.
                path = super()._write_config()
                names = [n for n in LISTENERS if n != "PLAINTEXT"]
                ports = {"PLAINTEXT": self.port, **dict(zip(names, _free_ports(len(names)), strict=True))}
                conf = security_config(pki_dir, ports,
                                       extra_listeners={"CONTROLLER": ("PLAINTEXT", self.controller_port)})
                with path.open("a") as f:
                    f.write("".join(f"{k}={_escape(v)}\n" for k, v in conf.items()))
                self.endpoints = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
                return path

        try:
            resolve_jars()
            self._kafka = _Secure(self.workdir / "kafka", heap=self.heap, extra_config=kafka_config())
            self._kafka.start()
            self.endpoints = dict(self._kafka.endpoints)
            self.bootstrap = self.endpoints["PLAINTEXT"]
            create_scram_users(self.bootstrap)
        except Exception as e:  # Maven's, Kafka's or the admin call's failure text is the reason
            self.stop()
            raise BrokerError(f"reference Kafka (security listeners) did not start: {str(e)[:500]}") from e
        return self

    def setup(self) -> SecureSetup:
        """Endpoints and certificates for the cells."""
        return SecureSetup(dict(self.endpoints), self.pki_dir)


def _escape(value: str) -> str:
    """A value as a Java properties file needs it (backslashes doubled)."""
    return value.replace("\\", "\\\\")


def client_keystores(pki_dir: Path) -> dict[str, Path]:
    """The client certificate in the other encodings librdkafka's SSL tests load (0097_ssl_verify):
    a PKCS12 store (key, certificate and CA, password tools.pki.PASSWORD) and DER files of the
    certificate, the key (PKCS#8) and the CA. Written next to the PEM files; returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    cert = x509.load_pem_x509_certificate((pki_dir / "client.pem").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "client-key.pem").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    files = {
        "client.p12": pkcs12.serialize_key_and_certificates(
            b"client", key, cert, [ca],  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(_pki_password().encode())),
        "client.der": cert.public_bytes(serialization.Encoding.DER),
        "client-key.der": key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()),
        "ca.der": ca.public_bytes(serialization.Encoding.DER),
    }
    out = {}
    for name, data in files.items():
        (pki_dir / name).write_bytes(data)
        out[name] = pki_dir / name
    return out
