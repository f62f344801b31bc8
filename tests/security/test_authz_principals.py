"""Whose principal the ACLs judge: on SASL_SSL the SASL login's, never the client certificate's,
with real clients over real sockets and the StandardAuthorizer."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from kbroker.security.acl import AclBinding
from kbroker.security.model import AclOperation, AclPermissionType, PatternType, ResourceType
from kbroker.security.store import FileStateStore
from kbroker.testing import BrokerThread
from tools.pki import CLIENT_DN, Pki, make_pki

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'user_bob="bob-secret";')
Op, P, R, T = AclOperation, PatternType, ResourceType, AclPermissionType


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _produce(bootstrap: str, pki: Pki, topic: str, user: str, password: str) -> list[object]:
    """Deliver one record as ``user`` over SASL_SSL with the client certificate; the delivery errors."""
    producer = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
                         "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(pki.file("client.pem")),
                         "ssl.key.location": str(pki.file("client-key.pem")), "sasl.mechanism": "PLAIN",
                         "sasl.username": user, "sasl.password": password, "message.timeout.ms": 10000,
                         "log_level": 3})
    errors: list[object] = []
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(15) == 0
    return errors


def test_sasl_ssl_principal_is_the_login_not_the_certificate(tmp_path: Path, pki: Pki) -> None:
    topic = f"p-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    acls = [AclBinding(R.TOPIC, topic, P.LITERAL, "User:bob", "*", Op.ALL, T.ALLOW),
            AclBinding(R.TOPIC, "*", P.LITERAL, f"User:{CLIENT_DN}", "*", Op.ALL, T.DENY)]
    FileStateStore(data).save("acls", [a.to_json() for a in acls])
    overrides = {"listeners": "SASL_SSL://127.0.0.1:0", "authorizer.class.name": STANDARD,
                 "ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server),
                 "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca), "ssl.client.auth": "required",
                 "sasl.enabled.mechanisms": "PLAIN", "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
                 "super.users": f"User:{CLIENT_DN}"}
    with BrokerThread(data, overrides) as broker:
        broker.call(broker.broker.metadata.create_topic, topic, 1, 1, {})
        # bob may write the topic (the certificate's subject, a super user here, is not who writes).
        assert _produce(broker.bootstrap, pki, topic, "bob", "bob-secret") == [None]
        other = f"q-{uuid.uuid4().hex[:8]}"
        broker.call(broker.broker.metadata.create_topic, other, 1, 1, {})
        [err] = _produce(broker.bootstrap, pki, other, "bob", "bob-secret")
        assert err is not None and err.name() == "TOPIC_AUTHORIZATION_FAILED"  # type: ignore[attr-defined]
